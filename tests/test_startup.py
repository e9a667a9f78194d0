"""Before the flow: Prefect's temporary server started by helmflow, Great Expectations in its worker
process, and the `helmflow` command's exit."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pandas as pd
import pytest

from helmflow.flows.validation_process import ValidationWorker
from helmflow.tasks.validate import validate_instances

SERVER_SCRIPT = textwrap.dedent(
    """
    import os, sys
    from helmflow.flows.temporary_server import start_prefect_api
    server = start_prefect_api()
    server.wait_until_healthy()
    from prefect import flow
    from prefect.settings import get_current_settings

    @flow
    def answer() -> int:
        return 42

    assert answer() == 42
    # This process reached the server through the URL, without importing Prefect's server package.
    assert os.environ["PREFECT_API_URL"] == get_current_settings().api.url == server.api_url
    assert "prefect.server.api.server" not in sys.modules
    print(server.process.pid)
    """
)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return Path(f"/proc/{pid}/stat").is_file() and Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"


def _environment(tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"}
    return {**env, "PREFECT_HOME": str(tmp_path / "prefect")}


@pytest.mark.slow  # a real Prefect server started and stopped (about 20 s): make test-slow
def test_a_flow_runs_on_the_temporary_server_which_stops_with_the_process(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-c", SERVER_SCRIPT], env=_environment(tmp_path), capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert not _alive(int(done.stdout.split()[-1]))


def test_a_configured_prefect_api_is_used_as_it_is(tmp_path: Path) -> None:
    script = "from helmflow.flows.temporary_server import start_prefect_api; print(start_prefect_api())"
    env = {**_environment(tmp_path), "PREFECT_API_URL": "http://127.0.0.1:9/api"}
    done = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=120)
    assert (done.returncode, done.stdout.strip()) == (0, "None"), done.stderr[-2000:]


def test_the_command_exits_with_its_code_and_its_output(tmp_path: Path) -> None:
    """console_main skips the interpreter's teardown, not the output, the exit code or the exit hooks."""
    command = [sys.executable, "-m", "helmflow.flows.cli", "--db", str(tmp_path / "w.duckdb")]
    env = _environment(tmp_path)
    listed = subprocess.run([*command, "specs", "list"], env=env, capture_output=True, text=True, timeout=120)
    assert listed.returncode == 0 and "mmlu" in listed.stdout.split(), listed
    missing = subprocess.run([*command, "run", "nowhere.yaml"], env=env, capture_output=True, text=True, timeout=120)
    assert missing.returncode == 2
    assert missing.stderr.strip().startswith("error:") and "nowhere.yaml" in missing.stderr


def test_the_validation_worker_returns_what_checking_here_returns() -> None:
    frame = pd.DataFrame(
        {
            "instance_id": ["a", "b", "c"],
            "input": ["one", "two", ""],
            "n_choices": [2, 2, 0],
            "gold_index": pd.array([1, 2, None], dtype="Int64"),
        }
    )
    here = validate_instances(frame)
    worker = ValidationWorker()
    worker.start()
    try:
        there = worker.run(validate_instances, frame)
    finally:
        worker.stop()
    assert there == here
    assert not worker.started and worker.run(validate_instances, frame) == here  # stopped: checks here again
    assert [(r.expectation, r.unexpected_ids) for r in there if not r.success] == [
        ("expect_column_value_lengths_to_be_between", ["c"]),
        ("expect_column_pair_values_a_to_be_greater_than_b", ["b"]),
    ]


