"""Metrics: predictions -> per-instance stats -> run metrics, one module per HELM category."""

from __future__ import annotations

import math
from dataclasses import dataclass

from specs.schema import ScenarioSpec
from tasks.adapt import Request
from tasks.instances import LETTERS, Instance
from tasks.metrics import accuracy, calibration, efficiency
from tasks.metrics.types import CATEGORIES, Metric, Stat
from tasks.models.base import Completion


@dataclass(frozen=True)
class Prediction:
    """A request's outcome as it is stored: what the model chose and how sure it was."""

    request: Request
    completion: Completion
    predicted_index: int | None
    predicted_text: str
    # Multiple choice: the chosen option's probability renormalised over the options.
    # Generation: exp(sum of the output tokens' log-probs), HELM's max_prob.
    confidence: float | None


def to_prediction(request: Request, completion: Completion) -> Prediction:
    if completion.error:
        return Prediction(request, completion, None, "", None)
    if request.kind == "multiple_choice":
        probs = calibration.option_probabilities(completion.logprobs)
        logprobs = completion.logprobs
        best = max(range(len(logprobs)), key=lambda k: (logprobs[k], -k))  # ties: the first, like argmax
        return Prediction(request, completion, best, LETTERS[best], probs[best])
    confidence = math.exp(sum(completion.logprobs)) if completion.logprobs else None
    return Prediction(request, completion, None, completion.text, confidence)


def score(
    spec: ScenarioSpec, instances: list[Instance], predictions: list[Prediction]
) -> tuple[list[Stat], list[Metric]]:
    by_id = {inst.id: inst for inst in instances}
    stats: list[Stat] = []
    confidences, correct = [], []
    runtimes, prompt_tokens, output_tokens = [], [], []
    for pred in predictions:
        inst = by_id[pred.request.instance_id]
        values = accuracy.instance_accuracy(inst, pred.predicted_index, pred.predicted_text)
        perturbation = pred.request.perturbation
        stats += [Stat(inst.id, "accuracy", name, v, perturbation) for name, v in values.items()]
        if perturbation:
            continue
        stats.append(Stat(inst.id, "efficiency", "inference_runtime", pred.completion.latency_s))
        runtimes.append(pred.completion.latency_s)
        prompt_tokens.append(pred.completion.prompt_tokens)
        output_tokens.append(pred.completion.output_tokens)
        if pred.confidence is not None:
            stats.append(Stat(inst.id, "calibration", "confidence", pred.confidence))
            confidences.append(pred.confidence)
            correct.append(int(values[spec.main_metric]))
    groups = {inst.id: inst.group for inst in instances}
    metrics = accuracy.aggregate(stats, spec.main_metric, groups)
    if "calibration" in spec.metrics:
        metrics += calibration.aggregate(confidences, correct)
    if "efficiency" in spec.metrics:
        metrics += efficiency.aggregate(runtimes, prompt_tokens, output_tokens)
    return stats, metrics


__all__ = ["CATEGORIES", "Metric", "Prediction", "Stat", "score", "to_prediction"]
