"""Progress while a run goes: off a terminal (a log, a pipe, CI), one plain line per chunk answered, with
requests done of the total, the rate and the retries so far; for every backend and the cluster runners."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest

from helmflow.flows import progress, runners
from helmflow.flows.cli import main
from helmflow.flows.display import Display
from helmflow.flows.inference import infer
from helmflow.tasks.models.base import ModelInfo
from helmflow.tasks.records import Completion, Request
from helmflow.warehouse.db import connect
from tests.test_openai_backend import Server
from tests.test_openai_faults import quiz


@pytest.fixture
def ticking(monkeypatch: pytest.MonkeyPatch) -> None:
    """A clock that moves one second each time progress reads it: rates are exact."""
    ticks = itertools.count()
    monkeypatch.setattr(progress, "clock", lambda: float(next(ticks)))


class Counting:
    """A backend that answers -1.0 for every choice, in chunks of 8 (batch size 2); its server needs one
    retry while it answers the second chunk it is given."""

    def __init__(self) -> None:
        self.info = ModelInfo("fake", "fake", "fake@1", "cpu", "float32", 2, 1, None)
        self.retries = 0
        self.chunks = 0

    def loglikelihood(self, requests: list[Request], progress: object = None) -> list[Completion]:
        self.chunks += 1
        self.retries += self.chunks == 2
        return [Completion(r.id, logprobs=[-1.0] * len(r.continuations)) for r in requests]

    def generate(self, requests: list[Request], progress: object = None) -> list[Completion]:
        raise AssertionError("no generation here")


def test_inference_says_one_line_per_chunk_off_a_terminal(
    tmp_path: Path, ticking: None, capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Longest prompt first: r0 … r19, in chunks r0–r7, r8–r15, r16–r19.
    requests = [Request(f"r{i}", f"i{i}", "multiple_choice", "x" * (20 - i), (" a", " b")) for i in range(20)]
    db = str(tmp_path / "w.duckdb")
    infer(Counting(), requests[:4], db, "earlier")  # r0–r3 are in the cache
    display = Display()
    assert not display.live  # stderr is pytest's capture
    with display:
        display.stage("quiz", "20 instances from offline")
        result = infer(Counting(), requests, db, "run-1", progress=progress.InferenceProgress(display, "quiz × fake"))
        display.end_inference()
    assert (result.model_calls, result.cache_hits) == (16, 4)
    assert capsys.readouterr().err.splitlines() == [
        "quiz: 20 instances from offline",
        "quiz × fake: 20 requests, 4 from the cache",
        "quiz × fake: 8/20 requests (40%), 4.0 req/s, 0 retries",  # 4 computed in the first second
        "quiz × fake: 16/20 requests (80%), 6.0 req/s, 1 retry",
        "quiz × fake: 20/20 requests (100%), 5.3 req/s, 1 retry",
    ]


def test_a_retried_inference_task_counts_its_earlier_tries(ticking: None, capsys: pytest.CaptureFixture) -> None:
    report = progress.InferenceProgress(progress.Lines(), "quiz × remote", retried=2)
    report(32, 40, 0)  # what the first tries cached
    report(40, 40, 1)
    assert capsys.readouterr().err.splitlines() == [
        "quiz × remote: 40 requests, 32 from the cache",
        "quiz × remote: 40/40 requests (100%), 8.0 req/s, 3 retries",
    ]


def test_cluster_shards_report_chunk_by_chunk(ticking: None, capsys: pytest.CaptureFixture) -> None:
    """What the flow process says as workers report chunks and shards return (ShardMeter's lines)."""
    meter = runners.ShardMeter(progress.Lines(), "tiny_mc × m (2 shards)", 24, 0)
    meter.chunk(runners.ChunkDone("tiny_mc × m [1/2]", 8, 0))
    meter.chunk(runners.ChunkDone("tiny_mc × m [2/2]", 8, 1))
    meter.shard("tiny_mc × m [1/2]", 8, 0)  # its one chunk was said already: no line
    meter.chunk(runners.ChunkDone("tiny_mc × m [2/2]", 16, 1))
    meter.shard("tiny_mc × m [2/2]", 16, 1)
    meter.close()
    meter.chunk(runners.ChunkDone("tiny_mc × m [2/2]", 16, 1))  # late: after inference ended
    assert capsys.readouterr().err.splitlines() == [
        "tiny_mc × m (2 shards): 24 requests",
        "tiny_mc × m (2 shards): 8/24 requests (33%), 8.0 req/s, 0 retries",
        "tiny_mc × m (2 shards): 16/24 requests (66%), 8.0 req/s, 1 retry",
        "tiny_mc × m (2 shards): 24/24 requests (100%), 8.0 req/s, 1 retry",
    ]


def test_a_flow_run_started_by_prefects_runner_reports_in_lines(monkeypatch: pytest.MonkeyPatch) -> None:
    """`helmflow serve` runs each flow run in a process of its own, where no CLI display was set."""
    monkeypatch.delenv("PREFECT__FLOW_RUN_ID", raising=False)
    assert isinstance(progress.default_reporter(), progress.Silent)
    monkeypatch.setenv("PREFECT__FLOW_RUN_ID", "00000000-0000-0000-0000-000000000000")
    assert isinstance(progress.default_reporter(), progress.Lines)


def test_the_openai_backend_reports_its_retries(tmp_path: Path, ticking: None, capsys: pytest.CaptureFixture) -> None:
    server = Server()
    server.failures = 1  # the first request gets a 503, and is tried again
    try:
        scenario, model_yaml = quiz(tmp_path, server.url, concurrency=4, retry_backoff_s=0)
        db = tmp_path / "w.duckdb"
        assert main(["--db", str(db), "run", str(scenario), "--model", str(model_yaml)]) == 0
    finally:
        server.httpd.shutdown()
        server.httpd.server_close()
    with connect(db, read_only=True) as con:
        [(run_id, fingerprint)] = con.execute("select run_id, model_fingerprint from runs").fetchall()
    # 40 questions in chunks of 4 batches of 4 in flight: 16, 16 and 8.
    assert capsys.readouterr().err.splitlines() == [
        "quiz: 40 instances from offline",
        f"remote: loaded ({fingerprint})",
        "quiz × remote: 40 requests",
        "quiz × remote: 16/40 requests (40%), 16.0 req/s, 1 retry",
        "quiz × remote: 32/40 requests (80%), 16.0 req/s, 1 retry",
        "quiz × remote: 40/40 requests (100%), 13.3 req/s, 1 retry",
        f"quiz × remote: succeeded (run {run_id}; 40 model calls, 0 from the cache)",
    ]
