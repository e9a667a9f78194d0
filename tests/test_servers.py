"""The `openai` backend against real OpenAI-compatible servers, each started here on 127.0.0.1 and
stopped after: `transformers serve` (helmflow's extra serve-transformers) and llama.cpp's server
(the extra serve-llamacpp), both serving the embedded SmolLM2-135M-Instruct. Slow (marker `servers`);
skipped with the reason when a server's package is not installed.

Measured numbers are printed (run with -s to see them); docs/servers.md records them.
"""

from __future__ import annotations

import importlib.util
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from helmflow.flows.cli import main
from helmflow.specs.schema import ModelSpec
from helmflow.tasks.models.embedded import converted_dir, gguf_path
from helmflow.tasks.models.openai import OpenAIModel
from helmflow.tasks.records import Request
from helmflow.warehouse.db import connect
from tests.conftest import mmlu_plain, write

# Each server test: slow, and loads the embedded model. (The GPU-batch tests at the end load it too.)
servers = pytest.mark.servers
model = pytest.mark.model

PROBE = Path(__file__).resolve().parents[1] / "specs" / "scenarios" / "data" / "open_ended_probe.jsonl"
LAUNCHER = Path(__file__).resolve().with_name("llama_cpp_server.py")

# MMLU zero-shot from the embedded copy, no perturbations: 100 questions, 400 scored continuations.
# Stock llama-cpp-python sorts the whole vocabulary in Python for every echoed token (~8.5 s a request
# on 2 busy cores, about an hour for 400); the launcher (tests/llama_cpp_server.py) keeps the top 20
# instead: ~1.6 s a request, and the whole test took 15.5 min on 2 cores shared with other work (the
# embedded run 154 s, the server run 724 s). HELMFLOW_SERVERS_MMLU_N may ask for fewer while developing.
MMLU_N = int(os.environ.get("HELMFLOW_SERVERS_MMLU_N", "100"))


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def needs(extra: str, *modules: str) -> None:
    missing = [m for m in modules if importlib.util.find_spec(m) is None]
    if missing:
        pytest.skip(
            f"the server needs {', '.join(missing)} (not installed): pip install -e '.[{extra}]'; see docs/servers.md"
        )


