"""A fast OpenAI-compatible fake server, one process, for the openai transport's tests and bench.

    python tests/fake_openai_server.py [--fail N] [--status 503] [--retry-after S] [--key KEY] [--jitter-ms M]

Listens on a free port of 127.0.0.1 and prints `PORT <n>` on stdout once it accepts connections;
`serve()` starts it as a subprocess and stops it. It answers:

- POST /v1/completions: with `echo`, the prompt comes back as tokens (each a word with the whitespace
  before it, at its `text_offset`), log-probs derived from each token's text (the first token's is
  null, as real servers give it) and `top_logprobs`, as vLLM echoes them; without `echo`, `max_tokens`
  generated words. `prompt` may be a list (choices carry their `index`).
- POST /v1/chat/completions: the answer "B".
- GET /v1/models: one model, id `fake`.
- Faults: the first `--fail` POSTs get `--status` (503), with `Retry-After` when given; with `--key`, a
  POST without that bearer key gets a 401 that quotes the key it was sent (as some hosted APIs do).
  POST /_control {"fail", "status", "retry_after", "delay_s"} sets the faults again while running.
- GET /_stats: {"requests": POSTs answered, "cpu_s": this process's CPU seconds}. At shutdown the same
  is printed on stderr. The bench subtracts two readings to get the server's CPU per request.

aiohttp and orjson keep the server's own CPU per request low, so that on a small machine the client
under test, not this server, is what the bench measures.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import re
import resource
import signal
import subprocess
import sys
import urllib.request
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
from aiohttp import web

TOKEN = re.compile(r"\s*\S+")
MODEL_ID = "fake"


def logprob(token: str) -> float:
    """A deterministic log-prob in [-5.0, -0.005] for a token's text."""
    return -((zlib.crc32(token.encode()) % 1000) + 1) / 200


def echoed(prompt: str, max_tokens: int) -> dict[str, Any]:
    """The echo answer for one prompt, plus `max_tokens` generated tokens after it."""
    found = TOKEN.findall(prompt)
    tokens, offsets, position = [], [], 0
    for token in found:
        offsets.append(position)
        tokens.append(token)
        position += len(token)
    generated = [f" w{zlib.crc32(prompt.encode()) % 97}"] * max_tokens
    for token in generated:
        offsets.append(position)
        tokens.append(token)
        position += len(token)
    logprobs: list[float | None] = [logprob(t) for t in tokens]
    if logprobs:
        logprobs[0] = None  # nothing precedes the first token
    top = [None if lp is None else {t: lp} for t, lp in zip(tokens, logprobs, strict=True)]
    return {
        "text": prompt + "".join(generated),
        "logprobs": {"tokens": tokens, "token_logprobs": logprobs, "top_logprobs": top, "text_offset": offsets},
        "finish_reason": "length",
    }


def generated(prompt: str, max_tokens: int) -> dict[str, Any]:
    tokens = [f" w{(zlib.crc32(prompt.encode()) + i) % 97}" for i in range(max_tokens)]
    return {"text": "".join(tokens), "logprobs": {"tokens": tokens, "token_logprobs": [logprob(t) for t in tokens]}}


@dataclass
class State:
    fail: int = 0
    status: int = 503
    retry_after: float | None = None
    key: str | None = None
    jitter_ms: float = 0.0
    delay_s: float = 0.0
    requests: int = 0
    stop: asyncio.Event = field(default_factory=asyncio.Event)


