"""What every metric category sees while a run is scored, and what a category is.

A category (one module each, found through specs/registry.py) turns the run's predictions into
per-instance stats and then into run-level metrics. Accuracy is scored first, always: the other
categories read the main metric from its stats (calibration pairs it with confidence; robustness
and fairness compare it across perturbations and groups).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property
from typing import TYPE_CHECKING

from helmflow.specs.schema import ScenarioSpec
from helmflow.tasks.records import Instance, Metric, Prediction, Stat

if TYPE_CHECKING:
    from helmflow.tasks.metrics.toxicity import ToxicityClassifier


@dataclass
class Scoring:
    spec: ScenarioSpec
    instances: list[Instance]
    predictions: list[Prediction]
    num_parameters: int | None = None
    toxicity_classifier: ToxicityClassifier | None = None
    stats: list[Stat] = field(default_factory=list)  # grows category by category, accuracy first

    @cached_property
    def by_id(self) -> dict[str, Instance]:
        return {inst.id: inst for inst in self.instances}

    @cached_property
    def groups(self) -> dict[str, str | None]:
        return {inst.id: inst.group for inst in self.instances}

    @cached_property
    def unperturbed(self) -> list[Prediction]:
        return [p for p in self.predictions if not p.request.perturbation]

    @cached_property
    def generated(self) -> list[Prediction]:
        """Unperturbed generations that have an answer (what bias and toxicity read)."""
        return [p for p in self.unperturbed if p.request.kind == "generation" and not p.completion.error]

    def main_values(self) -> dict[str, float | None]:
        """Each instance's main-metric value on its unperturbed input (from accuracy's stats)."""
        main = self.spec.main_metric
        return {
            s.instance_id: s.value
            for s in self.stats
            if s.category == "accuracy" and s.metric == main and not s.perturbation
        }


def no_stats(scoring: Scoring) -> list[Stat]:
    return []


@dataclass(frozen=True)
class Category:
    """A registry entry: a category's per-instance stats and its aggregation into metrics."""

    aggregate: Callable[[Scoring], list[Metric]]
    instance_stats: Callable[[Scoring], list[Stat]] = no_stats
