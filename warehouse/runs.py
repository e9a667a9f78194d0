"""The run lifecycle: start, restart (resume), finish, fail, and a re-scoring's new metrics version.

A run gets its row (status `running`) when inference starts. At its end its predictions (and samples) land a
slice per transaction while it is still `running`, then everything else with the final status in one last
transaction: a run is whole once its status says so, or it is marked failed with the predictions it had written
(a resume replaces them). One transaction for every prediction would hold all of a run's prompts in DuckDB's
transaction-local storage, which its memory limit does not bound: about 450 MB for MMLU's 84,252 predictions.
A process killed mid-run leaves its row `running`; such a run counts as failed as soon as its
process is gone (`effective_status`), and the next writer records it so (`reap_interrupted`).
"""

from __future__ import annotations

import os
import socket
from contextlib import AbstractContextManager
from datetime import UTC, datetime
from typing import Any

import duckdb

from helmflow.tasks.records import Metric, Stat
from helmflow.warehouse.db import Connected
from helmflow.warehouse.rows import Sliced, Table, metrics_frame, stats_frame

RESULT_TABLES = ("instances", "predictions", "samples", "instance_stats", "metrics", "validations")
INTERRUPTED = "interrupted: its process ended before the run finished"


def now() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def interrupted_run_ids(con: duckdb.DuckDBPyConnection) -> list[str]:
    """Runs still marked running whose process (on this host) no longer exists."""
    rows = con.execute("select run_id, pid, host from runs where status = 'running'").fetchall()
    host = socket.gethostname()
    return [run_id for run_id, pid, run_host in rows if run_host == host and pid and not _alive(pid)]


def reap_interrupted(con: duckdb.DuckDBPyConnection) -> int:
    stale = interrupted_run_ids(con)
    for run_id in stale:
        con.execute(
            "update runs set status = 'failed', error = ?, finished_at = ? where run_id = ?",
            [INTERRUPTED, now(), run_id],
        )
    return len(stale)


# DuckDB's own memory for a run's write: past it, the transaction's rows spill to the warehouse's
# temporary folder (`<file>.tmp`) instead of growing this process (without it DuckDB may take 80% of RAM,
# and a large run's write was the peak of its whole command).
WRITE_MEMORY_LIMIT = "64MB"
# Written a slice per transaction, before the final one (the tables of a run's prompts: rows.Sliced).
SLICED_TABLES = ("predictions", "samples")


def _insert_slices(con: duckdb.DuckDBPyConnection, run_id: str, tables: dict[str, Table]) -> None:
    """The run's sliced tables, each slice committed on its own (the run's earlier try's rows deleted first)."""
    sliced = {name: t for name, t in tables.items() if name in SLICED_TABLES and isinstance(t, Sliced)}
    with _transaction(con):
        for name in SLICED_TABLES:
            con.execute(f"delete from {name} where run_id = ?", [run_id])
    for name, table in sliced.items():
        for frame in table.frames():
            with _transaction(con):
                _insert(con, run_id, {name: frame})


def _insert(con: duckdb.DuckDBPyConnection, run_id: str, tables: dict[str, Table]) -> None:
    for name in RESULT_TABLES:
        table = tables.get(name)
        for frame in table.frames() if isinstance(table, Sliced) else [table]:
            if frame is None or frame.empty:
                continue
            con.register("incoming", frame.assign(run_id=run_id))
            con.execute(f"insert into {name} by name select * from incoming")
            con.unregister("incoming")


def _update(con: duckdb.DuckDBPyConnection, run_id: str, fields: dict[str, Any]) -> None:
    """Set these columns of the run's row (column names are ours, values bound)."""
    assignments = ", ".join(f"{k} = ?" for k in fields)
    con.execute(f"update runs set {assignments} where run_id = ?", [*fields.values(), run_id])