@pytest.mark.slow  # a real Prefect server and a kill -9 (about 20 s): make test-slow
def test_the_temporary_server_ends_with_a_process_killed_outright(tmp_path: Path) -> None:
    """SIGKILL runs no exit hook: the server asked Linux for SIGTERM when its parent ends."""
    import time

    script = textwrap.dedent(
        """
        import os, signal
        from helmflow.flows.temporary_server import start_prefect_api
        server = start_prefect_api()
        server.wait_until_healthy()
        print(server.process.pid, flush=True)
        os.kill(os.getpid(), signal.SIGKILL)
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script], env=_environment(tmp_path), capture_output=True, text=True, timeout=300
    )
    assert done.returncode == -9, done.stderr[-2000:]
    server = int(done.stdout.split()[-1])
    deadline = time.monotonic() + 20
    while _alive(server) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not _alive(server)


@pytest.mark.slow  # a real server start that times out (about 20 s): make test-slow
def test_a_server_that_does_not_start_is_an_error_without_a_traceback(tmp_path: Path) -> None:
    import json

    (tmp_path / "d.jsonl").write_text(json.dumps({"q": "2+2?", "opts": ["3", "4"], "gold": 1}) + "\n")
    spec = tmp_path / "local.yaml"
    spec.write_text(
        "name: local\nsource: {offline: {files: {test: d.jsonl}}}\nfields: {input: q, choices: opts, answer: gold}\n"
    )
    env = {**_environment(tmp_path), "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "0"}
    command = [sys.executable, "-m", "helmflow.flows.cli", "--db", str(tmp_path / "w.duckdb"), "run", str(spec)]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 1, done.stderr[-2000:]
    assert done.stderr.strip().splitlines()[-1] == (
        "error: Prefect's temporary server did not answer within 0 s (PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS)"
    )
    assert "Traceback" not in done.stderr


def test_preflight_prepares_every_scenario_of_a_suite(tmp_path: Path) -> None:
    """Each scenario's checks go to the worker (here: no worker started, so in this process), all of them."""
    import json

    from helmflow.flows.plans import run_targets
    from helmflow.flows.prepare import plan_key, preflight

    refs = []
    for name in ("one", "two"):
        rows = [{"q": f"{name} {i}?", "opts": ["a", "b"], "gold": i % 2} for i in range(3)]
        (tmp_path / f"{name}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
        spec = tmp_path / f"{name}.yaml"
        spec.write_text(
            f"name: {name}\nsource: {{offline: {{files: {{test: {name}.jsonl}}}}}}\n"
            "fields: {input: q, choices: opts, answer: gold}\n"
        )
        refs.append(str(spec))
    plans = run_targets(refs, None).plans
    prepared = preflight(plans, 0, "auto", ValidationWorker(), [])()
    assert sorted(p.plan.spec.name for p in prepared.values()) == ["one", "two"]
    assert set(prepared) == {plan_key(plan, 0, "auto") for plan in plans}
    assert all(len(p.instances) == 3 and all(c.success for c in p.checks) for p in prepared.values())


def test_a_scenario_whose_data_is_not_here_is_set_aside_and_recorded_as_a_failed_run(tmp_path: Path) -> None:
    """HELM's core suite on a machine without the Hub: the scenarios with their data run, the others are set aside
    with one line each (then one failed run per model says it); with none left, the reason is raised."""
    import json

    from helmflow.flows.pipeline import record_unavailable
    from helmflow.flows.plans import run_targets
    from helmflow.flows.prepare import preflight
    from helmflow.flows.progress import Lines
    from helmflow.specs.library import find_model
    from helmflow.tasks.data import DataUnavailable
    from helmflow.warehouse.store import Warehouse

    (tmp_path / "here.jsonl").write_text(json.dumps({"q": "x?", "opts": ["a", "b"], "gold": 0}) + "\n")
    for name, data in (("here", "here.jsonl"), ("away", "nowhere.jsonl")):
        (tmp_path / f"{name}.yaml").write_text(
            f"name: {name}\nsource: {{offline: {{files: {{test: {data}}}}}}}\n"
            "fields: {input: q, choices: opts, answer: gold}\n"
        )
    plans = run_targets([str(tmp_path / "here.yaml"), str(tmp_path / "away.yaml")], None).plans
    unavailable: list = []
    prepared = preflight(plans, 0, "auto", ValidationWorker(), unavailable)()
    assert [p.plan.spec.name for p in prepared.values()] == ["here"]
    [(plan, reason)] = unavailable
    assert plan.spec.name == "away" and reason == f"data file not found: {tmp_path / 'nowhere.jsonl'}"
    with pytest.raises(DataUnavailable, match=r"nowhere\.jsonl"):
        preflight(plans[1:], 0, "auto", ValidationWorker(), [])

    db = str(tmp_path / "w.duckdb")
    outcome = record_unavailable(plan, find_model("smollm2-135m-instruct"), 0, db, reason, Lines())
    assert outcome.status == "failed" and outcome.error == f"DataUnavailable: {reason}"
    row = Warehouse(db).query(f"select scenario, model, status, error from runs where run_id = '{outcome.run_id}'")
    assert row.values.tolist() == [["away", "smollm2-135m-instruct", "failed", f"DataUnavailable: {reason}"]]


def test_only_the_last_run_to_finish_is_told_it_is_the_last(monkeypatch: pytest.MonkeyPatch) -> None:
    """run_pairs tells finish() which run is the command's last (its checks are the last: evaluate's validation
    worker may stop before that run's write), whichever order the runs finish in."""
    from types import SimpleNamespace

    from helmflow.flows import pipeline

    class Executor:
        def __init__(self, done_at_once: set[str]) -> None:
            self.done_at_once, self.waiting = done_at_once, []

        def __enter__(self) -> Executor:
            return self

        def __exit__(self, *exc: object) -> None:
            pass

        def submit(self, run: object) -> None:
            self.waiting.append(run)

        def finished(self, wait: bool):
            ready = [r for r in self.waiting if wait or r.run_id in self.done_at_once]
            self.waiting = [r for r in self.waiting if r not in ready]
            yield from ready

    told: list[tuple[str, bool]] = []
    monkeypatch.setattr(pipeline, "start", lambda pair, *a: SimpleNamespace(run_id=pair))
    monkeypatch.setattr(pipeline, "finish", lambda run, context, db, last=False: told.append((run.run_id, last)))
    for at_once, order in (({"a", "b", "c"}, ["a", "b", "c"]), (set(), ["a", "b", "c"]), ({"c"}, ["c", "a", "b"])):
        told.clear()
        pipeline.run_pairs(["a", "b", "c"], Executor(at_once), None, 0, None, None)  # type: ignore[arg-type]
        assert told == [(r, r == order[-1]) for r in order]
