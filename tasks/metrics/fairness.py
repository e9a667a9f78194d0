"""Fairness (HELM): counterfactual worst case over the fairness perturbations, and group disparity.

With no counterfactual perturbations in the spec, the largest gap between instance groups is
the headline instead.
"""

from __future__ import annotations

from dataclasses import replace

from helmflow.tasks.metrics.robustness import performance_disparity, worst_case
from helmflow.tasks.metrics.scoring import Category, Scoring
from helmflow.tasks.records import Metric


def _aggregate(scoring: Scoring) -> list[Metric]:
    main = scoring.spec.main_metric
    counterfactual = worst_case(scoring.stats, main, list(scoring.spec.perturbations.fairness), "fairness")
    disparity = performance_disparity(scoring.stats, main, scoring.groups)
    if not counterfactual:
        disparity = [replace(m, headline=True) for m in disparity]
    return counterfactual + disparity


CATEGORY = Category(aggregate=_aggregate)
