"""openai_async.AsyncClient against the fake server: the same answers as openai_client.Client, in order,
with the same retries, Retry-After, fail-fast and key scrubbing."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest

from helmflow.specs.schema import ModelSpec
from helmflow.tasks.adapt import Request
from helmflow.tasks.models.base import ModelError
from helmflow.tasks.models.openai import OpenAIModel
from helmflow.tasks.models.openai_async import AsyncClient
from helmflow.tasks.models.openai_client import Client, ModelServerError, _answered
from tests.fake_openai_server import FakeServer, serve


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeServer]:
    # jitter: answers take 0 to 5 ms by prompt, so they arrive out of the order they were sent.
    with serve(jitter_ms=5) as running:
        yield running


@pytest.fixture(autouse=True)
def no_faults(fake: FakeServer) -> Iterator[None]:
    fake.set_faults()
    yield
    fake.set_faults()


def spec(url: str, **settings: object) -> ModelSpec:
    return ModelSpec(name="remote", backend="openai", path=url, **{"retry_backoff_s": 0, **settings})  # type: ignore[arg-type]


def mmlu_body(i: int, letter: str) -> dict[str, object]:
    prompt = f"Question {i}: which of these is right?\nA. one\nB. two\nC. three\nD. four\nAnswer:"
    return {"prompt": prompt + f" {letter}", "max_tokens": 0, "echo": True, "logprobs": 1, "temperature": 0}


BODIES = [mmlu_body(i, letter) for i in range(30) for letter in "ABCD"]
BODIES += [{"prompt": [f"Sky {i} is", f"Grass {i} is"], "max_tokens": 0, "echo": True, "logprobs": 1} for i in range(5)]
BODIES += [{"prompt": f"Count to {i}", "max_tokens": 3, "temperature": 0, "logprobs": 1} for i in range(5)]


def test_the_same_answers_in_the_same_order_as_the_threaded_client(fake: FakeServer) -> None:
    old, new = Client(spec(fake.url, concurrency=16)), AsyncClient(spec(fake.url, concurrency=16))
    try:
        with ThreadPoolExecutor(max_workers=16) as pool:  # as OpenAIModel._in_order sends them today
            expected = list(pool.map(lambda body: old.post(old.base + "/completions", body), BODIES))
        assert new.post_many(new.base + "/completions", BODIES) == expected
        timed = new.post_many_timed(new.base + "/completions", BODIES[:8])
        assert [answer for answer, _ in timed] == expected[:8] and all(s > 0 for _, s in timed)
        assert new.post(new.base + "/completions", BODIES[-1]) == expected[-1]
        assert new.served_model() == old.served_model() == {"id": "fake", "object": "model"}
        assert new.calls == len(BODIES) + 9 and new.retries == 0
    finally:
        old.close()
        new.close()


def test_a_drop_in_client_for_the_backend_scores_the_same(fake: FakeServer) -> None:
    requests = [Request(f"r{i}", f"r{i}", "multiple_choice", f"Question {i}?\nAnswer:", (" A", " B")) for i in range(8)]
    threaded = OpenAIModel(spec(fake.url, concurrency=4))
    swapped = OpenAIModel(spec(fake.url, concurrency=4))
    swapped.client.close()
    swapped.client = AsyncClient(swapped.spec)  # type: ignore[assignment]  # post() from _in_order's threads
    expected = [c.logprobs for c in threaded.loglikelihood(requests)]
    assert [c.logprobs for c in swapped.loglikelihood(requests)] == expected


def test_503s_are_retried_with_back_off_and_a_429_waits_for_retry_after(fake: FakeServer) -> None:
    waits: list[float] = []
    client = AsyncClient(spec(fake.url, retries=3, retry_backoff_s=0.5), sleep=waits.append)
    url = client.base + "/completions"
    fake.set_faults(fail=2, status=503)
    assert client.post(url, BODIES[0])["choices"][0]["text"] == BODIES[0]["prompt"]
    assert (client.calls, client.retries, waits) == (3, 2, [0.5, 1.0])
    waits.clear()
    fake.set_faults(fail=1, status=429, retry_after=7)
    client.post(url, BODIES[0])
    assert waits == [7.0]  # longer than the back-off: Retry-After decides
    waits.clear()
    fake.set_faults(fail=3, status=503)  # three of a batch fail once each: all retried, order kept
    assert client.post_many(url, BODIES[:12]) == [client.post(url, body) for body in BODIES[:12]]
    assert len(waits) == 3
    fake.set_faults(fail=10, status=503)
    with pytest.raises(ModelServerError, match=r"no answer after 4 tries \(HTTP 503\)"):
        client.post(url, BODIES[0])
    fake.set_faults(fail=1, status=400)  # not transient: no retry, a plain ModelError
    with pytest.raises(ModelError, match="HTTP 400") as failure:
        client.post_many(url, BODIES[:4])
    assert not isinstance(failure.value, ModelServerError)
    client.close()


def test_a_server_that_never_answered_fails_fast() -> None:
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    url = f"http://127.0.0.1:{port}/async-dead/v1"
    client = AsyncClient(spec(url, retries=3), sleep=lambda _: pytest.fail("a dead server is not retried"))
    with pytest.raises(ModelError) as failure:
        client.post_many(url + "/completions", BODIES[:3])
    assert str(failure.value) == f"cannot reach the model server at {url}: connection refused; is it running?"
    assert client.served_model() is None


def test_a_first_request_that_times_out_is_not_retried_but_a_later_one_is() -> None:
    with serve() as slow:
        _answered.discard(slow.url)  # a port an earlier server of this session had: not answered by this one
        slow.set_faults(delay_s=1.0)
        client = AsyncClient(spec(slow.url, retries=2, timeout_s=0.2))
        with pytest.raises(ModelError, match=r"did not answer its first request within 0\.2 s") as first:
            client.post(client.base + "/completions", BODIES[0])
        assert not isinstance(first.value, ModelServerError) and client.calls == 1
        slow.set_faults()
        client.post(client.base + "/completions", BODIES[0])  # it has answered now
        slow.set_faults(delay_s=1.0)
        with pytest.raises(ModelServerError, match=r"no answer after 3 tries \(ReadTimeout"):
            client.post(client.base + "/completions", BODIES[0])
    # The same server gone: a refused connection mid-run is retried, with httpx's wording.
    with pytest.raises(ModelServerError, match=r"no answer after 3 tries \(ConnectError: .*refused"):
        client.post(client.base + "/completions", BODIES[0])


KEY = "sk-right-5d1e0c9a77"


def test_the_api_key_is_sent_and_never_shown(monkeypatch: pytest.MonkeyPatch) -> None:
    with serve(key=KEY) as keyed:
        monkeypatch.setenv("HELMFLOW_TEST_KEY", KEY)
        client = AsyncClient(spec(keyed.url, api_key_env="HELMFLOW_TEST_KEY"))
        # A prompt that holds the key comes back echoed: the answer has it scrubbed, as Client's has.
        answer = client.post(client.base + "/completions", {**BODIES[0], "prompt": f"say {KEY} now"})
        assert KEY not in str(answer) and answer["choices"][0]["text"] == "say *** now"
        # A wrong key: the server's 401 quotes it back, the error message must not.
        monkeypatch.setenv("HELMFLOW_TEST_KEY", "sk-wrong-0000000000")
        wrong = AsyncClient(spec(keyed.url, api_key_env="HELMFLOW_TEST_KEY"))
        with pytest.raises(ModelError, match="HTTP 401") as failure:
            wrong.post_many(wrong.base + "/completions", BODIES[:4])
        assert "sk-wrong" not in str(failure.value) and "***" in str(failure.value)
        assert "sk-wrong" not in repr(failure.value.__cause__) + repr(failure.value.__context__)


@pytest.mark.parametrize(
    "raw",
    [
        b'{"choices": [{"logprobs": {"token_logprobs": [null, -0.5, NaN, Infinity]}}]}',  # Python servers write NaN
        b"<html><body>" + b"Bad Gateway " * 50 + b"</body></html>",
        b'{"foo": 1}',
        b'{"choices": []}',
        b'{"choices": [{"text": "caf\u00e9 \ud83d\ude00", "n": 1234567890123456789}]}',
        b'{"choices": [{"text": "\xff bytes"}]}',  # not UTF-8: orjson refuses it, the old path replaces it
    ],
)
def test_bodies_parse_as_the_threaded_client_parses_them(raw: bytes) -> None:
    old, new = Client(spec("http://127.0.0.1:9/v1")), AsyncClient(spec("http://127.0.0.1:9/v1"))
    try:
        expected: object = old._parse("u", raw)
    except ModelError as error:
        expected = str(error)
    try:
        got: object = new._parse("u", raw)
    except ModelError as error:
        got = str(error)
    if isinstance(expected, dict):
        assert repr(got) == repr(expected)  # repr: nan shows as nan, and a float for an int would show
    else:
        assert got == expected
    old.close()
    new.close()


def test_the_one_known_difference_an_integer_past_64_bits_becomes_a_float() -> None:
    """orjson reads an integer of more than 64 bits as a float (json.loads keeps it exact). No field the backend
    reads is such a number (token counts, indices); log-probs are floats either way."""
    client = AsyncClient(spec("http://127.0.0.1:9/v1"))
    answer = client._parse("u", b'{"choices": [{"n": 12345678901234567890123}]}')
    assert answer["choices"][0]["n"] == float(12345678901234567890123)
    client.close()


def test_the_collector_is_paused_only_while_a_batch_is_in_flight(fake: FakeServer) -> None:
    import gc

    client = AsyncClient(spec(fake.url))
    url = client.base + "/completions"
    seen: list[tuple[int, bool]] = []
    fake.set_faults(delay_s=0.3)  # long enough for a progress report while the requests are in flight
    client.post_many(url, BODIES[:40], progress=lambda done, total: seen.append((done, gc.isenabled())))
    assert seen[-1] == (40, True) and gc.isenabled()  # the last report comes after the batch: collector on
    assert len(seen) > 1 and not any(enabled for _, enabled in seen[:-1])  # the ones while in flight: off
    fake.set_faults()
    fake.set_faults(fail=1, status=400)
    with pytest.raises(ModelError):
        client.post_many(url, BODIES[:4])
    assert gc.isenabled()  # back on after a failure too
    gc.disable()
    try:
        client.post_many(url, BODIES[:4])
        assert not gc.isenabled()  # a caller that had it off keeps it off
    finally:
        gc.enable()
    client.close()


def test_a_client_made_before_a_fork_works_in_the_child(fake: FakeServer) -> None:
    """A forked worker has none of the parent's threads: the client starts its own loop there."""
    import os

    client = AsyncClient(spec(fake.url))
    url = client.base + "/completions"
    expected = client.post(url, BODIES[0])
    read, write = os.pipe()
    child = os.fork()
    if child == 0:  # pragma: no cover - the child's result comes back through the pipe
        try:
            os.write(write, b"same" if client.post_many(url, BODIES[:1]) == [expected] else b"different")
        finally:
            os._exit(0)
    os.close(write)
    with os.fdopen(read, "rb") as answer:
        assert answer.read() == b"same"
    os.waitpid(child, 0)
    assert client.post(url, BODIES[0]) == expected  # the parent's loop is untouched
    client.close()
