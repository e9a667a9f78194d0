"""Merge other warehouses into this one: many machines (each with its own warehouse), one history.

A run is copied whole — its row and every row of the result tables, in the order they were
written — when this warehouse lacks its run id. A run id both sides have must have the same
content everywhere, else the merge is refused and names it: two different runs under one id
cannot both be history. Runs still `running` on the other side are left for a later merge. Two
things change a run after it ended, and merge follows both:
- a failed run is resumed (`helmflow run --resume`, or the next refresh): of a run both sides have,
  a failed copy gives way to the other side's when that one ended later (it is replaced here, or
  the source's is left alone);
- `helmflow rescore` adds a metrics version: versions only the source has are added here, and
  only the versions both sides have must be the same.
Inference cache entries this warehouse lacks are copied too, so a run can be resumed or refreshed
here from another machine's answers. All sources land in one transaction: a refused merge changes
nothing, and a repeated one adds nothing.

Sources are untrusted and never written. Each must be exactly a helmflow warehouse at its schema
version (catalog.py: base tables with the expected columns, helmflow's views, nothing else), and is
read only on connections that reach no other file. One at this helmflow's schema version is attached
read-only; an older one is copied to a temporary folder and the copy brought up to date by the
migrations; a newer one is refused. DuckDB allows one writer per file: a source another process is
writing waits like any other connection (HELMFLOW_DB_LOCK_TIMEOUT), then is refused naming the file.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import duckdb

from helmflow.warehouse.catalog import SEALED, check_catalog
from helmflow.warehouse.db import (
    Connected,
    WarehouseError,
    connect,
    latest_version,
    lock_timeout,
    schema_version,
    waiting_for_the_lock,
)
from helmflow.warehouse.runs import RESULT_TABLES, _transaction

RUN_TABLES = ("runs", *RESULT_TABLES)


@dataclass
class MergeReport:
    """What one source brought."""

    source: str
    runs_added: list[str] = field(default_factory=list)
    runs_present: int = 0  # the same run already here
    runs_skipped: list[str] = field(default_factory=list)  # still running there
    runs_replaced: list[str] = field(default_factory=list)  # failed here, resumed there since
    rescorings_added: int = 0  # metrics versions (a run's re-scorings) only the source had
    rows_added: dict[str, int] = field(default_factory=dict)  # by result table
    cache_added: int = 0
    migrated_from: int | None = None  # the source's schema version, when older than this helmflow's


def _source_version(source: Path) -> int:
    """The source's schema version, its catalog checked against what helmflow's migrations build at that
    version (read on a connection that reaches no other file, so nothing in the source runs with file access)."""
    with connect(source, read_only=True, config=SEALED) as con:
        try:
            version = schema_version(con)
        except (duckdb.Error, TypeError, ValueError) as exc:  # a schema_version table that is not helmflow's
            raise WarehouseError(
                f"{source}: not a helmflow warehouse (its schema_version is unreadable: {exc})"
            ) from exc
        latest = latest_version()
        if version == 0:
            raise WarehouseError(f"{source}: not a helmflow warehouse (it has no schema_version table)")
        if version > latest:
            raise WarehouseError(
                f"{source}: schema version {version} is newer than this helmflow knows ({latest}); "
                "merge it with a newer helmflow"
            )
        [(database,)] = con.execute("select current_database()").fetchall()
        check_catalog(con, database, version, source)
    return version


@contextmanager
def readable(source: Path, target: Path) -> Iterator[tuple[Path, int]]:
    """A path to the source's data at this helmflow's schema version (the file itself, or a migrated copy)."""
    if not source.is_file():
        raise WarehouseError(f"{source}: no warehouse file here")
    if target.exists() and source.resolve() == target.resolve():
        raise WarehouseError(f"{source}: this is the warehouse being merged into")
    version = _source_version(source)
    if version == latest_version():
        yield source, version
        return
    with tempfile.TemporaryDirectory(prefix="helmflow-merge-") as folder:
        copy = Path(folder) / source.name
        # Copied while a read-only connection keeps writers out, with its write-ahead log: what a writer
        # that did not close committed lives only there until a checkpoint.
        with connect(source, read_only=True, config=SEALED):
            shutil.copy2(source, copy)
            wal = source.with_name(f"{source.name}.wal")
            if wal.exists():
                shutil.copy2(wal, copy.with_name(f"{copy.name}.wal"))
        try:
            with connect(copy, config=SEALED):  # a writable connection brings the copy up to date
                pass
        except duckdb.Error as exc:
            raise WarehouseError(f"{source}: cannot bring it from schema version {version} up to date: {exc}") from exc
        yield copy, version


def _columns(con: duckdb.DuckDBPyConnection, table: str) -> str:
    """This warehouse's columns of a table, named, so both sides are read in the same order."""
    names = [d[0] for d in con.execute(f"select * from main.{table} limit 0").description]
    return ", ".join(f'"{n}"' for n in names)


RESCORED_TABLES = ("instance_stats", "metrics")  # the tables a re-scoring adds a metrics version to
# A run's metrics version, as one value: "run id#version".
VERSION = "run_id || '#' || metrics_version::varchar"


def superseded(con: duckdb.DuckDBPyConnection, src: str) -> tuple[list[str], list[str]]:
    """Runs both sides have where one side's copy is a failed run the other side resumed since: (those
    whose copy here is replaced by the source's, those whose source copy is older than the one here)."""
    replaced = con.execute(
        f"select s.run_id from {src}.runs s join main.runs m using (run_id) "
        "where m.status = 'failed' and s.status != 'running' and s.finished_at > m.finished_at order by 1"
    ).fetchall()
    older = con.execute(
        f"select s.run_id from {src}.runs s join main.runs m using (run_id) "
        "where s.status = 'failed' and (m.status = 'running' or m.finished_at > s.finished_at) order by 1"
    ).fetchall()
    return [r for (r,) in replaced], [r for (r,) in older]


