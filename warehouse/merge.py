"""Merge other warehouses into this one: many machines (each with its own warehouse), one history.

A run is copied whole — its row and every row of the result tables, in the order they were
written — when this warehouse lacks its run id. A run id both sides have must have the same
content everywhere, else the merge is refused and names it: two different runs under one id
cannot both be history. Runs still `running` on the other side are left for a later merge (a
finished run is never changed afterwards, a running one is). Inference cache entries this
warehouse lacks are copied too, so a run can be resumed or refreshed here from another
machine's answers. All sources land in one transaction: a refused merge changes nothing, and a
repeated one adds nothing.

Sources are never written. One at this helmflow's schema version is attached read-only; an
older one is copied to a temporary folder and the copy brought up to date by the migrations; a
newer one is refused. DuckDB allows one writer per file: a source another process is writing
waits like any other connection (HELMFLOW_DB_LOCK_TIMEOUT), then is refused naming the file.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import duckdb

from helmflow.warehouse.db import Connected, WarehouseError, connect, latest_version, schema_version
from helmflow.warehouse.runs import RESULT_TABLES, _transaction

RUN_TABLES = ("runs", *RESULT_TABLES)


@dataclass
class MergeReport:
    """What one source brought."""

    source: str
    runs_added: list[str] = field(default_factory=list)
    runs_present: int = 0  # the same run already here
    runs_skipped: list[str] = field(default_factory=list)  # still running there
    rows_added: dict[str, int] = field(default_factory=dict)  # by result table
    cache_added: int = 0
    migrated_from: int | None = None  # the source's schema version, when older than this helmflow's


@contextmanager
def readable(source: Path, target: Path) -> Iterator[tuple[Path, int]]:
    """A path to the source's data at this helmflow's schema version (the file itself, or a migrated copy)."""
    if not source.is_file():
        raise WarehouseError(f"{source}: no warehouse file here")
    if target.exists() and source.resolve() == target.resolve():
        raise WarehouseError(f"{source}: this is the warehouse being merged into")
    with connect(source, read_only=True) as con:
        version = schema_version(con)
    latest = latest_version()
    if version == 0:
        raise WarehouseError(f"{source}: not a helmflow warehouse (it has no schema_version table)")
    if version > latest:
        raise WarehouseError(
            f"{source}: schema version {version} is newer than this helmflow knows ({latest}); "
            "merge it with a newer helmflow"
        )
    if version == latest:
        yield source, version
        return
    with tempfile.TemporaryDirectory(prefix="helmflow-merge-") as folder:
        copy = Path(folder) / source.name
        shutil.copy2(source, copy)
        with connect(copy):  # a writable connection brings the copy up to date
            pass
        yield copy, version


def _columns(con: duckdb.DuckDBPyConnection, table: str) -> str:
    """This warehouse's columns of a table, named, so both sides are read in the same order."""
    names = [d[0] for d in con.execute(f"select * from main.{table} limit 0").description]
    return ", ".join(f'"{n}"' for n in names)


def conflicts(con: duckdb.DuckDBPyConnection, src: str) -> list[str]:
    """Run ids on both sides (finished on the source) whose rows differ in any table, multiplicity included."""
    common = (
        f"(select s.run_id from {src}.runs s join main.runs m using (run_id) where s.status != 'running')"
    )
    differing: set[str] = set()
    for table in RUN_TABLES:
        cols = _columns(con, table)
        ours = f"select {cols} from main.{table} where run_id in {common}"
        theirs = f"select {cols} from {src}.{table} where run_id in {common}"
        rows = con.execute(
            f"select distinct run_id from (({theirs} except all {ours}) union all ({ours} except all {theirs}))"
        ).fetchall()
        differing.update(r for (r,) in rows)
    return sorted(differing)


def merge_one(con: duckdb.DuckDBPyConnection, src: str, report: MergeReport) -> None:
    """Copy one attached source's new finished runs and missing cache entries (inside the caller's transaction)."""
    refused = conflicts(con, src)
    if refused:
        raise WarehouseError(
            f"{report.source}: run id(s) {', '.join(refused)} exist here with different content; "
            "nothing was merged"
        )
    rows = con.execute(
        f"select run_id, status, run_id in (select run_id from main.runs) from {src}.runs order by started_at"
    ).fetchall()
    report.runs_skipped = [r for r, status, _ in rows if status == "running"]
    report.runs_present = sum(1 for _, status, here in rows if here and status != "running")
    report.runs_added = [r for r, status, here in rows if not here and status != "running"]
    new = report.runs_added or [""]
    for table in RUN_TABLES:
        cols = _columns(con, table)
        # rowid order: the order a run's rows were written, which re-scoring reads them back in.
        [(count,)] = con.execute(
            f"insert into main.{table} ({cols}) select {cols} from {src}.{table} "
            "where run_id in (select unnest(?)) order by rowid",
            [new],
        ).fetchall()
        if table != "runs":
            report.rows_added[table] = int(count)
    cols = _columns(con, "inference_cache")
    [(before,)] = con.execute("select count(*) from main.inference_cache").fetchall()
    con.execute(f"insert or ignore into main.inference_cache ({cols}) select {cols} from {src}.inference_cache")
    [(after,)] = con.execute("select count(*) from main.inference_cache").fetchall()
    report.cache_added = int(after - before)


def _quoted(path: Path) -> str:
    return str(path).replace("'", "''")


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
                        try:
                            con.execute(f"attach '{_quoted(path)}' as merge_src{number} (read_only)")
                        except duckdb.Error as exc:
                            raise WarehouseError(f"{reports[number].source}: cannot read it: {exc}") from exc
                        attached.append(f"merge_src{number}")
                    with _transaction(con):
                        for src, report in zip(attached, reports, strict=True):
                            merge_one(con, src, report)
                finally:
                    for src in attached:
                        con.execute(f"detach {src}")
        return reports