def started(command: list[str], port: int, log: Path, ready_s: float = 300) -> Iterator[str]:
    """Start a server, wait until GET /v1/models answers, yield its base URL, stop it after."""
    with log.open("wb") as out:
        server = subprocess.Popen(
            command, stdout=out, stderr=subprocess.STDOUT, env={**os.environ, "HF_HUB_OFFLINE": "1"}
        )
    url = f"http://127.0.0.1:{port}/v1"
    try:
        deadline = time.monotonic() + ready_s
        while True:
            assert server.poll() is None, f"the server exited: {log.read_text()[-2000:]}"
            assert time.monotonic() < deadline, f"the server did not start: {log.read_text()[-2000:]}"
            try:
                if httpx.get(url + "/models", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(1)
        yield url
    finally:
        server.send_signal(signal.SIGINT)
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


@pytest.fixture(scope="module")
def transformers_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    needs("serve-transformers", "fastapi", "uvicorn", "openai")
    directory = str(converted_dir()[0])
    port = free_port()
    command = [str(Path(sys.executable).with_name("transformers")), "serve", directory]
    command += ["--host", "127.0.0.1", "--port", str(port), "--device", "cpu", "--dtype", "float32"]
    yield from started(command, port, tmp_path_factory.mktemp("tserve") / "server.log")


@pytest.fixture(scope="module")
def llama_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    needs("serve-llamacpp", "llama_cpp", "sse_starlette", "starlette_context")
    port = free_port()
    # llama_cpp.server with its top-log-probs sort cut to the top 20 (tests/llama_cpp_server.py: the same
    # answers for logprobs <= 20, about 5 times faster).
    command = [sys.executable, str(LAUNCHER), "--model", str(gguf_path()), "--model_alias", "smollm2"]
    # logits_all: echo needs every prompt position's log-probs (lm-eval's gguf model asks the same).
    command += ["--host", "127.0.0.1", "--port", str(port), "--n_ctx", "2048", "--logits_all", "true"]
    # llama-cpp-python 0.3.36 gives echoed token i the log-prob of position i's next-token distribution
    # once it has dropped a leading BOS: right with a BOS, one token off without. SmolLM2's GGUF adds
    # none, so one is added here: the server then scores every prompt after a BOS (<|im_start|>), which
    # the embedded model does not see (docs/servers.md).
    command += ["--kv_overrides", "tokenizer.ggml.add_bos_token=bool:true"]
    yield from started(command, port, tmp_path_factory.mktemp("llama") / "server.log")


def probe_requests(n: int = 20) -> list[Request]:
    """The open-ended probe's first n prompts as its spec renders them (the bare input, 40 tokens, stop at \\n)."""
    rows = [json.loads(line) for line in PROBE.read_text().splitlines()[:n]]
    return [Request(r["id"], r["id"], "generation", r["prompt"], max_tokens=40, stop=("\n",)) for r in rows]


# -- transformers serve --------------------------------------------------------------------------------


@servers
@model
def test_transformers_serve_greedy_generation_equals_the_hf_backend(transformers_server: str) -> None:
    from helmflow.tasks.models.hf import HFModel

    directory = str(converted_dir()[0])
    requests = probe_requests()
    # transformers serve answers one request at a time (about 10 s for 40 tokens on 2 busy cores).
    spec = ModelSpec(
        name="smollm2", backend="openai", path=transformers_server, remote_model=directory, concurrency=1, timeout_s=300
    )
    served = OpenAIModel(spec)
    remote = [c.text for c in served.generate(requests)]
    assert served.info.fingerprint == f"{transformers_server}#{directory}@unversioned"
    one_by_one = HFModel(ModelSpec(name="local", backend="hf", path=directory, batch_size=1)).generate(requests)
    batched = HFModel(ModelSpec(name="local", backend="hf", path=directory, batch_size=16)).generate(requests)
    differ = [i for i, c in enumerate(batched) if c.text != remote[i]]
    alone = sum(c.text == t for c, t in zip(one_by_one, remote, strict=True))
    print(f"\ntransformers serve vs hf batch 1: {alone}/20 equal")
    print(f"transformers serve vs hf batch 16: {20 - len(differ)}/20 equal; differ: {differ}")
    for i in differ:
        print(f"  {requests[i].id}: served {remote[i]!r}\n  {' ' * len(requests[i].id)}  hf(16) {batched[i].text!r}")
    # The server runs each prompt alone, like batch 1: the same greedy tokens.
    assert [c.text for c in one_by_one] == remote
    assert all(text.strip() for text in remote)


@servers
@model
def test_transformers_serve_chat(transformers_server: str) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    directory = str(converted_dir()[0])
    spec = ModelSpec(
        name="smollm2",
        backend="openai",
        path=transformers_server,
        remote_model=directory,
        chat=True,
        system_prompt="You are a concise assistant.",
        timeout_s=300,
    )
    chat = OpenAIModel(spec)
    request = Request("c", "c", "generation", "What is the capital of France?", max_tokens=12, stop=("\n",))
    [answer] = chat.generate([request])
    # The same messages through the chat template and greedy decoding here give the same text.
    tokenizer = AutoTokenizer.from_pretrained(directory)
    model = AutoModelForCausalLM.from_pretrained(directory)
    ids = tokenizer.apply_chat_template(chat.messages(request.prompt), add_generation_prompt=True, return_tensors="pt")
    ids = ids["input_ids"] if hasattr(ids, "keys") else ids
    output = model.generate(ids, max_new_tokens=12, do_sample=False)
    local = tokenizer.decode(output[0, ids.shape[1] :], skip_special_tokens=True).split("\n")[0]
    print(f"\nchat answer: {answer.text!r}")
    assert answer.text == local and answer.text.strip()
    assert chat.info.fingerprint.endswith("+mc-by-letter")


# -- llama.cpp server -----------------------------------------------------------------------------------


@servers
@model
def test_llama_cpp_server_mmlu_agrees_with_the_embedded_model(llama_server: str, tmp_path: Path) -> None:
    scenario = write(tmp_path / "mmlu_plain.yaml", mmlu_plain("[accuracy]", MMLU_N))
    remote = write(
        tmp_path / "llama.yaml",
        f"name: llama-smollm2\nbackend: openai\npath: {llama_server}\n"
        "remote_model: smollm2\nconcurrency: 2\ntimeout_s: 300\necho_max_tokens: 1\n",
    )
    db = tmp_path / "w.duckdb"
    assert main(["--db", str(db), "run", str(scenario), "--model", "smollm2-135m-instruct"]) == 0
    assert main(["--db", str(db), "run", str(scenario), "--model", str(remote)]) == 0
    with connect(db, read_only=True) as con:
        rows = con.execute(
            "select r.model, p.request_id, p.predicted_index, p.choice_logprobs, r.model_fingerprint "
            "from predictions p join runs r using (run_id) where r.status = 'succeeded' order by 2"
        ).fetchall()
    by_model: dict[str, dict[str, tuple[int, list[float]]]] = {}
    for model, request_id, index, logprobs, fingerprint in rows:
        by_model.setdefault(model, {})[request_id] = (index, logprobs)
        if model == "llama-smollm2":
            assert fingerprint == f"{llama_server}#smollm2@unversioned"
    local, served = by_model["smollm2-135m-instruct"], by_model["llama-smollm2"]
    assert len(local) == len(served) == MMLU_N
    agree = sum(local[k][0] == served[k][0] for k in local)
    diffs = [abs(a - b) for k in local for a, b in zip(local[k][1], served[k][1], strict=True)]
    print(f"\nllama.cpp server vs embedded: {agree}/{MMLU_N} predicted letters agree")
    print(f"per-choice log-prob |difference|: max {max(diffs):.4f}, median {statistics.median(diffs):.4f}")
    assert agree >= 0.95 * MMLU_N


# -- the hf backend's GPU settings, on the CPU: auto device/dtype and out-of-memory halving -------------


@pytest.fixture(scope="module")
def local_model():  # -> HFModel
    from helmflow.tasks.models.hf import HFModel

    spec = ModelSpec(name="local", backend="hf", path=str(converted_dir()[0]), device="auto", dtype="auto")
    return HFModel(spec, fingerprint="test")


MC = [
    Request(
        f"m{i}",
        f"m{i}",
        "multiple_choice",
        # All of one length: the eight rows fit one batch (hf_prefix.MIN_FILL).
        f"Question {i}: is {i} even?\nAnswer:",
        (" yes", " no"),
    )
    for i in range(8)
]


@model
def test_auto_settings_on_a_machine_without_a_gpu(local_model) -> None:
    import torch

    from helmflow.tasks.models.hf import gpu_token_budget, resolve_device, resolve_dtype

    assert (local_model.device, local_model.dtype, local_model.batch_size) == ("cpu", "float32", 16)
    assert local_model.info.dtype == "float32"  # so cache keys equal an explicit float32 spec's
    assert resolve_device("auto", torch) == ("cuda" if torch.cuda.is_available() else "cpu")
    assert (resolve_dtype("auto", "cuda:0"), resolve_dtype("auto", "cpu"), resolve_dtype("float16", "cpu")) == (
        "bfloat16",
        "float32",
        "float16",
    )
    # SmolLM2-135M in bfloat16: 30 layers, KV width 192, hidden 576, MLP 1536 → 2 × (11520 + 2304 + 3072) bytes.
    assert gpu_token_budget(100 * 2**30, local_model.model.config, 2) == int(0.5 * 100 * 2**30 / 33792)


@model
def test_an_out_of_memory_batch_is_halved_and_retried(local_model, monkeypatch: pytest.MonkeyPatch) -> None:
    import torch

    expected = local_model.loglikelihood(MC)
    real = local_model._scored_logprobs
    sizes: list[int] = []

    def forward_that_runs_out_once(batch):  # the fault: the first pass of more than 4 rows
        sizes.append(len(batch))
        if len(batch) > 4 and len(sizes) == 1:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return real(batch)

    monkeypatch.setattr(local_model, "_scored_logprobs", forward_that_runs_out_once)
    got = local_model.loglikelihood(MC)
    assert sizes == [8, 4, 4] and local_model.batch_size == 4  # later batches start at the smaller size
    for ours, theirs in zip(got, expected, strict=True):
        assert ours.logprobs == pytest.approx(theirs.logprobs, abs=1e-4)
    local_model.batch_size = 16  # as the spec says, for the next test


@model
@pytest.mark.slow  # make test-slow: generation retried row by row, about 15 s on 2 cores
def test_generation_survives_a_plain_runtime_oom_and_one_row_that_never_fits(
    local_model, monkeypatch: pytest.MonkeyPatch
) -> None:
    from helmflow.tasks.models.base import ModelError

    requests = [Request(f"g{i}", f"g{i}", "generation", f"Count to {i}:", max_tokens=4) for i in range(4)]
    expected = [c.text for c in local_model.generate(requests)]
    real, sizes = local_model._generate_batch, []

    def generate_that_runs_out_once(batch):
        sizes.append(len(batch))
        if len(sizes) == 1:
            raise RuntimeError("CUDA out of memory.")  # what older torch raises
        return real(batch)

    monkeypatch.setattr(local_model, "_generate_batch", generate_that_runs_out_once)
    assert [c.text for c in local_model.generate(requests)] == expected and sizes == [4, 2, 2]

    def never_fits(batch):
        raise RuntimeError("CUDA out of memory.")

    monkeypatch.setattr(local_model, "_generate_batch", never_fits)
    with pytest.raises(ModelError, match="one row does not fit in cpu memory; lower max_length"):
        local_model.generate(requests[:1])
    local_model.batch_size, local_model.generation_rows = 16, 128  # as the spec says, for the next test
