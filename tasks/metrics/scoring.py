"""What every metric sees while a run is scored, and what a metric is: a `MetricRecord`.

Each metric, helmflow's or a plugin's, is one record, found through the `helmflow.metrics` entry
points (specs/registry.py). Its `stats` function gives per-instance values, its `function` the
run-level rows. Categories are scored in order, accuracy first: the others read the main metric
from its stats (calibration pairs it with confidence; robustness and fairness compare it across
perturbations and groups).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property
from typing import TYPE_CHECKING

from helmflow.specs.registry import METHODS
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
    # The names of the metrics asked for (None: all): a stats function shared by several metrics computes
    # only theirs (accuracy's, say: ROUGE-L only where it is asked).
    wanted: frozenset[str] | None = None
    # The sampled completions (the adapter's num_samples; tasks/samples.py), kept apart from `predictions` so
    # that every other metric reads the greedy pass only: maj@k and pass@k read these (metrics/sampling.py).
    samples: list[Prediction] = field(default_factory=list)

    def wants(self, name: str) -> bool:
        return self.wanted is None or name in self.wanted

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


# The methods that answer a question: what a metric applies to unless it says otherwise.
ALL_METHODS = METHODS[:4]
MULTIPLE_CHOICE = ALL_METHODS[:3]
GENERATION = ("generation",)
LANGUAGE_MODELING = ("language_modeling",)


@dataclass(frozen=True)
class MetricRecord:
    """One metric: what specs name (`metrics: [name]`), what listings show, and how it is computed.

    `function` gives the metric's run-level rows (the whole run, and per group or perturbation where it
    has them); [] when nothing in the run applies. `stats`, when set, gives per-instance values first;
    metrics that share one stats function (the same object) have it run once per run.
    """

    name: str
    category: str
    function: Callable[[Scoring], list[Metric]]
    higher_is_better: bool = True
    display_name: str = ""
    # The adapter methods it applies to: a category named in a spec stands for its metrics that apply.
    methods: tuple[str, ...] = ALL_METHODS
    stats: Callable[[Scoring], list[Stat]] | None = None
    description: str = ""
    # Computed only where a spec names it, never for its category alone: HELM adds such a metric only to the
    # scenarios it suits (ROUGE-2 to summaries, classification F1 to classification), not to every generation.
    named_only: bool = False
