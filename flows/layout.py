"""HELM's layout of a suite: its scenarios × the seven categories, the headline metric per cell, and coverage.

HELM's core table shows, for each model, every core scenario against accuracy, calibration, robustness,
fairness, bias, toxicity and efficiency, and says which cells cannot be filled: its paper reports 87.5 %
coverage of the 16 × 7 cells. Here the cells a scenario's spec measures are its coverage (the spec's
`metrics:` is where HELM's choice for that scenario is written down), and every empty cell says why: not
measured for the scenario, no run yet, the latest run failed (its first line), or a run without a value there.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from helmflow.flows.plans import suite_plans
from helmflow.flows.report.content import headline_cells
from helmflow.specs import registry
from helmflow.specs.library import find
from helmflow.specs.schema import SuiteSpec
from helmflow.tasks.metrics import CATEGORIES
from helmflow.warehouse.store import Warehouse

NOT_MEASURED = "not measured for this scenario"
NO_RUN = "no run yet"


@dataclass
class Layout:
    suite: str
    scenarios: list[str]  # the rows: a scenario, or several (an entry's `row:`)
    measured: dict[str, set[str]]  # row -> the categories its scenarios' specs measure
    models: list[str] = field(default_factory=list)
    # (model, scenario, category) -> the headline cell (flows/report/content.headline_cells) or why there is none
    cells: dict[tuple[str, str, str], dict[str, Any] | str] = field(default_factory=dict)

    @property
    def coverage(self) -> tuple[int, int]:
        """(cells measured, all cells) over the scenarios × the seven categories."""
        measured = sum(len(self.measured[s] & set(CATEGORIES)) for s in self.scenarios)
        return measured, len(self.scenarios) * len(CATEGORIES)


def _failed(status: str, error: Any) -> str:
    first = str(error).strip().splitlines()[0] if isinstance(error, str) and error.strip() else ""
    shown = first if len(first) <= 160 else first[:159].rsplit(" ", 1)[0] + " …"  # a word kept whole
    return f"latest run {status}" + (f": {shown}" if first else "")


def _entry_cell(
    run_id: str | None, attempt: Any, category: str, cells: dict[tuple[str, str], dict[str, Any]]
) -> dict[str, Any] | str:
    """One scenario's cell: the latest succeeded run's headline value, or why there is none."""
    if run_id is not None and cells.get((run_id, category)) is not None:
        return cells[(run_id, category)]
    if attempt is not None and attempt.status not in ("succeeded", "validation_failed"):
        return _failed(attempt.status, attempt.error)
    if run_id is not None:
        return "measured, but the run has no headline value here"
    return NO_RUN if attempt is None else _failed(attempt.status, attempt.error)


def _row_cell(found: list[dict[str, Any] | str]) -> dict[str, Any] | str:
    """A row's cell from its scenarios' cells: the one, or the mean of those with a value (HELM averages RAFT's
    subsets), saying how many of them it is; the first reason when none has a value."""
    valued = [c for c in found if isinstance(c, dict) and c["value"] is not None]
    if len(found) == 1 or not valued:
        return valued[0] if valued else next((c for c in found if isinstance(c, str)), found[0])
    return {
        **valued[0],
        "value": sum(c["value"] for c in valued) / len(valued),
        "low": None,
        "high": None,
        "of": f"mean of {len(valued)} of {len(found)} subsets",
    }


def suite_layout(warehouse: Warehouse, suite: str | SuiteSpec) -> Layout:
    """The suite's rows (its scenarios, or the rows entries name) × the seven categories, for each model with
    a run of one of them."""
    spec = find("suite", suite).spec if isinstance(suite, str) else suite
    assert isinstance(spec, SuiteSpec)
    plans = suite_plans(spec)
    rows: dict[str, list[str]] = {}  # row -> its scenarios
    measured: dict[str, set[str]] = {}
    for entry, plan in zip(spec.scenarios, plans, strict=True):
        s = plan.spec
        row = entry.row or s.name
        rows.setdefault(row, []).append(s.name)
        measured.setdefault(row, set()).update(registry.measured_categories(s.metrics, s.main_metric, s.adapter.method))
    names = [name for members in rows.values() for name in members]
    layout = Layout(spec.name, list(rows), measured)
    attempts = warehouse.latest_attempts(names)
    succeeded = warehouse.report_runs(names)
    latest = succeeded[succeeded.latest]
    cells = headline_cells(warehouse.report_metrics(list(latest.run_id)))
    run_of = {(r.model, r.scenario): r.run_id for r in latest.itertuples()}
    attempt_of = {(a.model, a.scenario): a for a in attempts.itertuples()}
    layout.models = sorted({a.model for a in attempts.itertuples()} | set(latest.model))
    for model in layout.models:
        for row, members in rows.items():
            for category in CATEGORIES:
                if category not in measured[row]:
                    layout.cells[(model, row, category)] = NOT_MEASURED
                    continue
                found = [
                    _entry_cell(run_of.get((model, m)), attempt_of.get((model, m)), category, cells) for m in members
                ]
                layout.cells[(model, row, category)] = _row_cell(found)
    return layout


def layout_lines(layout: Layout) -> list[str]:
    """The layout as text: per model a scenario × category table, then the coverage matrix and its share."""
    width = max([len(s) for s in layout.scenarios] + [8])
    lines = []
    for model in layout.models:
        lines.append(f"{model} on {layout.suite}: headline metric per scenario × category")
        lines.append(" " * width + "  " + "  ".join(f"{c:<14}" for c in CATEGORIES))
        notes: list[str] = []
        for scenario in layout.scenarios:
            texts = []
            for category in CATEGORIES:
                cell = layout.cells[(model, scenario, category)]
                if isinstance(cell, dict) and "of" in cell:
                    texts.append(f"{cell['value']:.3f} [{len(notes) + 1}]")
                    notes.append(cell["of"])
                elif isinstance(cell, dict):
                    texts.append(f"{cell['value']:.3f}" if cell["value"] is not None else "-")
                elif cell == NOT_MEASURED:
                    texts.append("n/a")
                else:
                    texts.append(f"[{len(notes) + 1}]" if cell not in notes else f"[{notes.index(cell) + 1}]")
                    notes += [cell] if cell not in notes else []
            lines.append(f"{scenario:<{width}}  " + "  ".join(f"{t:<14}" for t in texts))
        lines += [f"  [{k}] {note}" for k, note in enumerate(notes, start=1)]
        lines.append("  n/a: not measured for this scenario (its spec asks no metric of the category)")
        lines.append("")
    measured, total = layout.coverage
    lines.append(f"coverage of {layout.suite}: which categories each scenario measures")
    lines.append(" " * width + "  " + "  ".join(f"{c[:4]:<4}" for c in CATEGORIES))
    for scenario in layout.scenarios:
        marks = ["x" if c in layout.measured[scenario] else "." for c in CATEGORIES]
        lines.append(f"{scenario:<{width}}  " + "  ".join(f"{m:<4}" for m in marks))
    lines.append(f"coverage: {measured} of {total} cells ({100 * measured / total:.1f} %)" if total else "coverage: -")
    return [line.rstrip() for line in lines]
