"""What each report page shows, computed from the warehouse's report reads (no SQL here).

Pages get plain dicts and lists; the templates only lay them out.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import numpy as np
import pandas as pd

from helmflow.flows.history import regressions
from helmflow.flows.leaderboard import board_frame, leaderboard_of, tie_lines
from helmflow.flows.report.answers import AnswerSpread, answer_spread
from helmflow.specs.registry import CATEGORIES
from helmflow.warehouse.store import Warehouse

RELIABILITY_BINS = 10


def number(value: Any) -> float | None:
    if value is None or (isinstance(value, float) and math.isnan(value)) or value is pd.NA:
        return None
    return float(value)


def plain(value: Any) -> Any:
    """A cell as the templates and the JSON may see it: pandas' and numpy's missing values (NA, NaN, NaT)
    become None and numpy scalars Python's. A nullable column (a served model's parameter count) reads
    as pd.NA, which Jinja cannot test: `NA == NA` is NA, and `NA and ...` raises."""
    if isinstance(value, (list, tuple, dict, np.ndarray)):
        return value
    if value is None or pd.isna(value):
        return None
    return value.item() if isinstance(value, np.generic) else value


def plain_records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    """A frame's rows as dicts of plain values (see plain), what every page gets instead of pandas rows."""
    return [{key: plain(value) for key, value in row.items()} for row in frame.to_dict("records")]


def listed(value: Any) -> list[Any]:
    """A list column's value as a list (null, NA and missing are empty)."""
    return list(value) if isinstance(value, (list, tuple, np.ndarray)) else []


@dataclass
class Selection:
    """Which runs the report covers (all succeeded runs when every filter is None)."""

    scenarios: list[str] | None = None
    models: list[str] | None = None
    since: datetime | None = None
    suite: str | None = None  # `--suite`: its layout page too (flows/layout.py), HELM's scenario × category table
    # `--references`: users' files of baselines and declared contamination, read after helmflow's own
    # (specs/reference_rows.py); shown beside the results, never ranked.
    references: list[str] | None = None


@dataclass
class Content:
    runs: pd.DataFrame
    metrics: pd.DataFrame
    latest: pd.DataFrame
    board: pd.DataFrame  # flows/leaderboard.board_frame: each category's win rate and its interval
    matrix: list[dict[str, Any]]
    regression_runs: set[str] = field(default_factory=set)
    ties: list[str] = field(default_factory=list)  # tied pairs, pairs not compared, untested columns


def headline_cells(metrics: pd.DataFrame) -> dict[tuple[str, str], dict[str, Any]]:
    """(run id, category) -> the category's headline value, interval and metric name."""
    cells = {}
    for m in metrics[metrics.headline & (metrics.group_name == "")].itertuples():
        cells[(m.run_id, m.category)] = {
            "metric": m.metric + (f" ({m.perturbation})" if m.perturbation else ""),
            "value": number(m.value),
            "low": number(m.ci_low),
            "high": number(m.ci_high),
            "method": m.ci_method if isinstance(m.ci_method, str) else "",
            "lower_is_better": bool(m.lower_is_better),
        }
    return cells


def gather(warehouse: Warehouse, selection: Selection) -> Content:
    runs = warehouse.report_runs(selection.scenarios, selection.models, selection.since)
    metrics = warehouse.report_metrics(list(runs.run_id))
    latest = runs[runs.latest].sort_values(["scenario", "model"])
    ranked = leaderboard_of(warehouse, latest)
    board = board_frame(ranked, CATEGORIES)
    cells = headline_cells(metrics)
    matrix = [
        {
            "scenario": r.scenario,
            "model": r.model,
            "run_id": r.run_id,
            "cells": [cells.get((r.run_id, c)) for c in CATEGORIES],
        }
        for r in latest.itertuples()
    ]
    wanted = set(runs.run_id)
    flagged = {r.after_run for r in regressions(warehouse) if r.after_run in wanted}
    return Content(runs, metrics, latest, board, matrix, flagged, tie_lines(ranked))