def reply(payload: Any, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(body=orjson.dumps(payload), status=status, headers=headers, content_type="application/json")


def cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def make_app(state: State) -> web.Application:
    async def fault(request: web.Request) -> web.Response | None:
        if state.key and request.headers.get("Authorization") != f"Bearer {state.key}":
            sent = request.headers.get("Authorization", "").removeprefix("Bearer ")
            return reply({"error": f"Incorrect API key provided: {sent}"}, 401)
        if state.fail > 0:
            state.fail -= 1
            headers = {"Retry-After": f"{state.retry_after:g}"} if state.retry_after is not None else None
            return reply({"error": "busy"}, state.status, headers)
        return None

    async def completions(request: web.Request) -> web.Response:
        body = orjson.loads(await request.read())
        state.requests += 1
        refused = await fault(request)
        if refused is not None:
            return refused
        prompts = body["prompt"] if isinstance(body["prompt"], list) else [body["prompt"]]
        if state.jitter_ms:  # a delay that differs by prompt: answers arrive out of order
            await asyncio.sleep(state.jitter_ms * (zlib.crc32(prompts[0].encode()) % 100) / 100_000)
        if state.delay_s:
            await asyncio.sleep(state.delay_s)
        answer = echoed if body.get("echo") else generated
        choices = [{**answer(p, int(body.get("max_tokens") or 0)), "index": i} for i, p in enumerate(prompts)]
        return reply({"id": "cmpl-fake", "object": "text_completion", "model": MODEL_ID, "choices": choices})

    async def chat(request: web.Request) -> web.Response:
        await request.read()
        state.requests += 1
        refused = await fault(request)
        if refused is not None:
            return refused
        message = {"role": "assistant", "content": "B"}
        return reply({"choices": [{"index": 0, "message": message}], "usage": {"completion_tokens": 1}})

    async def models(_: web.Request) -> web.Response:
        return reply({"object": "list", "data": [{"id": MODEL_ID, "object": "model"}]})

    async def control(request: web.Request) -> web.Response:
        settings = orjson.loads(await request.read())
        state.fail = int(settings.get("fail", state.fail))
        state.status = int(settings.get("status", state.status))
        state.retry_after = settings.get("retry_after", state.retry_after)
        state.delay_s = float(settings.get("delay_s", state.delay_s))
        return reply({"ok": True})

    async def stats(_: web.Request) -> web.Response:
        return reply({"requests": state.requests, "cpu_s": cpu_s()})

    app = web.Application()
    app.router.add_post("/v1/completions", completions)
    app.router.add_post("/v1/chat/completions", chat)
    app.router.add_get("/v1/models", models)
    app.router.add_post("/_control", control)
    app.router.add_get("/_stats", stats)
    return app


async def run(state: State) -> None:
    runner = web.AppRunner(make_app(state), access_log=None, shutdown_timeout=1.0)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, backlog=1024)
    await site.start()
    port = runner.addresses[0][1]
    print(f"PORT {port}", flush=True)
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, state.stop.set)
    await state.stop.wait()
    await runner.cleanup()
    spent = cpu_s()
    per = 1000 * spent / state.requests if state.requests else 0.0
    print(f"fake_openai_server: {state.requests} requests, {spent:.2f} s CPU, {per:.3f} ms/request", file=sys.stderr)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fail", type=int, default=0)
    parser.add_argument("--status", type=int, default=503)
    parser.add_argument("--retry-after", type=float, default=None)
    parser.add_argument("--key", default=None)
    parser.add_argument("--jitter-ms", type=float, default=0.0)
    args = parser.parse_args(argv)
    state = State(args.fail, args.status, args.retry_after, args.key, args.jitter_ms)
    asyncio.run(run(state))


# -- the parent's side -----------------------------------------------------------------------------


@dataclass
class FakeServer:
    """A running fake server: its base URL (…/v1) and the process."""

    url: str
    process: subprocess.Popen[bytes]

    @property
    def root(self) -> str:
        return self.url.removesuffix("/v1")

    def set_faults(
        self, fail: int = 0, status: int = 503, retry_after: float | None = None, delay_s: float = 0.0
    ) -> None:
        """The next `fail` POSTs get `status` (with Retry-After); every completion waits `delay_s` first."""
        data = orjson.dumps({"fail": fail, "status": status, "retry_after": retry_after, "delay_s": delay_s})
        urllib.request.urlopen(urllib.request.Request(self.root + "/_control", data=data), timeout=10).read()

    def stats(self) -> dict[str, float]:
        with urllib.request.urlopen(self.root + "/_stats", timeout=10) as response:
            return orjson.loads(response.read())


@contextlib.contextmanager
def serve(
    fail: int = 0,
    status: int = 503,
    retry_after: float | None = None,
    key: str | None = None,
    jitter_ms: float = 0.0,
) -> Iterator[FakeServer]:
    """Starts the server as a subprocess on a free port and stops it after; its summary goes to stderr."""
    command = [sys.executable, str(Path(__file__).resolve()), "--fail", str(fail), "--status", str(status)]
    command += ["--jitter-ms", str(jitter_ms)]
    if retry_after is not None:
        command += ["--retry-after", str(retry_after)]
    if key is not None:
        command += ["--key", key]  # a test key; a real one never goes on a command line
    process = subprocess.Popen(command, stdout=subprocess.PIPE)
    try:
        assert process.stdout is not None
        line = process.stdout.readline().decode()
        if not line.startswith("PORT "):
            raise RuntimeError(f"the fake server did not start (exit {process.wait(10)}): {line!r}")
        yield FakeServer(f"http://127.0.0.1:{int(line.split()[1])}/v1", process)
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


if __name__ == "__main__":
    main()
