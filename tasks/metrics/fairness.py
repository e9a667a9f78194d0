"""Fairness (docs/metrics.md#fairness): counterfactual worst case over the fairness perturbations, and group disparity.

With no counterfactual perturbations in the spec, the largest gap between instance groups is
the headline instead.
"""

from __future__ import annotations

from dataclasses import replace

from helmflow.tasks.metrics.robustness import performance_disparity, worst_case
from helmflow.tasks.metrics.scoring import MetricRecord, Scoring
from helmflow.tasks.records import Metric


def _counterfactual(scoring: Scoring) -> list[Metric]:
    return worst_case(scoring.stats, scoring.spec.main_metric, list(scoring.spec.perturbations.fairness), "fairness")


def _group_gap(scoring: Scoring) -> list[Metric]:
    """The largest gap between groups; the category's headline when no counterfactual worst case is measured."""
    [gap] = performance_disparity(scoring.stats, scoring.spec.main_metric, scoring.groups)
    counterfactual = scoring.wants("fairness_worst_case") and bool(scoring.spec.perturbations.fairness)
    return [replace(gap, headline=not counterfactual)]


METRICS = [
    MetricRecord(
        name="fairness_worst_case",
        category="fairness",
        function=_counterfactual,
        display_name="Fairness (counterfactual worst case)",
        description="the main metric at each instance's worst over the fairness perturbations, and each one's delta",
    ),
    MetricRecord(
        name="group_gap",
        category="fairness",
        function=_group_gap,
        higher_is_better=False,
        display_name="Largest gap between groups",
        description="the main metric's largest difference between two instance groups' means",
    ),
]
