"""helmflow's Python API: what `helmflow run` does, as functions.

    from helmflow.flows.api import evaluate, open_warehouse

    results = evaluate("mmlu", max_instances=20, db="my.duckdb")
    results.metrics        # one row per run and headline metric: value, n, 95% interval
    results.to_frame()     # one row per run, each category's headline value as a column
    open_warehouse("my.duckdb").query("select * from runs")

The command line is parsing and formatting over these (flows/cli.py). Like the CLI, the heavy libraries
(Prefect, torch, transformers) are imported only when a run starts.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

from helmflow.specs.loader import SpecError

if TYPE_CHECKING:
    import pandas as pd
    from prefect import Flow

    from helmflow.flows.pipeline import RunOutcome
    from helmflow.flows.progress import Reporter
    from helmflow.flows.runners import RunnerSpec
    from helmflow.warehouse.store import Warehouse

__all__ = ["DEFAULT_MODEL", "Results", "evaluate", "open_warehouse", "resume"]

DEFAULT_MODEL = "smollm2-135m-instruct"


@dataclass
class Results:
    """What `evaluate` ran: one outcome per model × scenario run, and their headline metrics read from `db`."""

    outcomes: list[RunOutcome]
    db: str | None = None

    @property
    def run_ids(self) -> list[str]:
        return [o.run_id for o in self.outcomes]

    @property
    def statuses(self) -> dict[str, str]:
        """run id → `succeeded`, `validation_failed` or `failed`."""
        return {o.run_id: o.status for o in self.outcomes}

    @property
    def errors(self) -> dict[str, str]:
        """run id → why it did not succeed (runs that succeeded are left out)."""
        return {o.run_id: o.error or "" for o in self.outcomes if o.status != "succeeded"}

    @property
    def ok(self) -> bool:
        return all(o.status == "succeeded" for o in self.outcomes)

    @cached_property
    def metrics(self) -> pd.DataFrame:
        """One row per run and headline metric of the whole run (no group): run_id, scenario, model, category,
        metric, perturbation, value, n, ci_low, ci_high, ci_method, lower_is_better."""
        import pandas as pd

        columns = ["run_id", "scenario", "model", "category", "metric", "perturbation", "value", "n"]
        columns += ["ci_low", "ci_high", "ci_method", "lower_is_better"]
        if not self.outcomes:
            return pd.DataFrame(columns=columns)
        warehouse = open_warehouse(self.db)
        metrics = warehouse.report_metrics(self.run_ids)
        metrics = metrics[metrics.headline.astype(bool) & (metrics.group_name == "")]
        names = pd.DataFrame(
            {
                "run_id": self.run_ids,
                "scenario": [o.scenario for o in self.outcomes],
                "model": [o.model for o in self.outcomes],
            }
        )
        merged = names.merge(metrics, on="run_id", how="inner")
        return merged[columns].sort_values(["scenario", "model", "category", "metric"]).reset_index(drop=True)

    def to_frame(self) -> pd.DataFrame:
        """One row per run: run_id, scenario, model, status, error, then each category's headline value."""
        import pandas as pd

        runs = pd.DataFrame(
            {
                "run_id": self.run_ids,
                "scenario": [o.scenario for o in self.outcomes],
                "model": [o.model for o in self.outcomes],
                "status": [o.status for o in self.outcomes],
                "error": [o.error for o in self.outcomes],
            }
        )
        if self.metrics.empty:
            return runs
        wide = self.metrics.pivot_table(index="run_id", columns="category", values="value", aggfunc="first")
        wide.columns.name = None
        return runs.merge(wide.reset_index(), on="run_id", how="left")


def open_warehouse(path: str | Path | None = None) -> Warehouse:
    """The warehouse at `path` (default: $HELMFLOW_DB, else warehouse/helmflow.duckdb under the current
    directory): runs, predictions and metrics, read with its methods or `query(sql)`."""
    from helmflow.warehouse.store import Warehouse

    return Warehouse(None if path is None else str(Path(path)))