def conflicts(con: duckdb.DuckDBPyConnection, src: str, compared: list[str]) -> list[str]:
    """Of the compared run ids, those whose rows differ in any table, multiplicity included (in the
    re-scored tables, only the metrics versions both sides have)."""
    shared = f"(select {VERSION} from main.metrics intersect select {VERSION} from {src}.metrics)"
    differing: set[str] = set()
    for table in RUN_TABLES:
        cols = _columns(con, table)
        where = "where run_id in (select unnest(?))"
        if table in RESCORED_TABLES:
            where += f" and {VERSION} in {shared}"
        ours, theirs = f"select {cols} from main.{table} {where}", f"select {cols} from {src}.{table} {where}"
        rows = con.execute(
            f"select distinct run_id from (({theirs} except all {ours}) union all ({ours} except all {theirs}))",
            [compared] * 4,
        ).fetchall()
        differing.update(r for (r,) in rows)
    return sorted(differing)


def merge_one(con: duckdb.DuckDBPyConnection, src: str, report: MergeReport) -> None:
    """Copy one attached source's new finished runs, the runs it resumed, the metrics versions it added,
    and its missing cache entries (inside the caller's transaction)."""
    rows = con.execute(
        f"select run_id, status, run_id in (select run_id from main.runs) from {src}.runs order by started_at"
    ).fetchall()
    replaced, older = superseded(con, src)
    here = [r for r, status, present in rows if present and status != "running"]
    compared = [r for r in here if r not in replaced and r not in older]
    refused = conflicts(con, src, compared)
    if refused:
        raise WarehouseError(
            f"{report.source}: run id(s) {', '.join(refused)} exist here with different content; nothing was merged"
        )
    report.runs_skipped = [r for r, status, _ in rows if status == "running"]
    report.runs_present = len(here) - len(replaced)
    report.runs_added = [r for r, status, present in rows if not present and status != "running"]
    report.runs_replaced = replaced
    copied = [*report.runs_added, *replaced] or [""]
    for table in RUN_TABLES:
        con.execute(f"delete from main.{table} where run_id in (select unnest(?))", [replaced or [""]])
    for table in RUN_TABLES:
        cols = _columns(con, table)
        # rowid order: the order a run's rows were written, which re-scoring reads them back in.
        [(count,)] = con.execute(
            f"insert into main.{table} ({cols}) select {cols} from {src}.{table} "
            "where run_id in (select unnest(?)) order by rowid",
            [copied],
        ).fetchall()
        if table != "runs":
            report.rows_added[table] = int(count)
    [(report.rescorings_added,)] = con.execute(
        f"select count(distinct {VERSION}) from {src}.metrics where run_id in (select unnest(?)) "
        f"and {VERSION} not in (select {VERSION} from main.metrics)",
        [compared or [""]],
    ).fetchall()
    for table in RESCORED_TABLES:  # instance_stats first: main.metrics still lacks the new versions
        cols = _columns(con, table)
        [(count,)] = con.execute(
            f"insert into main.{table} ({cols}) select {cols} from {src}.{table} "
            f"where run_id in (select unnest(?)) and {VERSION} not in (select {VERSION} from main.metrics) "
            "order by rowid",
            [compared or [""]],
        ).fetchall()
        report.rows_added[table] += int(count)
    cols = _columns(con, "inference_cache")
    [(before,)] = con.execute("select count(*) from main.inference_cache").fetchall()
    con.execute(f"insert or ignore into main.inference_cache ({cols}) select {cols} from {src}.inference_cache")
    [(after,)] = con.execute("select count(*) from main.inference_cache").fetchall()
    report.cache_added = int(after - before)


def _quoted(path: Path) -> str:
    return str(path).replace("'", "''")


def attach(con: duckdb.DuckDBPyConnection, path: Path, name: str, source: str) -> None:
    """Attach a source read-only, waiting like any connection while another process writes it."""
    try:
        waiting_for_the_lock(
            Path(source), lock_timeout(), lambda: con.execute(f"attach '{_quoted(path)}' as {name} (read_only)")
        )
    except duckdb.Error as exc:
        raise WarehouseError(f"{source}: cannot read it: {exc}") from exc


def seal(con: duckdb.DuckDBPyConnection) -> None:
    """From here on the connection reaches no file but those already open: a view or macro of an attached
    source that reads files fails instead (DuckDB cannot turn this back on for the connection)."""
    for setting, value in SEALED.items():
        con.execute(f"set {setting} = {str(value).lower()}")


class Merge(Connected):
    """Mixin of Warehouse."""

    def merge(self, sources: list[str | Path]) -> list[MergeReport]:
        """Merge every source into this warehouse, all or nothing; one report per source."""
        reports = [MergeReport(str(s)) for s in sources]
        with ExitStack() as stack:
            paths = []
            for report in reports:
                path, version = stack.enter_context(readable(Path(report.source), self.path))
                report.migrated_from = version if version < latest_version() else None
                paths.append(path)
            with self.connect() as con:
                attached = []
                try:
                    for number, path in enumerate(paths):
                        attach(con, path, f"merge_src{number}", reports[number].source)
                        attached.append(f"merge_src{number}")
                    seal(con)
                    for src, report in zip(attached, reports, strict=True):
                        # Again on what is attached: the file may have changed since it was first read.
                        check_catalog(con, src, latest_version(), report.source)
                    with _transaction(con):
                        for src, report in zip(attached, reports, strict=True):
                            merge_one(con, src, report)
                finally:
                    for src in attached:
                        con.execute(f"detach {src}")
        return reports
