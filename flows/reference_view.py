"""How reference rows and declared contamination (specs/reference_rows.py) show beside the results.

The leaderboard CLI, the report's leaderboard and history pages and `helmflow history` call these with the
headline values they show; nothing here reads or changes a win rate. A reference row is shown where a
shown scenario has the reference's (category, metric) among its headline values, so that it is never set
beside a different score; a declared (model, scenario) pair gets a numbered mark (†1) whose footnote
cites the source.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from helmflow.specs import reference_rows
from helmflow.specs.reference_rows import Declared, ReferenceRow, References

DAGGER = "†"
REFERENCE_PREFIX = "reference: "  # how a reference row is named where models are named (the CLI's tables)
REFERENCE_NOTE = (
    "reference rows are published results, not runs: shown beside the models, never ranked and never in a win rate"
)


@dataclass(frozen=True)
class Headline:
    """One shown headline value: a model's latest run on a scenario, in one category."""

    model: str
    scenario: str
    category: str
    metric: str  # with its perturbation in brackets when it has one ('exact_match (worst_case)')
    value: float | None
    low: float | None = None
    high: float | None = None
    run_id: str = ""


@dataclass(frozen=True)
class Footnote:
    number: int  # 0: the only footnote where it shows (under one history), said as a plain †
    declared: Declared
    pairs: tuple[tuple[str, str], ...]  # (model, scenario) shown here that the declaration covers

    @property
    def named(self) -> str:
        """'flan-t5-small on boolq, sst2; t0pp on boolq': the pairs it marks here, by model."""
        by_model: dict[str, list[str]] = {}
        for model, scenario in self.pairs:
            by_model.setdefault(model, []).append(scenario)
        return "; ".join(f"{m} on {', '.join(s)}" for m, s in by_model.items())

    @property
    def line(self) -> str:
        d = self.declared
        tag = f"{DAGGER}{self.number}" if self.number else DAGGER
        return f"{tag} declared contamination ({d.level}) of {self.named}: {d.note} Source: {d.source}"


@dataclass
class Marks:
    """Numbered footnotes for the declarations that cover some shown pair, and which pairs each marks."""

    footnotes: list[Footnote] = field(default_factory=list)

    def of_pair(self, model: str, scenario: str) -> list[int]:
        return [f.number for f in self.footnotes if (model, scenario) in f.pairs]

    def of_model(self, model: str) -> list[int]:
        return [f.number for f in self.footnotes if any(m == model for m, _ in f.pairs)]


def mark(numbers: Sequence[int]) -> str:
    """'†1,2' for footnotes 1 and 2; '' for none."""
    return f"{DAGGER}{','.join(map(str, numbers))}" if numbers else ""


def with_mark(text: str, numbers: Sequence[int]) -> str:
    return f"{text} {mark(numbers)}" if numbers else text


def contamination_marks(references: References, pairs: Iterable[tuple[str, str]], numbered: bool = True) -> Marks:
    """Footnotes numbered in the files' order, for the declarations that cover some of the (model, scenario)
    pairs shown; a declaration that covers none is not shown. Unnumbered (a plain †) where one model ×
    scenario is shown (a history), as there is nothing to tell its footnotes apart from."""
    shown = sorted(set(pairs))
    footnotes: list[Footnote] = []
    for declared in references.declared:
        covered = tuple(p for p in shown if declared.covers(*p))
        if covered:
            footnotes.append(Footnote(len(footnotes) + 1 if numbered else 0, declared, covered))
    return Marks(footnotes)


def shown_references(references: References, headlines: Iterable[Headline]) -> list[tuple[str, ReferenceRow]]:
    """(scenario, row) for each reference row that applies to a shown scenario's headline (category, metric):
    sorted by scenario, then in the files' order; one row per baseline and scenario (the first score whose
    pattern names it)."""
    present: dict[str, set[tuple[str, str]]] = {}
    for h in headlines:
        present.setdefault(h.scenario, set()).add((h.category, h.metric))
    out = []
    for scenario in sorted(present):
        seen: set[str] = set()
        for row in references.rows_for(scenario):
            if (row.category, row.metric) in present[scenario] and row.baseline not in seen:
                seen.add(row.baseline)
                out.append((scenario, row))
    return out


def cited(rows: Iterable[ReferenceRow]) -> list[str]:
    """One line per baseline shown: its label, citation and source."""
    lines, seen = [], set()
    for row in rows:
        if row.baseline not in seen:
            seen.add(row.baseline)
            lines.append(f"  {row.label}: {row.citation}{' ' + row.note if row.note else ''} ({row.source})")
    return lines


