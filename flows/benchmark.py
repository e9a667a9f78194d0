"""The benchmark flow: scenarios × models → validated, scored runs in the warehouse.

Reads top to bottom: load and validate every scenario's instances first (bad input stops
everything before anything is written), then for each model, for each scenario: adapt,
infer, validate predictions, score, validate stats, and write the run in one transaction.
The @task wrappers are thin; the work is in `tasks/`.
"""

from __future__ import annotations

import json
import time
import traceback
import uuid
from dataclasses import dataclass, replace
from importlib import metadata
from pathlib import Path

import pandas as pd
from prefect import flow, task
from prefect.cache_policies import NONE

from flows import progress
from specs.loader import spec_hash
from specs.schema import ModelSpec, ScenarioSpec
from tasks.adapt import Request, build_requests
from tasks.data import ResolvedSource, load_instances, select
from tasks.instances import Instance, instances_fingerprint
from tasks.metrics import Metric, Prediction, Stat, score, to_prediction
from tasks.metrics.toxicity import classifier as toxicity_classifier
from tasks.models import Completion, ModelBackend, load_model
from tasks.validate import ValidationFailed, ValidationResult, validate_instances, validate_predictions, validate_stats
from warehouse import writer

PACKAGES = ("helmflow", "torch", "transformers", "datasets", "prefect", "great_expectations", "duckdb", "pydantic")


@dataclass(frozen=True)
class ScenarioPlan:
    spec: ScenarioSpec
    base_dir: str | None = None  # the spec file's folder, for relative data paths
    suite: str | None = None


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


@task(name="load-instances", **TASK_OPTIONS)
def load_stage(plan: ScenarioPlan, seed: int, prefer: str) -> Prepared:
    spec = plan.spec
    base = Path(plan.base_dir) if plan.base_dir else None
    instances, source = load_instances(spec, prefer=prefer, base_dir=base)  # type: ignore[arg-type]
    instances = select(instances, spec.groups, spec.max_instances, seed)
    pool: list[Instance] = []
    if spec.adapter.num_train and spec.adapter.fewshot_split:
        pool, _ = load_instances(spec, spec.adapter.fewshot_split, prefer, base)  # type: ignore[arg-type]
    frame = pd.DataFrame(
        {
            "instance_id": [i.id for i in instances],
            "input": [i.input for i in instances],
            "n_choices": [len(i.choices) for i in instances],
            "gold_index": pd.array([i.gold_index for i in instances], dtype="Int64"),
        }
    )
    checks = validate_instances(frame)
    if not all(c.success for c in checks):
        # Name the source rows of the failing instances: that is what a person has to fix.
        raise ValidationFailed(checks, where={i.id: i.origin for i in instances})
    return Prepared(plan, instances, pool, source, checks)


@task(name="load-model", **TASK_OPTIONS)
def model_stage(spec: ModelSpec) -> ModelBackend:
    return load_model(spec)


def _request_key(request: Request) -> tuple:
    return (request.kind, request.prompt, request.continuations, request.max_tokens, request.stop)


@task(name="infer", **TASK_OPTIONS)
def infer_stage(model: ModelBackend, requests: list[Request], label: str) -> list[Prediction]:
    """Run each distinct request once (a perturbation often leaves a prompt unchanged), then share results.

    multiple_choice_calibrated requests also need their choices scored after the bare answer prompt;
    those baseline requests are the same for every instance, so they too run once.
    """
    baselines = {r.id: replace(r, id=f"{r.id}#baseline", prompt=r.baseline_prompt, baseline_prompt=None)
                 for r in requests if r.baseline_prompt is not None}
    unique: dict[tuple, Request] = {}
    for request in [*requests, *baselines.values()]:
        unique.setdefault(_request_key(request), request)
    distinct = list(unique.values())
    progress.reporter.start_inference(label, len(distinct))

    def report(done: int, total: int) -> None:
        progress.reporter.advance(round(done * len(distinct) / max(total, 1)))

    results: dict[str, Completion] = {}
    choice = [r for r in distinct if r.kind == "multiple_choice"]
    generation = [r for r in distinct if r.kind == "generation"]
    if choice:
        results.update({c.request_id: c for c in model.loglikelihood(choice, report)})
    if generation:
        results.update({c.request_id: c for c in model.generate(generation, report)})
    progress.reporter.end_inference()

    def result_of(request: Request) -> Completion:
        return results[unique[_request_key(request)].id]

    predictions = []
    for request in requests:
        completion = replace(result_of(request), request_id=request.id)
        if request.id in baselines:
            completion.baseline_logprobs = list(result_of(baselines[request.id]).logprobs)
        predictions.append(to_prediction(request, completion))
    return predictions


