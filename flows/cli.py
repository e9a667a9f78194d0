"""The `helmflow` command line.

Heavy libraries (Prefect, torch, transformers, Great Expectations) are imported inside the
commands that need them, so `helmflow runs` or `helmflow query` start in well under a second.
"""

from __future__ import annotations

import argparse
import atexit
import contextlib
import os
import sys
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import NoReturn

from helmflow.flows import cli_lmeval, termination
from helmflow.flows.api import DEFAULT_MODEL as DEFAULT_MODEL  # the CLI's default model is the API's
from helmflow.flows.cli_common import EXIT_BAD_INPUT, EXIT_FAILED, EXIT_OK
from helmflow.flows.cli_contamination import add_contamination_parser
from helmflow.flows.cli_history import (
    cmd_compare,
    cmd_export,
    cmd_history,
    cmd_leaderboard,
    cmd_query,
    cmd_regressions,
    cmd_rescore,
    cmd_runs,
)
from helmflow.flows.cli_report import add_report_parser
from helmflow.flows.cli_schedule import cmd_refresh, cmd_schedule, cmd_serve
from helmflow.flows.cli_specs import cmd_perturb, cmd_specs_list, cmd_specs_metrics, cmd_specs_show, cmd_specs_validate
from helmflow.specs.loader import SpecError


def _quiet_environment(verbose: bool) -> None:
    defaults = {
        "DO_NOT_TRACK": "1",
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "90",
        # Prefect logs every task failure with a traceback; the CLI prints the short reason itself.
        "PREFECT_LOGGING_LEVEL": "INFO" if verbose else "CRITICAL",
        "HF_DATASETS_DISABLE_PROGRESS_BARS": "1",
        "TRANSFORMERS_VERBOSITY": "error",
        "TOKENIZERS_PARALLELISM": "false",
    }
    for key, value in defaults.items():
        os.environ.setdefault(key, value)


# -- run -------------------------------------------------------------------------------------------


def cmd_run(args: argparse.Namespace) -> int:
    """Parsing and printing around `helmflow.flows.api.evaluate`, which does the run."""
    from helmflow.flows.api import evaluate
    from helmflow.flows.display import Display, results_table

    cli_lmeval.configure(args)  # --data-dir, --trust-task-code, --lmeval-path for lmeval:TASK (a resume's hooks too)
    if args.resume:
        return _resume(args)
    if not args.specs:
        raise SpecError("helmflow run needs a suite or scenario (or --resume RUN_ID)")
    results = evaluate(
        args.specs,
        args.model,
        db=args.db,
        max_instances=args.max_instances,
        seed=args.seed,
        source=args.source,
        runner=args.runner,
        use_cache=not args.no_cache,
        workers=args.workers,
        shards=args.shards,
        progress=Display(),
    )
    results_table(args.db, results.run_ids)
    for outcome in results.outcomes:
        if outcome.status != "succeeded":
            print(
                f"run {outcome.run_id} ({outcome.scenario} × {outcome.model}) {outcome.status}: {outcome.error}",
                file=sys.stderr,
            )
    return EXIT_OK if results.ok else EXIT_FAILED


def _resume(args: argparse.Namespace) -> int:
    """Parsing and printing around `helmflow.flows.api.resume`."""
    from helmflow.flows.api import resume
    from helmflow.flows.display import Display, results_table

    results = resume(
        args.resume,
        db=args.db,
        source=args.source,
        runner=args.runner,
        workers=args.workers,
        shards=args.shards,
        progress=Display(),
    )
    results_table(args.db, results.run_ids)
    return EXIT_OK if results.ok else EXIT_FAILED


# -- merge -------------------------------------------------------------------------------------------


