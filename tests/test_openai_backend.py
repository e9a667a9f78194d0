"""The OpenAI-compatible backend against a small local server on 127.0.0.1 that can misbehave."""

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from helmflow.specs.schema import ModelSpec
from helmflow.tasks.adapt import Request
from helmflow.tasks.models.base import ModelError
from helmflow.tasks.models.openai import ModelServerError, OpenAIModel


class Server:
    """Tokens are words; a word's log-prob is -len(word)/10. Fails the first `failures` requests."""

    def __init__(self) -> None:
        self.failures, self.status, self.delay, self.seen = 0, 503, 0.0, []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                outer.seen.append(body)
                time.sleep(outer.delay)
                if outer.failures > 0:
                    outer.failures -= 1
                    self.send_response(outer.status)
                    self.end_headers()
                    return
                if body.get("echo"):
                    words, offsets, position = body["prompt"].split(" "), [], 0
                    for word in words:
                        offsets.append(position)
                        position += len(word) + 1
                    choice = {
                        "text": body["prompt"],
                        "logprobs": {"token_logprobs": [-len(w) / 10 for w in words], "text_offset": offsets},
                    }
                else:
                    choice = {"text": " blue", "logprobs": {"token_logprobs": [-0.5]}}
                payload = json.dumps({"choices": [choice], "usage": {"prompt_tokens": 3, "completion_tokens": 1}})
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.end_headers()
                self.wfile.write(payload.encode())

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()


@pytest.fixture
def server():
    running = Server()
    yield running
    running.httpd.shutdown()


def model(server: Server, **settings: object) -> OpenAIModel:
    spec = ModelSpec(name="remote", backend="openai", path=server.url, retry_backoff_s=0, **settings)
    return OpenAIModel(spec, sleep=lambda _: None)


def test_loglikelihood_adds_the_continuation_tokens(server: Server) -> None:
    [out] = model(server).loglikelihood([Request("r", "r", "multiple_choice", "The sky is", (" blue", " purple"))])
    # "The sky is blue": tokens at offsets >= 10 are "blue" (-0.4); " purple" -> "purple" (-0.6)
    assert out.logprobs == pytest.approx([-0.4, -0.6])
    assert out.continuation_tokens == [1, 1] and out.prompt_tokens == 3
    assert server.seen[0] == {
        "model": "remote",
        "prompt": "The sky is blue",
        "max_tokens": 0,
        "echo": True,
        "logprobs": 1,
        "temperature": 0,
    }


def test_transient_errors_are_retried(server: Server) -> None:
    server.failures = 2
    backend = model(server, retries=3)
    [out] = backend.generate([Request("g", "g", "generation", "Sky?", max_tokens=3, stop=("\n",))])
    assert (out.text, out.logprobs, backend.calls) == (" blue", [-0.5], 3)


def test_a_server_that_stays_down_raises_after_the_retries(server: Server) -> None:
    server.failures = 10
    backend = model(server, retries=2)
    with pytest.raises(ModelServerError, match="no answer after 3 tries \\(HTTP 503\\)"):
        backend.generate([Request("g", "g", "generation", "Sky?", max_tokens=3)])
    server.failures, server.status = 1, 400
    with pytest.raises(ModelError, match="HTTP 400"):  # not transient: no retry
        model(server, retries=2).generate([Request("g", "g", "generation", "Sky?", max_tokens=3)])


def test_each_request_has_a_timeout(server: Server) -> None:
    # Once the server has answered, a timeout is a hiccup mid-run: retried, then ModelServerError.
    # (A first request that times out fails at once: see test_openai_faults.py.)
    model(server).generate([Request("warm", "warm", "generation", "Sky?", max_tokens=3)])
    server.delay = 1.0
    with pytest.raises(ModelServerError, match="no answer after 2 tries"):
        model(server, retries=1, timeout_s=0.2).generate([Request("g", "g", "generation", "Sky?", max_tokens=3)])


def test_a_server_that_answered_once_is_retried_after_a_refused_connection(server: Server) -> None:
    backend = model(server, retries=2)
    backend.generate([Request("warm", "warm", "generation", "Sky?", max_tokens=3)])
    server.httpd.shutdown()
    server.httpd.server_close()  # the port now refuses connections, as a restarting server's does
    with pytest.raises(ModelServerError, match=r"no answer after 3 tries \(URLError: .*refused"):
        backend.generate([Request("g", "g", "generation", "Sky?", max_tokens=3)])
    assert backend.calls == 4
