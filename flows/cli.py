"""The `helmflow` command line.

Heavy libraries (Prefect, torch, transformers, Great Expectations) are imported inside the
commands that need them, so `helmflow runs` or `helmflow query` start in well under a second.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from specs.loader import SpecError
from specs.schema import ScenarioSpec

EXIT_OK, EXIT_FAILED, EXIT_BAD_INPUT = 0, 1, 2
DEFAULT_MODEL = "smollm2-135m-instruct"


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


def _plans(refs: Sequence[str], max_instances: int | None):
    """Resolve what `run` was given into scenario plans, the suite's models and its seed."""
    from flows.benchmark import ScenarioPlan
    from specs.library import apply_suite_entry, find, resolve_run_target
    from specs.schema import SuiteSpec

    plans, models, seed = [], [], None
    for ref in refs:
        loaded = resolve_run_target(ref)
        if isinstance(loaded.spec, SuiteSpec):
            suite = loaded.spec
            models += [m for m in suite.models if m not in models]
            seed = suite.seed if seed is None else seed
            for entry in suite.scenarios:
                found = find("scenario", entry.scenario)
                spec = apply_suite_entry(found.spec, **entry.model_dump(exclude={"scenario"}))  # type: ignore[arg-type]
                plans.append(ScenarioPlan(spec, str(found.path.parent), suite.name))
        elif loaded.kind == "scenario":
            plans.append(ScenarioPlan(loaded.spec, str(loaded.path.parent)))  # type: ignore[arg-type]
        else:
            raise SpecError(f"{loaded.path}: a {loaded.kind} spec cannot be run; give a suite or a scenario")
    if max_instances is not None:
        plans = [
            ScenarioPlan(apply_suite_entry(p.spec, max_instances=max_instances), p.base_dir, p.suite) for p in plans
        ]
    return plans, models, seed


def cmd_run(args: argparse.Namespace) -> int:
    from flows.display import Display, results_table

    if args.resume:
        return _resume(args)
    if not args.specs:
        raise SpecError("helmflow run needs a suite or scenario (or --resume RUN_ID)")
    plans, suite_models, suite_seed = _plans(args.specs, args.max_instances)
    from specs.library import find_model

    model_specs = [find_model(m) for m in (args.model or suite_models or [DEFAULT_MODEL])]
    seed = args.seed if args.seed is not None else (suite_seed or 0)
    display = Display()
    from flows import progress
    from flows.benchmark import benchmark

    progress.set_reporter(display)
    with display:
        outcomes = benchmark(plans, model_specs, seed=seed, db=args.db, prefer=args.source, use_cache=not args.no_cache)
    results_table(args.db, [o.run_id for o in outcomes])
    for outcome in outcomes:
        if outcome.status != "succeeded":
            print(
                f"run {outcome.run_id} ({outcome.scenario} × {outcome.model}) {outcome.status}: {outcome.error}",
                file=sys.stderr,
            )
    return EXIT_OK if all(o.status == "succeeded" for o in outcomes) else EXIT_FAILED


def _resume(args: argparse.Namespace) -> int:
    from flows import progress
    from flows.benchmark import resumable, resume
    from flows.display import Display, results_table

    resumable(args.db, args.resume)  # a clear error before Prefect starts, if it cannot be resumed
    display = Display()
    progress.set_reporter(display)
    with display:
        outcome = resume(args.resume, db=args.db, prefer=args.source)
    results_table(args.db, [outcome.run_id])
    return EXIT_OK if outcome.status == "succeeded" else EXIT_FAILED


# -- history ----------------------------------------------------------------------------------------


def cmd_runs(args: argparse.Namespace) -> int:
    from flows.display import print_frame
    from warehouse.db import connect
    from warehouse.writer import interrupted_run_ids

    with connect(args.db, read_only=True) as con:
        stale = set(interrupted_run_ids(con))
        frame = con.execute(
            "select run_id, started_at, suite, scenario, model, status, spec_hash, model_fingerprint, "
            "num_instances as n, round(wall_seconds, 1) as wall_s from runs order by started_at desc limit ?",
            [args.limit],
        ).df()
    # A run whose process died is failed, even before the next writer records that.
    frame["status"] = [
        ("failed (interrupted)" if r in stale else s) for r, s in zip(frame.run_id, frame.status, strict=True)
    ]
    print_frame(frame, "table")
    return EXIT_OK