def cmd_merge(args: argparse.Namespace) -> int:
    from helmflow.warehouse.store import Warehouse

    target = Warehouse(args.db)
    for report in target.merge(args.sources):
        older = f" (read through the migrations from schema version {report.migrated_from})"
        rows = ", ".join(f"{n} {t}" for t, n in report.rows_added.items() if n)
        print(
            f"{report.source}{older if report.migrated_from else ''}: {len(report.runs_added)} run(s) added"
            + (f" ({rows})" if rows else "")
            + f", {report.runs_present} already here, {report.cache_added} inference cache entries added"
        )
        if report.runs_replaced:
            print(f"  replaced, failed here and resumed there since: {', '.join(report.runs_replaced)}")
        if report.rescorings_added:
            print(f"  {report.rescorings_added} metrics version(s) added, re-scored there")
        if report.runs_skipped:
            print(f"  left for a later merge, still running there: {', '.join(report.runs_skipped)}")
    print(f"into {target.path}")
    return EXIT_OK


# -- entry point -------------------------------------------------------------------------------------


def cmd_specs_schema(args: argparse.Namespace) -> int:
    from helmflow.specs.json_schema import schema_text

    sys.stdout.write(schema_text(args.kind))
    return EXIT_OK


def _bounded_int(low: int, high: int, what: str) -> Callable[[str], int]:
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"{value} is out of range: {what} is between {low} and {high}")
        return value

    return parse


_count = _bounded_int(1, 10_000_000, "the number of instances")
_seed = _bounded_int(0, 2**31 - 1, "a seed")
_workers = _bounded_int(1, 1024, "the number of workers")
_shards = _bounded_int(1, 100_000, "the number of shards per run")
_memory_mb = _bounded_int(64, 1_048_576, "a query's memory limit in MB")
_seconds = _bounded_int(1, 86_400, "a query's time limit in seconds")
_rows = _bounded_int(1, 1_000_000_000, "a query's largest result in rows")


