"""Accuracy (METRICS.md §1): exact and quasi-exact match, per instance then the mean."""

from __future__ import annotations

import re
import string
from functools import cache
from typing import Any

from helmflow.tasks.instances import Instance
from helmflow.tasks.metrics.scoring import Category, Scoring
from helmflow.tasks.metrics.types import Metric, Stat, mean

_ARTICLES = re.compile(r"\b(a|an|the)\b")
_PUNCTUATION = str.maketrans("", "", string.punctuation)


def normalize_text(text: str) -> str:
    """HELM's normalisation: lowercase, no punctuation, no articles, single spaces."""
    text = text.lower().translate(_PUNCTUATION)
    return " ".join(_ARTICLES.sub(" ", text).split())


def exact_match(prediction: str, reference: str) -> float:
    return float(prediction.strip() == reference.strip())


def quasi_exact_match(prediction: str, reference: str) -> float:
    return float(normalize_text(prediction) == normalize_text(reference))


def references_of(inst: Instance) -> list[str]:
    if inst.choices and inst.gold_index is not None and 0 <= inst.gold_index < len(inst.choices):
        return [inst.choices[inst.gold_index]]
    return list(inst.references)


def prefix_exact_match(prediction: str, reference: str) -> float:
    return float(prediction.strip().startswith(reference.strip()))


def quasi_prefix_exact_match(prediction: str, reference: str) -> float:
    return float(normalize_text(prediction).startswith(normalize_text(reference)))


def f1_score(prediction: str, reference: str) -> float:
    """F1 between the sets of normalised tokens (METRICS.md §1)."""
    predicted, gold = set(normalize_text(prediction).split()), set(normalize_text(reference).split())
    common = len(predicted & gold)
    if common == 0:
        return 0.0
    precision, recall = common / len(predicted), common / len(gold)
    return 2 * precision * recall / (precision + recall)


@cache
def _rouge() -> Any:
    from rouge_score import rouge_scorer

    return rouge_scorer.RougeScorer(["rougeL"], use_stemmer=True)


def rouge_l(prediction: str, reference: str) -> float:
    return float(_rouge().score(reference, prediction)["rougeL"].fmeasure)


GENERATION_METRICS = {
    "exact_match": exact_match,
    "quasi_exact_match": quasi_exact_match,
    "prefix_exact_match": prefix_exact_match,
    "quasi_prefix_exact_match": quasi_prefix_exact_match,
    "f1_score": f1_score,
    "rouge_l": rouge_l,
}


def instance_accuracy(
    inst: Instance, predicted_index: int | None, completion: str, normalized: dict[str, int] | None = None
) -> dict[str, float]:
    """Multiple choice compares the chosen option with the gold one; generation the text with each reference."""
    if inst.choices:
        correct = float(predicted_index is not None and predicted_index == inst.gold_index)
        values = {"exact_match": correct, "quasi_exact_match": correct}
        for kind, index in (normalized or {}).items():
            values[f"exact_match_{kind}_norm"] = float(index == inst.gold_index)
        return values
    refs = references_of(inst)
    if not refs:  # open-ended generation: nothing to be accurate against
        return {}
    return {name: max(metric(completion, r) for r in refs) for name, metric in GENERATION_METRICS.items()}


def aggregate(stats: list[Stat], main_metric: str, groups: dict[str, str | None]) -> list[Metric]:
    """Means over instances, for the whole run and per instance group."""
    out = []
    for name in sorted({s.metric for s in stats if s.category == "accuracy"}):
        values = [s.value for s in stats if s.metric == name and s.value is not None and not s.perturbation]
        out.append(Metric("accuracy", name, mean(values), len(values), headline=name == main_metric))
        by_group: dict[str, list[float]] = {}
        for s in stats:
            group = groups.get(s.instance_id)
            if s.metric == name and s.value is not None and not s.perturbation and group:
                by_group.setdefault(group, []).append(s.value)
        if len(by_group) > 1:
            out += [Metric("accuracy", name, mean(v), len(v), group=g) for g, v in sorted(by_group.items())]
    return out


def _instance_stats(scoring: Scoring) -> list[Stat]:
    """Every prediction, perturbed ones included, against the instance's gold answer."""
    stats = []
    for pred in scoring.predictions:
        inst = scoring.by_id[pred.request.instance_id]
        values = instance_accuracy(inst, pred.predicted_index, pred.predicted_text, pred.normalized_indices)
        stats += [Stat(inst.id, "accuracy", name, v, pred.request.perturbation) for name, v in values.items()]
    return stats


CATEGORY = Category(
    instance_stats=_instance_stats,
    aggregate=lambda scoring: aggregate(scoring.stats, scoring.spec.main_metric, scoring.groups),
)
