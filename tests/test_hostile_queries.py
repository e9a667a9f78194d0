"""`helmflow query` is read-only in fact: DuckDB's own guards refuse every way out of the warehouse."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from helmflow.flows.cli import main
from helmflow.warehouse.store import Warehouse


@pytest.fixture
def warehouse(tmp_path: Path) -> Path:
    db = tmp_path / "w.duckdb"
    Warehouse(db).start_run(
        {
            "run_id": "r1",
            "scenario": "s",
            "spec_hash": "h",
            "spec_json": "{}",
            "model": "m",
            "model_json": "{}",
            "seed": 0,
            "adapter_json": "{}",
        }
    )
    Warehouse(tmp_path / "other.duckdb").check()
    os.link(db, tmp_path / "hard.duckdb")
    return db


def digest(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir()) if p.is_file()}


HOSTILE = {
    "copy to": "copy runs to '{d}/stolen.csv'",
    "copy query to": "copy (select 1) to '{d}/other.duckdb'",
    "attach writable": "attach '{d}/other.duckdb' as o (read_only false)",
    "attach read-only": "attach '{d}/other.duckdb' as o (read_only)",
    "attach hard link": "attach '{d}/hard.duckdb' as h",
    "export database": "export database '{d}/dump'",
    "install": "install httpfs",
    "load": "load httpfs",
    "read_text": "select * from read_text('/etc/hostname')",
    "read_csv": "select * from read_csv('/etc/passwd')",
    "read_csv of the warehouse's folder": "select * from read_csv('{d}/*.duckdb')",
    "set threads": "set threads = 1",
    "set external access": "set enable_external_access = true",
    "delete": "delete from runs",
    "drop": "drop table runs",
}


@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_hostile_query_is_refused_and_changes_nothing(
    name: str, warehouse: Path, capsys: pytest.CaptureFixture
) -> None:
    folder = warehouse.parent
    before = digest(folder)
    capsys.readouterr()
    code = main(["--db", str(warehouse), "query", HOSTILE[name].format(d=folder)])
    err = capsys.readouterr().err
    assert code == 2
    assert err.startswith("query failed: ")
    assert any(
        reason in err
        for reason in (
            "file system operations are disabled by configuration",
            "Loading external extensions is disabled",
            "the configuration has been locked",
            "read-only mode",
        )
    ), err
    assert digest(folder) == before  # no byte changed, no file created
    assert sorted(p.name for p in folder.iterdir()) == ["hard.duckdb", "other.duckdb", "w.duckdb"]


def test_several_statements_are_refused(warehouse: Path, capsys: pytest.CaptureFixture) -> None:
    capsys.readouterr()
    code = main(["--db", str(warehouse), "query", "select 1; select count(*) from runs"])
    assert code == 2
    assert capsys.readouterr().err.strip() == (
        "query: give exactly one SQL statement (got 2); run `helmflow query` once for each"
    )


def test_a_plain_select_still_works(warehouse: Path, capsys: pytest.CaptureFixture) -> None:
    capsys.readouterr()
    assert main(["--db", str(warehouse), "query", "select run_id, status from runs", "--format", "csv"]) == 0
    assert capsys.readouterr().out == "run_id,status\nr1,running\n"