# --references on leaderboard, history and report: a user's file of baselines and declared contamination.
REFERENCES_HELP = (
    "a references file (published baselines, declared contamination) besides helmflow's own and "
    "$HELMFLOW_REFERENCES's (repeatable; docs/baselines-and-contamination.md)"
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="helmflow", description="Holistic evaluation of language models.")
    parser.add_argument(
        "--db", default=None, help="warehouse file (default: $HELMFLOW_DB or warehouse/helmflow.duckdb)"
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="show Prefect's logs")
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="evaluate models on suites or scenarios")
    run.add_argument("specs", nargs="*", help="suite or scenario names or YAML files")
    run.add_argument("--resume", metavar="RUN_ID", help="finish a failed or interrupted run where it stopped")
    run.add_argument("--no-cache", action="store_true", help="ask the model for every answer (the cache is not read)")
    run.add_argument("--model", action="append", help="model spec name or file, or hf:<hub id or path> (repeatable)")
    run.add_argument("--max-instances", type=_count, default=None, help="evaluate at most N instances (N ≥ 1)")
    run.add_argument("--seed", type=_seed, default=None)
    run.add_argument(
        "--source",
        choices=["auto", "offline", "hub"],
        default="auto",
        help="where data comes from: offline copy when available (auto), or force one",
    )
    run.add_argument(
        "--runner",
        default=None,
        help="where inference runs: local (default), dask or ray (a local cluster started for the run), "
        "or an existing cluster: dask://HOST:8786, ray://HOST:10001 (default: the suite's runner:)",
    )
    run.add_argument("--workers", type=_workers, default=2, help="worker processes of a local dask or ray cluster")
    run.add_argument(
        "--shards", type=_shards, default=1, help="split each run's uncached requests into N tasks (dask or ray)"
    )
    cli_lmeval.add_run_arguments(run)
    run.set_defaults(func=cmd_run)

    merge = sub.add_parser("merge", help="copy the runs and cached answers of other warehouses into this one")
    merge.add_argument("sources", nargs="+", metavar="OTHER.duckdb", help="warehouse files (opened read-only)")
    merge.set_defaults(func=cmd_merge)

    runs = sub.add_parser("runs", help="list runs, newest first")
    runs.add_argument("--limit", type=int, default=50)
    runs.set_defaults(func=cmd_runs)

    query = sub.add_parser("query", help="run read-only SQL on the warehouse")
    query.add_argument("sql")
    query.add_argument("--format", choices=["table", "csv", "json"], default="table")
    query.add_argument(
        "--memory-limit", type=_memory_mb, default=2048, metavar="MB", help="DuckDB's memory and the result's (MB)"
    )
    query.add_argument("--timeout", type=_seconds, default=60, metavar="SECONDS", help="stop the query after this")
    query.add_argument("--max-rows", type=_rows, default=1_000_000, metavar="N", help="refuse a larger result")
    query.set_defaults(func=cmd_query)

    fresh = sub.add_parser("refresh", help="re-run the stale model × scenario pairs of suites now")
    fresh.add_argument("suites", nargs="+")
    fresh.add_argument("--model", action="append", help="instead of the suite's models (repeatable)")
    fresh.set_defaults(func=cmd_refresh)

    sched = sub.add_parser("schedule", help="create a Prefect deployment that refreshes a suite on a cron")
    sched.add_argument("suite")
    sched.add_argument("--model", action="append", help="instead of the suite's models (repeatable)")
    sched.add_argument(
        "--cron", required=True, help='minute hour day-of-month month day-of-week, e.g. "0 3 * * *" (03:00 daily)'
    )
    sched.add_argument("--name", help="deployment name (default: the suite's)")
    sched.add_argument("--work-pool", help="run on this Prefect work pool's workers instead of helmflow serve")
    sched.set_defaults(func=cmd_schedule)

    serve = sub.add_parser("serve", help="serve every helmflow deployment in this process (Prefect's serve)")
    serve.add_argument("--limit", type=int, help="at most this many runs at once")
    serve.set_defaults(func=cmd_serve)

    board = sub.add_parser("leaderboard", help="mean win rate per category over the latest runs")
    board.add_argument("--suite")
    board.add_argument("--category")
    board.add_argument(
        "--layout",
        action="store_true",
        help="HELM's layout of --suite: per model its scenarios × the seven categories, then the coverage matrix",
    )
    board.add_argument("--references", action="append", metavar="FILE", help=REFERENCES_HELP)
    board.set_defaults(func=cmd_leaderboard)

    history = sub.add_parser("history", help="a metric over time for one model and scenario")
    history.add_argument("--model", required=True)
    history.add_argument("--scenario", required=True)
    history.add_argument("--metric", required=True)
    history.add_argument("--perturbation", default="", help="e.g. worst_case for robustness")
    history.add_argument(
        "--category", help="robustness or fairness (both store worst_case); default: both, each row named"
    )
    history.add_argument(
        "--group", help="the metric within one instance group (e.g. an MMLU subject): where it changed"
    )
    history.add_argument("--references", action="append", metavar="FILE", help=REFERENCES_HELP)
    history.set_defaults(func=cmd_history)

    comp = sub.add_parser("compare", help="two runs metric by metric, with paired significance")
    comp.add_argument("run_a")
    comp.add_argument("run_b")
    comp.add_argument("--show", type=int, default=20, help="how many flipped instances to list")
    comp.add_argument("--format", choices=["table", "csv", "json"], default="table")
    comp.set_defaults(func=cmd_compare)

    regress = sub.add_parser("regressions", help="significant drops between consecutive runs")
    regress.add_argument("--alpha", type=float, default=0.05)
    regress.set_defaults(func=cmd_regressions)

    rescore = sub.add_parser("rescore", help="recompute a run's metrics from its stored predictions")
    rescore.add_argument("run")
    rescore.set_defaults(func=cmd_rescore)

    export = sub.add_parser("export", help="write every table to files")
    export.add_argument("dir")
    export.add_argument("--format", choices=["parquet", "csv"], default="parquet")
    export.set_defaults(func=cmd_export)

    add_report_parser(sub)
    add_contamination_parser(sub)

    perturb = sub.add_parser("perturb", help="show what a perturbation does to a text")
    perturb.add_argument(
        "name",
        help="lowercase, contractions, expansions, misspellings, extra_space, typos, "
        "mild_mix, gender, race_names or dialect",
    )
    perturb.add_argument("text")
    perturb.add_argument("--seed", type=int, default=0)
    perturb.add_argument("--key", default="", help="the instance id (runs seed each instance by its id)")
    perturb.set_defaults(func=cmd_perturb)

    specs = sub.add_parser("specs", help="the spec library").add_subparsers(dest="specs_command", required=True)
    validate = specs.add_parser("validate", help="check spec files")
    validate.add_argument("paths", nargs="+")
    validate.set_defaults(func=cmd_specs_validate)
    listing = specs.add_parser(
        "list", help="list suites, scenarios and models, and the backends, metrics and data formats specs may name"
    )
    listing.add_argument(
        "--source",
        choices=["library", "lmeval"],
        default="library",
        help="lmeval: every lm-evaluation-harness task, group and tag found, with what each needs",
    )
    cli_lmeval.add_path_argument(listing)
    listing.set_defaults(func=cmd_specs_list)
    specs.add_parser(
        "metrics", help="every metric `metrics:` may name (plugins' too), as a Markdown table"
    ).set_defaults(func=cmd_specs_metrics)
    schema = specs.add_parser("schema", help="the JSON Schema of a spec kind (for editors and tools)")
    schema.add_argument("kind", choices=["scenario", "model", "suite"])
    schema.set_defaults(func=cmd_specs_schema)
    show = specs.add_parser("show", help="a scenario's resolved spec and two rendered prompts")
    show.add_argument("name")
    show.add_argument("--seed", type=int, default=0)
    show.add_argument("--model", help="render the prompts in this model's chat format (apply_chat_template)")
    show.set_defaults(func=cmd_specs_show)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.db:
        args.db = str(Path(args.db))
    _quiet_environment(args.verbose)
    from concurrent.futures.process import BrokenProcessPool

    from helmflow.flows.failures import environment_failure, with_notes
    from helmflow.flows.temporary_server import PrefectServerError
    from helmflow.tasks.data import DataError
    from helmflow.tasks.models.base import ModelError
    from helmflow.tasks.validate import ValidationFailed
    from helmflow.warehouse.db import WarehouseError

    try:
        return int(args.func(args))
    except (SpecError, DataError, ModelError, ValidationFailed, WarehouseError, LookupError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except PrefectServerError as exc:  # the machine's fault, not the input's: say it without a traceback
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_FAILED
    except BrokenProcessPool as exc:
        print(f"error: the validation worker process (Great Expectations) died: {exc}", file=sys.stderr)
        return EXIT_FAILED
    except Exception as exc:  # the machine's: a full disk, a Prefect API not answering (flows/failures.py)
        line = environment_failure(exc)
        if line is None:
            raise
        print(f"error: {with_notes(line, exc)}", file=sys.stderr)
        return EXIT_FAILED


def console_main() -> NoReturn:
    """The `helmflow` command: main(), the exit hooks (Prefect's log and event flushes, the temporary
    server's stop), then the exit itself, without tearing the interpreter down module by module.

    That teardown frees torch's, transformers', Great Expectations' and Prefect's thousands of objects one
    by one: 1–3 s after a run, with nothing left to do (the run is in the warehouse, every connection is
    closed, the hooks have run). Tests call main() and keep the normal exit.
    """
    termination.install()  # SIGTERM unwinds as Ctrl-C does, so that every child process ends with this one
    try:
        code = main()
    except SystemExit as exc:  # argparse's --help and usage errors
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 2)
        if exc.code is not None and not isinstance(exc.code, int):
            print(exc.code, file=sys.stderr)
    except BrokenPipeError:  # the reader went away (`helmflow leaderboard | head`): what it wanted was shown
        with contextlib.suppress(OSError):
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no second error at the final flush
        code = 1  # as rich exits when its own write meets the closed pipe
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        code = 130
    except termination.Terminated:
        print("terminated", file=sys.stderr)
        code = termination.EXIT_TERMINATED
    termination.uninstall()
    # What the interpreter does before its teardown: wait for non-daemon threads, run the exit hooks.
    threading._shutdown()  # type: ignore[attr-defined]
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError):  # a closed pipe (helmflow runs | head)
            stream.flush()
    os._exit(code)


if __name__ == "__main__":
    console_main()
