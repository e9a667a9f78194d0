"""The benchmark flow: scenarios × models → validated, scored runs in the warehouse.

Reads top to bottom: load and validate every scenario's instances first (bad input stops
everything before anything is written), then for each model, for each scenario: adapt,
infer, validate predictions, score, validate stats, and write the run in one transaction.
The @task wrappers are thin; the work is in `tasks/`.
"""

from __future__ import annotations

import json
import os
import time
import traceback
import uuid
from collections.abc import Callable
from dataclasses import dataclass, replace
from importlib import metadata
from pathlib import Path
from typing import NoReturn

import pandas as pd
from prefect import flow, task
from prefect.cache_policies import NONE
from prefect.utilities.annotations import quote

from helmflow.flows import progress, validation_process
from helmflow.flows.failures import cannot_write
from helmflow.flows.inference import infer
from helmflow.flows.plans import ScenarioPlan
from helmflow.specs.loader import spec_hash
from helmflow.specs.schema import ModelSpec, ScenarioSpec
from helmflow.tasks.adapt import Request, build_requests, check_letterable
from helmflow.tasks.data import ResolvedSource, fewshot_pool, load_instances, select
from helmflow.tasks.instances import Instance, instances_fingerprint
from helmflow.tasks.metrics import METRICS_CODE_VERSION, Metric, Prediction, Stat, score, to_prediction
from helmflow.tasks.metrics.toxicity import classifier as toxicity_classifier
from helmflow.tasks.models import ModelBackend, ModelInfo, load_model
from helmflow.tasks.records import Completion
from helmflow.tasks.validate import (
    ValidationFailed,
    ValidationResult,
    validate_instances,
    validate_predictions,
    validate_stats,
)
from helmflow.warehouse.rows import metrics_frame, predictions_frame, result_frames
from helmflow.warehouse.store import Warehouse

PACKAGES = ("helmflow", "torch", "transformers", "datasets", "prefect", "great_expectations", "duckdb", "pydantic")


@dataclass(frozen=True)
class Prepared:
    plan: ScenarioPlan
    instances: list[Instance]
    fewshot_pool: list[Instance]
    source: ResolvedSource
    checks: list[ValidationResult]


@dataclass(frozen=True)
class RunOutcome:
    run_id: str
    scenario: str
    model: str
    status: str
    error: str | None = None


def package_versions() -> str:
    versions = {}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return json.dumps(versions, sort_keys=True)


# -- stages ----------------------------------------------------------------------------------------

TASK_OPTIONS = {"cache_policy": NONE, "persist_result": False}


def prepare(plan: ScenarioPlan, seed: int, prefer: str) -> Prepared:
    """Load, select and validate a scenario's instances (and its few-shot pool); bad input raises here."""
    loaded = _load(plan, seed, prefer)
    return _checked(loaded, validation_process.run(validate_instances, loaded.frame))


@dataclass(frozen=True)
class _Loaded:
    """A scenario's selected instances and few-shot pool, and the frame their checks read."""

    plan: ScenarioPlan
    instances: list[Instance]
    pool: list[Instance]
    source: ResolvedSource
    frame: pd.DataFrame


def _load(plan: ScenarioPlan, seed: int, prefer: str) -> _Loaded:
    spec = plan.spec
    base = Path(plan.base_dir) if plan.base_dir else None
    instances, source = load_instances(spec, prefer=prefer, base_dir=base, groups=spec.groups)  # type: ignore[arg-type]
    instances = select(instances, spec.groups, spec.max_instances, seed)
    pool = fewshot_pool(spec, prefer, base)  # type: ignore[arg-type]
    check_letterable(spec.adapter, [*instances, *pool])
    # The exemplars are checked with the instances (an exemplar's gold letter is in every prompt), under
    # ids of their own.
    checked = [*instances, *(replace(i, id=FEWSHOT_ID + i.id) for i in pool)]
    frame = pd.DataFrame(
        {
            "instance_id": [i.id for i in checked],
            "input": [i.input for i in checked],
            "n_choices": [len(i.choices) for i in checked],
            "gold_index": pd.array([i.gold_index for i in checked], dtype="Int64"),
        }
    )
    return _Loaded(plan, instances, pool, source, frame)