class RunLifecycle(Connected):
    """Mixin of Warehouse: every statement that creates or changes a run."""

    def start_run(self, row: dict[str, Any]) -> None:
        row = {**row, "status": "running", "pid": os.getpid(), "host": socket.gethostname(), "started_at": now()}
        columns = ", ".join(row)
        marks = ", ".join("?" for _ in row)
        with self.connect() as con:
            reap_interrupted(con)
            con.execute(f"insert into runs ({columns}) values ({marks})", list(row.values()))

    def finish_run(self, run_id: str, status: str, tables: dict[str, Table], updates: dict[str, Any]) -> None:
        """The predictions slice by slice while the run is still running, then every other result row and the
        final status in one transaction. A failure on the way leaves the run running with what it wrote (the
        caller marks it failed; a process that died is reaped as failed)."""
        with self.connect(config={"memory_limit": WRITE_MEMORY_LIMIT}) as con:
            _insert_slices(con, run_id, tables)
            rest = {name: t for name, t in tables.items() if not (name in SLICED_TABLES and isinstance(t, Sliced))}
            with _transaction(con):
                _insert(con, run_id, rest)
                _update(con, run_id, {**updates, "status": status, "finished_at": now()})

    def restart_run(
        self,
        run_id: str,
        model_fingerprint: str,
        flow_run_id: str | None,
        dataset_fingerprint: str | None = None,
        updates: dict[str, Any] | None = None,
    ) -> None:
        """Mark a failed run running again (a resume), in this process. Its model and, when given, its data
        must be the ones it started with; `updates`: what the resuming process records instead (the code
        that scores it: package and metrics versions; where it runs)."""
        with self.connect() as con:
            reap_interrupted(con)
            rows = con.execute(
                "select status, model_fingerprint, dataset_fingerprint from runs where run_id = ?", [run_id]
            ).fetchall()
            row = rows[0] if rows else None
            if row is None or row[0] != "failed":
                raise LookupError(f"run {run_id} cannot be resumed (status {row[0] if row else 'unknown'})")
            if row[1] != model_fingerprint:
                raise LookupError(
                    f"run {run_id} was made with model {row[1]}, not {model_fingerprint}: start a new run"
                )
            if dataset_fingerprint is not None and row[2] != dataset_fingerprint:
                raise LookupError(
                    f"run {run_id} was made on data with fingerprint {row[2]}; its data now has "
                    f"{dataset_fingerprint}: start a new run"
                )
            fields = {
                **(updates or {}),
                "status": "running",
                "error": None,
                "finished_at": None,
                "pid": os.getpid(),
                "host": socket.gethostname(),
                "flow_run_id": flow_run_id,
            }
            _update(con, run_id, fields)

    def fail_run(self, run_id: str, error: str) -> None:
        with self.connect() as con:
            con.execute(
                "update runs set status = 'failed', error = ?, finished_at = ? where run_id = ? and status = 'running'",
                [error[:4000], now(), run_id],
            )

    def add_metrics_version(self, run_id: str, stats: list[Stat], metrics: list[Metric]) -> int:
        """A re-scoring's stats and metrics, stored as the run's next metrics version beside the earlier
        ones, in one transaction (the version is chosen inside it: two re-scorings never share one)."""
        with self.connect() as con, _transaction(con):
            [(version,)] = con.execute(
                "select coalesce(max(metrics_version), 0) + 1 from metrics where run_id = ?", [run_id]
            ).fetchall()
            tables = {"instance_stats": stats_frame(stats, version), "metrics": metrics_frame(metrics, version)}
            _insert(con, run_id, tables)
        return int(version)

    def effective_status(self, con: duckdb.DuckDBPyConnection, run_id: str, status: str) -> str:
        """A run whose process died is failed, even before the next writer records that."""
        return "failed" if status == "running" and run_id in interrupted_run_ids(con) else status


class _transaction(AbstractContextManager[None]):
    """begin … commit, or rollback on any exception (KeyboardInterrupt included)."""

    def __init__(self, con: duckdb.DuckDBPyConnection) -> None:
        self.con = con

    def __enter__(self) -> None:
        self.con.execute("begin transaction")

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: object) -> None:
        self.con.execute("rollback" if kind else "commit")
