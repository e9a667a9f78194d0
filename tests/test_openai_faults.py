"""Faults of an OpenAI-compatible server that must fail loudly, not score: non-finite or null log-probs,
bodies that are not JSON or have no choices, and a server that is not there (closed port, hanging)."""

from __future__ import annotations

import contextlib
import json
import math
import os
import re
import socket
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pandas as pd
import pytest

from helmflow.flows.cli import main
from helmflow.specs.schema import ModelSpec
from helmflow.tasks.metrics import to_prediction
from helmflow.tasks.models.base import ModelError
from helmflow.tasks.models.openai import ModelServerError, OpenAIModel
from helmflow.tasks.records import Completion, Prediction, Request
from helmflow.tasks.validate import ValidationFailed, validate_predictions
from helmflow.warehouse.db import connect
from tests.conftest import write
from tests.test_openai_backend import Server

MC = Request("mc-1", "i1", "multiple_choice", "The sky is", (" blue",))
GEN = Request("gen-1", "i1", "generation", "Sky?", max_tokens=3)


class Listener(ThreadingHTTPServer):
    # The client opens `concurrency` connections at once: past the default listen backlog (5) the kernel drops
    # a connection's SYN and the client retries it a second later, so fewer requests are in the server at once.
    request_queue_size = 128