# -- the report -------------------------------------------------------------------------------------------


def report_context(references: References, headlines: list[Headline]) -> dict[str, Any]:
    """What the report's leaderboard shows of references and declared contamination (templates/references.html).

    blocks: per (scenario, category, metric) with a reference row, and per scenario with a marked pair (its
    accuracy headline), the models' values (with their footnote numbers) then the reference rows; footnotes:
    the declarations that mark a shown pair; model_marks / pair_marks: footnote numbers for the ranking table
    and the one-model score table.
    """
    marks = contamination_marks(references, ((h.model, h.scenario) for h in headlines))
    refs = shown_references(references, headlines)
    blocks = []
    keys = sorted({(s, r.category, r.metric) for s, r in refs})
    marked = sorted({s for f in marks.footnotes for _, s in f.pairs} - {s for s, _, _ in keys})
    keys += [(s, "accuracy", "") for s in marked]  # '' : whatever the accuracy headline is
    for scenario, category, metric in sorted(keys):
        models = [
            h
            for h in headlines
            if h.scenario == scenario and h.category == category and (not metric or h.metric == metric)
        ]
        rows: list[dict[str, Any]] = [
            {
                "kind": "model",
                "name": h.model,
                "run_id": h.run_id,
                "value": h.value,
                "low": h.low,
                "high": h.high,
                "metric": h.metric,
                "marks": marks.of_pair(h.model, scenario),
            }
            for h in sorted(models, key=lambda h: h.model)
        ]
        rows += [
            {
                "kind": "reference",
                "name": r.label,
                "value": r.value,
                "reported": r.reported,
                "source": r.source,
                "citation": r.citation,
                "metric": r.metric,
            }
            for s, r in refs
            if s == scenario and (r.category, r.metric) == (category, metric)
        ]
        if not rows:  # a marked scenario without an accuracy headline: its marks are in the ranking's names
            continue
        shown_metric = metric or (models[0].metric if models else "")
        blocks.append({"scenario": scenario, "category": category, "metric": shown_metric, "rows": rows})
    footnotes = [
        {
            "number": f.number,
            "level": f.declared.level,
            "named": f.named,
            "note": f.declared.note,
            "source": f.declared.source,
            "where": shown_where(f.declared.where),
        }
        for f in marks.footnotes
    ]
    names = sorted({h.model for h in headlines})
    pairs = sorted({(h.model, h.scenario) for h in headlines})
    return {
        "blocks": blocks,
        "footnotes": footnotes,
        # Footnote numbers (the template links each to its footnote): per model, and per (scenario, model).
        "model_marks": {m: marks.of_model(m) for m in names if marks.of_model(m)},
        "pair_marks": {(s, m): marks.of_pair(m, s) for m, s in pairs if marks.of_pair(m, s)},
        "note": REFERENCE_NOTE,
    }


def shown_where(where: str) -> str:
    """Where an entry was read, as a reader needs it: helmflow's own files by their place in the package (not
    this machine's install path), a user's file by its path."""
    shipped = str(Path(reference_rows.__file__).parent / reference_rows.FOLDER) + os.sep
    return "helmflow's specs/references/" + where.removeprefix(shipped) if where.startswith(shipped) else where


def matrix_headlines(matrix: list[dict[str, Any]], categories: Sequence[str]) -> list[Headline]:
    """The report's matrix rows (content.gather: a latest run's headline cell per category) as Headlines."""
    return [
        Headline(row["model"], row["scenario"], category, cell["metric"], cell["value"], cell["low"], cell["high"], run)
        for row in matrix
        for run in [row["run_id"]]
        for category, cell in zip(categories, row["cells"], strict=True)
        if cell is not None and cell["value"] is not None
    ]


def history_references(
    references: References, model: str, scenario: str, category: str, metric: str, perturbation: str
) -> dict[str, Any]:
    """What the report's history page says under one series' chart: the reference rows of its (unperturbed)
    metric, and the declarations that cover its model × scenario."""
    rows: list[ReferenceRow] = []
    if not perturbation:
        for row in references.rows_for(scenario, category, metric):
            if row.baseline not in {r.baseline for r in rows}:
                rows.append(row)
    lines = [f.line for f in contamination_marks(references, [(model, scenario)], numbered=False).footnotes]
    return {"rows": rows, "contamination": lines}
