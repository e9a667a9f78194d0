"""The OpenAI-compatible backend against a small local server on 127.0.0.1 that can misbehave."""

import json
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from helmflow.specs.schema import ModelSpec
from helmflow.tasks.adapt import Request
from helmflow.tasks.models.base import ModelError
from helmflow.tasks.models.openai import ModelServerError, OpenAIModel


class Listener(ThreadingHTTPServer):
    # The client opens `concurrency` connections at once: past the default listen backlog (5) the kernel drops
    # a connection's SYN and the client retries it a second later, so fewer requests are in the server at once.
    request_queue_size = 128


class Server:
    """Tokens are words; a word's log-prob is -len(word)/10. Fails the first `failures` requests.

    `prompt` may be a list (answered in reverse order, with indices). Chat requests get `chat_answer`;
    GET /v1/models lists `models` (404 when None); with `key` set, a request without the bearer key
    gets a 401 whose body quotes the key it was sent, as some hosted APIs do.
    """

    def __init__(self, keep_alive: bool = False) -> None:
        self.failures, self.status, self.delay, self.seen = 0, 503, 0.0, []
        self.generation: Callable[[str], str] = lambda prompt: " blue"
        self.chat_answer, self.models, self.key, self.retry_after = " B. Paris", None, None, None
        self.echo: Callable[[str], dict] = echoed  # how the prompt comes back with its tokens' log-probs
        self.error_padding = ""  # text the 401 message puts before the key it quotes
        self.ports, self.arrivals, self.in_flight, self.peak = set(), [], 0, 0
        self.lock = threading.Lock()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            # HTTP/1.1 keeps connections open (pooling shows in the client ports); 1.0 closes each.
            protocol_version = "HTTP/1.1" if keep_alive else "HTTP/1.0"

            def log_message(self, *args: object) -> None:
                pass

            def reply(self, status: int, payload: object, headers: dict[str, str] | None = None) -> None:
                data = json.dumps(payload).encode()
                # No longer in flight once the answer is on its way: the client may send its next request
                # before this handler thread would otherwise get to count this one out.
                with outer.lock:
                    if getattr(self, "counted", False):
                        outer.in_flight -= 1
                        self.counted = False
                self.send_response(status)
                for name, value in {"Content-Type": "application/json", **(headers or {})}.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self) -> None:
                if outer.models is None:
                    self.reply(404, {"error": "no such route"})
                else:
                    self.reply(200, {"object": "list", "data": outer.models})

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                with outer.lock:
                    outer.seen.append(body)
                    outer.ports.add(self.client_address[1])
                    outer.arrivals.append(time.monotonic())
                    outer.in_flight += 1
                    outer.peak = max(outer.peak, outer.in_flight)
                    self.counted = True
                try:
                    self.answer(body)
                finally:
                    with outer.lock:
                        if self.counted:
                            outer.in_flight -= 1
                            self.counted = False

            def answer(self, body: dict) -> None:
                sent = self.headers.get("Authorization", "")
                if outer.key and sent != f"Bearer {outer.key}":
                    quoted = f"{outer.error_padding}Incorrect API key provided: {sent.removeprefix('Bearer ')}"
                    self.reply(401, {"error": quoted})
                    return
                time.sleep(outer.delay(body) if callable(outer.delay) else outer.delay)
                with outer.lock:
                    failing = outer.failures > 0
                    outer.failures -= failing
                if failing:
                    retry = {"Retry-After": str(outer.retry_after)} if outer.retry_after else {}
                    self.reply(outer.status, {"error": "busy"}, retry)
                elif "messages" in body:
                    message = {"role": "assistant", "content": outer.chat_answer}
                    self.reply(200, {"choices": [{"index": 0, "message": message}], "usage": {"completion_tokens": 2}})
                elif isinstance(body["prompt"], list):
                    choices = [{**outer.echo(p), "index": i} for i, p in enumerate(body["prompt"])]
                    self.reply(200, {"choices": choices[::-1]})
                elif body.get("echo"):
                    self.reply(200, {"choices": [outer.echo(body["prompt"])]})
                else:
                    choice = {"text": outer.generation(body["prompt"]), "logprobs": {"token_logprobs": [-0.5]}}
                    self.reply(200, {"choices": [choice], "usage": {"prompt_tokens": 3, "completion_tokens": 1}})

        self.httpd = Listener(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()


def echoed(prompt: str) -> dict:
    """The echo answer: one token per word, each at its character offset."""
    words, offsets, position = prompt.split(" "), [], 0
    for word in words:
        offsets.append(position)
        position += len(word) + 1
    return {"text": prompt, "logprobs": {"token_logprobs": [-len(w) / 10 for w in words], "text_offset": offsets}}


def echoed_bpe(prompt: str, bos: str = "") -> dict:
    """The echo answer of a BPE server: a token is a word with the whitespace before it (" yes"), and with
    `bos` the server echoes that token first and counts its text in the offsets (as vLLM does)."""
    import re

    found = list(re.finditer(r"\s?\S+", prompt))
    tokens = [bos] * bool(bos) + [m.group() for m in found]
    offsets = [0] * bool(bos) + [len(bos) + m.start() for m in found]
    logprobs = [None] * bool(bos) + [-len(m.group().strip()) / 10 for m in found]
    return {"text": prompt, "logprobs": {"tokens": tokens, "token_logprobs": logprobs, "text_offset": offsets}}


@pytest.fixture
def server():
    running = Server()
    yield running
    running.httpd.shutdown()
    running.httpd.server_close()


def model(server: Server, **settings: object) -> OpenAIModel:
    spec = ModelSpec(name="remote", backend="openai", path=server.url, retry_backoff_s=0, **settings)
    return OpenAIModel(spec, sleep=lambda _: None)


def test_loglikelihood_adds_the_continuation_tokens(server: Server) -> None:
    [out] = model(server).loglikelihood([Request("r", "r", "multiple_choice", "The sky is", (" blue", " purple"))])
    # "The sky is blue": tokens at offsets >= 10 are "blue" (-0.4); " purple" -> "purple" (-0.6)
    assert out.logprobs == pytest.approx([-0.4, -0.6])
    assert out.continuation_tokens == [1, 1] and out.prompt_tokens == 3
    # The two continuations go out concurrently: compare in prompt order.
    first, second = sorted(server.seen, key=lambda body: body["prompt"])
    assert first == {
        "model": "remote",
        "prompt": "The sky is blue",
        "max_tokens": 0,
        "echo": True,
        "logprobs": 1,
        "temperature": 0,
    }
    assert second == {**first, "prompt": "The sky is purple"}


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
    with pytest.raises(ModelServerError, match=r"no answer after 3 tries \(ConnectError: .*refused"):
        backend.generate([Request("g", "g", "generation", "Sky?", max_tokens=3)])
    assert backend.calls == 4


GEN_REQUESTS = [Request(f"g{i}", f"g{i}", "generation", f"q{i}", max_tokens=3) for i in range(24)]


def test_answers_come_back_in_request_order_with_concurrency_in_flight() -> None:
    server = Server(keep_alive=True)
    server.generation = lambda prompt: f" re {prompt}"
    # Later requests answer sooner, so the answers arrive out of order. Each waits at least 0.25 s: long
    # enough for all 8 to be in the server at once even when the machine is busy (0.05 s was not, in CI).
    server.delay = lambda body: 0.02 * (24 - int(body["prompt"][1:])) / 24 + 0.25
    try:
        backend = model(server, concurrency=8)
        out = backend.generate(GEN_REQUESTS)
    finally:
        server.httpd.shutdown()
        server.httpd.server_close()
    assert [c.text for c in out] == [f" re q{i}" for i in range(24)]
    assert [c.request_id for c in out] == [r.id for r in GEN_REQUESTS]
    assert server.peak == 8 and backend.calls == 24
    # One pool of kept-alive connections: at most `concurrency` client ports for 24 requests.
    assert len(server.ports) <= 8
    assert backend.info.batch_size == 8  # what inference chunks by: 8 in flight × 1 prompt each


def test_concurrency_one_sends_one_at_a_time(server: Server) -> None:
    out = model(server, concurrency=1).generate(GEN_REQUESTS[:5])
    assert [c.text for c in out] == [" blue"] * 5 and server.peak == 1


def test_max_requests_per_minute_spaces_the_requests(server: Server) -> None:
    spec = ModelSpec(name="remote", backend="openai", path=server.url, max_requests_per_minute=600)
    OpenAIModel(spec).generate(GEN_REQUESTS[:6])  # the real sleep: 600 a minute is one per 0.1 s
    gaps = [b - a for a, b in zip(server.arrivals, server.arrivals[1:], strict=False)]
    # Sends are spaced 0.1 s apart; arrivals jitter on a busy machine, so check the span and a loose minimum.
    assert len(gaps) == 5 and sum(gaps) >= 0.45 and min(gaps) >= 0.05


def test_several_prompts_in_one_request_give_the_same_scores(server: Server) -> None:
    requests = [
        Request("a", "a", "multiple_choice", "The sky is", (" blue", " purple", " green")),
        Request("b", "b", "multiple_choice", "Grass is", (" green", " red")),
    ]
    one = model(server, batch_size=1, concurrency=1).loglikelihood(requests)
    server.seen.clear()
    three = model(server, batch_size=3).loglikelihood(requests)
    # 5 prompts in requests of 3 and 2, answered in reverse order with indices (see Server).
    assert [body["prompt"] for body in server.seen if len(body["prompt"]) == 3] == [
        ["The sky is blue", "The sky is purple", "The sky is green"]
    ]
    assert sorted(len(body["prompt"]) for body in server.seen) == [2, 3]
    assert [c.logprobs for c in three] == [c.logprobs for c in one]
    assert three[0].logprobs == pytest.approx([-0.4, -0.6, -0.5]) and three[1].logprobs == pytest.approx([-0.5, -0.3])
    assert [c.batch_size for c in three] == [3, 2]  # prompts per HTTP request


def test_a_429_waits_as_long_as_retry_after_says(server: Server) -> None:
    server.failures, server.status, server.retry_after = 1, 429, 7
    waits: list[float] = []
    spec = ModelSpec(name="remote", backend="openai", path=server.url, retry_backoff_s=0.5)
    [out] = OpenAIModel(spec, sleep=waits.append).generate(GEN_REQUESTS[:1])
    assert out.text == " blue" and waits == [7.0]


def test_chat_sends_the_messages_and_cuts_at_the_stop_sequence(server: Server) -> None:
    server.chat_answer = "Paris\nand more"
    backend = model(server, chat=True, system_prompt="Be brief.")
    [out] = backend.generate([Request("g", "g", "generation", "Capital of France?", max_tokens=7, stop=("\n",))])
    assert server.seen == [
        {
            "model": "remote",
            "messages": [
                {"role": "system", "content": "Be brief."},
                {"role": "user", "content": "Capital of France?"},
            ],
            "max_tokens": 7,
            "temperature": 0,
            "logprobs": True,
            "stop": ["\n"],
        }
    ]
    assert backend.messages("Capital of France?") == server.seen[0]["messages"]
    assert (out.text, out.logprobs, out.generated_tokens) == ("Paris", [], 2)


def test_chat_multiple_choice_is_scored_by_the_generated_letter(server: Server) -> None:
    backend = model(server, chat=True)
    mmlu = Request("m", "m", "multiple_choice", "Q?\nA. x\nB. y\nC. z\nAnswer:", (" A", " B", " C"))
    [named] = backend.loglikelihood([mmlu])
    assert named.logprobs == [-100.0, 0.0, -100.0] and named.error is None and named.text == " B. Paris"
    assert backend.info.fingerprint.endswith("+mc-by-letter")
    assert server.seen[0]["messages"] == [{"role": "user", "content": mmlu.prompt}]
    assert server.seen[0]["max_tokens"] == 5
    server.chat_answer = "A good question."  # the article "A" is not an answer
    [unnamed] = backend.loglikelihood([mmlu])
    assert unnamed.error == "no option letter in the chat answer 'A good question.'"
    with pytest.raises(ModelError, match="only by naming an option letter"):
        backend.loglikelihood([Request("s", "s", "multiple_choice", "Sky:", (" blue", " red"))])


def test_the_fingerprint_records_what_the_server_reports(server: Server) -> None:
    assert model(server).info.fingerprint == f"{server.url}#@unversioned"  # no /models: the spec's words
    server.models = [{"id": "org/served-7b", "object": "model", "revision": "3f2a9c"}]
    assert model(server).info.fingerprint == f"{server.url}#org/served-7b@3f2a9c"
    server.models = [{"id": "other"}, {"id": "remote", "version": "v2"}]
    assert model(server).info.fingerprint == f"{server.url}#remote@v2"
    chat = model(server, chat=True, system_prompt="Be brief.").info.fingerprint
    assert chat.startswith(f"{server.url}#remote@v2+chat(system:") and chat.endswith(")+mc-by-letter")
    assert chat != model(server, chat=True).info.fingerprint  # another system prompt, other answers


def test_the_api_key_is_sent_and_never_shown(server: Server, monkeypatch: pytest.MonkeyPatch) -> None:
    server.key = "sk-test-4f9a1c0e77"
    monkeypatch.setenv("HELMFLOW_TEST_KEY", server.key)
    [out] = model(server, api_key_env="HELMFLOW_TEST_KEY").generate(GEN_REQUESTS[:1])
    assert out.text == " blue"
    # A wrong key: the server's 401 quotes it back, the error message must not.
    monkeypatch.setenv("HELMFLOW_TEST_KEY", "sk-wrong-0000000000")
    with pytest.raises(ModelError, match="HTTP 401") as failure:
        model(server, api_key_env="HELMFLOW_TEST_KEY").generate(GEN_REQUESTS[:1])
    assert "sk-wrong" not in str(failure.value) and "***" in str(failure.value)
    monkeypatch.delenv("HELMFLOW_TEST_KEY")
    with pytest.raises(ModelError, match="api_key_env names HELMFLOW_TEST_KEY, which is not set or empty"):
        model(server, api_key_env="HELMFLOW_TEST_KEY")


def test_one_failure_among_concurrent_requests_fails_the_call_with_the_url(server: Server) -> None:
    server.failures, server.status = 1, 400
    with pytest.raises(ModelError, match=f"{server.url}/completions: HTTP 400"):
        model(server, concurrency=4).generate(GEN_REQUESTS[:12])


def test_a_prompts_trailing_space_belongs_to_the_continuation(server: Server) -> None:
    """BIG-bench prompts end in "A: ": the server's token " yes" starts at that space, and is scored."""
    server.echo = echoed_bpe
    request = Request("r", "r", "multiple_choice", "Is it?\nA: ", ("yes", "no way"))
    [out] = model(server).loglikelihood([request])
    assert out.logprobs == pytest.approx([-0.3, -0.2 - 0.3]) and out.continuation_tokens == [1, 2]
    assert out.prompt_tokens == 3  # "Is", " it?", "\nA:"


@pytest.mark.parametrize("bos", ["<s>", "<|begin_of_text|>"])
def test_offsets_that_count_an_echoed_bos_token_are_read_past_it(server: Server, bos: str) -> None:
    request = Request("r", "r", "multiple_choice", "The sky is", (" blue", " deep purple"))
    server.echo = echoed_bpe
    [plain] = model(server).loglikelihood([request])
    server.echo = lambda prompt: echoed_bpe(prompt, bos)
    [shifted] = model(server).loglikelihood([request])
    assert shifted.logprobs == plain.logprobs == pytest.approx([-0.4, -0.4 - 0.6])
    assert shifted.prompt_tokens == plain.prompt_tokens + 1  # the BOS token is the prompt's too


def test_a_key_quoted_far_into_an_error_body_is_hidden_whole(server: Server, monkeypatch: pytest.MonkeyPatch) -> None:
    server.key, server.error_padding = "sk-right-0000000000", "x" * 230  # the key lands where a cut would fall
    monkeypatch.setenv("HELMFLOW_TEST_KEY", "sk-proj-Q7x9Lm2Pq8Rt5Vw3Yz6Bc1Df4Gh7Jk0")
    with pytest.raises(ModelError, match="HTTP 401") as failure:
        model(server, api_key_env="HELMFLOW_TEST_KEY").generate(GEN_REQUESTS[:1])
    assert "Q7x9" not in str(failure.value)


def test_chat_letters_are_whole_words(server: Server) -> None:
    backend = model(server, chat=True)
    options = tuple(f" {letter}" for letter in "ABCDEFGHIJ")
    question = Request("m", "m", "multiple_choice", "Q?\nAnswer:", options)
    for answer, chosen in [("(C)", 2), ("**B**", 1), ("D) Paris", 3), ("B, since", 1), ("I'm not sure", None),
                           ("E.g., B", None), ("A/B", None), ("D-Day", None), ("A good one", None)]:  # fmt: skip
        server.chat_answer = answer
        [out] = backend.loglikelihood([question])
        assert (out.logprobs.index(0.0) if 0.0 in out.logprobs else None) == chosen, answer


def test_a_stated_chat_answer_is_scored_as_its_letter(server: Server) -> None:
    """A chat model that says "The answer is D." chose D; one that names E among four options chose none."""
    from helmflow.tasks.metrics import to_prediction

    backend = model(server, chat=True)
    question = Request("m", "m", "multiple_choice", "Q?\nA. w\nB. x\nC. y\nD. z\nAnswer:", (" A", " B", " C", " D"))
    server.chat_answer = "The answer is D."
    [stated] = backend.loglikelihood([question])
    assert (stated.logprobs, stated.error, stated.text) == ([-100.0, -100.0, -100.0, 0.0], None, "The answer is D.")
    predicted = to_prediction(question, stated)
    assert (predicted.predicted_index, predicted.predicted_text) == (3, "D")
    server.chat_answer = "E"
    [outside] = backend.loglikelihood([question])
    assert outside.logprobs == [-100.0] * 4
    assert outside.error == "the chat answer 'E' names E, not one of the options A to D"
    assert to_prediction(question, outside).predicted_index is None


def test_a_call_after_a_failed_concurrent_one_retries_again(server: Server) -> None:
    backend = model(server, concurrency=4, retries=2)
    backend.client.abandon.set()  # as a concurrent call that failed leaves it
    server.failures = 1
    [out] = backend.generate(GEN_REQUESTS[:1])  # one request: the serial path, which retries the 503
    assert out.text == " blue"
