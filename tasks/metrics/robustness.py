"""Robustness and counterfactual fairness: worst case over perturbed variants.

docs/metrics.md#robustness and docs/metrics.md#fairness define them.

For each instance take the worst of its original and every variant — min for higher-is-better
metrics, max for lower-is-better (HELM only does min) — then the mean over instances. Each
perturbation also gets its own mean and its delta from the unperturbed mean.
"""

from __future__ import annotations

from collections import defaultdict

from helmflow.tasks.metrics.scoring import MetricRecord
from helmflow.tasks.metrics.types import Metric, Stat, mean


def worst_case(
    stats: list[Stat], metric: str, perturbations: list[str], category: str, lower_is_better: bool = False
) -> list[Metric]:
    if not perturbations:
        return []
    values: dict[str, dict[str, float]] = defaultdict(dict)  # instance -> perturbation -> value
    for s in stats:
        if s.metric == metric and s.value is not None and (s.perturbation in perturbations or not s.perturbation):
            values[s.instance_id][s.perturbation] = s.value
    scored = {i: v for i, v in values.items() if "" in v}
    pick = max if lower_is_better else min
    worst = [pick(v.values()) for v in scored.values()]
    original = mean([v[""] for v in scored.values()])
    out = [Metric(category, metric, mean(worst), len(worst), lower_is_better, perturbation="worst_case", headline=True)]
    for name in perturbations:
        own = [v[name] for v in scored.values() if name in v]
        own_mean = mean(own)
        out.append(Metric(category, metric, own_mean, len(own), lower_is_better, perturbation=name))
        delta = own_mean - original if own_mean is not None and original is not None else None
        out.append(Metric(category, f"{metric}_delta", delta, len(own), lower_is_better, perturbation=name))
    return out


def performance_disparity(stats: list[Stat], metric: str, groups: dict[str, str | None]) -> list[Metric]:
    """Mean per group and the largest gap between two groups (None with fewer than two groups)."""
    per_group: dict[str, list[float]] = defaultdict(list)
    for s in stats:
        group = groups.get(s.instance_id)
        if s.metric == metric and not s.perturbation and s.value is not None and group:
            per_group[group].append(s.value)
    means = {g: sum(v) / len(v) for g, v in per_group.items()}
    gap = max(means.values()) - min(means.values()) if len(means) > 1 else None
    return [Metric("fairness", f"{metric}_group_gap", gap, len(means), lower_is_better=True)]


METRICS = [
    MetricRecord(
        name="robustness_worst_case",
        category="robustness",
        function=lambda scoring: worst_case(
            scoring.stats, scoring.spec.main_metric, list(scoring.spec.perturbations.robustness), "robustness"
        ),
        display_name="Robustness (worst case)",
        description="the main metric at each instance's worst over the robustness perturbations, and each one's delta",
    )
]
