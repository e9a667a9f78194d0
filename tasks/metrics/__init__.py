"""Metrics: predictions -> per-instance stats -> run metrics, one module per HELM category.

Each metric is a `MetricRecord` (scoring.py); each category's module lists its records in `METRICS`,
which the `helmflow.metrics` entry points name (pyproject.toml), as a plugin names its own
(specs/registry.py). `score` computes the metrics the spec asks for, and only those.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from itertools import groupby

from helmflow.specs import registry
from helmflow.specs.schema import ScenarioSpec
from helmflow.tasks.adapt import Request
from helmflow.tasks.extract import Step, extract
from helmflow.tasks.instances import LETTERS, Instance
from helmflow.tasks.metrics import calibration
from helmflow.tasks.metrics.intervals import with_intervals
from helmflow.tasks.metrics.scoring import MetricRecord, Scoring
from helmflow.tasks.metrics.toxicity import ToxicityClassifier
from helmflow.tasks.metrics.types import CATEGORIES, Metric, Stat
from helmflow.tasks.records import Completion, Prediction

# Bump when a change to the metric code changes any value: a refresh re-scores older runs.
METRICS_CODE_VERSION = "2026.12.06.1"  # ROUGE-1/2, classification F1, summarization statistics


def _argmax(values: list[float]) -> int:
    return max(range(len(values)), key=lambda k: (values[k], -k))  # ties: the first, like numpy's argmax


def choice_scores(completion: Completion) -> list[float]:
    """Log-likelihoods, minus the bare-prompt ones when the request was calibrated (HELM)."""
    if completion.baseline_logprobs:
        return [a - b for a, b in zip(completion.logprobs, completion.baseline_logprobs, strict=True)]
    return list(completion.logprobs)


def to_prediction(request: Request, completion: Completion, extraction: Sequence[Step] = ()) -> Prediction:
    """The prediction a completion makes: the chosen option, or the generated text, read through the spec's
    answer extraction steps when it has any (tasks/extract.py; the completion keeps the raw text)."""
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
    # HELM's max_prob, exp of the kept tokens' log-prob: 1 for an empty answer (cut at once by a stop
    # sequence); None only when the server gave no log-probs for a non-empty one.
    confidence = math.exp(sum(completion.logprobs)) if completion.logprobs or not completion.text else None
    if extraction:
        return Prediction(request, completion, None, extract(completion.text, extraction), confidence, extracted=True)
    return Prediction(request, completion, None, completion.text, confidence)


def records_of(spec: ScenarioSpec) -> list[MetricRecord]:
    """The records of the metrics the spec asks for, in scoring order (accuracy first: the others read it)."""
    records = []
    for info in registry.selected(spec.metrics, spec.main_metric, spec.adapter.method):
        if not isinstance(info.record, MetricRecord):
            raise registry.PluginError(
                f"{info.plugin.describe()} gives {type(info.record).__name__}, not a helmflow MetricRecord"
            )
        records.append(info.record)
    return records


def score(
    spec: ScenarioSpec,
    instances: list[Instance],
    predictions: list[Prediction],
    num_parameters: int | None = None,
    toxicity_classifier: ToxicityClassifier | None = None,
) -> tuple[list[Stat], list[Metric]]:
    """Per-instance stats, then metrics, category by category; headline metrics carry 95% intervals.

    Sampled predictions (request.sample > 0) are scored apart (Scoring.samples): only maj@k and pass@k read them."""
    records = records_of(spec)
    wanted = frozenset(r.name for r in records)
    greedy = [p for p in predictions if not p.request.sample]
    samples = [p for p in predictions if p.request.sample]
    scoring = Scoring(spec, instances, greedy, num_parameters, toxicity_classifier, wanted=wanted, samples=samples)
    metrics: list[Metric] = []
    for _, group in groupby(records, key=lambda r: r.category):
        own = list(group)
        # A stats function shared by several metrics (the same object) runs once, before any of them.
        for stats in dict.fromkeys(r.stats for r in own if r.stats is not None):
            scoring.stats += stats(scoring)
        for record in own:
            metrics += record.function(scoring)
    return scoring.stats, with_intervals(metrics, scoring)


__all__ = ["CATEGORIES", "METRICS_CODE_VERSION", "Metric", "Prediction", "Stat", "score", "to_prediction"]
