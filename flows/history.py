"""Reading the history: run fingerprints, comparing two runs, finding regressions.

SQL does the selecting (views in warehouse/migrations/004_history.sql); the paired tests are in
tasks/metrics/significance.py. Two runs are comparable when their fingerprints agree on all but
the thing being compared; every other difference is reported beside the result.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from itertools import pairwise

import duckdb

from helmflow.tasks.metrics.significance import mcnemar_exact, paired_bootstrap

FINGERPRINT = (
    "spec_hash",
    "dataset_fingerprint",
    "model_fingerprint",
    "dtype",
    "batch_size",
    "seed",
    "package_versions",
)
ALPHA = 0.05


def fingerprint(con: duckdb.DuckDBPyConnection, run_id: str) -> dict[str, object]:
    row = con.execute(
        f"select model, scenario, {', '.join(FINGERPRINT)} from runs where run_id = ?", [run_id]
    ).fetchone()
    if row is None:
        raise LookupError(f"no run '{run_id}' in the warehouse")
    return dict(zip(("model", "scenario", *FINGERPRINT), row, strict=True))


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


def _paired(con: duckdb.DuckDBPyConnection, a: str, b: str) -> dict[tuple[str, str, str], list[tuple]]:
    """Per (category, metric, perturbation): (instance, value in A, value in B) on common instances."""
    rows = con.execute(
        """
        with current as (
            select s.* from instance_stats s
            where s.metrics_version = (select max(v.metrics_version) from instance_stats v where v.run_id = s.run_id)
        )
        select x.category, x.metric, x.perturbation, x.instance_id, x.value, y.value
        from current x join current y using (instance_id, category, metric, perturbation)
        where x.run_id = ? and y.run_id = ? and x.value is not null and y.value is not null
        order by x.instance_id
        """,
        [a, b],
    ).fetchall()
    paired: dict[tuple[str, str, str], list[tuple]] = {}
    for category, metric, perturbation, instance, va, vb in rows:
        paired.setdefault((category, metric, perturbation), []).append((instance, va, vb))
    return paired


def test_pairs(pairs: list[tuple]) -> tuple[str, float | None, tuple[float, float] | None]:
    values = {v for _, va, vb in pairs for v in (va, vb)}
    if values <= {0.0, 1.0}:
        only_a = sum(1 for _, va, vb in pairs if va > vb)
        only_b = sum(1 for _, va, vb in pairs if vb > va)
        return "mcnemar", mcnemar_exact(only_a, only_b), None
    return "bootstrap", None, paired_bootstrap([p[1] for p in pairs], [p[2] for p in pairs])


def main_metric(con: duckdb.DuckDBPyConnection, run_id: str) -> str:
    spec = con.execute("select spec_json from runs where run_id = ?", [run_id]).fetchone()
    return json.loads(spec[0]).get("main_metric", "exact_match") if spec else "exact_match"


def compare(con: duckdb.DuckDBPyConnection, a: str, b: str) -> Comparison:
    fa, fb = fingerprint(con, a), fingerprint(con, b)
    values = con.execute(
        """
        select coalesce(x.category, y.category), coalesce(x.metric, y.metric),
               coalesce(x.perturbation, y.perturbation), x.value, y.value
        from (select * from current_metrics where run_id = ? and group_name = '') x
        full join (select * from current_metrics where run_id = ? and group_name = '') y
          using (category, metric, perturbation)
        order by 1, 2, 3
        """,
        [a, b],
    ).fetchall()
    paired = _paired(con, a, b)
    metrics = []
    for category, metric, perturbation, va, vb in values:
        comparison = MetricComparison(category, metric, perturbation, va, vb)
        pairs = paired.get((category, metric, perturbation))
        if pairs:
            comparison.test, comparison.p_value, comparison.interval = test_pairs(pairs)
            comparison.pairs = len(pairs)
        metrics.append(comparison)
    main = main_metric(con, b)
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


def regressions(con: duckdb.DuckDBPyConnection, alpha: float = ALPHA) -> list[Regression]:
    """Significant drops of the main accuracy metric between consecutive succeeded runs of a model × scenario."""
    runs = con.execute(
        "select run_id, model, scenario from runs where status = 'succeeded' order by model, scenario, started_at"
    ).fetchall()
    found = []
    for (before, model, scenario), (after, model_b, scenario_b) in pairwise(runs):
        if (model, scenario) != (model_b, scenario_b):
            continue
        metric = main_metric(con, after)
        pairs = _paired(con, before, after).get(("accuracy", metric, ""), [])
        if not pairs:
            continue
        test, p_value, _ = test_pairs(pairs)
        mean_before = sum(p[1] for p in pairs) / len(pairs)
        mean_after = sum(p[2] for p in pairs) / len(pairs)
        if test == "mcnemar" and p_value is not None and p_value < alpha and mean_after < mean_before:
            differs = differences(fingerprint(con, before), fingerprint(con, after), ignore=("model", "scenario"))
            found.append(Regression(model, scenario, metric, before, after, mean_before, mean_after, p_value, differs))
    return found
