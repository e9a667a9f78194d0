"""The stages of a run, one function each; flows/pipeline.py calls them in order, and only it does.

The @task wrappers are thin: the work is in `tasks/` (adapting, scoring, the checks) and `warehouse/`
(the writes). Nothing here keeps state between calls.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import replace
from importlib import metadata

from prefect import task
from prefect.cache_policies import NONE

from helmflow.flows.prepare import Prepared
from helmflow.flows.validation_process import ValidationWorker
from helmflow.specs.loader import spec_hash
from helmflow.specs.schema import ModelSpec, ScenarioSpec
from helmflow.tasks.adapt import Request, iter_requests
from helmflow.tasks.chat import ChatFormat
from helmflow.tasks.extract import parse_steps
from helmflow.tasks.fit_context import Window
from helmflow.tasks.instances import Instance, instances_fingerprint
from helmflow.tasks.metrics import METRICS_CODE_VERSION, Metric, Prediction, Stat, score, to_prediction
from helmflow.tasks.metrics.toxicity import classifier as toxicity_classifier
from helmflow.tasks.models import ModelInfo
from helmflow.tasks.prompt_store import PromptStore
from helmflow.tasks.records import LETTERS, Completion
from helmflow.tasks.samples import greedy_id, with_samples
from helmflow.tasks.validate import ValidationResult, validate_predictions, validate_stats
from helmflow.warehouse.rows import Table, checked_predictions_frame, metrics_frame
from helmflow.warehouse.store import Warehouse

PACKAGES = ("helmflow", "torch", "transformers", "datasets", "prefect", "great_expectations", "duckdb", "pydantic")

TASK_OPTIONS = {"cache_policy": NONE, "persist_result": False}


def package_versions() -> str:
    versions = {}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return json.dumps(versions, sort_keys=True)


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
    requests: list[Request],
    baselines: dict[str, Request],
    completions: dict[str, Completion],
    spec: ScenarioSpec | None = None,
) -> list[Prediction]:
    """Each request's prediction, its generated answer read through the spec's answer extraction."""
    steps = parse_steps(spec.answer_extraction) if spec is not None and spec.answer_extraction else []
    predictions = []
    for request in requests:
        completion = completions[request.id]
        if request.id in baselines:
            completion.baseline_logprobs = list(completions[baselines[request.id].id].logprobs)
        predictions.append(to_prediction(request, completion, steps))
    return predictions


@task(name="validate-predictions", **TASK_OPTIONS)
def validate_predictions_stage(
    predictions: list[Prediction], expected: int, checks: ValidationWorker
) -> list[ValidationResult]:
    return checks.run(validate_predictions, checked_predictions_frame(predictions), expected)


def score_predictions(
    spec: ScenarioSpec, instances: list[Instance], predictions: list[Prediction], num_parameters: int | None
) -> tuple[list[Stat], list[Metric], str | None]:
    """Stats and metrics, and the toxicity classifier's name==version when it was used."""
    classifier = toxicity_classifier(spec.toxicity_classifier) if spec.measures("toxicity") else None
    stats, metrics = score(spec, instances, predictions, num_parameters, classifier)
    return stats, metrics, f"{classifier.name}=={classifier.version}" if classifier else None


score_stage = task(name="score", **TASK_OPTIONS)(score_predictions)


@task(name="validate-stats", **TASK_OPTIONS)
def validate_stats_stage(metrics: list[Metric], checks: ValidationWorker) -> list[ValidationResult]:
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
    return checks.run(
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
def write_stage(db: str | None, run_id: str, status: str, tables: dict[str, Table], updates: dict) -> None:
    Warehouse(db).finish_run(run_id, status, tables, updates)


def perturbations_of(spec: ScenarioSpec) -> list[str]:
    """The perturbations a run needs: those of the categories the spec measures."""
    names = list(spec.perturbations.robustness) if spec.measures("robustness") else []
    return names + (list(spec.perturbations.fairness) if spec.measures("fairness") else [])


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


def requests_of(
    prep: Prepared,
    seed: int,
    window: Window | None = None,
    chat: ChatFormat | None = None,
    prompts: PromptStore | None = None,
) -> list[Request]:
    """The run's requests, each prompt fitted into the model's context window when it is known, and made in
    the model's chat format when it has one; then the sampled copies of the generation requests, when the
    adapter asks for num_samples (tasks/samples.py).

    With `prompts`, each prompt goes into that store as its request is made, and the requests come back without
    them (tasks/prompt_store.py): a sampled copy reads its greedy request's."""
    spec = prep.plan.spec
    adapter = spec.adapter
    built = iter_requests(adapter, prep.instances, prep.fewshot_pool, seed, perturbations_of(spec), window, chat)
    greedy = [prompts.spill(r) for r in built] if prompts is not None else list(built)
    requests = with_samples(greedy, adapter, seed)
    if prompts is not None:
        for request in requests[len(greedy) :]:
            prompts.alias(request.id, greedy_id(request.id))
    return requests


def stored_predictions(
    spec: ScenarioSpec, instances: list[Instance], answers: list[tuple[Request, Completion]]
) -> list[Prediction]:
    """A stored run's answers as predictions again: the warehouse keeps each request and its answer, and
    the adapter's knowledge of which choices a multiple-choice request scored is added back here."""
    by_id = {i.id: i for i in instances}
    steps = parse_steps(spec.answer_extraction) if spec.answer_extraction else []
    return [to_prediction(_with_choices(r, spec, by_id[r.instance_id]), answer, steps) for r, answer in answers]


def _with_choices(request: Request, spec: ScenarioSpec, instance: Instance) -> Request:
    """The choices a stored multiple-choice request scored: letters (joint) or the options' texts."""
    if request.kind != "multiple_choice":
        return request
    joint = spec.adapter.method == "multiple_choice_joint"
    return replace(request, choices=tuple(LETTERS[: len(instance.choices)]) if joint else instance.choices)