FEWSHOT_ID = "fewshot:"  # the prefix of an exemplar's id in the instance checks


def _checked(loaded: _Loaded, checks: list[ValidationResult]) -> Prepared:
    if not all(c.success for c in checks):
        # Name the source rows of the failing instances: that is what a person has to fix.
        where = {i.id: i.origin for i in loaded.instances} | {FEWSHOT_ID + i.id: i.origin for i in loaded.pool}
        raise ValidationFailed(checks, where=where)
    return Prepared(loaded.plan, loaded.instances, loaded.pool, loaded.source, checks)


# What `preflight` prepared before the flow started, handed to the flow's first load of the same plan
# (taken, not kept: a long-lived `helmflow serve` process must read fresh data on every run).
_preflighted: dict[tuple[str, str | None, str | None, int, str], Prepared] = {}


def _key(plan: ScenarioPlan, seed: int, prefer: str) -> tuple[str, str | None, str | None, int, str]:
    return (plan.spec.model_dump_json(), plan.base_dir, plan.suite, seed, prefer)


def preflight(plans: list[ScenarioPlan], seed: int, prefer: str) -> Callable[[], None]:
    """Load every scenario's data now (a missing file or a bad field raises here, before Prefect starts
    or any model loads) and hand its checks to the validation worker; the function returned waits for
    the checks, and raises on data that fails them."""
    pending = []
    for plan in plans:
        loaded = _load(plan, seed, prefer)
        pending.append((_key(plan, seed, prefer), loaded, validation_process.submit(validate_instances, loaded.frame)))

    def finish() -> None:
        for key, loaded, checks in pending:
            _preflighted[key] = _checked(loaded, checks.result())

    return finish


@task(name="load-instances", **TASK_OPTIONS)
def load_stage(plan: ScenarioPlan, seed: int, prefer: str) -> Prepared:
    return _preflighted.pop(_key(plan, seed, prefer), None) or prepare(plan, seed, prefer)


# A model loaded before the flow started (flows/startup.py), handed to the flow's first load of the same
# spec and then forgotten: the flow holds it from there, and a later run of this process loads afresh.
_preloaded: dict[str, ModelBackend] = {}


def preload_model(spec: ModelSpec) -> None:
    _preloaded[spec.model_dump_json()] = load_model(spec)


@task(name="load-model", **TASK_OPTIONS)
def model_stage(spec: ModelSpec) -> ModelBackend:
    return _preloaded.pop(spec.model_dump_json(), None) or load_model(spec)


def _transient(task: object, run: object, state: object) -> bool:
    """Retry inference only for a model server that did not answer (answers so far are cached)."""
    from helmflow.tasks.models.openai import ModelServerError

    try:
        state.result()  # type: ignore[attr-defined]
    except ModelServerError:
        return True
    except Exception:
        return False
    return False


def with_baselines(requests: list[Request]) -> tuple[list[Request], dict[str, Request]]:
    """Every request to send, and the baseline request of each multiple_choice_calibrated one.

    Calibrated requests also need their choices scored after the bare answer prompt; those baseline
    requests are the same for every instance, so (having one key) they run once.
    """
    baselines = {
        r.id: replace(r, id=f"{r.id}#baseline", prompt=r.baseline_prompt, baseline_prompt=None)
        for r in requests
        if r.baseline_prompt is not None
    }
    return [*requests, *baselines.values()], baselines


def predictions_of(
    requests: list[Request], baselines: dict[str, Request], completions: dict[str, Completion]
) -> list[Prediction]:
    predictions = []
    for request in requests:
        completion = completions[request.id]
        if request.id in baselines:
            completion.baseline_logprobs = list(completions[baselines[request.id].id].logprobs)
        predictions.append(to_prediction(request, completion))
    return predictions


@task(name="infer", retries=2, retry_delay_seconds=[5, 30], retry_condition_fn=_transient, **TASK_OPTIONS)
def infer_stage(
    model: ModelBackend, requests: list[Request], label: str, db: str | None, run_id: str, use_cache: bool
) -> tuple[list[Prediction], int, int]:
    """Predictions for every request, and how many requests went to the model or came from the cache."""
    sent, baselines = with_baselines(requests)
    try:
        result = infer(model, sent, db, run_id, use_cache, progress.InferenceProgress(label, progress.task_retries()))
    finally:
        progress.reporter.end_inference()
    return predictions_of(requests, baselines, result.completions), result.model_calls, result.cache_hits


