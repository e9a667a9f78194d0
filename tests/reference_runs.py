"""A warehouse for the reference-row and declared-contamination tests (tests/test_baselines.py,
tests/test_declared_contamination.py), written row by row as the flow writes it (tests/truth_runs.py: no
model, fast): two models on SST-2 and MMLU, 20 instances each, four options, gold k % 4.

- flan-t5-small: SST-2 16 of 20 right (0.8), MMLU 5 of 20 (0.25; it answers B throughout).
- smol: SST-2 5 of 20 (0.25; it answers A throughout), MMLU 3 of 20 (0.15; the first three).

flan-t5-small is ahead in both columns, so HELM's mean win rates are 1 and 0; shipped references exist for
both scenarios (GLUE's human baseline for sst2, MMLU's expert estimate and Mechanical Turk accuracy), and
helmflow's contamination list declares flan-t5-* trained on SST-2 (the Flan Collection) but not on MMLU.
"""

from __future__ import annotations

from datetime import datetime
from html.parser import HTMLParser
from pathlib import Path

import pytest

from helmflow.flows.report.content import Selection, gather
from helmflow.flows.report.site import Writer
from helmflow.specs.reference_rows import load_references
from helmflow.warehouse.store import Warehouse
from tests.truth_runs import McRun, record_mc_run

GOLDS = [k % 4 for k in range(20)]
FLAN, SMOL = "flan-t5-small", "smol"
DAY = datetime(2025, 5, 1, 9, 30)


def wrong(gold: int) -> int:
    return (gold + 1) % 4


def reference_warehouse(factory: pytest.TempPathFactory) -> Path:
    """The warehouse, written once per test process (both test modules read it; none writes to it)."""
    db = factory.getbasetemp() / "reference_runs" / "w.duckdb"
    if not db.exists():
        db.parent.mkdir(exist_ok=True)
        record_reference_runs(db)
    return db


def reference_pages(db: Path, out: Path, files: list[Path]) -> Path:
    """The two report pages that show references and marks (index.html, history.html), as `helmflow report
    --references FILE...` writes them; its run, instance and compare pages, which show neither, are left out
    (seconds). The command's own reading of --references is tested through it, with a file it refuses."""
    out.mkdir()
    writer = Writer(Warehouse(db), out, Selection(references=[str(f) for f in files]))
    writer.references = load_references(files)  # as Writer.write reads them, first
    content = gather(writer.warehouse, writer.selection)
    writer.leaderboard(content)
    writer.history(content)
    return out


def record_reference_runs(db: Path) -> None:
    runs = [
        McRun("flan-sst2", FLAN, "sst2", GOLDS, [g if k < 16 else wrong(g) for k, g in enumerate(GOLDS)], DAY),
        McRun("smol-sst2", SMOL, "sst2", GOLDS, [0] * 20, DAY),
        McRun("flan-mmlu", FLAN, "mmlu", GOLDS, [1] * 20, DAY),
        McRun("smol-mmlu", SMOL, "mmlu", GOLDS, [g if k < 3 else wrong(g) for k, g in enumerate(GOLDS)], DAY),
    ]
    for run in runs:
        record_mc_run(db, McRun(**{**run.__dict__, "perturbed": False}))


def table_rows(text: str) -> list[list[str]]:
    """The cells of each body row of the rich tables in `text` (lines between │ bars), stripped."""
    return [[cell.strip() for cell in line.split("│")[1:-1]] for line in text.splitlines() if line.startswith("│")]


class _Tables(HTMLParser):
    """The text of each cell (th or td) of each body row of the tables and lists that have an id, by id."""

    def __init__(self) -> None:
        super().__init__()
        self.rows: dict[str, list[list[str]]] = {}
        self.stack: list[str] = []  # ids of the open tables/lists
        self.cell: list[str] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        found = dict(attrs)
        if tag in ("table", "ol", "ul"):
            self.stack.append(found.get("id") or "")
        elif tag == "tr" and self.stack:
            self.rows.setdefault(self.stack[-1], []).append([])
        elif tag in ("td", "th", "li") and self.stack:
            if tag == "li":
                self.rows.setdefault(self.stack[-1], []).append([])
            self.cell = []

    def handle_endtag(self, tag: str) -> None:
        if tag in ("table", "ol", "ul") and self.stack:
            self.stack.pop()
        elif tag in ("td", "th", "li") and self.cell is not None and self.stack:
            self.rows[self.stack[-1]][-1].append("".join(self.cell).strip())
            self.cell = None

    def handle_data(self, data: str) -> None:
        if self.cell is not None:
            self.cell.append(data)


def html_rows(path: Path, element_id: str) -> list[list[str]]:
    """The rows of the table (or the items of the list) with this id, each a list of its cells' text; a
    table's header row is its first."""
    parser = _Tables()
    parser.feed(path.read_text(encoding="utf-8"))
    return [row for row in parser.rows.get(element_id, []) if row]