class CannedServer:
    """Answers every POST with status 200 and `body` (bytes), or sleeps `delay` seconds first."""

    def __init__(self) -> None:
        self.body, self.delay = b"{}", 0.0
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def do_POST(self) -> None:
                self.rfile.read(int(self.headers["Content-Length"]))
                time.sleep(outer.delay)
                # The client may have given up (a timeout test): its closed socket is not this server's error.
                with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                    self.send_response(200)
                    self.end_headers()
                    self.wfile.write(outer.body)

        self.httpd = Listener(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def answer(self, payload: object) -> None:
        # json.dumps writes float('nan') as NaN, as a Python server would; json.loads reads it back.
        self.body = json.dumps(payload).encode()


@pytest.fixture
def server() -> Iterator[CannedServer]:
    running = CannedServer()
    yield running
    running.httpd.shutdown()
    running.httpd.server_close()


def model(url: str, **settings: object) -> OpenAIModel:
    spec = ModelSpec(name="remote", backend="openai", path=url, retry_backoff_s=0, **settings)
    return OpenAIModel(spec, sleep=lambda _: None)


def echo(token_logprobs: list[object]) -> dict[str, object]:
    """An echo answer for "The sky is blue" with one token per word."""
    return {
        "choices": [
            {"text": "The sky is blue", "logprobs": {"token_logprobs": token_logprobs, "text_offset": [0, 4, 8, 11]}}
        ]
    }


def fails(backend: OpenAIModel, request: Request, message: str) -> ModelError:
    run = backend.loglikelihood if request.kind == "multiple_choice" else backend.generate
    with pytest.raises(ModelError, match=re.escape(message)) as failure:
        run([request])
    # A plain ModelError: the flow's infer task retries only ModelServerError.
    assert not isinstance(failure.value, ModelServerError)
    assert backend.calls == 1
    return failure.value


def test_the_first_prompt_token_may_have_a_null_log_prob(server: CannedServer) -> None:
    # Real servers give the first echoed token no log-prob; only the continuation's tokens are summed.
    server.answer(echo([None, -0.2, -0.3, -0.4]))
    [out] = model(server.url).loglikelihood([MC])
    assert out.logprobs == pytest.approx([-0.4]) and out.prompt_tokens == 3


def test_nan_log_probs_are_rejected(server: CannedServer) -> None:
    server.answer(echo([None, -0.2, -0.3, math.nan]))
    error = fails(
        model(server.url), MC, "answered request 'mc-1' with a non-finite log-prob (nan) for continuation ' blue'"
    )
    assert str(error).startswith(f"{server.url}/completions ")
    server.answer({"choices": [{"text": " blue", "logprobs": {"token_logprobs": [-0.1, math.inf]}}]})
    fails(model(server.url), GEN, "answered request 'gen-1' with a non-finite log-prob (inf) for its output tokens")


def test_null_log_probs_are_rejected(server: CannedServer) -> None:
    server.answer(echo([None, -0.2, -0.3, None]))
    fails(model(server.url), MC, f"{server.url}/completions answered request 'mc-1' with a null log-prob")
    server.answer({"choices": [{"text": "The sky is blue", "logprobs": None}]})
    fails(model(server.url), MC, f"{server.url}/completions answered request 'mc-1' without log-probs")
    server.answer({"choices": [{"text": " blue", "logprobs": {"token_logprobs": [None]}}]})
    fails(model(server.url), GEN, f"{server.url}/completions answered request 'gen-1' with a null log-prob")


def test_an_unscored_continuation_is_not_a_certain_one(server: CannedServer) -> None:
    # Offsets that all fall inside the prompt would sum to log-prob 0 (probability 1).
    server.answer({"choices": [{"text": "x", "logprobs": {"token_logprobs": [None, -0.1], "text_offset": [0, 4]}}]})
    fails(model(server.url), MC, "answered request 'mc-1' without a token of continuation ' blue'")


def test_a_body_that_is_not_json(server: CannedServer) -> None:
    server.body = b"<html><body>" + b"Bad Gateway " * 50 + b"</body></html>"
    error = fails(model(server.url), GEN, f"{server.url}/completions answered with something that is not JSON: '<html>")
    # The message shows the start of the body, not all of it.
    assert "Bad Gateway" in str(error) and len(str(error)) < len(server.url) + 300


def test_json_without_choices(server: CannedServer) -> None:
    server.body = b'{"foo": 1}'
    fails(model(server.url), GEN, f"""{server.url}/completions answered without 'choices': '{{"foo": 1}}'""")
    server.body = b'{"choices": []}'
    fails(model(server.url), MC, f"{server.url}/completions answered without 'choices'")


def test_a_closed_port_fails_fast() -> None:
    with socket.socket() as probe:  # a port that nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    # The defaults (4 tries, 1 s back-off) and the real sleep: nothing but the fail-fast keeps this short.
    # The /dead path keeps the URL apart from any server this process has reached before.
    url = f"http://127.0.0.1:{port}/dead/v1"
    backend = OpenAIModel(ModelSpec(name="remote", backend="openai", path=url))
    began = time.perf_counter()
    with pytest.raises(ModelError) as failure:
        backend.generate([GEN])
    assert time.perf_counter() - began < 10
    assert str(failure.value) == f"cannot reach the model server at {url}: connection refused; is it running?"
    assert not isinstance(failure.value, ModelServerError) and backend.calls == 1


def test_a_first_request_that_times_out_is_not_retried(server: CannedServer) -> None:
    server.delay = 1.0
    backend = model(server.url, retries=3, timeout_s=0.2)
    began = time.perf_counter()
    fails(backend, GEN, f"the model server at {server.url} did not answer its first request within 0.2 s")
    assert time.perf_counter() - began < 1.0


def predictions_frame(predictions: list[Prediction]) -> pd.DataFrame:
    """The columns flows/benchmark.py's validate_predictions_stage hands over (warehouse predictions_frame's)."""

    def is_mc(p: Prediction) -> bool:
        return p.request.kind == "multiple_choice"

    return pd.DataFrame(
        {
            "request_id": [p.request.id for p in predictions],
            "produced": [len(p.predicted_text) if is_mc(p) else p.completion.generated_tokens for p in predictions],
            "confidence": [p.confidence for p in predictions],
            "latency_s": [p.completion.latency_s for p in predictions],
            "error": pd.array([p.completion.error for p in predictions], dtype="string"),
            "choice_logprobs": [p.completion.logprobs if is_mc(p) else None for p in predictions],
            "output_logprobs": [None if is_mc(p) else p.completion.logprobs for p in predictions],
            "choice_baseline_logprobs": [p.completion.baseline_logprobs or None for p in predictions],
        }
    )


def test_validation_fails_on_nan_log_probs_and_names_the_request() -> None:
    choices = ("blue", "red")
    request = Request("r-nan", "i1", "multiple_choice", "Sky?", (" A", " B"), choices=choices)
    fine = Request("r-ok", "i2", "multiple_choice", "Sky?", (" A", " B"), choices=choices)
    generated = Request("r-gen", "i3", "generation", "Sky?", max_tokens=3)
    predictions = [
        # What the issue saw: a NaN log-prob still has an argmax, so the prediction looked correct.
        to_prediction(request, Completion("r-nan", logprobs=[math.nan, -2.0], latency_s=0.1)),
        to_prediction(fine, Completion("r-ok", logprobs=[-1.0, -2.0], latency_s=0.1)),
        to_prediction(generated, Completion("r-gen", logprobs=[math.nan], text="x", generated_tokens=1, latency_s=0.1)),
    ]
    results = validate_predictions(predictions_frame(predictions), expected_requests=3)
    failed = {(json.loads(r.kwargs).get("column"), tuple(r.unexpected_ids)) for r in results if not r.success}
    assert ("logprobs_finite", ("r-nan", "r-gen")) in failed
    assert ("confidence_finite", ("r-nan", "r-gen")) in failed
    assert all("r-ok" not in ids for _, ids in failed)
    message = str(ValidationFailed(results))
    assert '"column": "logprobs_finite"' in message and "r-nan, r-gen" in message


def test_validation_fails_on_a_nan_confidence_and_names_the_request() -> None:
    frame = pd.DataFrame(
        {
            "request_id": ["ok", "nan-conf", "inf-conf", "no-logprobs", "errored"],
            "produced": [1, 1, 1, 2, 0],
            "confidence": [0.5, math.nan, math.inf, None, None],
            "latency_s": [0.1] * 5,
            "error": pd.array([None, None, None, None, "timeout"], dtype="string"),
            "choice_logprobs": [[-0.1, -2.0], [-0.1, -2.0], [-0.1, -2.0], None, None],
            # A generation without output log-probs has no confidence to give: that is not a failure.
            "output_logprobs": [None, None, None, [], None],
        }
    )
    results = validate_predictions(frame, expected_requests=5)
    failed = {(json.loads(r.kwargs).get("column"), tuple(r.unexpected_ids)) for r in results if not r.success}
    assert failed == {("confidence", ("inf-conf",)), ("confidence_finite", ("nan-conf", "inf-conf"))}


# -- whole runs through the CLI against a local fake server ----------------------------------------

KEY = "sk-helmflow-test-9c41e07d2b"
QUIZ = """name: quiz
source:
  offline: {files: {test: quiz.jsonl}}
fields: {input: q, choices: opts, answer: gold}
metrics: [accuracy]
"""


def quiz(tmp_path: Path, server_url: str, **settings: object) -> tuple[Path, Path]:
    """A 40-question scenario (the last question's prompt is the shortest, so it is asked last) and
    a model spec for the server."""
    rows = [{"q": f"Question {i} " + "padding " * (40 - i), "opts": ["w", "x", "y", "z"], "gold": 0} for i in range(40)]
    write(tmp_path / "quiz.jsonl", "".join(json.dumps(row) + "\n" for row in rows))
    scenario = write(tmp_path / "quiz.yaml", QUIZ)
    extra = "".join(f"{name}: {value}\n" for name, value in settings.items())
    model_yaml = write(tmp_path / "remote.yaml", f"name: remote\nbackend: openai\npath: {server_url}\n{extra}")
    return scenario, model_yaml


def every_byte_under(folder: Path) -> bytes:
    return b"".join(p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file())


def test_the_api_key_never_reaches_the_warehouse_logs_or_prefect(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture, caplog: pytest.LogCaptureFixture
) -> None:
    server = Server()
    server.key = KEY
    monkeypatch.setenv("HELMFLOW_TEST_API_KEY", KEY)
    try:
        scenario, model_yaml = quiz(tmp_path, server.url, api_key_env="HELMFLOW_TEST_API_KEY", concurrency=4)
        db = tmp_path / "w.duckdb"
        assert main(["-v", "--db", str(db), "run", str(scenario), "--model", str(model_yaml)]) == 0
    finally:
        server.httpd.shutdown()
        server.httpd.server_close()
    assert len(server.seen) == 160  # 40 questions × 4 letters, every one with the key (else a 401)
    with connect(db, read_only=True) as con:
        [(status, model_json)] = con.execute("select status, model_json from runs").fetchall()
    assert status == "succeeded" and '"api_key_env":"HELMFLOW_TEST_API_KEY"' in model_json
    captured = capsys.readouterr()
    prefect_home = Path(os.environ["PREFECT_HOME"])  # the flow run's parameters are stored there
    for where, data in {
        "warehouse": every_byte_under(tmp_path),
        "output": (captured.out + captured.err + caplog.text).encode(),
        "prefect": every_byte_under(prefect_home),
    }.items():
        assert KEY.encode() not in data, where
    assert b"HELMFLOW_TEST_API_KEY" in every_byte_under(tmp_path)  # the name is kept, as it should be


def test_a_failed_request_with_concurrency_fails_the_run_and_resume_finishes_it(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    server = Server()
    server.status, server.failures = 400, 0
    # Only requests about the last question (asked last) fail, so earlier chunks are stored first.
    server.delay = lambda body: fail_once(server, body)
    try:
        scenario, model_yaml = quiz(tmp_path, server.url, concurrency=4)
        db = tmp_path / "w.duckdb"
        assert main(["--db", str(db), "run", str(scenario), "--model", str(model_yaml)]) == 1
        with connect(db, read_only=True) as con:
            [(run_id, status, error)] = con.execute("select run_id, status, error from runs").fetchall()
            stored = con.execute("select count(*) from inference_cache").fetchone()[0]
        assert status == "failed" and f"{server.url}/completions: HTTP 400" in error
        # Inference chunks hold 4 batches of 4 in flight: 16, 16 and 8 questions. The first two are stored;
        # the third fails with its question 39, and what the third had received before is dropped with it.
        assert stored == 32
        assert main(["--db", str(db), "run", "--resume", run_id]) == 0
    finally:
        server.httpd.shutdown()
        server.httpd.server_close()
    with connect(db, read_only=True) as con:
        [(status, calls, hits)] = con.execute("select status, model_calls, cache_hits from runs").fetchall()
        predicted = con.execute("select count(*) from predictions where predicted_index is not null").fetchone()[0]
    assert (status, calls, hits, predicted) == ("succeeded", 8, 32, 40)


def fail_once(server: Server, body: dict) -> float:
    """The fake server's delay hook: the first request about question 39 gets server.status."""
    if body.get("prompt", "").startswith("Question 39 ") and not getattr(server, "failed_once", False):
        server.failed_once = True
        server.failures = 1
    return 0.0