@task(name="validate-predictions", **TASK_OPTIONS)
def validate_predictions_stage(predictions: list[Prediction], expected: int) -> list[ValidationResult]:
    frame = predictions_frame(predictions)
    frame["produced"] = [
        p.completion.generated_tokens if p.request.kind == "generation" else len(p.predicted_text) for p in predictions
    ]
    columns = ["request_id", "produced", "confidence", "latency_s", "error"]
    logprobs = ["choice_logprobs", "output_logprobs", "choice_baseline_logprobs"]  # each must be finite
    return validation_process.run(validate_predictions, frame[columns + logprobs], expected)


@task(name="score", **TASK_OPTIONS)
def score_stage(
    spec: ScenarioSpec, instances: list[Instance], predictions: list[Prediction], num_parameters: int | None
) -> tuple[list[Stat], list[Metric], str | None]:
    """Stats and metrics, and the toxicity classifier's name==version when it was used."""
    classifier = toxicity_classifier(spec.toxicity_classifier) if "toxicity" in spec.metrics else None
    stats, metrics = score(spec, instances, predictions, num_parameters, classifier)
    return stats, metrics, f"{classifier.name}=={classifier.version}" if classifier else None


@task(name="validate-stats", **TASK_OPTIONS)
def validate_stats_stage(metrics: list[Metric]) -> list[ValidationResult]:
    frame = metrics_frame(metrics)
    frame["key"] = frame.category + "/" + frame.metric + "/" + frame.perturbation + "/" + frame.group_name
    # Beside each worst-case value, the unperturbed value of the same metric: worst case can only be lower.
    unperturbed = {
        m.metric: m.value for m in metrics if m.category == "accuracy" and not m.perturbation and not m.group
    }
    frame["unperturbed_value"] = [
        unperturbed.get(m.metric) if m.perturbation == "worst_case" else None for m in metrics
    ]
    frame["is_delta"] = frame.metric.str.endswith("_delta")
    return validation_process.run(
        validate_stats,
        frame[
            [
                "key",
                "category",
                "metric",
                "perturbation",
                "lower_is_better",
                "is_delta",
                "value",
                "unperturbed_value",
                "n",
            ]
        ],
    )


@task(name="write-run", **TASK_OPTIONS)
def write_stage(db: str | None, run_id: str, status: str, tables: dict[str, pd.DataFrame], updates: dict) -> None:
    Warehouse(db).finish_run(run_id, status, tables, updates)


# -- one (model, scenario) pair -------------------------------------------------------------------------


def perturbations_of(spec: ScenarioSpec) -> list[str]:
    """The perturbations a run needs: those of the categories the spec measures."""
    names = list(spec.perturbations.robustness) if "robustness" in spec.metrics else []
    return names + (list(spec.perturbations.fairness) if "fairness" in spec.metrics else [])


def open_run(
    prep: Prepared,
    info: ModelInfo,
    model_spec: ModelSpec,
    seed: int,
    db: str | None,
    flow_run_id: str | None,
    resume_run_id: str | None = None,
) -> str:
    """The run's row, status running (a new run, or a failed one marked running again): its run id."""
    spec = prep.plan.spec
    warehouse = Warehouse(db)
    if resume_run_id:
        warehouse.restart_run(
            resume_run_id,
            info.fingerprint,
            flow_run_id,
            instances_fingerprint(prep.instances),
            {
                "package_versions": package_versions(),
                "metrics_code_version": METRICS_CODE_VERSION,
                "device": info.device,
                "batch_size": info.batch_size,
                "num_threads": info.num_threads,
            },
        )
        return resume_run_id
    run_id = uuid.uuid4().hex[:12]
    warehouse.start_run(
        {
            "run_id": run_id,
            "suite": prep.plan.suite,
            "scenario": spec.name,
            "spec_hash": spec_hash(spec),
            "spec_json": spec.model_dump_json(),
            "spec_dir": prep.plan.base_dir,
            "model": model_spec.name,
            "model_fingerprint": info.fingerprint,
            "model_json": model_spec.model_dump_json(),
            "seed": seed,
            "max_instances": spec.max_instances,
            "adapter_json": spec.adapter.model_dump_json(),
            "data_source": prep.source.description,
            "dataset_fingerprint": instances_fingerprint(prep.instances),
            "num_instances": len(prep.instances),
            "package_versions": package_versions(),
            "device": info.device,
            "dtype": info.dtype,
            "batch_size": info.batch_size,
            "num_threads": info.num_threads,
            "flow_run_id": flow_run_id,
            "metrics_code_version": METRICS_CODE_VERSION,
        },
    )
    return run_id


