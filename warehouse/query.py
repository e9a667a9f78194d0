"""`helmflow query`: the user's SQL on a connection the engine itself keeps read-only, local and bounded.

The SQL is untrusted. Rather than parse it ourselves, the connection is opened read-only with
DuckDB's own guards: `enable_external_access = false` (no COPY TO, ATTACH, EXPORT, INSTALL/LOAD,
read_csv/read_text of other files), a `memory_limit` with nowhere to spill (`temp_directory` empty)
and `lock_configuration = true` (no SET can lift any of them). DuckDB's parser splits the text; more
than one statement is refused, since only the last result would show.

Two bounds are ours, because DuckDB has no setting for them: a time limit (a timer interrupts the
connection) and the size of the result handed to Python, which DuckDB's memory limit does not cover
(a plain `select * from range(1e9)` became 15 GB of pandas): the result is fetched chunk by chunk and
stopped once it passes the row or memory bound.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

import duckdb
import pandas as pd

from helmflow.warehouse.db import Connected


@dataclass(frozen=True)
class QueryLimits:
    """How much one `helmflow query` may take; each has a flag to raise it."""

    memory_mb: int = 2048  # DuckDB's memory while it runs, and the fetched result's size in Python
    seconds: float = 60.0
    rows: int = 1_000_000


DEFAULT_LIMITS = QueryLimits()
CHUNK_VECTORS = 16  # 16 × 2048 rows a fetch: the bounds are checked this often


class QueryRefused(ValueError):
    """SQL that the read-only query connection will not run, or that ran past a bound; the message says why."""


def locked_config(limits: QueryLimits) -> dict[str, object]:
    return {
        "enable_external_access": False,
        "memory_limit": f"{limits.memory_mb}MB",
        "temp_directory": "",  # nowhere to spill: the memory limit is the bound, not the disk
        "lock_configuration": True,
    }


def _one_line(exc: duckdb.Error) -> str:
    """DuckDB's message without the advice it appends on later lines (SET commands the lock refuses)."""
    return str(exc).strip().splitlines()[0]


def _fetch(result: duckdb.DuckDBPyConnection, limits: QueryLimits) -> pd.DataFrame:
    """The result, chunk by chunk, refused once it passes the row or memory bound."""
    chunks: list[pd.DataFrame] = []
    rows = size = 0
    while True:
        chunk = result.fetch_df_chunk(CHUNK_VECTORS)
        if not len(chunk):
            return pd.concat(chunks, ignore_index=True) if len(chunks) > 1 else (chunks or [chunk])[0]
        rows += len(chunk)
        size += int(chunk.memory_usage(deep=True).sum())
        if rows > limits.rows:
            raise QueryRefused(
                f"query: the result has more than {limits.rows:,} rows; add a LIMIT or aggregate "
                "(or raise the bound with --max-rows)"
            )
        if size > limits.memory_mb * 2**20:
            raise QueryRefused(
                f"query: the result takes more than {limits.memory_mb} MB; select fewer rows or columns "
                "(or raise the bound with --memory-limit)"
            )
        chunks.append(chunk)


class UserQuery(Connected):
    """Mixin of Warehouse."""

    def query(self, sql: str, limits: QueryLimits = DEFAULT_LIMITS) -> pd.DataFrame:
        with self.connect(read_only=True, config=locked_config(limits)) as con:
            try:
                statements = con.extract_statements(sql)
            except duckdb.Error as exc:
                raise QueryRefused(f"query failed: {_one_line(exc)}") from exc
            if len(statements) != 1:
                raise QueryRefused(
                    f"query: give exactly one SQL statement (got {len(statements)}); run `helmflow query` once for each"
                )
            return _bounded(con, sql, limits)


def _bounded(con: duckdb.DuckDBPyConnection, sql: str, limits: QueryLimits) -> pd.DataFrame:
    """Run and fetch in a worker thread while this one keeps the clock and stays free for Ctrl-C: DuckDB
    runs with Python's lock released, but a signal handler only runs on the main thread, between bytecodes."""
    outcome: list[pd.DataFrame | BaseException] = []
    # An Event rather than Thread.join: a join interrupted by Ctrl-C returns at once the next time (CPython
    # 3.11 releases the thread's lock when acquire is interrupted), and the connection must not be closed
    # while the worker still uses it.
    done = threading.Event()

    def work() -> None:
        try:
            outcome.append(_fetch(con.execute(sql), limits))
        except BaseException as exc:  # handed to the main thread, which raises it
            outcome.append(exc)
        finally:
            done.set()

    threading.Thread(target=work, name="helmflow-query", daemon=True).start()
    try:
        finished = done.wait(limits.seconds)
    except KeyboardInterrupt:
        con.interrupt()
        done.wait()
        raise
    if not finished:
        con.interrupt()
        done.wait()
        raise QueryRefused(f"query: stopped after {limits.seconds:g} s (raise the bound with --timeout SECONDS)")
    [result] = outcome
    if isinstance(result, pd.DataFrame):
        return result
    if isinstance(result, duckdb.OutOfMemoryException):
        raise QueryRefused(
            f"query: needs more than {limits.memory_mb} MB of memory (raise the bound with --memory-limit MB)"
        ) from result
    if isinstance(result, duckdb.Error):
        raise QueryRefused(f"query failed: {_one_line(result)}") from result
    raise result