def cmd_query(args: argparse.Namespace) -> int:
    import duckdb

    from flows.display import print_frame
    from warehouse.db import connect

    with connect(args.db, read_only=True) as con:
        try:
            frame = con.execute(args.sql).df()
        except duckdb.Error as exc:
            print(f"query failed: {exc}", file=sys.stderr)
            return EXIT_BAD_INPUT
    print_frame(frame, args.format)
    return EXIT_OK


def cmd_leaderboard(args: argparse.Namespace) -> int:
    """HELM's mean win rate per category (and overall) over the latest succeeded runs."""
    from flows.display import print_frame
    from warehouse.db import connect

    scenarios = None
    if args.suite:
        from specs.library import find

        scenarios = [e.scenario for e in find("suite", args.suite).spec.scenarios]  # type: ignore[union-attr]
    with connect(args.db, read_only=True) as con:
        where, params = [], []
        if scenarios is not None:
            where.append("scenario in (select unnest(?))")
            params.append(scenarios)
        if args.category:
            where.append("category = ?")
            params.append(args.category)
        # Recomputed from win_rates so that a suite filter also filters the columns averaged.
        frame = con.execute(
            "with rates as (select * from win_rates" + (" where " + " and ".join(where) if where else "") + ") "
            "select model, category, round(avg(win_rate), 4) as mean_win_rate, count(*) as columns from rates "
            "group by all union all select model, 'overall', round(avg(win_rate), 4), count(*) from rates "
            "group by model order by category, mean_win_rate desc, model",
            params,
        ).df()
    if frame.empty:
        print("no column has two or more models yet: run another model on the same scenarios")
        return EXIT_OK
    wide = frame.pivot(index="model", columns="category", values="mean_win_rate").reset_index()
    order = ["model", "overall"] + [c for c in wide.columns if c not in ("model", "overall")]
    print_frame(wide[order].sort_values("overall", ascending=False), "table")
    return EXIT_OK


def cmd_history(args: argparse.Namespace) -> int:
    from flows.display import bar, print_frame
    from warehouse.db import connect

    with connect(args.db, read_only=True) as con:
        frame = con.execute(
            "select started_at, run_id, value, n from metric_history where model = ? and scenario = ? and metric = ? "
            "and perturbation = ? and group_name = '' order by started_at",
            [args.model, args.scenario, args.metric, args.perturbation],
        ).df()
    if frame.empty:
        print(f"no succeeded runs of {args.model} on {args.scenario} with metric {args.metric}")
        return EXIT_FAILED
    low, high = frame.value.min(), frame.value.max()
    frame["chart"] = [bar(v, low, high) for v in frame.value]
    print_frame(frame, "table")
    return EXIT_OK


def cmd_compare(args: argparse.Namespace) -> int:
    import pandas as pd

    from flows.display import print_frame
    from flows.history import compare
    from warehouse.db import connect

    with connect(args.db, read_only=True) as con:
        result = compare(con, args.run_a, args.run_b)
    if result.differs:
        print("the runs differ in more than the model's answers:\n  " + "\n  ".join(result.differs))
    rows = [
        {
            "category": m.category,
            "metric": m.metric,
            "perturbation": m.perturbation,
            "a": m.a,
            "b": m.b,
            "delta": m.delta,
            "test": m.test,
            "p_value": m.p_value,
            "interval": f"[{m.interval[0]:.4g}, {m.interval[1]:.4g}]" if m.interval else "",
            "significant": "yes" if m.significant else "",
        }
        for m in result.metrics
    ]
    print_frame(pd.DataFrame(rows), args.format)
    print(f"{len(result.flipped)} instance(s) flipped on the main metric" + (":" if result.flipped else ""))
    for instance, a, b in result.flipped[: args.show]:
        print(f"  {instance}: {a:g} -> {b:g}")
    return EXIT_OK


def cmd_regressions(args: argparse.Namespace) -> int:
    from flows.history import regressions
    from warehouse.db import connect

    with connect(args.db, read_only=True) as con:
        found = regressions(con, args.alpha)
    if not found:
        print("no regressions")
        return EXIT_OK
    for r in found:
        print(
            f"REGRESSION {r.model} on {r.scenario}: {r.metric} {r.before:.4f} -> {r.after:.4f} "
            f"(McNemar p = {r.p_value:.3g}; runs {r.before_run} -> {r.after_run})"
        )
        for difference in r.differs:
            print(f"  differs: {difference}")
    return EXIT_FAILED


