"""HELM's mean win rate, with what a reader needs to trust a ranking: an interval and the ties.

HELM ranks models by mean win rate: in each column (a scenario × category headline metric over the
latest run of each model) a model's win rate is the share of the other models it beats, ties (equal
values) counting half; a category's score is the mean over its columns, 'overall' the mean over all.
Any difference counts, so a lead resting on one instance ranks like a real one. Two additions:

- **Ties.** In each column every pair of models is tested on their common instances with the paired
  test `compare` uses: McNemar's exact test for 0/1 values, else a seeded paired bootstrap of the
  column's own value (a mean, a worst case, an ECE) whose 95% interval of the difference holds 0.
  A pair whose difference is not significant at 0.05 is reported as tied in that column.
- **Intervals.** The whole board recomputed on bootstrap resamples of each column's instances (the same
  resampled instances for every model of a column, as the pairs are compared on them): the 2.5th and
  97.5th percentiles of each model's mean win rate.

The win rate itself stays HELM's. A column whose value cannot be rebuilt from instances (a bias score,
say) keeps its value in every resample, and its pairs are not tested. A pair that may not be compared at
all (efficiency under different conditions) counts in neither model's win rate of that column: there,
and only there, the result differs from the warehouse's SQL `leaderboard` view, which knows nothing of
run conditions.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from itertools import combinations

import numpy as np

from helmflow.tasks.metrics.calibration import ece
from helmflow.tasks.metrics.significance import mcnemar_exact

ALPHA = 0.05
RESAMPLES = 500
SEED = 0
TOXIC_THRESHOLD = 0.5  # as tasks/metrics/toxicity.py

# How a column's value is rebuilt from each instance's values (a row per instance):
#   mean  — the mean of one value per instance (accuracy, a worst case, runtime);
#   ece   — ECE with 10 equal-mass bins of (confidence, correct);
#   toxic — the share of values at or above the toxicity threshold.
KINDS: dict[str, Callable[[np.ndarray], float | None]] = {
    "mean": lambda rows: float(rows[:, 0].mean()) if len(rows) else None,
    "ece": lambda rows: ece(rows[:, 0], rows[:, 1].astype(int), 10) if len(rows) else None,
    "toxic": lambda rows: float((rows[:, 0] >= TOXIC_THRESHOLD).mean()) if len(rows) else None,
}


@dataclass
class Column:
    """One scenario × category headline metric and, per model, its value and the instances behind it."""

    scenario: str
    category: str
    metric: str
    lower_is_better: bool
    values: dict[str, float]  # model -> the stored value
    kind: str = ""  # a KINDS key; '' when the value cannot be rebuilt from instances
    instances: dict[str, dict[str, tuple[float, ...]]] = field(default_factory=dict)  # model -> instance -> row
    apart: dict[frozenset[str], str] = field(default_factory=dict)  # pairs not to compare -> why

    @property
    def name(self) -> str:
        return f"{self.scenario} {self.category} ({self.metric})"


@dataclass(frozen=True)
class Tie:
    column: str
    a: str
    b: str
    test: str  # mcnemar | bootstrap
    p_value: float | None
    interval: tuple[float, float] | None  # of value(b) - value(a), bootstrap only


@dataclass
class Board:
    """Mean win rate per model and category ('overall' too), with 95% intervals, the ties and the pairs
    left out."""

    rates: dict[str, dict[str, float]]  # model -> category -> mean win rate
    intervals: dict[str, dict[str, tuple[float, float]]]
    ties: list[Tie]
    apart: list[tuple[str, str, str, str]]  # column, model a, model b, why
    untested: list[str]  # columns whose value cannot be rebuilt from instances: fixed in resamples, no tests


def _beats(a: float, b: float, lower_is_better: bool) -> float:
    """HELM's score of a against b: 1 a win, 0.5 equal, 0 a loss."""
    if a == b:
        return 0.5
    return 1.0 if (a < b) == lower_is_better else 0.0


def column_rates(column: Column, values: dict[str, float]) -> dict[str, float]:
    """Each model's win rate in one column; pairs kept apart and models without a value take no part."""
    present = {m: v for m, v in values.items() if m in column.values and v is not None and not math.isnan(v)}
    rates = {}
    for model, value in present.items():
        others = [o for o in present if o != model and frozenset((model, o)) not in column.apart]
        if others:
            rates[model] = sum(_beats(value, present[o], column.lower_is_better) for o in others) / len(others)
    return rates


