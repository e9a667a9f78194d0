"""`helmflow query` is read-only in fact: DuckDB's own guards refuse every way out of the warehouse."""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import time
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
    "set memory limit": "set memory_limit = '100GB'",
    "set temp directory": "set temp_directory = '{d}/spill'",
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


@pytest.mark.parametrize(
    ("sql", "flags", "message"),
    [
        # 400 million list elements: 6.8 GB before the memory limit was set and locked.
        (
            "select list(range) from range(400000000)",
            ["--memory-limit", "256"],
            "query: needs more than 256 MB of memory (raise the bound with --memory-limit MB)",
        ),
        # A cross join over 10^13 rows ran until killed from outside.
        (
            "select count(*) from range(1000000000000) a, range(10) b",
            ["--timeout", "1"],
            "query: stopped after 1 s (raise the bound with --timeout SECONDS)",
        ),
        # DuckDB's memory limit does not cover the result handed to Python (this became 15 GB of pandas).
        (
            "select * from range(1000000000)",
            [],
            "query: the result has more than 1,000,000 rows; add a LIMIT or aggregate "
            "(or raise the bound with --max-rows)",
        ),
        (
            "select repeat('x', 100000) from range(2000)",
            ["--memory-limit", "64"],
            "query: the result takes more than 64 MB; select fewer rows or columns "
            "(or raise the bound with --memory-limit)",
        ),
    ],
)
def test_a_query_past_its_bounds_stops_with_one_line(
    sql: str, flags: list[str], message: str, warehouse: Path, capsys: pytest.CaptureFixture
) -> None:
    capsys.readouterr()
    code = main(["--db", str(warehouse), "query", sql, *flags])
    assert (code, capsys.readouterr().err) == (2, message + "\n")


def test_raised_bounds_let_a_larger_result_through(warehouse: Path, capsys: pytest.CaptureFixture) -> None:
    capsys.readouterr()
    assert (
        main(["--db", str(warehouse), "query", "select * from range(300)", "--format", "csv", "--max-rows", "299"]) == 2
    )
    assert (
        main(["--db", str(warehouse), "query", "select * from range(300)", "--format", "csv", "--max-rows", "300"]) == 0
    )
    assert capsys.readouterr().out.splitlines()[-1] == "299"


def test_ctrl_c_stops_a_running_query_with_one_line(warehouse: Path) -> None:
    helmflow = Path(sys.executable).with_name("helmflow")
    process = subprocess.Popen(
        [str(helmflow), "--db", str(warehouse), "query", "select count(*) from range(1000000000000) a, range(10) b"],
        stderr=subprocess.PIPE,
        text=True,
        # A shell's background job ignores SIGINT; a user's terminal does not.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    time.sleep(3)  # started, and inside the query
    process.send_signal(signal.SIGINT)
    _, err = process.communicate(timeout=30)
    assert (process.returncode, err) == (130, "interrupted\n")
