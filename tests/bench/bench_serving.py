"""Client CPU per request of the `openai` backend in front of a fast server: `python -m tests.bench.bench_serving`.

    python -m tests.bench.bench_serving [--requests K] [--concurrency C] [--words N] [--repeat R]

tests/fake_openai_server.py runs in its own process and answers MMLU-shaped echo requests (the body
OpenAIModel._echo_body makes: prompt + " A".." D", echo, max_tokens 0, logprobs 1) with one token per
word. K requests (default 2,000: K/4 questions x 4 letters) go out at batch_size 1 and concurrency C
(default 64) through:

- OpenAIModel.loglikelihood (its requests on openai_async.AsyncClient.post_many_timed: one event loop, no
  thread per request), called chunk by chunk as flows/inference.py calls it (4 x concurrency x batch_size
  questions a call);
- and the two transports alone (no scoring, all K in one call): a thread pool over the older
  openai_client.Client.post (one thread per request, what OpenAIModel used before), and AsyncClient.post_many.

For each: wall seconds, requests/s, this process's CPU ms per request (time.process_time, every thread:
the client), the server's CPU ms per request (its /_stats), and the threaded/async transports' CPU ratio. lm-eval's
`local-completions` is timed too when its virtual environment (made by `make bench-lmeval`) exists;
otherwise the table says it was not run. Each path runs R times (default 3) and its least CPU per
request is kept: on a shared machine a run is only ever slowed by what else runs.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from helmflow.flows.inference import CHUNK_BATCHES_BY_KIND
from helmflow.specs.schema import ModelSpec
from helmflow.tasks.models.openai import OpenAIModel
from helmflow.tasks.models.openai_async import AsyncClient
from helmflow.tasks.models.openai_client import Client
from helmflow.tasks.records import Completion, Request
from helmflow.tasks.sources import cache_root
from tests.bench.bench_lmeval_tasks import LM_EVAL_VERSION
from tests.fake_openai_server import FakeServer, serve

LETTERS = (" A", " B", " C", " D")


def mmlu_requests(k: int, words: int) -> list[Request]:
    """k/4 zero-shot MMLU-like questions of about `words` words, 4 letter continuations each."""
    filler = " ".join(f"word{i % 37}" for i in range(max(words - 30, 0)))
    requests = []
    for i in range(k // 4):
        prompt = (
            "The following are multiple choice questions (with answers) about abstract algebra.\n\n"
            f"Question {i}: {filler} which of the following is true?\n"
            f"A. the first {i}\nB. the second\nC. the third\nD. none of these\nAnswer:"
        )
        requests.append(Request(f"q{i}", f"q{i}", "multiple_choice", prompt, LETTERS))
    return requests


def in_chunks(model: OpenAIModel, requests: list[Request]) -> list[Completion]:
    """model.loglikelihood chunk by chunk, as flows/inference.py calls it: CHUNK_BATCHES x info.batch_size
    requests a call (4 x 64 = 256 questions, 1,024 HTTP requests at concurrency 64)."""
    size = model.info.batch_size * CHUNK_BATCHES_BY_KIND["multiple_choice"]
    return [c for i in range(0, len(requests), size) for c in model.loglikelihood(requests[i : i + size])]


@dataclass
class Result:
    path: str
    requests: int
    wall_s: float
    client_cpu_s: float
    server_cpu_s: float

    @property
    def client_ms(self) -> float:
        return 1000 * self.client_cpu_s / self.requests

    @property
    def server_ms(self) -> float:
        return 1000 * self.server_cpu_s / self.requests

    def row(self, baseline: Result | None) -> str:
        ratio = f"{baseline.client_ms / self.client_ms:6.2f}x" if baseline else "      -"
        return (
            f"{self.path:<28} {self.wall_s:7.2f} {self.requests / self.wall_s:9.0f} "
            f"{self.client_ms:10.3f} {self.server_ms:10.3f} {ratio}"
        )


def measure(path: str, fake: FakeServer, run: Callable[[], object], repeat: int) -> Result:
    """The run with the least client CPU of `repeat` (each after the same warm-up, outside the timing)."""
    best: Result | None = None
    for _ in range(repeat):
        before = fake.stats()
        cpu, wall = time.process_time(), time.perf_counter()
        run()
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        after = fake.stats()
        result = Result(path, int(after["requests"] - before["requests"]), wall, cpu, after["cpu_s"] - before["cpu_s"])
        if best is None or result.client_ms < best.client_ms:
            best = result
        print(f"  {path}: {result.client_ms:.3f} client CPU ms/request", file=sys.stderr)
    assert best is not None
    return best


def lm_eval_python() -> Path | None:
    python = cache_root() / f"lm-eval-{LM_EVAL_VERSION}" / "bin" / "python"
    return python if python.is_file() else None


# Run inside lm-eval's environment: local-completions scores the same texts at the same concurrency and
# prints its own process CPU (it has no tokenizer of the fake server's words, so the summed slices differ).
LM_EVAL_SCRIPT = textwrap.dedent(
    """
    import sys, time
    from lm_eval.api.instance import Instance
    from lm_eval.models.openai_completions import LocalCompletionsAPI
    url, tokenizer, concurrency, k, words = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), sys.argv[5:]
    prompts = [line for line in sys.stdin.read().split("\\0") if line]
    lm = LocalCompletionsAPI(base_url=url, model="fake", tokenizer_backend="huggingface", tokenizer=tokenizer,
                             num_concurrent=concurrency, max_retries=3, tokenized_requests=False, batch_size=1)
    requests = [Instance("loglikelihood", {}, (p, c), i) for i, p in enumerate(prompts) for c in words]
    cpu, wall = time.process_time(), time.perf_counter()
    lm.loglikelihood(requests, disable_tqdm=True)
    print(time.perf_counter() - wall, time.process_time() - cpu, len(requests))
    """
)


def measure_lm_eval(fake: FakeServer, requests: list[Request], concurrency: int) -> Result | str:
    python = lm_eval_python()
    if python is None:
        return f"not run: no lm-eval environment at {cache_root() / f'lm-eval-{LM_EVAL_VERSION}'} (make bench-lmeval)"
    tokenizers = sorted((cache_root() / "models").glob("smollm2-135m-instruct-*"))
    if not tokenizers:
        return "not run: no SmolLM2 tokenizer under the helmflow cache"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    command = [str(python), "-c", LM_EVAL_SCRIPT, fake.url + "/completions", str(tokenizers[-1]), str(concurrency)]
    stdin = "\0".join(r.prompt for r in requests)
    before = fake.stats()
    command += [str(len(requests)), *LETTERS]
    done = subprocess.run(command, input=stdin, capture_output=True, text=True, env=env)
    after = fake.stats()
    try:
        wall, cpu, count = done.stdout.split()[-3:]
        server_cpu_s = after["cpu_s"] - before["cpu_s"]
        return Result("lm-eval local-completions", int(count), float(wall), float(cpu), server_cpu_s)
    except ValueError:  # not written against a run of lm-eval here (none was installed): say what went wrong
        return f"failed (exit {done.returncode}): {(done.stderr.strip().splitlines() or [''])[-1]}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=2000, help="HTTP requests per path (4 per question)")
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--words", type=int, default=100, help="about this many words a prompt")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args(argv)
    requests = mmlu_requests(args.requests, args.words)
    warm = requests[: max(args.concurrency // 4, 1)]
    with serve() as fake:
        spec = ModelSpec(name="fake", backend="openai", path=fake.url, concurrency=args.concurrency, batch_size=1)
        model = OpenAIModel(spec)  # its requests go through AsyncClient.post_many_timed
        old, new = Client(spec), AsyncClient(spec)
        bodies = [model._echo_body([(r, k)]) for r in requests for k in range(len(r.continuations))]
        url = fake.url + "/completions"

        def threads() -> list[dict[str, object]]:
            return list(pool.map(lambda body: old.post(url, body), bodies))

        pool = ThreadPoolExecutor(max_workers=args.concurrency, thread_name_prefix="bench")
        model.loglikelihood(warm)  # connections open, code paths warm
        list(pool.map(lambda body: old.post(url, body), bodies[: args.concurrency]))
        new.post_many(url, bodies[: args.concurrency])
        print(f"{len(bodies)} requests a path, concurrency {args.concurrency}, batch_size 1", file=sys.stderr)
        results = [
            measure("OpenAIModel (this tree)", fake, lambda: in_chunks(model, requests), args.repeat),
            measure("transport: Client + threads", fake, threads, args.repeat),
            measure("transport: AsyncClient", fake, lambda: new.post_many(url, bodies), args.repeat),
        ]
        lm_eval = measure_lm_eval(fake, requests, args.concurrency)
        pool.shutdown()
        old.close()
        new.close()
    print(f"{'path':<28} {'wall s':>7} {'req/s':>9} {'client ms':>10} {'server ms':>10} {'ratio':>7}")
    print(f"{'':<28} {'':>7} {'':>9} {'/request':>10} {'/request':>10} {'(CPU)':>7}")
    print(results[0].row(None))
    print(results[1].row(None))
    print(results[2].row(results[1]))
    if isinstance(lm_eval, Result):
        print(lm_eval.row(None))
        print(f"lm-eval / async client CPU per request: {lm_eval.client_ms / results[0].client_ms:.2f}x")
    else:
        print(f"lm-eval local-completions: {lm_eval}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