def cmd_rescore(args: argparse.Namespace) -> int:
    from flows.rescore import rescore

    version = rescore(args.db, args.run)
    print(f"run {args.run}: metrics version {version} stored")
    return EXIT_OK


def cmd_export(args: argparse.Namespace) -> int:
    from warehouse.db import connect

    target = Path(args.dir)
    target.mkdir(parents=True, exist_ok=True)
    with connect(args.db, read_only=True) as con:
        tables = [
            t
            for (t,) in con.execute(
                "select table_name from information_schema.tables where table_type = 'BASE TABLE' order by 1"
            ).fetchall()
        ]
        for table in tables:
            path = target / f"{table}.{args.format}"
            options = "(format parquet)" if args.format == "parquet" else "(format csv, header true)"
            con.execute(f"copy {table} to '{path}' {options}")
            print(f"{path}")
    return EXIT_OK


def cmd_refresh(args: argparse.Namespace) -> int:
    """One refresh now, in this process (what a scheduled run does)."""
    from flows import progress
    from flows.display import Display
    from flows.refresh import RegressionFound, refresh

    display = Display()
    progress.set_reporter(display)
    try:
        with display:
            report = refresh(args.suites, args.model, args.db)
    except RegressionFound as exc:
        print(f"regression(s):\n{exc}", file=sys.stderr)
        return EXIT_FAILED
    print(f"ran {len(report.ran)} run(s): {', '.join(report.ran) or '-'}; fresh: {len(report.fresh)}")
    return EXIT_OK


def cmd_schedule(args: argparse.Namespace) -> int:
    from flows.deploy import DeployError, schedule

    try:
        name = schedule(args.suite, args.model, args.cron, args.db, args.name, args.work_pool)
    except DeployError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    print(f"deployment {name} scheduled with cron '{args.cron}'")
    return EXIT_OK


def cmd_serve(args: argparse.Namespace) -> int:
    from flows.deploy import DeployError, serve_all

    try:
        serve_all(args.limit)
    except DeployError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    return EXIT_OK


# -- specs -------------------------------------------------------------------------------------------


def cmd_specs_validate(args: argparse.Namespace) -> int:
    from specs.loader import load_spec

    status = EXIT_OK
    for path in args.paths:
        try:
            loaded = load_spec(path)
            print(f"ok  {path} ({loaded.kind} '{loaded.spec.name}')")
        except SpecError as exc:
            print(str(exc), file=sys.stderr)
            status = EXIT_BAD_INPUT
    return status


def source_kinds(spec: ScenarioSpec) -> str:
    """Where a scenario's data can come from: hub, package, archive (a PyPI sdist), local files."""
    kinds = ["hub"] if spec.source.hub else []
    for offline in spec.source.offline_sources:
        kind = "package" if offline.package else "archive" if offline.archive else "local"
        if kind not in kinds:
            kinds.append(kind)
    return ", ".join(kinds)


def cmd_specs_list(args: argparse.Namespace) -> int:
    import pandas as pd

    from flows.display import print_frame
    from specs.library import spec_files
    from specs.loader import load_spec
    from tasks.data import offline_available

    rows = []
    for kind in ("suite", "scenario", "model"):
        for path in spec_files(kind):
            row = {"kind": kind, "name": path.stem, "sources": "", "offline here": "", "description": ""}
            try:
                spec = load_spec(path, kind).spec
            except SpecError as exc:
                rows.append({**row, "description": f"INVALID: {exc}"})
                continue
            if isinstance(spec, ScenarioSpec):
                row["sources"] = source_kinds(spec)
                row["offline here"] = "yes" if offline_available(spec, path.parent) else "no"
            rows.append({**row, "description": " ".join(spec.description.split())[:80]})
    print_frame(pd.DataFrame(rows), "table")
    return EXIT_OK


