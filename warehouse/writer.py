"""Write runs into the warehouse.

A run gets its row (status `running`) when inference starts; everything else lands in one
transaction with the final status, so a run is either whole or has no result rows at all.
A process killed mid-run leaves its row `running`; `reap_interrupted` marks such rows
`failed` once their process is gone.
"""

from __future__ import annotations

import os
import socket
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import duckdb
import pandas as pd

from helmflow.warehouse.db import connect

RESULT_TABLES = ("instances", "predictions", "instance_stats", "metrics", "validations")


def now() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


def start_run(db: str | Path | None, row: dict[str, Any]) -> None:
    row = {**row, "status": "running", "pid": os.getpid(), "host": socket.gethostname(), "started_at": now()}
    columns = ", ".join(row)
    marks = ", ".join("?" for _ in row)
    with connect(db) as con:
        reap_interrupted(con)
        con.execute(f"insert into runs ({columns}) values ({marks})", list(row.values()))


def finish_run(
    db: str | Path | None, run_id: str, status: str, tables: dict[str, pd.DataFrame], updates: dict[str, Any]
) -> None:
    """All result rows and the final status in one transaction: all of it lands, or none."""
    with connect(db) as con:
        con.execute("begin transaction")
        try:
            _insert(con, run_id, tables)
            fields = {**updates, "status": status, "finished_at": now()}
            assignments = ", ".join(f"{k} = ?" for k in fields)
            con.execute(f"update runs set {assignments} where run_id = ?", [*fields.values(), run_id])
            con.execute("commit")
        except BaseException:
            con.execute("rollback")
            raise


def restart_run(db: str | Path | None, run_id: str, model_fingerprint: str, flow_run_id: str | None) -> None:
    """Mark a failed run running again (a resume), in this process."""
    with connect(db) as con:
        reap_interrupted(con)
        rows = con.execute("select status, model_fingerprint from runs where run_id = ?", [run_id]).fetchall()
        row = rows[0] if rows else None
        if row is None or row[0] != "failed":
            raise LookupError(f"run {run_id} cannot be resumed (status {row[0] if row else 'unknown'})")
        if row[1] != model_fingerprint:
            raise LookupError(f"run {run_id} was made with model {row[1]}, not {model_fingerprint}: start a new run")
        con.execute(
            "update runs set status = 'running', error = null, finished_at = null, pid = ?, host = ?, "
            "flow_run_id = ? where run_id = ?",
            [os.getpid(), socket.gethostname(), flow_run_id, run_id],
        )


def add_rows(db: str | Path | None, run_id: str, tables: dict[str, pd.DataFrame]) -> None:
    """More result rows for an existing run (a re-scoring's new metrics version), in one transaction."""
    with connect(db) as con:
        con.execute("begin transaction")
        try:
            _insert(con, run_id, tables)
            con.execute("commit")
        except BaseException:
            con.execute("rollback")
            raise


def _insert(con: duckdb.DuckDBPyConnection, run_id: str, tables: dict[str, pd.DataFrame]) -> None:
    for name in RESULT_TABLES:
        frame = tables.get(name)
        if frame is None or frame.empty:
            continue
        con.register("incoming", frame.assign(run_id=run_id))
        con.execute(f"insert into {name} by name select * from incoming")
        con.unregister("incoming")


def fail_run(db: str | Path | None, run_id: str, error: str) -> None:
    with connect(db) as con:
        con.execute(
            "update runs set status = 'failed', error = ?, finished_at = ? where run_id = ? and status = 'running'",
            [error[:4000], now(), run_id],
        )


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
            "update runs set status = 'failed', error = 'interrupted: its process ended before the run finished', "
            "finished_at = ? where run_id = ?",
            [now(), run_id],
        )
    return len(stale)
