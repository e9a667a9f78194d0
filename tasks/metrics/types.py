"""Per-instance statistics and run-level metrics, the two things every category produces."""

from __future__ import annotations

from dataclasses import dataclass

CATEGORIES = ("accuracy", "calibration", "robustness", "fairness", "bias", "toxicity", "efficiency")


@dataclass(frozen=True)
class Stat:
    """One value for one instance (and perturbation; '' is the unperturbed input)."""

    instance_id: str
    category: str
    metric: str
    value: float | None
    perturbation: str = ""


@dataclass(frozen=True)
class Metric:
    """One aggregate for the run; `group` is '' for the whole run, else the instance group."""

    category: str
    metric: str
    value: float | None
    n: int
    lower_is_better: bool = False
    perturbation: str = ""
    group: str = ""
    headline: bool = False


def mean(values: list[float]) -> float | None:
    return sum(values) / len(values) if values else None