def headline_scores(matrix: list[dict[str, Any]]) -> tuple[list[str], list[dict[str, Any]]]:
    """The front page when no column has two models to rank (one model so far): each latest run's headline
    cells by category, and the categories some run has a value in (a column of dashes says nothing)."""
    columns = [c for k, c in enumerate(CATEGORIES) if any(_valued(row["cells"][k]) for row in matrix)]
    rows = [{**row, "scores": dict(zip(CATEGORIES, row["cells"], strict=True))} for row in matrix]
    return columns, rows


def _valued(cell: dict[str, Any] | None) -> bool:
    return cell is not None and cell["value"] is not None


# -- one run --------------------------------------------------------------------------------------------


def main_metric(spec_json: str) -> str:
    return json.loads(spec_json).get("main_metric", "exact_match")


def reliability_bins(confidence: list[float], correct: list[float]) -> pd.DataFrame:
    """Equal-mass bins of confidence (as ECE bins them): mean confidence and accuracy per bin."""
    order = np.argsort(np.asarray(confidence, dtype=float), kind="stable")
    rows = []
    for k, members in enumerate(np.array_split(order, min(RELIABILITY_BINS, len(order)))):
        if len(members):
            rows.append(
                {
                    "bin": k + 1,
                    "n": len(members),
                    "confidence": float(np.mean([confidence[i] for i in members])),
                    "accuracy": float(np.mean([correct[i] for i in members])),
                }
            )
    return pd.DataFrame(rows)


def answer_spread_of(outcomes: pd.DataFrame) -> AnswerSpread | None:
    """Predicted options against gold options over the unperturbed multiple-choice instances of one run
    (report_instance_outcomes' rows); None for a run with no such instance (a generation task)."""
    rows = []
    for r in outcomes.itertuples(index=False):
        if not pd.isna(r.n_choices) and r.n_choices > 0 and not pd.isna(r.gold_index):
            chosen = None if pd.isna(r.predicted_index) else int(r.predicted_index)
            rows.append((chosen, int(r.gold_index), int(r.n_choices), 1))
    return answer_spread(rows)


def run_sections(metrics: pd.DataFrame) -> dict[str, list[dict[str, Any]]]:
    """A run's metrics split into whole-run, per-group and per-perturbation tables."""

    def rows(frame: pd.DataFrame) -> list[dict[str, Any]]:
        return [
            {
                "category": m.category,
                "metric": m.metric,
                "perturbation": m.perturbation,
                "group": m.group_name,
                "value": number(m.value),
                "low": number(m.ci_low),
                "high": number(m.ci_high),
                "n": int(m.n),
                "headline": bool(m.headline),
                "lower_is_better": bool(m.lower_is_better),
            }
            for m in frame.itertuples()
        ]

    whole = metrics[(metrics.group_name == "") & (metrics.perturbation == "")]
    return {
        "overall": rows(whole[whole.category != "efficiency"]),
        "efficiency": rows(whole[whole.category == "efficiency"]),
        "groups": rows(metrics[metrics.group_name != ""]),
        "perturbations": rows(metrics[metrics.perturbation != ""]),
    }


# -- compare -------------------------------------------------------------------------------------------


def comparison_pairs(content: Content) -> list[tuple[str, str]]:
    """Pairs worth comparing: each model × scenario's last two runs, and on each scenario the first
    model's latest run against every other model's."""
    pairs = []
    for _, group in content.runs.groupby(["model", "scenario"]):
        ids = list(group.sort_values("started_at").run_id)
        if len(ids) >= 2:
            pairs.append((ids[-2], ids[-1]))
    for _, group in content.latest.groupby("scenario"):
        ids = list(group.sort_values("model").run_id)
        pairs += [(ids[0], other) for other in ids[1:]]
    return pairs
