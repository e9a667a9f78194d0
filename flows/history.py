"""Reading the history: run fingerprints, comparing two runs, finding regressions.

The warehouse does the selecting (Warehouse's typed reads over the views of
warehouse/migrations/004_history.sql); the paired tests are in tasks/metrics/significance.py.
Two runs are comparable when their fingerprints agree on all but the thing being compared;
every other difference is reported beside the result.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from itertools import pairwise

from helmflow.tasks.metrics.significance import mcnemar_exact, paired_bootstrap
from helmflow.warehouse.store import Warehouse

ALPHA = 0.05


def differences(a: dict[str, object], b: dict[str, object], ignore: tuple[str, ...] = ()) -> list[str]:
    """Human-readable fingerprint differences ('dtype: float32 -> bfloat16')."""
    out = []
    for key in a:
        if key in ignore or a[key] == b[key]:
            continue
        if key == "package_versions":
            va, vb = json.loads(str(a[key] or "{}")), json.loads(str(b[key] or "{}"))
            changed = [f"{p} {va.get(p)} -> {vb.get(p)}" for p in sorted(set(va) | set(vb)) if va.get(p) != vb.get(p)]
            out.append("package_versions: " + ", ".join(changed))
        else:
            out.append(f"{key}: {a[key]} -> {b[key]}")
    return out


@dataclass
class MetricComparison:
    category: str
    metric: str
    perturbation: str
    a: float | None
    b: float | None
    test: str = ""  # mcnemar | bootstrap | ''
    p_value: float | None = None
    interval: tuple[float, float] | None = None
    pairs: int = 0

    @property
    def delta(self) -> float | None:
        return None if self.a is None or self.b is None else self.b - self.a

    @property
    def significant(self) -> bool:
        if self.p_value is not None:
            return self.p_value < ALPHA
        return self.interval is not None and not (self.interval[0] <= 0 <= self.interval[1])


@dataclass
class Comparison:
    run_a: str
    run_b: str
    metrics: list[MetricComparison]
    flipped: list[tuple[str, float, float]]  # instance, main metric in A, in B
    differs: list[str] = field(default_factory=list)


def test_pairs(pairs: list[tuple]) -> tuple[str, float | None, tuple[float, float] | None]:
    values = {v for _, va, vb in pairs for v in (va, vb)}
    if values <= {0.0, 1.0}:
        only_a = sum(1 for _, va, vb in pairs if va > vb)
        only_b = sum(1 for _, va, vb in pairs if vb > va)
        return "mcnemar", mcnemar_exact(only_a, only_b), None
    return "bootstrap", None, paired_bootstrap([p[1] for p in pairs], [p[2] for p in pairs])


def compare(warehouse: Warehouse, a: str, b: str) -> Comparison:
    fa, fb = warehouse.fingerprint(a), warehouse.fingerprint(b)
    values = warehouse.metric_pairs(a, b)
    paired = warehouse.paired_stats(a, b)
    metrics = []
    for category, metric, perturbation, va, vb in values:
        comparison = MetricComparison(category, metric, perturbation, va, vb)
        pairs = paired.get((category, metric, perturbation))
        if pairs:
            comparison.test, comparison.p_value, comparison.interval = test_pairs(pairs)
            comparison.pairs = len(pairs)
        metrics.append(comparison)
    main = warehouse.main_metric(b)
    flipped = [(i, va, vb) for i, va, vb in paired.get(("accuracy", main, ""), []) if va != vb]
    return Comparison(a, b, metrics, flipped, differences(fa, fb))


@dataclass
class Regression:
    model: str
    scenario: str
    metric: str
    before_run: str
    after_run: str
    before: float
    after: float
    p_value: float
    differs: list[str]


def regressions(warehouse: Warehouse, alpha: float = ALPHA) -> list[Regression]:
    """Significant drops of the main accuracy metric between consecutive succeeded runs of a model × scenario."""
    runs = warehouse.succeeded_runs()
    found = []
    for (before, model, scenario), (after, model_b, scenario_b) in pairwise(runs):
        if (model, scenario) != (model_b, scenario_b):
            continue
        metric = warehouse.main_metric(after)
        pairs = warehouse.paired_stats(before, after).get(("accuracy", metric, ""), [])
        if not pairs:
            continue
        test, p_value, _ = test_pairs(pairs)
        mean_before = sum(p[1] for p in pairs) / len(pairs)
        mean_after = sum(p[2] for p in pairs) / len(pairs)
        if test == "mcnemar" and p_value is not None and p_value < alpha and mean_after < mean_before:
            differs = differences(
                warehouse.fingerprint(before), warehouse.fingerprint(after), ignore=("model", "scenario")
            )
            found.append(Regression(model, scenario, metric, before, after, mean_before, mean_after, p_value, differs))
    return found
