"""The benchmark and resume flows: scenarios × models → validated, scored runs in the warehouse.

Every scenario's instances are loaded and checked first (bad input stops everything before anything
is written); then every (model, scenario) pair goes through the pipeline (flows/pipeline.py), its
answers computed in this process or, with `fan_out`, on the flow's Dask or Ray task runner.
"""

from __future__ import annotations

from prefect import flow, task
from prefect.runtime import flow_run

from helmflow.flows.in_process import InProcess
from helmflow.flows.pipeline import Executor, Pair, RunContext, RunOutcome, run_pairs
from helmflow.flows.plans import ScenarioPlan
from helmflow.flows.prepare import Prepared, plan_key, prepare
from helmflow.flows.runners import ClusterExecutor
from helmflow.flows.stages import TASK_OPTIONS
from helmflow.specs.schema import ModelSpec, ScenarioSpec
from helmflow.warehouse.store import Warehouse

__all__ = ["RunOutcome", "ScenarioPlan", "benchmark", "load_stage", "resumable", "resume"]


@task(name="load-instances", **TASK_OPTIONS)
def load_stage(plan: ScenarioPlan, seed: int, prefer: str, context: RunContext) -> Prepared:
    """The scenario as start-up prepared it (flows/startup.py), or prepared now."""
    return context.take_prepared(plan_key(plan, seed, prefer)) or prepare(plan, seed, prefer, context.checks)


def executor_for(
    fan_out: bool, models: list[ModelSpec], shards: int, db: str | None, use_cache: bool, context: RunContext
) -> Executor:
    return ClusterExecutor(models, shards, db, use_cache, context) if fan_out else InProcess(context, db, use_cache)


@flow(name="helmflow-benchmark", validate_parameters=False, log_prints=False)
def benchmark(
    plans: list[ScenarioPlan],
    models: list[ModelSpec],
    seed: int = 0,
    db: str | None = None,
    prefer: str = "auto",
    use_cache: bool = True,
    fan_out: bool = False,
    shards: int = 1,
    context: RunContext | None = None,
) -> list[RunOutcome]:
    """Every model on every scenario, model by model. `fan_out`: inference goes to the flow's task runner
    (a Dask or Ray cluster, flows/runners.py) in `shards` pieces per run; otherwise it runs here."""
    context = context or RunContext()
    prepared = []
    for plan in plans:
        prep = load_stage(plan, seed, prefer, context)
        context.reporter.stage(plan.spec.name, f"{len(prep.instances)} instances from {prep.source.kind}")
        prepared.append(prep)
    pairs = [Pair(prep, model_spec) for model_spec in models for prep in prepared]
    executor = executor_for(fan_out, models, shards, db, use_cache, context)
    return run_pairs(pairs, executor, context, seed, db, flow_run.id, use_cache)


def resumable(db: str | None, run_id: str) -> tuple[ScenarioPlan, ModelSpec, int]:
    """What a stopped run was doing: its scenario plan, model and seed, read back from its row."""
    row = Warehouse(db).run_row(run_id, "spec_json", "spec_dir", "suite", "model_json", "seed")
    if row["status"] != "failed":
        raise LookupError(f"run {run_id} is {row['status']}: only a failed or interrupted run can be resumed")
    plan = ScenarioPlan(ScenarioSpec.model_validate_json(row["spec_json"]), row["spec_dir"], row["suite"])
    return plan, ModelSpec.model_validate_json(row["model_json"]), int(row["seed"])


@flow(name="helmflow-resume", validate_parameters=False, log_prints=False)
def resume(
    run_id: str,
    db: str | None = None,
    prefer: str = "auto",
    fan_out: bool = False,
    shards: int = 1,
    context: RunContext | None = None,
) -> RunOutcome:
    """Finish a crashed run: every answer already in the inference cache is used, the rest computed."""
    context = context or RunContext()
    plan, model_spec, seed = resumable(db, run_id)
    prep = load_stage(plan, seed, prefer, context)
    executor = executor_for(fan_out, [model_spec], shards, db, True, context)
    [outcome] = run_pairs([Pair(prep, model_spec, run_id)], executor, context, seed, db, flow_run.id)
    return outcome