def mean_rates(columns: list[Column], per_column: list[dict[str, float]]) -> dict[str, dict[str, float]]:
    """Per model: the mean win rate in each category and overall, over the columns that rate it."""
    gathered: dict[str, dict[str, list[float]]] = {}
    for column, rates in zip(columns, per_column, strict=True):
        for model, rate in rates.items():
            own = gathered.setdefault(model, {})
            own.setdefault(column.category, []).append(rate)
            own.setdefault("overall", []).append(rate)
    return {m: {c: sum(v) / len(v) for c, v in cats.items()} for m, cats in gathered.items()}


def _common(column: Column, models: list[str]) -> list[str]:
    """The instances every one of the models has a row for, in a stable order."""
    shared = set.intersection(*(set(column.instances.get(m, {})) for m in models)) if models else set()
    return sorted(shared)


def _rows(column: Column, model: str, ids: list[str]) -> np.ndarray:
    own = column.instances[model]
    return np.asarray([own[i] for i in ids], dtype=float).reshape(len(ids), -1)


def pair_tie(column: Column, a: str, b: str, resamples: int = RESAMPLES, seed: int = SEED) -> Tie | None:
    """The pair's paired test on their common instances; a Tie when the difference is not significant."""
    ids = _common(column, [a, b])
    if not column.kind or not ids:
        return None
    rows_a, rows_b = _rows(column, a, ids), _rows(column, b, ids)
    if column.kind == "mean" and set(np.unique(np.concatenate([rows_a[:, 0], rows_b[:, 0]]))) <= {0.0, 1.0}:
        only_a = int(((rows_a[:, 0] == 1) & (rows_b[:, 0] == 0)).sum())
        only_b = int(((rows_b[:, 0] == 1) & (rows_a[:, 0] == 0)).sum())
        p_value = mcnemar_exact(only_a, only_b)
        return Tie(column.name, a, b, "mcnemar", p_value, None) if p_value >= ALPHA else None
    value = KINDS[column.kind]
    rng = np.random.default_rng(seed)
    differences = []
    for _ in range(resamples):
        pick = rng.integers(0, len(ids), len(ids))
        va, vb = value(rows_a[pick]), value(rows_b[pick])
        if va is not None and vb is not None:
            differences.append(vb - va)
    if not differences:
        return None
    low, high = (float(x) for x in np.percentile(differences, [2.5, 97.5]))
    return Tie(column.name, a, b, "bootstrap", None, (low, high)) if low <= 0 <= high else None


def resampled_values(column: Column, resamples: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Each model's value of the column on `resamples` resamples of the column's common instances (the same
    resampled instances for every model); the stored value in each when it cannot be rebuilt."""
    models = list(column.values)
    ids = _common(column, models) if column.kind else []
    if not ids:
        return {m: np.full(resamples, np.nan if v is None else v, dtype=float) for m, v in column.values.items()}
    picks = rng.integers(0, len(ids), (resamples, len(ids)))
    drawn = {}
    for model in models:
        rows = _rows(column, model, ids)
        if column.kind == "mean":
            drawn[model] = rows[:, 0][picks].mean(axis=1)
        else:
            value = KINDS[column.kind]
            drawn[model] = np.asarray([np.nan if (v := value(rows[p])) is None else v for p in picks], dtype=float)
    return drawn


def board(columns: list[Column], resamples: int = RESAMPLES, seed: int = SEED) -> Board:
    columns = [c for c in columns if len(c.values) >= 2]
    rates = mean_rates(columns, [column_rates(c, dict(c.values)) for c in columns])
    rng = np.random.default_rng(seed)
    drawn = [resampled_values(c, resamples, rng) for c in columns]
    samples: dict[str, dict[str, list[float]]] = {}
    for r in range(resamples):
        per_column = [
            column_rates(c, {m: float(v[r]) for m, v in d.items()}) for c, d in zip(columns, drawn, strict=True)
        ]
        for model, cats in mean_rates(columns, per_column).items():
            for category, rate in cats.items():
                samples.setdefault(model, {}).setdefault(category, []).append(rate)
    intervals = {
        m: {c: (float(np.percentile(v, 2.5)), float(np.percentile(v, 97.5))) for c, v in cats.items()}
        for m, cats in samples.items()
    }
    ties = [
        tie
        for c in columns
        for a, b in combinations(sorted(c.values), 2)
        if frozenset((a, b)) not in c.apart and (tie := pair_tie(c, a, b, seed=seed)) is not None
    ]
    apart = [(c.name, *sorted(pair), why) for c in columns for pair, why in sorted(c.apart.items(), key=str)]
    untested = [c.name for c in columns if not c.kind]
    return Board(rates, intervals, ties, apart, untested)  # type: ignore[arg-type]
