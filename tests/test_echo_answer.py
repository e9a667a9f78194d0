"""tasks/models/echo_answer.py: the typed decode of an echo answer reads what orjson's dicts give for the
fields scoring reads, and gives None (the generic parse) for whatever does not fit; through the backend,
log-likelihoods are the same as the old threaded client's on the same requests."""

from __future__ import annotations

from collections.abc import Iterator

import orjson
import pytest

from helmflow.specs.schema import ModelSpec
from helmflow.tasks.adapt import Request
from helmflow.tasks.models.echo_answer import decode_echo
from helmflow.tasks.models.openai import OpenAIModel
from helmflow.tasks.models.openai_client import Client
from tests.fake_openai_server import FakeServer, serve

ECHO = {
    "id": "cmpl-1",
    "object": "text_completion",
    "choices": [
        {
            "index": 1,
            "text": "Q: A",
            "finish_reason": "length",
            "logprobs": {
                "tokens": ["Q", ":", " A"],
                "token_logprobs": [None, -0.25, -1],  # an integer log-prob is a number too
                "text_offset": [0, 1, 2],
                "top_logprobs": [None, {":": -0.25}, {" B": -0.5}],
            },
        },
        {"index": 0, "logprobs": {"token_logprobs": [None, -2.5e-3], "text_offset": [0, 3]}},
    ],
    "usage": {"prompt_tokens": 3},
}


def _read(answer: dict[str, object]) -> list[tuple[object, ...]]:
    """The fields OpenAIModel._echo_scored and _scored read, as they read them."""
    out = []
    for choice in answer["choices"]:  # type: ignore[attr-defined]
        logprobs = choice.get("logprobs") or {}
        out.append(
            (choice.get("index"), logprobs.get("token_logprobs"), logprobs.get("text_offset"), logprobs.get("tokens"))
        )
    return out


def test_the_typed_decode_reads_what_orjson_reads() -> None:
    raw = orjson.dumps(ECHO)
    typed = decode_echo(raw)
    assert typed is not None
    assert _read(typed) == _read(orjson.loads(raw))
    assert typed["choices"][0]["logprobs"]["token_logprobs"] == [None, -0.25, -1.0]
    assert typed["choices"][1]["logprobs"]["tokens"] is None


@pytest.mark.parametrize(
    "raw",
    [
        b'{"choices": [{"logprobs": {"token_logprobs": [null, NaN], "text_offset": [0, 1]}}]}',  # not JSON
        b'{"choices": [{"logprobs": {"token_logprobs": [null, "-0.5"], "text_offset": [0, 1]}}]}',
        b'{"choices": [{"logprobs": {"token_logprobs": [null, true], "text_offset": [0, 1]}}]}',
        b'{"choices": [{"logprobs": {"text_offset": [0, 1]}}]}',
        b'{"choices": []}',
        b'{"foo": 1}',
        b"<html>Bad Gateway</html>",
    ],
)
def test_what_does_not_fit_the_types_goes_to_the_generic_parse(raw: bytes) -> None:
    assert decode_echo(raw) is None


def test_no_log_probs_at_all_decodes_as_none_as_orjson_reads_it() -> None:
    raw = b'{"choices": [{"index": 0, "text": "x"}]}'
    assert _read(decode_echo(raw)) == _read(orjson.loads(raw)) == [(0, None, None, None)]  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeServer]:
    with serve(jitter_ms=3) as running:
        yield running


def test_log_likelihoods_equal_the_threaded_client_s_on_the_same_requests(fake: FakeServer) -> None:
    """The whole path (async transport, typed decode, scoring) against the old one (threads, json.loads)."""
    exemplars = "".join(f"Question {j}: what is {j} + {j}?\nA. {j}\nB. {2 * j}\nAnswer: B\n\n" for j in range(5))
    requests = [
        Request(
            f"r{i}", f"r{i}", "multiple_choice", f"{exemplars}Question {i}: which?\nA. x\nB. y\nAnswer:", (" A", " B")
        )
        for i in range(24)
    ]
    spec = ModelSpec(name="remote", backend="openai", path=fake.url, concurrency=8, retry_backoff_s=0)  # type: ignore[arg-type]
    model = OpenAIModel(spec)
    old = Client(spec)
    try:
        new = model.loglikelihood(requests)
        for request, completion in zip(requests, new, strict=True):
            expected = []
            for k in range(len(request.continuations)):
                group = [(request, k)]
                expected += model._echo_scored(group, old.post(old.base + "/completions", model._echo_body(group)))
            assert completion.logprobs == [sum(lps) for lps, _ in expected]
            assert completion.continuation_tokens == [len(lps) for lps, _ in expected]
            assert completion.prompt_tokens == expected[-1][1]
    finally:
        old.close()
        model.client.close()