def requests_of(prep: Prepared, seed: int) -> list[Request]:
    spec = prep.plan.spec
    return build_requests(spec.adapter, prep.instances, prep.fewshot_pool, seed, perturbations_of(spec))


def complete_run(
    prep: Prepared,
    info: ModelInfo,
    model_name: str,
    run_id: str,
    predictions: list[Prediction],
    counts: tuple[int, int],
    began: float,
    db: str | None,
) -> RunOutcome:
    """Validate and score the predictions, then write the run whole; `counts` is (model calls, cache hits)."""
    spec = prep.plan.spec
    label = f"{spec.name} × {model_name}"
    calls, hits = counts
    # What the adapter promises, counted from the instances, not from the predictions: one answer per
    # instance and per instance and perturbation.
    expected = len(prep.instances) * (1 + len(perturbations_of(spec)))
    # quote(): Prefect would otherwise walk every element of these lists looking for futures (about a second
    # of a 514-instance run); the values are plain data made in this process.
    checks = list(prep.checks) + validate_predictions_stage(quote(predictions), expected)
    unscored = None
    try:
        stats, metrics, classifier = score_stage(spec, quote(prep.instances), quote(predictions), info.num_parameters)
    except Exception as exc:
        if all(c.success for c in checks):
            raise
        # Predictions that failed their checks (a NaN log-prob) may not be scorable: the run still lands
        # as validation_failed, with its predictions and the checks that name the bad rows.
        stats, metrics, classifier = [], [], None
        unscored = f"not scored ({type(exc).__name__}: {exc})"
    checks += validate_stats_stage(quote(metrics)) if metrics else []
    failed = [c for c in checks if not c.success]
    status = "validation_failed" if failed else "succeeded"
    tables = result_frames(prep.instances, predictions, stats, metrics, checks)
    error = "; ".join([*(c.describe() for c in failed), *([unscored] if unscored else [])]) or None
    updates = {
        "error": error,
        "wall_seconds": time.perf_counter() - began,
        "toxicity_classifier": classifier,
        "num_parameters": info.num_parameters,
        "model_calls": calls,
        "cache_hits": hits,
        # What the runtimes were measured under: a busy machine makes every request slower (history.py
        # compares efficiency only between runs whose conditions match).
        "load_per_core": os.getloadavg()[0] / (os.cpu_count() or 1),
    }
    write_stage(db, run_id, status, quote(tables), updates)
    progress.reporter.stage(label, f"{status} (run {run_id}; {calls} model calls, {hits} from the cache)")
    from helmflow.flows.artifacts import publish_run

    publish_run(db, [run_id])  # the run's headline table and summary in the Prefect UI
    return RunOutcome(run_id, spec.name, model_name, status, error)


def fail(db: str | None, run_id: str, label: tuple[str, str], exc: BaseException) -> RunOutcome:
    """Record a run as failed (what its inference cached stays for --resume) and say so.

    A write the machine refused (flows/failures.py: a full disk under the warehouse) is raised again once
    recorded, if it can be: it stops the command, as it would fail every run after this one."""
    message = f"{type(exc).__name__}: {exc}"
    if cannot_write(exc):
        _stop_on(db, run_id, label, exc)
    Warehouse(db).fail_run(run_id, message + "\n" + "".join(traceback.format_exception(exc, limit=5)))
    progress.reporter.stage(f"{label[0]} × {label[1]}", f"failed: {message}")
    return RunOutcome(run_id, label[0], label[1], "failed", message)


