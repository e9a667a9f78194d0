"""What concurrency buys against a slow server: `python -m tests.bench.bench_concurrency`.

A local OpenAI-compatible server on 127.0.0.1 answers every request after a fixed delay (200 ms,
like a remote model's latency); the `openai` backend sends the same 200 generation requests at
concurrency 1 and at concurrency 8 and the wall times are printed with their ratio. With the delay
dominating, 8 in flight should be close to 8x faster (at least 6x). A benchmark to run by hand,
not a timed test: shared machines make timings noisy.
"""

from __future__ import annotations

import argparse
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from helmflow.specs.schema import ModelSpec
from helmflow.tasks.models.openai import OpenAIModel
from helmflow.tasks.records import Request


def slow_server(delay_s: float) -> ThreadingHTTPServer:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive: the client's pooled connections are reused
        # Headers and body leave in one write (flushed after each request): two small writes would
        # meet Nagle's algorithm and delayed ACKs and add ~40 ms to every answer.
        wbufsize = 1 << 16

        def log_message(self, *args: object) -> None:
            pass

        def do_GET(self) -> None:
            self._reply({"object": "list", "data": [{"id": "slow", "object": "model"}]})

        def do_POST(self) -> None:
            self.rfile.read(int(self.headers["Content-Length"]))
            time.sleep(delay_s)
            self._reply({"choices": [{"index": 0, "text": " ok"}], "usage": {"completion_tokens": 1}})

        def _reply(self, payload: object) -> None:
            data = json.dumps(payload).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def wall_time(url: str, requests: list[Request], concurrency: int) -> float:
    spec = ModelSpec(name="slow", backend="openai", path=url, concurrency=concurrency, timeout_s=30)
    model = OpenAIModel(spec)
    began = time.perf_counter()
    out = model.generate(requests)
    elapsed = time.perf_counter() - began
    assert [c.text for c in out] == [" ok"] * len(requests)
    return elapsed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--delay-ms", type=float, default=200.0)
    parser.add_argument("--concurrency", type=int, default=8)
    args = parser.parse_args(argv)
    server = slow_server(args.delay_ms / 1000)
    url = f"http://127.0.0.1:{server.server_address[1]}/v1"
    requests = [Request(f"r{i}", f"r{i}", "generation", f"prompt {i}", max_tokens=4) for i in range(args.requests)]
    try:
        serial = wall_time(url, requests, 1)
        parallel = wall_time(url, requests, args.concurrency)
    finally:
        server.shutdown()
        server.server_close()
    print(f"{args.requests} requests, server delay {args.delay_ms:g} ms")
    print(f"concurrency 1: {serial:.2f} s")
    print(f"concurrency {args.concurrency}: {parallel:.2f} s")
    print(f"speed-up: {serial / parallel:.2f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