def cmd_specs_show(args: argparse.Namespace) -> int:
    """The resolved spec as YAML, then two prompts rendered from its data (offline, else the Hub)."""
    import yaml

    from specs.library import find
    from tasks.adapt import build_requests
    from tasks.data import load_instances, select

    loaded = find("scenario", args.name)
    spec = loaded.spec
    assert isinstance(spec, ScenarioSpec)
    print(f"# {loaded.path}")
    print(yaml.safe_dump(spec.model_dump(mode="json"), sort_keys=False, allow_unicode=True, width=110))
    instances, source = load_instances(spec, base_dir=loaded.path.parent)
    instances = select(instances, spec.groups, 2, seed=args.seed)
    pool = []
    if spec.adapter.num_train and spec.adapter.fewshot_split:
        pool, _ = load_instances(spec, spec.adapter.fewshot_split, base_dir=loaded.path.parent)
    for request in build_requests(spec.adapter, instances, pool, args.seed):
        print(f"# prompt for {request.instance_id} ({source.kind}: {source.description})")
        print(request.prompt)
        if request.continuations:
            print(f"# continuations scored: {list(request.continuations)}")
        print()
    return EXIT_OK


def cmd_perturb(args: argparse.Namespace) -> int:
    from tasks.perturb import perturb

    try:
        print(perturb(args.name, args.text, args.seed, args.key))
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    return EXIT_OK


# -- entry point -------------------------------------------------------------------------------------


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
    run.add_argument("--max-instances", type=int, default=None)
    run.add_argument("--seed", type=int, default=None)
    run.add_argument(
        "--source",
        choices=["auto", "offline", "hub"],
        default="auto",
        help="where data comes from: offline copy when available (auto), or force one",
    )
    run.set_defaults(func=cmd_run)

    runs = sub.add_parser("runs", help="list runs, newest first")
    runs.add_argument("--limit", type=int, default=50)
    runs.set_defaults(func=cmd_runs)

    query = sub.add_parser("query", help="run read-only SQL on the warehouse")
    query.add_argument("sql")
    query.add_argument("--format", choices=["table", "csv", "json"], default="table")
    query.set_defaults(func=cmd_query)

    fresh = sub.add_parser("refresh", help="re-run the stale model × scenario pairs of suites now")
    fresh.add_argument("suites", nargs="+")
    fresh.add_argument("--model", action="append", help="instead of the suite's models (repeatable)")
    fresh.set_defaults(func=cmd_refresh)

    sched = sub.add_parser("schedule", help="create a Prefect deployment that refreshes a suite on a cron")
    sched.add_argument("suite")
    sched.add_argument("--model", action="append", help="instead of the suite's models (repeatable)")
    sched.add_argument("--cron", required=True, help='e.g. "0 3 * * *"')
    sched.add_argument("--name", help="deployment name (default: the suite's)")
    sched.add_argument("--work-pool", help="run on this Prefect work pool's workers instead of helmflow serve")
    sched.set_defaults(func=cmd_schedule)

    serve = sub.add_parser("serve", help="serve every helmflow deployment in this process (Prefect's serve)")
    serve.add_argument("--limit", type=int, help="at most this many runs at once")
    serve.set_defaults(func=cmd_serve)

    board = sub.add_parser("leaderboard", help="mean win rate per category over the latest runs")
    board.add_argument("--suite")
    board.add_argument("--category")
    board.set_defaults(func=cmd_leaderboard)

    history = sub.add_parser("history", help="a metric over time for one model and scenario")
    history.add_argument("--model", required=True)
    history.add_argument("--scenario", required=True)
    history.add_argument("--metric", required=True)
    history.add_argument("--perturbation", default="", help="e.g. worst_case for robustness")
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
    specs.add_parser("list", help="list suites, scenarios and models").set_defaults(func=cmd_specs_list)
    show = specs.add_parser("show", help="a scenario's resolved spec and two rendered prompts")
    show.add_argument("name")
    show.add_argument("--seed", type=int, default=0)
    show.set_defaults(func=cmd_specs_show)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.db:
        args.db = str(Path(args.db))
    _quiet_environment(args.verbose)
    from tasks.data import DataError
    from tasks.models.base import ModelError
    from tasks.validate import ValidationFailed
    from warehouse.db import WarehouseError

    try:
        return int(args.func(args))
    except (SpecError, DataError, ModelError, ValidationFailed, WarehouseError, LookupError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT


if __name__ == "__main__":
    sys.exit(main())
