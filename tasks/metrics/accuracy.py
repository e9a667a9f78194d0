"""Accuracy (METRICS.md §1): exact and quasi-exact match, per instance then the mean."""

from __future__ import annotations

import re
import string

from tasks.instances import Instance
from tasks.metrics.types import Metric, Stat, mean

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


def instance_accuracy(inst: Instance, predicted_index: int | None, completion: str) -> dict[str, float]:
    """Multiple choice compares the chosen option with the gold one; generation the text with each reference."""
    if inst.choices:
        correct = float(predicted_index is not None and predicted_index == inst.gold_index)
        return {"exact_match": correct, "quasi_exact_match": correct}
    refs = references_of(inst)
    if not refs:  # open-ended generation: nothing to be accurate against
        return {}
    return {
        "exact_match": max((exact_match(completion, r) for r in refs), default=0.0),
        "quasi_exact_match": max((quasi_exact_match(completion, r) for r in refs), default=0.0),
    }


def aggregate(stats: list[Stat], main_metric: str, groups: dict[str, str | None]) -> list[Metric]:
    """Means over instances, for the whole run and per instance group."""
    out = []
    for name in ("exact_match", "quasi_exact_match"):
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
