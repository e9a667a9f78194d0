"""The leaderboard as a reader should see it: HELM's mean win rates with intervals and the tied pairs.

The warehouse gives each latest run's headline metrics and the per-instance values behind them; this
module turns them into the columns of tasks/metrics/win_rates.py (how each column's value is rebuilt
from instances) and says which pairs may not be compared in efficiency (their runtimes were measured
under different conditions: history.efficiency_apart).
"""

from __future__ import annotations

import json
from collections import defaultdict
from typing import Any

import pandas as pd

from helmflow.flows.history import efficiency_apart
from helmflow.tasks.metrics.win_rates import Board, Column, board
from helmflow.warehouse.store import Warehouse

# The statistic (category, metric) whose per-instance values rebuild a headline metric, and how.
REBUILT = {
    ("calibration", "ece_10_bin"): "ece",
    ("efficiency", "inference_runtime"): "mean",
    ("toxicity", "toxic_fraction"): "toxic",
}


def _per_instance(stats: pd.DataFrame) -> dict[tuple[str, str, str, str], dict[str, float]]:
    """(run, category, metric, perturbation) -> instance -> value."""
    out: dict[tuple[str, str, str, str], dict[str, float]] = defaultdict(dict)
    for s in stats.itertuples(index=False):
        out[(s.run_id, s.category, s.metric, s.perturbation)][s.instance_id] = float(s.value)
    return out


def instance_rows(
    metric: Any, spec: dict[str, Any], stats: dict[tuple[str, str, str, str], dict[str, float]]
) -> tuple[str, dict[str, tuple[float, ...]]]:
    """How one run's headline metric is rebuilt from instances: (kind, instance -> row), or ('', {})."""
    run = metric.run_id
    if metric.category == "accuracy" and not metric.perturbation:
        return "mean", {i: (v,) for i, v in stats.get((run, "accuracy", metric.metric, ""), {}).items()}
    if metric.category in ("robustness", "fairness") and metric.perturbation == "worst_case":
        # As robustness.worst_case: each instance's worst over its original and the category's variants.
        names = (spec.get("perturbations") or {}).get(metric.category) or []
        original = stats.get((run, "accuracy", metric.metric, ""), {})
        variants = [stats.get((run, "accuracy", metric.metric, p), {}) for p in names]
        pick = max if metric.lower_is_better else min
        return "mean", {i: (pick([v, *(x[i] for x in variants if i in x)]),) for i, v in original.items()}
    kind = REBUILT.get((metric.category, metric.metric), "")
    if kind == "ece":
        # Correct as calibration counts it: int() of the main metric's value.
        main = stats.get((run, "accuracy", spec.get("main_metric") or "exact_match", ""), {})
        confidence = stats.get((run, "calibration", "confidence", ""), {})
        return kind, {i: (min(max(c, 0.0), 1.0), float(int(main[i]))) for i, c in confidence.items() if i in main}
    if kind:
        source = {"mean": ("efficiency", "inference_runtime"), "toxic": ("toxicity", "toxicity_probability")}[kind]
        return kind, {i: (v,) for i, v in stats.get((run, *source, ""), {}).items()}
    return "", {}


def columns_of(warehouse: Warehouse, latest: pd.DataFrame) -> list[Column]:
    """One Column per scenario × category headline metric over the latest runs (one run per model)."""
    run_ids = list(latest.run_id)
    metrics = warehouse.report_metrics(run_ids)
    metrics = metrics[metrics.headline & (metrics.group_name == "") & metrics.value.notna()]
    stats = _per_instance(warehouse.column_stats(run_ids))
    conditions = warehouse.conditions(run_ids)
    runs = {r.run_id: r for r in latest.itertuples()}
    grouped: dict[tuple[str, str, str, str], list[Any]] = defaultdict(list)
    for m in metrics.itertuples():
        grouped[(runs[m.run_id].scenario, m.category, m.metric, m.perturbation)].append(m)
    columns = []
    for (scenario, category, metric, perturbation), rows in sorted(grouped.items()):
        name = metric + (f" {perturbation}" if perturbation else "")
        column = Column(scenario, category, name, bool(rows[0].lower_is_better), {})
        kinds = set()
        for m in rows:
            model = runs[m.run_id].model
            column.values[model] = float(m.value)
            kind, instances = instance_rows(m, json.loads(runs[m.run_id].spec_json or "{}"), stats)
            kinds.add(kind)
            column.instances[model] = instances
        column.kind = kinds.pop() if len(kinds) == 1 and all(column.instances.values()) else ""
        if category == "efficiency":
            by_model = {runs[m.run_id].model: conditions[m.run_id] for m in rows}
            column.apart = efficiency_apart(by_model)
        columns.append(column)
    return columns


def leaderboard_of(warehouse: Warehouse, latest: pd.DataFrame, category: str | None = None) -> Board:
    columns = columns_of(warehouse, latest)
    return board([c for c in columns if category is None or c.category == category])


def board_frame(result: Board, categories: list[str]) -> pd.DataFrame:
    """One row per model: each category's mean win rate and its interval, best overall first."""
    rows = []
    for model, rates in result.rates.items():
        row: dict[str, Any] = {"model": model}
        for category in ["overall", *categories]:
            if category in rates:
                low, high = result.intervals[model][category]
                row[category] = rates[category]
                row[f"{category}_low"], row[f"{category}_high"] = low, high
        rows.append(row)
    frame = pd.DataFrame(rows)
    return frame.sort_values(["overall", "model"], ascending=[False, True]) if len(frame) else frame


def tie_lines(result: Board) -> list[str]:
    """The tied pairs and the pairs left apart, one line each, as the CLI, the report and Prefect say them."""
    lines = []
    for tie in result.ties:
        evidence = (
            f"McNemar p = {tie.p_value:.3g}"
            if tie.p_value is not None
            else f"difference {tie.b} − {tie.a} in [{tie.interval[0]:.4g}, {tie.interval[1]:.4g}]"  # type: ignore[index]
        )
        lines.append(f"tied in {tie.column}: {tie.a} ≈ {tie.b} (not significant at 0.05: {evidence})")
    lines += [f"not comparable in {column}: {a} and {b} ({why})" for column, a, b, why in result.apart]
    lines += [
        f"untested in {column}: its value cannot be rebuilt from instances (held fixed in the interval's resamples)"
        for column in result.untested
    ]
    return lines
