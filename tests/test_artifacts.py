"""Prefect artifacts, read back from a real Prefect server through Prefect's client."""

from __future__ import annotations

import hashlib
import json
import os
import re
import signal
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from helmflow.flows.artifacts import artifact_key, publish_refresh, publish_run
from helmflow.flows.refresh import RefreshReport
from helmflow.tasks.metrics.intervals import IntervalMetric
from helmflow.tasks.records import Metric
from helmflow.warehouse.rows import metrics_frame
from helmflow.warehouse.store import Warehouse
from tests.test_schedule import free_port, healthy, wait_for

# The full tier: a real Prefect server, like tests/test_schedule.py.
pytestmark = pytest.mark.model
BIN = Path(sys.executable).parent


def _stored_run(db: Path) -> str:
    """A run written straight into the warehouse: one headline metric with its interval, one without."""
    run_id = uuid.uuid4().hex[:12]
    warehouse = Warehouse(db)
    warehouse.start_run(
        {
            "run_id": run_id,
            "scenario": "mmlu",
            "spec_hash": "h",
            "spec_json": "{}",
            "model": "model-a",
            "model_json": "{}",
            "seed": 0,
            "adapter_json": "{}",
        }
    )
    metrics = [
        IntervalMetric(
            "accuracy", "exact_match", 0.8, 10, headline=True, ci_low=0.49, ci_high=0.94, ci_method="wilson"
        ),
        Metric("accuracy", "quasi_exact_match", 0.8, 10),
    ]
    warehouse.finish_run(run_id, "succeeded", {"metrics": metrics_frame(metrics)}, {"model_calls": 10})
    return run_id


@pytest.mark.slow  # a run and a refresh read back from Prefect's API (about 20 s): make test-slow
def test_run_and_refresh_artifacts_land_under_the_flow_run(tmp_path: Path) -> None:
    from prefect import flow
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId
    from prefect.events.worker import EventsWorker
    from prefect.settings import PREFECT_API_URL, temporary_settings

    db = tmp_path / "w.duckdb"
    run_id = _stored_run(db)
    port = free_port()
    api = f"http://127.0.0.1:{port}/api"
    env = {**os.environ, "PREFECT_HOME": str(tmp_path / "prefect"), "PREFECT_API_URL": api}
    log = (tmp_path / "server.log").open("w")
    server = subprocess.Popen(
        [str(BIN / "prefect"), "server", "start", "--host", "127.0.0.1", "--port", str(port)],
        env=env,
        stdout=log,
        stderr=log,
        start_new_session=True,
    )
    try:
        wait_for(lambda: healthy(api), 120, "the Prefect server")

        @flow(name="artifact-check")
        def publish() -> str:
            from prefect.runtime import flow_run

            report = RefreshReport(
                ran=[run_id],
                fresh=["model-b × mmlu (run x)"],
                reasons={"model-a × mmlu": ["spec_hash changed"]},
                regressions=["model-a on mmlu: exact_match 0.9000 -> 0.8000 (McNemar p = 0.0312; runs y -> z)"],
            )
            assert publish_run(str(db), [run_id])  # what evaluate() does at the end of each run
            assert publish_refresh(report, str(db), ["helm-core"])
            return str(flow_run.id)

        with temporary_settings({PREFECT_API_URL: api}):
            flow_run_id = publish()
            with get_client(sync_client=True) as client:
                found = client.read_artifacts(
                    artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[uuid.UUID(flow_run_id)]))
                )
            # Prefect keeps one events worker for every server given by URL, bound to the first: flush and
            # stop it while this test's server still answers, or it would hold later flows' events for a dead
            # server and block this process's exit.
            EventsWorker.drain_all(timeout=30)
        # Outside a flow run there is nothing to attach artifacts to: nothing is published.
        assert publish_run(str(db), [run_id]) is False
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
        log.close()

    by_key = {a.key: a for a in found}
    # Keyed by what each is about, and by the warehouse: another model, scenario or file never hides it.
    where = hashlib.sha256(str(db.resolve()).encode()).hexdigest()[:8]
    metrics_key, summary_key = f"helmflow-mmlu-model-a-{where}-metrics", f"helmflow-mmlu-model-a-{where}-summary"
    assert set(by_key) == {metrics_key, summary_key, f"helmflow-helm-core-{where}-refresh"}
    table = by_key[metrics_key]
    assert table.type == "table"
    rows = json.loads(table.data) if isinstance(table.data, str) else table.data
    assert rows == [
        {
            "run_id": run_id,
            "scenario": "mmlu",
            "model": "model-a",
            "status": "succeeded",
            "category": "accuracy",
            "metric": "exact_match",
            "value": 0.8,
            "ci_low": 0.49,
            "ci_high": 0.94,
            "interval": "wilson",
            "n": 10,
            "lower_is_better": False,
        }
    ]
    summary = by_key[summary_key].data
    assert f"Run `{run_id}`" in summary and str(db.resolve()) in summary
    assert "exact_match: 0.8 [0.49, 0.94]" in summary
    refresh = by_key[f"helmflow-helm-core-{where}-refresh"].data
    assert "model-a × mmlu: spec_hash changed" in refresh
    assert f"run `{run_id}`" in refresh and "model-b × mmlu (run x)" in refresh
    assert "McNemar p = 0.0312" in refresh


def test_artifact_keys_name_the_pair_and_the_warehouse(tmp_path: Path) -> None:
    """Prefect shows the newest artifact per key: keys in Prefect's alphabet, one per pair and warehouse."""
    here, there = Warehouse(tmp_path / "a.duckdb"), Warehouse(tmp_path / "b" / "a.duckdb")
    key = artifact_key("metrics", ["bigbench_emoji_movie", "hf:HuggingFaceTB/SmolLM2-360M-Instruct"], here)
    where = hashlib.sha256(str((tmp_path / "a.duckdb").resolve()).encode()).hexdigest()[:8]
    assert key == f"helmflow-bigbench-emoji-movie-hf-huggingfacetb-smollm2-360m-instruct-{where}-metrics"
    assert re.fullmatch(r"[a-z0-9-]+", key)
    assert artifact_key("metrics", ["mmlu", "m"], here) != artifact_key("metrics", ["mmlu", "m"], there)
    assert artifact_key("metrics", ["mmlu", "m"], here) != artifact_key("metrics", ["boolq", "m"], here)
    long = artifact_key("summary", ["x" * 300, "y" * 300], here)
    assert long == f"helmflow-{'x' * 40}-{'y' * 40}-{where}-summary"
