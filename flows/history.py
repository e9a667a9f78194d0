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

import numpy as np

from helmflow.tasks.metrics.calibration import ece
from helmflow.tasks.metrics.significance import mcnemar_exact, paired_bootstrap
from helmflow.warehouse.store import Warehouse

ALPHA = 0.05
# Runtimes are compared only between runs measured under the same conditions: the same device, threads and
# batch size, and a machine about as busy (1-minute load average per core within this of each other).
CONDITIONS = ("device", "num_threads", "batch_size")
LOAD_TOLERANCE = 0.25


def conditions_differ(a: dict[str, object], b: dict[str, object]) -> list[str]:
    """How two runs' runtime conditions differ ('threads 1 -> 2'); empty when their runtimes compare."""
    out = [f"{key} {a.get(key)} -> {b.get(key)}" for key in CONDITIONS if a.get(key) != b.get(key)]
    load_a, load_b = a.get("load_per_core"), b.get("load_per_core")
    if (load_a is None) != (load_b is None):
        out.append("machine load recorded for one run only")
    elif load_a is not None and abs(float(load_a) - float(load_b)) > LOAD_TOLERANCE:  # type: ignore[arg-type]
        out.append(f"load per core {float(load_a):.2f} -> {float(load_b):.2f}")  # type: ignore[arg-type]
    return out


def efficiency_apart(by_model: dict[str, dict[str, object]]) -> dict[frozenset[str], str]:
    """The model pairs whose runtimes may not be compared, with why."""
    models = sorted(by_model)
    apart = {}
    for i, a in enumerate(models):
        for b in models[i + 1 :]:
            if differ := conditions_differ(by_model[a], by_model[b]):
                apart[frozenset((a, b))] = "conditions differ: " + ", ".join(differ)
    return apart


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
    not_comparable: str = ""  # why no test was made (efficiency measured under other conditions)

    @property
    def delta(self) -> float | None:
        return None if self.a is None or self.b is None else self.b - self.a

    @property
    def significant(self) -> bool:
        if self.not_comparable:
            return False
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
    conditions = warehouse.conditions([a, b])
    apart = conditions_differ(conditions.get(a, {}), conditions.get(b, {}))
    metrics = []
    for category, metric, perturbation, va, vb in values:
        comparison = MetricComparison(category, metric, perturbation, va, vb)
        pairs = paired.get((category, metric, perturbation))
        if category == "efficiency" and apart:
            comparison.not_comparable = "conditions differ: " + ", ".join(apart)
        elif pairs:
            comparison.test, comparison.p_value, comparison.interval = test_pairs(pairs)
            comparison.pairs = len(pairs)
        elif (category, metric) in ECE_BINS:
            ece_pairs = _ece_pairs(paired, warehouse.main_metric(b))
            if ece_pairs:
                comparison.test, comparison.interval = (
                    "bootstrap",
                    ece_difference(ece_pairs, ECE_BINS[(category, metric)]),
                )
                comparison.pairs = len(ece_pairs)
        metrics.append(comparison)
    main = warehouse.main_metric(b)
    flipped = [(i, va, vb) for i, va, vb in paired.get(("accuracy", main, ""), []) if va != vb]
    return Comparison(a, b, metrics, flipped, differences(fa, fb))


ECE_BINS = {("calibration", "ece_10_bin"): 10, ("calibration", "ece_1_bin"): 1}


def _ece_pairs(paired: dict[tuple[str, str, str], list[tuple]], main: str) -> list[tuple]:
    """(confidence A, correct A, confidence B, correct B) per common instance; correct as calibration counts it."""
    correct = {i: (int(x), int(y)) for i, x, y in paired.get(("accuracy", main, ""), [])}
    return [
        (ca, correct[i][0], cb, correct[i][1])
        for i, ca, cb in paired.get(("calibration", "confidence", ""), [])
        if i in correct
    ]


def ece_difference(pairs: list[tuple], bins: int, resamples: int = 2000, seed: int = 0) -> tuple[float, float]:
    """Paired bootstrap of ECE(B) − ECE(A): the same resampled instances for both runs, ECE recomputed on
    each (ECE is not a mean over instances, so the mean-difference bootstrap does not apply)."""
    rows = np.asarray(pairs, dtype=float)
    conf_a, correct_a = np.clip(rows[:, 0], 0, 1), rows[:, 1].astype(int)
    conf_b, correct_b = np.clip(rows[:, 2], 0, 1), rows[:, 3].astype(int)
    rng = np.random.default_rng(seed)
    deltas = []
    for _ in range(resamples):
        pick = rng.integers(0, len(rows), len(rows))
        ea, eb = ece(conf_a[pick], correct_a[pick], bins), ece(conf_b[pick], correct_b[pick], bins)
        if ea is not None and eb is not None:
            deltas.append(eb - ea)
    low, high = np.percentile(deltas, [2.5, 97.5])
    return float(low), float(high)


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
