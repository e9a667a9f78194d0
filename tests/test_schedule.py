"""A real Prefect server on 127.0.0.1: a cron deployment of the refresh flow, triggered, served, landed."""

import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from helmflow.warehouse.db import connect
from tests.conftest import write

pytestmark = pytest.mark.model

BIN = Path(sys.executable).parent
SUITE = """name: nightly
models: [smollm2-135m-instruct]
scenarios:
  - scenario: mmlu
    groups: [anatomy]
    max_instances: 4
    num_train: 0
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(check, seconds: float, what: str):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        result = check()
        if result:
            return result
        time.sleep(1)
    raise AssertionError(f"timed out waiting for {what}")


def healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/health", timeout=2) as response:
            return response.status == 200
    except OSError:
        return False


@pytest.mark.slow  # a minute: a Prefect `serve` process and a cron slot; make test-slow
def test_cron_deployment_runs_under_serve_and_lands(tmp_path: Path) -> None:
    port = free_port()
    api = f"http://127.0.0.1:{port}/api"
    env = {
        **os.environ,
        "PREFECT_HOME": str(tmp_path / "prefect"),
        "PREFECT_API_URL": api,
        "HELMFLOW_SPEC_PATH": str(tmp_path),
        "HELMFLOW_DB": str(tmp_path / "w.duckdb"),
    }
    write(tmp_path / "suites" / "nightly.yaml", SUITE)
    log = (tmp_path / "processes.log").open("w")
    started = []
    try:
        started.append(
            subprocess.Popen(
                [str(BIN / "prefect"), "server", "start", "--host", "127.0.0.1", "--port", str(port)],
                env=env,
                stdout=log,
                stderr=log,
                start_new_session=True,
            )
        )
        wait_for(lambda: healthy(api), 120, "the Prefect server")

        def cli(*args: str) -> str:
            done = subprocess.run([str(BIN / "helmflow"), *args], env=env, capture_output=True, text=True, timeout=120)
            assert done.returncode == 0, done.stderr
            return done.stdout

        assert "deployment helmflow-refresh/nightly scheduled with cron '0 3 * * *'" in cli(
            "schedule", "nightly", "--cron", "0 3 * * *"
        )
        inspect = subprocess.run(
            [str(BIN / "prefect"), "deployment", "inspect", "helmflow-refresh/nightly"],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert "0 3 * * *" in inspect.stdout
        started.append(
            subprocess.Popen([str(BIN / "helmflow"), "serve"], env=env, stdout=log, stderr=log, start_new_session=True)
        )
        trigger = subprocess.run(
            [str(BIN / "prefect"), "deployment", "run", "helmflow-refresh/nightly"],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        flow_run_id = re.search(r"UUID: ([0-9a-f-]{36})", trigger.stdout).group(1)

        def landed() -> list:
            if not (tmp_path / "w.duckdb").exists():
                return []
            try:
                with connect(tmp_path / "w.duckdb", read_only=True, timeout=2) as con:
                    return con.execute(
                        "select status, flow_run_id, num_instances from runs where status = 'succeeded'"
                    ).fetchall()
            except Exception:
                return []

        assert wait_for(landed, 300, "the run in the warehouse") == [("succeeded", flow_run_id, 4)]

        def completed() -> bool:
            state = subprocess.run(
                [str(BIN / "prefect"), "flow-run", "inspect", flow_run_id],
                env=env,
                capture_output=True,
                text=True,
                timeout=60,
            ).stdout
            return "COMPLETED" in state

        wait_for(completed, 60, "the flow run to complete")
    finally:
        for process in reversed(started):
            try:
                os.killpg(process.pid, signal.SIGTERM)
                process.wait(timeout=20)
            except (ProcessLookupError, subprocess.TimeoutExpired):
                os.killpg(process.pid, signal.SIGKILL)
        log.close()
