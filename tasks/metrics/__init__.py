"""Metrics: predictions -> per-instance stats -> run metrics, one module per HELM category."""

from __future__ import annotations

import math
from dataclasses import replace

from helmflow.specs.schema import ScenarioSpec
from helmflow.tasks.adapt import Request
from helmflow.tasks.instances import LETTERS, Instance
from helmflow.tasks.metrics import accuracy, bbq, bias, calibration, efficiency, robustness, toxicity
from helmflow.tasks.metrics.toxicity import ToxicityClassifier
from helmflow.tasks.metrics.types import CATEGORIES, Metric, Stat
from helmflow.tasks.records import Completion, Prediction

# Bump when a change to the metric code changes any value: a refresh re-scores older runs.
METRICS_CODE_VERSION = "2026.11.28"


def _argmax(values: list[float]) -> int:
    return max(range(len(values)), key=lambda k: (values[k], -k))  # ties: the first, like numpy's argmax


def choice_scores(completion: Completion) -> list[float]:
    """Log-likelihoods, minus the bare-prompt ones when the request was calibrated (HELM)."""
    if completion.baseline_logprobs:
        return [a - b for a, b in zip(completion.logprobs, completion.baseline_logprobs, strict=True)]
    return list(completion.logprobs)


def to_prediction(request: Request, completion: Completion) -> Prediction:
    if completion.error:
        return Prediction(request, completion, None, "", None)
    if request.kind == "multiple_choice":
        scores = choice_scores(completion)
        best = _argmax(scores)
        probs = calibration.option_probabilities(scores)
        normalized = {}
        if request.choices and request.choices != tuple(LETTERS[: len(request.choices)]):
            tokens = completion.continuation_tokens or [1] * len(scores)
            normalized = {
                "token": _argmax([s / max(t, 1) for s, t in zip(scores, tokens, strict=True)]),
                "char": _argmax([s / max(len(c), 1) for s, c in zip(scores, request.choices, strict=True)]),
            }
        text = request.choices[best] if request.choices else LETTERS[best]
        return Prediction(request, completion, best, text, probs[best], normalized)
    confidence = math.exp(sum(completion.logprobs)) if completion.logprobs else None
    return Prediction(request, completion, None, completion.text, confidence)


def score(
    spec: ScenarioSpec,
    instances: list[Instance],
    predictions: list[Prediction],
    num_parameters: int | None = None,
    toxicity_classifier: ToxicityClassifier | None = None,
) -> tuple[list[Stat], list[Metric]]:
    """Per-instance stats for every prediction, then each category the spec asks for."""
    by_id = {inst.id: inst for inst in instances}
    stats: list[Stat] = []
    confidences, correct = [], []
    runtimes, prompt_tokens, output_tokens = [], [], []
    completions: list[str] = []
    completion_ids: list[str] = []
    for pred in predictions:
        inst = by_id[pred.request.instance_id]
        perturbation = pred.request.perturbation
        values = accuracy.instance_accuracy(inst, pred.predicted_index, pred.predicted_text, pred.normalized_indices)
        stats += [Stat(inst.id, "accuracy", name, v, perturbation) for name, v in values.items()]
        if perturbation:
            continue
        stats.append(Stat(inst.id, "efficiency", "inference_runtime", pred.completion.latency_s))
        runtimes.append(pred.completion.latency_s)
        prompt_tokens.append(pred.completion.prompt_tokens)
        output_tokens.append(pred.completion.output_tokens)
        if pred.request.kind == "generation" and not pred.completion.error:
            completions.append(pred.predicted_text)
            completion_ids.append(inst.id)
        if pred.confidence is not None and spec.main_metric in values:
            stats.append(Stat(inst.id, "calibration", "confidence", pred.confidence))
            confidences.append(pred.confidence)
            correct.append(int(values[spec.main_metric]))
    groups = {inst.id: inst.group for inst in instances}
    wanted = set(spec.metrics)
    metrics = accuracy.aggregate(stats, spec.main_metric, groups)
    if "calibration" in wanted:
        metrics += calibration.aggregate(confidences, correct)
    if "robustness" in wanted:
        metrics += robustness.worst_case(stats, spec.main_metric, list(spec.perturbations.robustness), "robustness")
    if "fairness" in wanted:
        counterfactual = robustness.worst_case(stats, spec.main_metric, list(spec.perturbations.fairness), "fairness")
        disparity = robustness.performance_disparity(stats, spec.main_metric, groups)
        if not counterfactual:  # with no counterfactual perturbations, the group gap is the headline
            disparity = [replace(m, headline=True) for m in disparity]
        metrics += counterfactual + disparity
    if "bias" in wanted:
        if any("polarity" in inst.extra for inst in instances):  # BBQ: bias in the choices made
            chosen = {
                p.request.instance_id: p.predicted_index
                for p in predictions
                if not p.request.perturbation and p.predicted_index is not None
            }
            metrics += bbq.aggregate(instances, chosen)
        if completions:  # bias in generated text
            metrics += bias.aggregate(completions)
    if "toxicity" in wanted and toxicity_classifier is not None:
        scores = toxicity_classifier.score(completions)
        stats += [Stat(i, "toxicity", "toxicity_probability", v) for i, v in zip(completion_ids, scores, strict=True)]
        metrics += toxicity.aggregate([[v] for v in scores])
    if "efficiency" in wanted:
        metrics += efficiency.aggregate(runtimes, prompt_tokens, output_tokens, num_parameters)
    return stats, metrics


__all__ = ["CATEGORIES", "METRICS_CODE_VERSION", "Metric", "Prediction", "Stat", "score", "to_prediction"]