@task(name="validate-predictions", **TASK_OPTIONS)
def validate_predictions_stage(predictions: list[Prediction], expected: int) -> list[ValidationResult]:
    return validate_predictions(
        predictions_frame(predictions)[["request_id", "completion", "confidence", "latency_s", "error"]], expected
    )


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
    return validate_stats(
        frame[["key", "category", "metric", "perturbation", "lower_is_better", "value", "unperturbed_value", "n"]]
    )


@task(name="write-run", **TASK_OPTIONS)
def write_stage(db: str | None, run_id: str, status: str, tables: dict[str, pd.DataFrame], updates: dict) -> None:
    writer.finish_run(db, run_id, status, tables, updates)


# -- tables ------------------------------------------------------------------------------------------


def instances_frame(instances: list[Instance]) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "instance_id": [i.id for i in instances],
            "split": [i.split for i in instances],
            "group_name": [i.group for i in instances],
            "input": [i.input for i in instances],
            "choices": [list(i.choices) or None for i in instances],
            "gold_index": pd.array([i.gold_index for i in instances], dtype="Int64"),
            "reference_texts": [list(i.references) or None for i in instances],
            "extra": [json.dumps(i.extra, sort_keys=True) if i.extra else None for i in instances],
        }
    )


def predictions_frame(predictions: list[Prediction]) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "request_id": [p.request.id for p in predictions],
            "instance_id": [p.request.instance_id for p in predictions],
            "perturbation": [p.request.perturbation for p in predictions],
            "kind": [p.request.kind for p in predictions],
            "prompt": [p.request.prompt for p in predictions],
            "completion": [p.predicted_text for p in predictions],
            "choice_logprobs": [
                p.completion.logprobs if p.request.kind == "multiple_choice" else None for p in predictions
            ],
            "choice_token_counts": [p.completion.continuation_tokens or None for p in predictions],
            "output_logprobs": [p.completion.logprobs if p.request.kind == "generation" else None for p in predictions],
            "choice_baseline_logprobs": [p.completion.baseline_logprobs or None for p in predictions],
            "predicted_index": pd.array([p.predicted_index for p in predictions], dtype="Int64"),
            "confidence": [p.confidence for p in predictions],
            "prompt_tokens": [p.completion.prompt_tokens for p in predictions],
            "output_tokens": [p.completion.output_tokens for p in predictions],
            "latency_s": [p.completion.latency_s for p in predictions],
            "batch_size": [p.completion.batch_size for p in predictions],
            "error": pd.array([p.completion.error for p in predictions], dtype="string"),
        }
    )


def stats_frame(stats: list[Stat], version: int = 1) -> pd.DataFrame:
    return pd.DataFrame(
        [(s.instance_id, s.perturbation, s.category, s.metric, s.value, version) for s in stats],
        columns=["instance_id", "perturbation", "category", "metric", "value", "metrics_version"],
    )


def metrics_frame(metrics: list[Metric], version: int = 1) -> pd.DataFrame:
    return pd.DataFrame(
        [
            (version, m.category, m.metric, m.perturbation, m.group, m.value, m.n, m.lower_is_better, m.headline)
            for m in metrics
        ],
        columns=[
            "metrics_version",
            "category",
            "metric",
            "perturbation",
            "group_name",
            "value",
            "n",
            "lower_is_better",
            "headline",
        ],
    )


