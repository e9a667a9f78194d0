"""A run killed with SIGKILL mid-way and resumed ends with the predictions of an uninterrupted run."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from helmflow.flows.cli import main
from helmflow.warehouse.db import WarehouseError, connect
from tests.conftest import mmlu_plain, write

pytestmark = pytest.mark.model

# MMLU from the embedded copy, zero-shot, no perturbations: 100 requests, two chunks of 64.
SCENARIO = mmlu_plain("[accuracy, calibration, efficiency]", 100)

PREDICTION = "select request_id, completion, predicted_index, choice_logprobs, prompt from predictions order by 1"


def cached(db: Path) -> int:
    try:
        with connect(db, read_only=True, timeout=5) as con:
            return con.execute("select count(*) from inference_cache").fetchone()[0]
    except (WarehouseError, Exception):
        return 0


@pytest.mark.slow  # a killed run, its resume and a clean run of 100 instances (minutes): make test-slow
def test_killed_then_resumed_equals_uninterrupted(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    spec = write(tmp_path / "mmlu_plain.yaml", SCENARIO)
    killed_db = tmp_path / "killed.duckdb"
    child = subprocess.Popen(
        [sys.executable, "-m", "helmflow.flows.cli", "--db", str(killed_db), "run", str(spec)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=os.environ.copy(),
        start_new_session=True,
    )
    deadline = time.monotonic() + 300
    while cached(killed_db) == 0:  # wait for the first chunk to be stored
        assert child.poll() is None and time.monotonic() < deadline
        time.sleep(0.5)
    # The whole process group: the run and the temporary Prefect server it started.
    os.killpg(child.pid, signal.SIGKILL)
    child.wait()
    with connect(killed_db, read_only=True) as con:
        [(run_id, status)] = con.execute("select run_id, status from runs").fetchall()
        stored = con.execute("select count(*) from inference_cache").fetchone()[0]
    assert status == "running" and 0 < stored < 100

    assert main(["--db", str(killed_db), "run", "--resume", run_id]) == 0
    clean_db = tmp_path / "clean.duckdb"
    assert main(["--db", str(clean_db), "run", str(spec)]) == 0
    with connect(killed_db, read_only=True) as con:
        resumed = con.execute(PREDICTION).fetchall()
        [(status, calls, hits)] = con.execute("select status, model_calls, cache_hits from runs").fetchall()
    with connect(clean_db, read_only=True) as con:
        uninterrupted = con.execute(PREDICTION).fetchall()
    assert status == "succeeded" and hits == stored and calls == 100 - stored
    assert len(resumed) == 100 and resumed == uninterrupted
    capsys.readouterr()
    assert main(["--db", str(killed_db), "run", "--resume", run_id]) == 2  # a finished run is not resumed
    assert "only a failed or interrupted run can be resumed" in capsys.readouterr().err
