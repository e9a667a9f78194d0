"""Corpus overlap checks in the warehouse: their progress file by file, and each instance's mark.

The scan itself runs on a DuckDB connection of its own (warehouse/corpus_overlap.py), never on the
warehouse: it may take an hour, and DuckDB lets one process write the file at a time. The warehouse is
written for a moment after each corpus file (so a stopped check resumes after the last file it finished)
and once at the end; each write waits for the lock as every other writer does (db.py).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import pandas as pd

from helmflow.warehouse.db import Connected
from helmflow.warehouse.rows import Row
from helmflow.warehouse.runs import _transaction, now


@dataclass(frozen=True)
class InstanceTexts:
    """What a check reads of one stored instance."""

    instance_id: str
    input: str
    references: tuple[str, ...]  # reference texts and options


@dataclass(frozen=True)
class InstanceMark:
    instance_id: str
    dirty: bool
    ngrams: int
    matched: int
    example: str | None


def _dicts(cursor: Any) -> list[Row]:
    names = [d[0] for d in cursor.description]
    return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]


class ContaminationStore(Connected):
    """Mixin of Warehouse."""

    def instance_texts(self, run_id: str) -> tuple[Row, list[InstanceTexts]]:
        """The run's row (status, scenario, model, spec) and its instances' texts, in the order they were written."""
        with self.connect(read_only=True) as con:
            runs = _dicts(con.execute("select status, scenario, model, spec_json from runs where run_id = ?", [run_id]))
            if not runs:
                raise LookupError(f"no run '{run_id}' in the warehouse")
            rows = con.execute(
                "select instance_id, input, coalesce(reference_texts, []) || coalesce(choices, []) "
                "from instances where run_id = ? order by rowid",
                [run_id],
            ).fetchall()
        return runs[0], [InstanceTexts(i, text, tuple(refs)) for i, text, refs in rows]

    def start_check(self, row: Row) -> None:
        """The check's row, unless it exists (a resumed check keeps its start time)."""
        row = {**row, "status": "scanning", "started_at": now()}
        with self.connect() as con:
            con.execute(
                f"insert or ignore into contamination_checks ({', '.join(row)}) values ({', '.join('?' for _ in row)})",
                list(row.values()),
            )

    def scanned_files(self, check_id: str) -> dict[str, tuple[int, float]]:
        """path -> (bytes, mtime) of each file the check has finished."""
        with self.connect(read_only=True) as con:
            rows = con.execute(
                "select path, bytes, modified from contamination_files where check_id = ?", [check_id]
            ).fetchall()
        return {path: (size, modified) for path, size, modified in rows}

    def record_file(
        self, check_id: str, path: str, kind: str, size: int, modified: float, ngrams: set[str], seconds: float
    ) -> None:
        """One scanned file and the test n-grams it holds, in one transaction (a file scanned again replaces
        its earlier rows)."""
        with self.connect() as con, _transaction(con):
            for table in ("contamination_files", "contamination_matches"):
                con.execute(f"delete from {table} where check_id = ? and path = ?", [check_id, path])
            con.execute(
                "insert into contamination_files values (?, ?, ?, ?, ?, ?, ?, ?)",
                [check_id, path, kind, size, modified, len(ngrams), seconds, now()],
            )
            if ngrams:
                con.execute(
                    "insert into contamination_matches select ?, ?, unnest(?::varchar[])",
                    [check_id, path, sorted(ngrams)],
                )

    def matched_ngrams(self, check_id: str, paths: list[str]) -> set[str]:
        """The test n-grams found in any of these files (the corpus as it is now: files gone since are left out)."""
        with self.connect(read_only=True) as con:
            rows = con.execute(
                "select distinct ngram from contamination_matches where check_id = ? and path in (select unnest(?))",
                [check_id, paths or [""]],
            ).fetchall()
        return {ngram for (ngram,) in rows}

    def finish_check(self, check_id: str, run_id: str, marks: list[InstanceMark], totals: Row) -> None:
        """Each instance's mark and the run's counts, replacing an earlier finish of the same check."""
        frame = pd.DataFrame(
            {
                "check_id": check_id,
                "run_id": run_id,
                "instance_id": [m.instance_id for m in marks],
                "dirty": [m.dirty for m in marks],
                "ngrams": [m.ngrams for m in marks],
                "matched": [m.matched for m in marks],
                "example": pd.array([m.example for m in marks], dtype="string"),
            }
        )
        fields = {**totals, "status": "finished", "finished_at": now()}
        with self.connect() as con, _transaction(con):
            con.execute("delete from contamination_instances where check_id = ?", [check_id])
            con.register("incoming", frame)
            con.execute("insert into contamination_instances by name select * from incoming")
            con.unregister("incoming")
            assignments = ", ".join(f"{k} = ?" for k in fields)
            con.execute(
                f"update contamination_checks set {assignments} where check_id = ?", [*fields.values(), check_id]
            )

    def check_row(self, check_id: str) -> Row:
        with self.connect(read_only=True) as con:
            rows = _dicts(con.execute("select * from contamination_checks where check_id = ?", [check_id]))
        if not rows:
            raise LookupError(f"no contamination check '{check_id}' in the warehouse")
        return rows[0]

    def instance_marks(self, check_id: str) -> list[InstanceMark]:
        with self.connect(read_only=True) as con:
            rows = con.execute(
                "select instance_id, dirty, ngrams, matched, example from contamination_instances "
                "where check_id = ? order by instance_id",
                [check_id],
            ).fetchall()
        return [InstanceMark(*row) for row in rows]

    def current_results(self, run_id: str) -> tuple[pd.DataFrame, pd.DataFrame]:
        """The run's current metrics version: its whole-run metrics, and every per-instance value (what the
        clean subset's metrics are recomputed from)."""
        with self.connect(read_only=True) as con:
            metrics = con.execute(
                "select category, metric, perturbation, value, n, lower_is_better, headline, ci_low, ci_high, "
                "ci_method from current_metrics where run_id = ? and group_name = '' "
                "order by not headline, category, metric, perturbation",
                [run_id],
            ).df()
            stats = con.execute(
                "select category, metric, perturbation, instance_id, value from instance_stats s "
                "where run_id = ? and value is not null and metrics_version = "
                "(select max(metrics_version) from instance_stats v where v.run_id = s.run_id)",
                [run_id],
            ).df()
        return metrics, stats


def spec_of(run: Row) -> dict[str, Any]:
    return json.loads(run.get("spec_json") or "{}")


__all__ = ["ContaminationStore", "InstanceMark", "InstanceTexts", "spec_of"]