def evaluate(
    scenarios: str | Path | Sequence[str | Path],
    models: str | Sequence[str] | None = None,
    *,
    db: str | Path | None = None,
    max_instances: int | None = None,
    seed: int | None = None,
    source: str = "auto",
    runner: str | None = None,
    use_cache: bool = True,
    workers: int = 2,
    shards: int = 1,
    progress: Reporter | None = None,
) -> Results:
    """Evaluate `models` on `scenarios` (suite or scenario names or YAML files), as `helmflow run` does.

    models: model spec names or files, or `hf:<hub id or path>`; default: the suites' models, else
    smollm2-135m-instruct. seed: default the first suite's seed, else 0. source: `auto` (the offline copy
    when there is one, else the Hub), `offline` or `hub`. runner: `local`, `dask`, `ray`, `dask://HOST:PORT`
    or `ray://HOST:PORT`; default (None): the first suite's `runner:`, else local. shards > 1 splits each
    run's uncached requests over a dask or ray runner's `workers`. progress: a reporter
    (`helmflow.flows.progress.Reporter`, e.g. `progress.Lines()`) shown while the flow runs; default: silent.

    Bad specs, data or models raise (SpecError, DataError, ModelError, ...) before any flow runs; a run that
    fails once started is in the result with its status and error, never raised. A scenario whose data is not
    here (the Hub unreachable, offline files missing) while others' is, is a failed run in the result that says
    so, one per model; the others run.
    """
    refs = [str(scenarios)] if isinstance(scenarios, str | Path) else [str(s) for s in scenarios]
    if not refs:
        raise SpecError("helmflow run needs a suite or scenario (or --resume RUN_ID)")
    model_refs = [models] if isinstance(models, str) else list(models or [])
    db_path = None if db is None else str(Path(db))
    from helmflow.flows.plans import run_targets
    from helmflow.specs.library import find_model

    targets = run_targets(refs, max_instances)
    model_specs = [find_model(m) for m in (model_refs or targets.models or [DEFAULT_MODEL])]
    seed = seed if seed is not None else (targets.seed or 0)
    open_warehouse(db_path).check()  # a path that is not a warehouse fails now, before data and model load
    from helmflow.flows.benchmark import benchmark
    from helmflow.flows.pipeline import RunContext, record_unavailable
    from helmflow.flows.runners import suite_runner, thread_environment
    from helmflow.flows.startup import get_ready

    chosen = runner_spec(runner or suite_runner(refs), workers, shards)
    context = RunContext(progress)
    context.thread_environment = thread_environment()  # before a local cluster changes it
    context.release_checks = True  # this call's last run ends its checks: the worker is this call's alone
    try:
        # Bad data fails here, before any flow runs; meanwhile Prefect's server starts and the model loads.
        get_ready(targets.plans, model_specs, seed, source, load_model=not chosen.fans_out, context=context)
        missing = {id(plan) for plan, _ in context.unavailable}
        plans = [plan for plan in targets.plans if id(plan) not in missing]
        shown = progress if isinstance(progress, contextlib.AbstractContextManager) else contextlib.nullcontext()
        with shown:
            outcomes = on_runner(benchmark, chosen)(
                plans,
                model_specs,
                seed=seed,
                db=db_path,
                prefer=source,
                use_cache=use_cache,
                fan_out=chosen.fans_out,
                shards=shards,
                context=context,
            )
        outcomes = list(outcomes)
        for plan, reason in context.unavailable:  # a scenario whose data is not here: a failed run that says why
            outcomes += [record_unavailable(plan, m, seed, db_path, reason, context.reporter) for m in model_specs]
    finally:
        # The validation worker get_ready started lives as long as this call, however it ends (returned,
        # raised, Ctrl-C, or SIGTERM turned into Terminated by the command): no child outlives it.
        context.checks.stop()
    return Results(outcomes, db_path)


def resume(
    run_id: str,
    *,
    db: str | Path | None = None,
    source: str = "auto",
    runner: str | None = None,
    workers: int = 2,
    shards: int = 1,
    progress: Reporter | None = None,
) -> Results:
    """Finish a failed or interrupted run, as `helmflow run --resume RUN_ID` does: its scenario, model and
    seed read back from its row, every answer already in the inference cache used, the rest computed.

    A run that is not failed (or interrupted) raises LookupError before anything starts."""
    db_path = None if db is None else str(Path(db))
    from helmflow.flows.benchmark import resumable
    from helmflow.flows.benchmark import resume as resume_flow
    from helmflow.flows.pipeline import RunContext
    from helmflow.flows.runners import thread_environment

    resumable(db_path, run_id)  # a clear error before Prefect starts, if it cannot be resumed
    chosen = runner_spec(runner, workers, shards)
    context = RunContext(progress)
    context.thread_environment = thread_environment()  # before a local cluster changes it
    shown = progress if isinstance(progress, contextlib.AbstractContextManager) else contextlib.nullcontext()
    with shown:
        outcome = on_runner(resume_flow, chosen)(
            run_id, db=db_path, prefer=source, fan_out=chosen.fans_out, shards=shards, context=context
        )
    return Results([outcome], db_path)


def runner_spec(runner: str | None, workers: int = 2, shards: int = 1) -> RunnerSpec:
    """`runner` (None: local) parsed; shards > 1 needs a runner that fans out."""
    from helmflow.flows.runners import parse_runner

    chosen = parse_runner(runner or "local", workers)
    if shards > 1 and not chosen.fans_out:
        raise SpecError("--shards splits runs over a cluster's workers: give --runner dask or ray too")
    return chosen


def on_runner(flow: Flow[..., Any], runner: RunnerSpec) -> Flow[..., Any]:
    """The flow as it is for the local runner; for dask or ray, a copy with that task runner."""
    from helmflow.flows.runners import task_runner

    chosen = task_runner(runner)
    return flow if chosen is None else flow.with_options(task_runner=chosen)
