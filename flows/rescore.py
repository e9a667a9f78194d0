"""Re-score a stored run with the current metric code: no inference, no prediction row touched.

The warehouse gives back the run's instances and answers (in the order they were written); the
adapter's knowledge of which choices each request scored is added here, the answers are scored
again, and the result is stored as the run's next metrics version.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from helmflow.specs.schema import ScenarioSpec
from helmflow.tasks.metrics import score, to_prediction
from helmflow.tasks.metrics.toxicity import classifier as toxicity_classifier
from helmflow.tasks.records import LETTERS, Completion, Instance, Prediction, Request
from helmflow.warehouse.store import Warehouse


def _with_choices(request: Request, spec: ScenarioSpec, instance: Instance) -> Request:
    """The choices a stored multiple-choice request scored: letters (joint) or the options' texts."""
    if request.kind != "multiple_choice":
        return request
    joint = spec.adapter.method == "multiple_choice_joint"
    return replace(request, choices=tuple(LETTERS[: len(instance.choices)]) if joint else instance.choices)


def _predictions(
    answers: list[tuple[Request, Completion]], spec: ScenarioSpec, instances: dict[str, Instance]
) -> list[Prediction]:
    return [
        to_prediction(_with_choices(request, spec, instances[request.instance_id]), completion)
        for request, completion in answers
    ]


# Runs whose instances and answers are all stored; a failed or running run has no result rows to score.
SCORABLE = ("succeeded", "validation_failed")


def rescore(db: str | Path | None, run_id: str) -> int:
    """Score a run again and store the result as its next metrics version; returns that version."""
    warehouse = Warehouse(db)
    run = warehouse.stored_run(run_id)
    if run.status not in SCORABLE:
        raise LookupError(
            f"run {run_id} is {run.status}: only a finished run's stored answers can be re-scored "
            "(resume a failed run with helmflow run --resume)"
        )
    spec = ScenarioSpec.model_validate_json(run.spec_json)
    predictions = _predictions(run.answers, spec, {i.id: i for i in run.instances})
    classifier = toxicity_classifier(spec.toxicity_classifier) if "toxicity" in spec.metrics else None
    stats, metrics = score(spec, run.instances, predictions, run.num_parameters, classifier)
    return warehouse.add_metrics_version(run_id, stats, metrics)
