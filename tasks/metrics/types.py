"""Per-instance statistics and run-level metrics, the two things every category produces."""

from __future__ import annotations

from helmflow.specs.registry import CATEGORIES
from helmflow.tasks.records import Metric, Stat


def mean(values: list[float]) -> float | None:
    return sum(values) / len(values) if values else None


__all__ = ["CATEGORIES", "Metric", "Stat", "mean"]
