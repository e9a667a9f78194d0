"""Open the DuckDB warehouse: where it lives, schema migrations, and the one-writer lock.

DuckDB lets one process at a time open a file for writing; a second gets an immediate lock
error. helmflow holds a connection only for the moment it writes, and a process that finds
the file locked retries for a while (HELMFLOW_DB_LOCK_TIMEOUT seconds) before it gives up with
a message that names the file, so two runs finishing together both land.
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TypeVar

import duckdb

T = TypeVar("T")

# Under the directory helmflow runs from (like a dbt project), never inside the installed package.
DEFAULT_DB = Path("warehouse") / "helmflow.duckdb"
MIGRATIONS = Path(__file__).parent / "migrations"


class WarehouseError(RuntimeError):
    """A warehouse that cannot be opened or used; the message names the file."""


def db_path(explicit: str | Path | None = None) -> Path:
    return Path(explicit or os.environ.get("HELMFLOW_DB") or DEFAULT_DB)


def migrations() -> list[tuple[int, Path]]:
    files = sorted(MIGRATIONS.glob("*.sql"))
    return [(int(f.name.split("_", 1)[0]), f) for f in files]


def latest_version() -> int:
    return max(v for v, _ in migrations())


def schema_version(con: duckdb.DuckDBPyConnection) -> int:
    # fetchall, not fetchone: DuckDB refuses register() while a result is left unfinished.
    [(exists,)] = con.execute(
        "select count(*) from information_schema.tables where table_name = 'schema_version'"
    ).fetchall()
    if not exists:
        return 0
    [(version,)] = con.execute("select max(version) from schema_version").fetchall()
    return int(version or 0)


def migrate(con: duckdb.DuckDBPyConnection, path: Path) -> int:
    """Apply every migration newer than the file's version, each in its own transaction."""
    current = schema_version(con)
    latest = latest_version()
    if current > latest:
        raise WarehouseError(
            f"{path}: schema version {current} is newer than this helmflow knows ({latest}); upgrade helmflow"
        )
    if 0 < current < latest and path.exists():
        # Keep the older file as it was before upgrading it in place.
        con.execute("checkpoint")
        shutil.copy2(path, path.with_name(f"{path.name}.v{current}.bak"))
    apply_migrations(con, after=current)
    return latest


def apply_migrations(con: duckdb.DuckDBPyConnection, after: int = 0, up_to: int | None = None) -> None:
    """Apply the migrations numbered after `after` up to `up_to` (default: all), each in its own transaction."""
    for version, file in migrations():
        if version <= after or (up_to is not None and version > up_to):
            continue
        con.execute("begin transaction")
        try:
            con.execute(
                "create table if not exists schema_version (version integer primary key, name varchar, "
                "applied_at timestamp default current_timestamp)"
            )
            con.execute(file.read_text())
            con.execute("insert into schema_version (version, name) values (?, ?)", [version, file.name])
            con.execute("commit")
        except Exception:
            con.execute("rollback")
            raise


def lock_timeout() -> float:
    return float(os.environ.get("HELMFLOW_DB_LOCK_TIMEOUT", "300"))


def waiting_for_the_lock(path: Path, timeout: float, action: Callable[[], T]) -> T:
    """action() — opening or attaching the file — retried while another process holds its lock, up to
    `timeout` seconds; then an error that names the file."""
    deadline = time.monotonic() + timeout
    delay = 0.05
    while True:
        try:
            return action()
        except duckdb.IOException as exc:
            if "lock" not in str(exc).lower():
                raise WarehouseError(f"{path}: cannot open the warehouse: {exc}") from exc
            if time.monotonic() >= deadline:
                raise WarehouseError(
                    f"{path}: the warehouse is locked by another process and stayed locked for {timeout:.0f} s "
                    f"(DuckDB allows one writer per file; set HELMFLOW_DB_LOCK_TIMEOUT to wait longer): {exc}"
                ) from exc
            time.sleep(delay)
            delay = min(delay * 2, 1.0)


def _open(path: Path, read_only: bool, timeout: float, config: dict | None = None) -> duckdb.DuckDBPyConnection:
    return waiting_for_the_lock(
        path, timeout, lambda: duckdb.connect(str(path), read_only=read_only, config=config or {})
    )


@contextmanager
def connect(
    path: str | Path | None = None, read_only: bool = False, timeout: float | None = None, config: dict | None = None
) -> Iterator[duckdb.DuckDBPyConnection]:
    """A short-lived connection; writable connections bring the schema up to date first.

    `config` is DuckDB's own connection configuration (the locked, read-only `query` connection uses it).
    """
    path = db_path(path)
    if timeout is None:
        timeout = lock_timeout()
    if read_only and not path.exists():
        raise WarehouseError(f"{path}: no warehouse here yet; `helmflow run` creates it")
    if not read_only:
        path.parent.mkdir(parents=True, exist_ok=True)
    con = _open(path, read_only, timeout, config)
    try:
        if not read_only:
            migrate(con, path)
        yield con
    finally:
        con.close()


class Connected:
    """The base of the store's mixins: a warehouse path and short-lived connections to it."""

    path: Path

    @contextmanager
    def connect(self, read_only: bool = False, config: dict | None = None) -> Iterator[duckdb.DuckDBPyConnection]:
        with connect(self.path, read_only=read_only, config=config) as con:
            yield con
