"""tasks/models/echo_answer.py: the typed decode of an echo answer reads what orjson's dicts give for the
fields scoring reads, and gives None (the generic parse) for whatever does not fit; through the backend,
log-likelihoods are the same as the old threaded client's on the same requests."""

from __future__ import annotations

import json
from collections.abc import Iterator

import orjson
import pytest

from helmflow.specs.schema import ModelSpec
from helmflow.tasks.adapt import Request
from helmflow.tasks.models.base import ModelError
from helmflow.tasks.models.echo_answer import EchoedLogprobs, decode_echo
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
    """The fields OpenAIModel._echo_scored and _scored read, as they read them (the raw arrays decoded whole)."""
    out = []
    for choice in answer["choices"]:  # type: ignore[attr-defined]
        logprobs = choice.get("logprobs") or {}
        if isinstance(logprobs, EchoedLogprobs):
            logprobs = logprobs.lists()
        out.append(
            (choice.get("index"), logprobs.get("token_logprobs"), logprobs.get("text_offset"), logprobs.get("tokens"))
        )
    return out


def test_the_typed_decode_reads_what_orjson_reads() -> None:
    raw = orjson.dumps(ECHO)
    typed = decode_echo(raw)
    assert typed is not None
    assert _read(typed) == _read(orjson.loads(raw))
    assert typed["choices"][0]["logprobs"].lists()["token_logprobs"] == [None, -0.25, -1]
    assert typed["choices"][1]["logprobs"].lists()["tokens"] is None


@pytest.mark.parametrize(
    "raw",
    [
        b'{"choices": [{"logprobs": {"token_logprobs": [null, NaN], "text_offset": [0, 1]}}]}',  # not JSON
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


def _choice(
    words: list[str], logprobs: list[object], offsets: list[object] | None = None, indent: bool = False
) -> tuple[dict[str, object], dict[str, object]]:
    """One echo choice as the typed decode gives it and as orjson gives it, from the same bytes."""
    if offsets is None:
        offsets = [sum(len(w) for w in words[:i]) for i in range(len(words))]
    choice = {"index": 0, "logprobs": {"tokens": words, "token_logprobs": logprobs, "text_offset": offsets}}
    answer = {"choices": [choice]}
    raw = json.dumps(answer, indent=1).encode() if indent else orjson.dumps(answer)
    typed = decode_echo(raw)
    assert typed is not None
    return typed["choices"][0], orjson.loads(raw)["choices"][0]


def _both(model: OpenAIModel, typed: dict[str, object], plain: dict[str, object], request: Request) -> object:
    """_scored on the arrays read from the end and on orjson's dicts: the same value, or the same error."""
    outcomes = []
    for choice in (typed, plain):
        try:
            outcomes.append(model._scored(choice, request, request.continuations[0]))
        except ModelError as exc:
            outcomes.append(str(exc))
    assert outcomes[0] == outcomes[1]
    return outcomes[0]


@pytest.fixture(scope="module")
def model(fake: FakeServer) -> Iterator[OpenAIModel]:
    spec = ModelSpec(name="remote", backend="openai", path=fake.url)  # type: ignore[arg-type]
    made = OpenAIModel(spec)
    yield made
    made.client.close()


@pytest.mark.parametrize("indent", [False, True])  # JSON with whitespace and newlines between the numbers
@pytest.mark.parametrize("bos", [False, True])
@pytest.mark.parametrize("generated", [0, 3])  # tokens after the echoed text (echo_max_tokens)
@pytest.mark.parametrize("continuation_words", [1, 2, 11, 40])  # past 8 and 16 tokens: the read doubles
def test_reading_from_the_end_finds_what_reading_whole_finds(
    model: OpenAIModel, indent: bool, bos: bool, generated: int, continuation_words: int
) -> None:
    prompt_words = [f"w{i} " for i in range(30)] + ["Answer:"]
    continuation = [f" c{i}" for i in range(continuation_words)]
    words = (["<s>"] if bos else []) + prompt_words + continuation + [" g"] * generated
    logprobs: list[object] = [None] + [-(i % 7) - 0.125 for i in range(1, len(words))]
    logprobs[-1] = -3  # an integer log-prob is a number too
    request = Request("r", "r", "multiple_choice", "".join(prompt_words), ("".join(continuation),))
    typed, plain = _choice(words, logprobs, indent=indent)
    scored, prompt_tokens = _both(model, typed, plain, request)  # type: ignore[misc]
    first = len(words) - generated - continuation_words
    assert prompt_tokens == first
    assert scored == [float(lp) for lp in logprobs[first : first + continuation_words]]  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "logprobs, offsets, expected",
    [
        # A string log-prob in the continuation: the whole path's message.
        ([None, -1.0, "-0.5"], None, "with a non-finite log-prob ('-0.5') for continuation ' b'"),
        ([None, -1.0, True], None, "with a non-finite log-prob (True) for continuation ' b'"),
        ([None, -1.0, None], None, "with a null log-prob for continuation ' b'"),
        # Lengths that differ, and offsets that go back: read whole, as before.
        ([None, -1.0], None, "with 2 log-probs but 3 token offsets"),
        # Offsets 0, 3, 1 against the prompt's end at 3: the token at 3 is scored, two start before it.
        ([None, -1.0, -0.5], [0, 3, 1], ([-1.0], 2)),
        ([None, -1.0, -0.5], [0, None, 3], "expected"),
    ],
)
def test_what_reading_from_the_end_does_not_accept_is_read_whole(
    model: OpenAIModel, logprobs: list[object], offsets: list[object] | None, expected: object
) -> None:
    request = Request("r", "r", "multiple_choice", "Q a", (" b",))
    words = ["Q", " a", " b"]
    typed, plain = _choice(words, logprobs, offsets if offsets is not None else [0, 1, 3])
    try:
        outcome = _both(model, typed, plain, request)
    except TypeError as exc:  # a null offset: the whole path's comparison fails as it always has
        outcome = f"expected: {exc}"
    if isinstance(expected, str):
        assert isinstance(outcome, str) and expected in outcome
    else:
        assert outcome == expected