def validations_frame(results: list[ValidationResult]) -> pd.DataFrame:
    return pd.DataFrame(
        [
            (r.stage, r.expectation, r.kwargs, r.success, r.element_count, r.unexpected_count, r.unexpected_ids)
            for r in results
        ],
        columns=["stage", "expectation", "kwargs", "success", "element_count", "unexpected_count", "unexpected_ids"],
    )


def perturbations_of(spec: ScenarioSpec) -> list[str]:
    """The perturbations a run needs: those of the categories the spec measures."""
    names = list(spec.perturbations.robustness) if "robustness" in spec.metrics else []
    return names + (list(spec.perturbations.fairness) if "fairness" in spec.metrics else [])


# -- one (model, scenario) pair -------------------------------------------------------------------------


def evaluate(
    prep: Prepared, model: ModelBackend, model_spec: ModelSpec, seed: int, db: str | None, flow_run_id: str | None
) -> RunOutcome:
    spec = prep.plan.spec
    info = model.info
    run_id = uuid.uuid4().hex[:12]
    label = f"{spec.name} × {model_spec.name}"
    began = time.perf_counter()
    writer.start_run(
        db,
        {
            "run_id": run_id,
            "suite": prep.plan.suite,
            "scenario": spec.name,
            "spec_hash": spec_hash(spec),
            "spec_json": spec.model_dump_json(),
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
        },
    )
    try:
        requests = build_requests(spec.adapter, prep.instances, prep.fewshot_pool, seed, perturbations_of(spec))
        predictions = infer_stage(model, requests, label)
        checks = list(prep.checks) + validate_predictions_stage(predictions, len(requests))
        stats, metrics, classifier = score_stage(spec, prep.instances, predictions, info.num_parameters)
        checks += validate_stats_stage(metrics)
        failed = [c for c in checks if not c.success]
        status = "validation_failed" if failed else "succeeded"
        tables = {
            "instances": instances_frame(prep.instances),
            "predictions": predictions_frame(predictions),
            "instance_stats": stats_frame(stats),
            "metrics": metrics_frame(metrics),
            "validations": validations_frame(checks),
        }
        error = "; ".join(c.describe() for c in failed) or None
        updates = {
            "error": error,
            "wall_seconds": time.perf_counter() - began,
            "toxicity_classifier": classifier,
            "num_parameters": info.num_parameters,
        }
        write_stage(db, run_id, status, tables, updates)
        progress.reporter.stage(label, f"{status} (run {run_id})")
        return RunOutcome(run_id, spec.name, model_spec.name, status, error)
    except Exception as exc:
        message = f"{type(exc).__name__}: {exc}"
        writer.fail_run(db, run_id, message + "\n" + traceback.format_exc(limit=5))
        progress.reporter.stage(label, f"failed: {message}")
        return RunOutcome(run_id, spec.name, model_spec.name, "failed", message)


@flow(name="helmflow-benchmark", validate_parameters=False, log_prints=False)
def benchmark(
    plans: list[ScenarioPlan], models: list[ModelSpec], seed: int = 0, db: str | None = None, prefer: str = "auto"
) -> list[RunOutcome]:
    from prefect.runtime import flow_run

    prepared = []
    for plan in plans:
        prep = load_stage(plan, seed, prefer)
        progress.reporter.stage(plan.spec.name, f"{len(prep.instances)} instances from {prep.source.kind}")
        prepared.append(prep)
    outcomes = []
    for model_spec in models:
        model = model_stage(model_spec)
        progress.reporter.stage(model_spec.name, f"loaded ({model.info.fingerprint})")
        for prep in prepared:
            outcomes.append(evaluate(prep, model, model_spec, seed, db, flow_run.id))
    return outcomes
