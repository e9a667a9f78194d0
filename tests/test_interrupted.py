"""A run killed mid-way leaves no run that looks complete."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from helmflow.flows.cli import main
from helmflow.warehouse import runs as writer
from helmflow.warehouse.db import WarehouseError, connect

pytestmark = pytest.mark.model


def statuses(db: Path) -> list[str]:
    try:
        with connect(db, read_only=True, timeout=5) as con:
            return [s for (s,) in con.execute("select status from runs").fetchall()]
    except WarehouseError:
        return []


def test_sigkill_during_inference(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    db = tmp_path / "killed.duckdb"
    child = subprocess.Popen(
        [sys.executable, "-m", "helmflow.flows.cli", "--db", str(db), "run", "quickstart", "--max-instances", "400"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=os.environ.copy(),
        start_new_session=True,
    )
    deadline = time.monotonic() + 300
    while not (db.exists() and statuses(db)):
        assert child.poll() is None, "the run ended before it could be killed"
        assert time.monotonic() < deadline
        time.sleep(0.5)
    time.sleep(3)  # inference is under way: its row says running
    # The whole process group: the run and the temporary Prefect server it started.
    os.killpg(child.pid, signal.SIGKILL)
    child.wait()

    assert statuses(db) == ["running"]
    with connect(db, read_only=True) as con:
        for table in writer.RESULT_TABLES:
            assert con.execute(f"select count(*) from {table}").fetchone()[0] == 0, table
    capsys.readouterr()
    main(["--db", str(db), "runs"])
    assert "failed (interrupted)" in capsys.readouterr().out
    with connect(db) as con:  # the next writer records it
        writer.reap_interrupted(con)
    assert statuses(db) == ["failed"]