def _stop_on(db: str | None, run_id: str, label: tuple[str, str], exc: BaseException) -> NoReturn:
    """Mark the run failed if the warehouse still takes that, say which run was lost, and raise `exc` again."""
    run = f"run {run_id} ({label[0]} × {label[1]}) was not stored"
    try:
        Warehouse(db).fail_run(run_id, f"{type(exc).__name__}: {exc}")
    except Exception:  # the same full disk: the row stays running, and reads as interrupted once we exit
        exc.add_note(f"{run}; it shows as failed (interrupted) after this command")
    else:
        exc.add_note(f"{run} and is marked failed")
    exc.add_note(f"`helmflow run --resume {run_id}` finishes it once the warehouse can be written")
    raise exc


def evaluate(
    prep: Prepared,
    model: ModelBackend,
    model_spec: ModelSpec,
    seed: int,
    db: str | None,
    flow_run_id: str | None,
    resume_run_id: str | None = None,
    use_cache: bool = True,
) -> RunOutcome:
    """One (model, scenario) pair in this process, the model already loaded here."""
    spec = prep.plan.spec
    label = f"{spec.name} × {model_spec.name}"
    began = time.perf_counter()
    run_id = open_run(prep, model.info, model_spec, seed, db, flow_run_id, resume_run_id)
    try:
        requests = requests_of(prep, seed)
        predictions, calls, hits = infer_stage(model, quote(requests), label, db, run_id, use_cache)
        return complete_run(prep, model.info, model_spec.name, run_id, predictions, (calls, hits), began, db)
    except Exception as exc:
        return fail(db, run_id, (spec.name, model_spec.name), exc)


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
) -> list[RunOutcome]:
    """Every model on every scenario. `fan_out`: inference goes to the flow's task runner (a Dask or
    Ray cluster, flows/runners.py) in `shards` pieces per run; otherwise it runs here, pair by pair."""
    from prefect.runtime import flow_run

    prepared = []
    for plan in plans:
        prep = load_stage(plan, seed, prefer)
        progress.reporter.stage(plan.spec.name, f"{len(prep.instances)} instances from {prep.source.kind}")
        prepared.append(prep)
    if fan_out:
        from helmflow.flows.runners import Pair, fan_out_runs

        pairs = [Pair(prep, model_spec) for model_spec in models for prep in prepared]
        return fan_out_runs(pairs, seed, db, flow_run.id, use_cache, shards)
    outcomes = []
    for model_spec in models:
        model = model_stage(model_spec)
        progress.reporter.stage(model_spec.name, f"loaded ({model.info.fingerprint})")
        for prep in prepared:
            outcomes.append(evaluate(prep, model, model_spec, seed, db, flow_run.id, use_cache=use_cache))
    return outcomes


def resumable(db: str | None, run_id: str) -> tuple[ScenarioPlan, ModelSpec, int]:
    """What a stopped run was doing: its scenario plan, model and seed, read back from its row."""
    row = Warehouse(db).run_row(run_id, "spec_json", "spec_dir", "suite", "model_json", "seed")
    if row["status"] != "failed":
        raise LookupError(f"run {run_id} is {row['status']}: only a failed or interrupted run can be resumed")
    plan = ScenarioPlan(ScenarioSpec.model_validate_json(row["spec_json"]), row["spec_dir"], row["suite"])
    return plan, ModelSpec.model_validate_json(row["model_json"]), int(row["seed"])


@flow(name="helmflow-resume", validate_parameters=False, log_prints=False)
def resume(
    run_id: str, db: str | None = None, prefer: str = "auto", fan_out: bool = False, shards: int = 1
) -> RunOutcome:
    """Finish a crashed run: every answer already in the inference cache is used, the rest computed."""
    from prefect.runtime import flow_run

    plan, model_spec, seed = resumable(db, run_id)
    prep = load_stage(plan, seed, prefer)
    if fan_out:
        from helmflow.flows.runners import Pair, fan_out_runs

        [outcome] = fan_out_runs([Pair(prep, model_spec, run_id)], seed, db, flow_run.id, True, shards)
        return outcome
    model = model_stage(model_spec)
    return evaluate(prep, model, model_spec, seed, db, flow_run.id, resume_run_id=run_id)
