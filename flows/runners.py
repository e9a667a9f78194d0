"""Past one machine: fan a benchmark's inference out over a Dask or Ray cluster through Prefect's task runners.

Who does what:

- The flow process is the one writer, and runs the pipeline (flows/pipeline.py), which plans each
  run's inference: the cache looked up, what is missing cut into the same fixed chunks the local
  runner uses (so every answer is computed in the same batch as on one machine). `ClusterExecutor`
  groups whole chunks into shards and submits them, and writes each shard's answers to the cache as
  the shard returns; the pipeline alone writes the runs, so `--resume` finishes a run whose shards did
  not all come back.
- Workers only compute. Each worker process loads a model once and keeps it (tasks/models/kept.py) for every
  shard it gets, and checks that its copy is the model the run was planned for. Torch runs there on
  the flow process's thread count (what a local run would use, recorded as the run's num_threads):
  float sums split over another number of threads round differently, and the answers would not be
  the local runner's bit for bit.
- Workers say when each chunk of a shard is answered (a Dask event, an item on a Ray queue), so the
  flow process reports progress chunk by chunk, as the local runner does, not shard by shard.
- A worker that dies is the runner's to retry: Dask reschedules its tasks on another worker, Ray
  re-runs them. A shard that still fails fails its run (with the other shards' answers cached),
  never a run that looks complete.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, replace
from functools import cache
from typing import Any

from prefect import task
from prefect.cache_policies import NONE
from prefect.futures import PrefectFuture, as_completed
from prefect.task_runners import TaskRunner

from helmflow.flows import progress
from helmflow.flows.inference import ModelIdentity, compute_chunk, retries_of
from helmflow.flows.pipeline import Run, RunContext
from helmflow.specs.library import resolve_run_target
from helmflow.specs.loader import SpecError
from helmflow.specs.schema import ModelSpec, SuiteSpec
from helmflow.tasks.models import ModelBackend, ModelError, ModelInfo, kept
from helmflow.tasks.records import Completion, Request
from helmflow.warehouse.store import Warehouse

RUNNER_KINDS = ("local", "dask", "ray")

# -- which runner ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RunnerSpec:
    kind: str  # local | dask | ray
    address: str | None = None  # an existing cluster's scheduler / head; None: a local cluster for the run
    workers: int = 2  # the size of a local cluster

    @property
    def fans_out(self) -> bool:
        return self.kind != "local"

    def __str__(self) -> str:
        if not self.fans_out:
            return "local"
        return f"{self.kind} at {self.address}" if self.address else f"{self.kind} (local, {self.workers} workers)"


def parse_runner(text: str, workers: int = 2) -> RunnerSpec:
    """`local`, `dask`, `ray` (a local cluster of `workers` processes), `dask://HOST:PORT` or `ray://HOST:PORT`."""
    text = text.strip()
    if text in RUNNER_KINDS:
        return RunnerSpec(text, None, workers)
    scheme, sep, rest = text.partition("://")
    if sep and scheme in ("dask", "ray") and rest and not any(c.isspace() for c in rest):
        # Dask's scheduler speaks tcp://; Ray's client address keeps its own ray:// scheme.
        return RunnerSpec(scheme, f"tcp://{rest}" if scheme == "dask" else text, workers)
    raise SpecError(f"runner '{text}': use local, dask, ray, dask://HOST:PORT or ray://HOST:PORT")


def suite_runner(refs: list[str]) -> str | None:
    """The `runner:` of the first suite among what `helmflow run` was given that names one."""
    for ref in refs:
        loaded = resolve_run_target(ref)
        # getattr: SuiteSpec gains the field in specs/schema.py; until then no suite names a runner.
        runner = getattr(loaded.spec, "runner", None) if isinstance(loaded.spec, SuiteSpec) else None
        if runner:
            return str(runner)
    return None


def task_runner(spec: RunnerSpec) -> TaskRunner | None:
    """Prefect's task runner for the spec (None for local: the flow's default, inference in-process).

    The cluster's own logs follow Prefect's level (quiet unless `helmflow -v`).
    """
    level = os.environ.get("PREFECT_LOGGING_LEVEL", "INFO").upper()
    if spec.kind == "dask":
        # Before distributed is imported here and in the worker processes it spawns (they inherit it).
        os.environ.setdefault("DASK_LOGGING__DISTRIBUTED", level.lower())
        try:
            from prefect_dask import DaskTaskRunner
        except ImportError as exc:
            raise SpecError("runner dask needs prefect-dask: pip install prefect-dask==0.3.7") from exc
        logging.getLogger("distributed").setLevel(os.environ["DASK_LOGGING__DISTRIBUTED"].upper())
        if spec.address:
            return DaskTaskRunner(address=spec.address)
        # One thread per worker process: a model's forward pass uses the process's cores itself.
        cluster = {"n_workers": spec.workers, "threads_per_worker": 1, "processes": True, "dashboard_address": None}
        return DaskTaskRunner(cluster_class="distributed.LocalCluster", cluster_kwargs=cluster)
    if spec.kind == "ray":
        try:
            from prefect_ray import RayTaskRunner
        except ImportError as exc:
            raise SpecError("runner ray needs prefect-ray: pip install prefect-ray==0.6.0") from exc
        quiet = {"logging_level": level, "log_to_driver": level in ("DEBUG", "INFO")}
        ray_runner = _keeping_sigterm(RayTaskRunner)
        if spec.address:
            return ray_runner(address=spec.address, init_kwargs=quiet)
        return ray_runner(init_kwargs={"num_cpus": spec.workers, "include_dashboard": False, **quiet})
    return None


@cache  # one subclass per runner class
def _keeping_sigterm(runner_class: type[TaskRunner]) -> type[TaskRunner]:
    """The task runner class, but SIGTERM is handled after it starts as it was before.

    Ray's driver takes SIGTERM over when it connects (below Python: it prints a stack trace and aborts),
    so neither Prefect's handler nor the command's (flows/termination.py) would run, and the cluster and
    the command's children would not be shut down as they are on every other way out.
    """

    class KeepingSigterm(runner_class):  # type: ignore[valid-type, misc]
        def __enter__(self) -> KeepingSigterm:
            before = signal.getsignal(signal.SIGTERM)
            entered = super().__enter__()
            if before is not None and threading.current_thread() is threading.main_thread():
                signal.signal(signal.SIGTERM, before)  # installs Python's own handler again, over Ray's
            return entered

    return KeepingSigterm


# -- on a worker -----------------------------------------------------------------------------------------

# Backends whose models run elsewhere, not on torch in this process: they have no thread count to match.
REMOTE_BACKENDS = ("openai",)
# What torch reads its default thread count from. A local Dask cluster's nanny sets each to 1 in this
# process's own environment (for the workers it spawns), so torch, imported here after the cluster
# started, would count 1 thread where a local run counts the machine's cores.
THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS")


def thread_environment() -> dict[str, str | None]:
    """The variables as they are now: taken before a local cluster starts (the flow's RunContext keeps them)."""
    return {name: os.environ.get(name) for name in THREAD_VARIABLES}


@contextmanager
def _environment(values: dict[str, str | None] | None) -> Iterator[None]:
    """os.environ with `values` (None: unset) for the block, as it was after it."""
    if values is None:
        yield
        return
    saved = {name: os.environ.get(name) for name in values}
    try:
        for name, value in values.items():
            _set_variable(name, value)
        yield
    finally:
        for name, value in saved.items():
            _set_variable(name, value)


def _set_variable(name: str, value: str | None) -> None:
    if value is None:
        os.environ.pop(name, None)
    else:
        os.environ[name] = value


def flow_threads(spec: ModelSpec, before_cluster: dict[str, str | None] | None = None) -> int | None:
    """The torch threads a local run of this model would use (this process's, under the thread variables
    as they were `before_cluster` started), which the workers then use; None for a backend that does not
    run on torch here."""
    if spec.backend in REMOTE_BACKENDS:
        return None
    # Torch reads the environment once, at its first count: a count made already stands (a test's set_num_threads).
    with _environment(before_cluster):
        import torch

        return int(torch.get_num_threads())


def use_threads(threads: int | None) -> None:
    """Torch on `threads` threads in this worker process, before the model loads or runs. Dask and Ray
    start workers with OMP_NUM_THREADS=1, so without it a worker's sums would not be the flow process's."""
    if threads is None:
        return
    import torch

    if torch.get_num_threads() != threads:
        torch.set_num_threads(threads)


def worker_model(spec: ModelSpec, threads: int | None = None) -> ModelBackend:
    """The model as this worker process keeps it (tasks/models/kept.py), torch on `threads` threads."""
    return kept.WORKER.get(spec, lambda: use_threads(threads))


def model_loads() -> dict[str, int]:
    """This process's model loads by spec JSON (what a test or an operator asks each worker)."""
    return kept.WORKER.loads()


def worker_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


@dataclass
class ShardResult:
    answers: dict[str, Completion]  # by request key
    worker: str
    seconds: float
    retries: int = 0  # the shard task's own retries, and its model's (a server's HTTP retries)


# -- chunk by chunk: how a worker tells the flow process that a chunk is answered ------------------------


@dataclass(frozen=True)
class ChunkDone:
    """Sent after each chunk of a shard: the shard's answers and retries so far."""

    label: str  # the shard's
    answered: int
    retries: int


@dataclass(frozen=True)
class ChunkChannel:
    """What a shard task is given to report its chunks on: the flow's Dask event topic, its Ray queue, or
    (any other runner: its tasks run in this process) its handler. Sending never fails the shard."""

    token: str
    queue: Any = None  # a ray.util.queue.Queue, for the Ray runner
    handler: Callable[[ChunkDone], None] | None = None  # for a runner in this process: never pickled

    def send(self, done: ChunkDone) -> None:
        message = {"label": done.label, "answered": done.answered, "retries": done.retries}
        try:
            if self.queue is not None:
                self.queue.put_nowait(message)
            elif self.handler is not None:
                self.handler(done)
            else:
                from distributed import get_worker

                get_worker().log_event(self.token, message)
        except Exception:  # not in a Dask worker, a full or closed queue: progress is not worth a failed shard
            logging.getLogger(__name__).debug("chunk progress not sent", exc_info=True)


def _chunk_done(message: dict[str, Any]) -> ChunkDone:
    return ChunkDone(str(message["label"]), int(message["answered"]), int(message["retries"]))


@contextmanager
def listening(handler: Callable[[ChunkDone], None]) -> Iterator[ChunkChannel]:
    """A channel for the shards of this flow run, whose messages reach `handler` (in another thread, for
    Dask and Ray) until the block ends."""
    from prefect.context import FlowRunContext

    context = FlowRunContext.get()
    runner = context.task_runner if context is not None else None
    token = f"helmflow-chunks-{uuid.uuid4().hex[:12]}"
    kinds = {cls.__name__ for cls in type(runner).__mro__}  # by name: neither runner's package is imported
    if "DaskTaskRunner" in kinds:
        client = runner.client  # type: ignore[union-attr]
        client.subscribe_topic(token, lambda event: handler(_chunk_done(event[1])))
        try:
            yield ChunkChannel(token)
        finally:
            client.unsubscribe_topic(token)
    elif "RayTaskRunner" in kinds:
        with _ray_queue(handler) as queue:
            yield ChunkChannel(token, queue)
    else:
        yield ChunkChannel(token, handler=handler)


@contextmanager
def _ray_queue(handler: Callable[[ChunkDone], None]) -> Iterator[Any]:
    """A Ray queue (an actor that holds no CPU) drained into `handler` by a thread of this process."""
    from ray.util.queue import Empty, Queue

    queue = Queue(actor_options={"num_cpus": 0})
    stop = threading.Event()

    def drain() -> None:
        while not stop.is_set():
            try:
                handler(_chunk_done(queue.get(block=True, timeout=0.5)))
            except Empty:
                continue
            except Exception:  # the cluster went away: the shards' results say what happened
                return

    thread = threading.Thread(target=drain, name="helmflow-ray-chunks", daemon=True)
    thread.start()
    try:
        yield queue
    finally:
        stop.set()
        thread.join(timeout=5)
        queue.shutdown()


SHARD_OPTIONS = {"cache_policy": NONE, "persist_result": False}


@task(name="describe-model", **SHARD_OPTIONS)
def describe_model(spec: ModelSpec, threads: int | None = None) -> tuple[ModelInfo, ModelIdentity]:
    """Loaded on a worker (and kept there): the info a run records (with the threads its shards will run
    on) and the identity its keys are hashed with."""
    model = worker_model(spec, threads)
    info = model.info if threads is None else replace(model.info, num_threads=threads)
    return info, ModelIdentity.of(model)


@task(name="infer-shard", task_run_name="infer {label}", retries=1, retry_delay_seconds=1, **SHARD_OPTIONS)
def infer_shard(
    spec: ModelSpec,
    identity: ModelIdentity,
    chunks: list[list[tuple[str, Request]]],
    label: str,
    threads: int | None = None,
    channel: ChunkChannel | None = None,
) -> ShardResult:
    """The answers to a shard's chunks, computed chunk by chunk exactly as the local runner does (on the
    flow process's `threads`), each chunk said on `channel` as it is answered."""
    model = worker_model(spec, threads)
    mine = ModelIdentity.of(model)
    if mine != identity:
        # Answers would be cached under keys that do not describe them.
        raise ModelError(
            f"worker {worker_name()} loaded model '{spec.name}' as {mine}, but the run was planned for {identity}: "
            "every worker must have the same model files and settings"
        )
    began = time.perf_counter()
    answers: dict[str, Completion] = {}
    retried, task_retries = retries_of(model), progress.task_retries()
    for chunk in chunks:
        computed = compute_chunk(model, [request for _, request in chunk])
        answers.update({key: computed[request.id] for key, request in chunk})
        if channel is not None:
            channel.send(ChunkDone(label, len(answers), task_retries + retries_of(model) - retried))
    retries = task_retries + retries_of(model) - retried
    return ShardResult(answers, worker_name(), time.perf_counter() - began, retries)


# -- in the flow process -----------------------------------------------------------------------------------


class ShardsFailed(RuntimeError):
    """Some of a run's shards failed after the runner's retries; the others' answers are cached."""


def shard(chunks: list[list[Request]], shards: int) -> list[list[list[Request]]]:
    """Whole chunks in at most `shards` contiguous groups, as even as the chunk count allows."""
    if not chunks:
        return []
    n = max(1, min(shards, len(chunks)))
    size, extra = divmod(len(chunks), n)
    groups, start = [], 0
    for i in range(n):
        end = start + size + (1 if i < extra else 0)
        groups.append(chunks[start:end])
        start = end
    return groups


class ShardMeter:
    """Requests answered over every run in flight, from each chunk a worker reports and each shard that
    returns (its final count); what the reporter is told after each. Called from the cluster client's
    thread as well as the flow's."""

    def __init__(self, reporter: progress.Reporter, label: str, total: int, done_at_start: int) -> None:
        self.reporter = reporter
        self.done_at_start = done_at_start
        self.answered: dict[str, int] = {}  # by shard label
        self.retries: dict[str, int] = {}
        self.closed = False
        self._said = (done_at_start, 0)  # a shard's result repeats what its last chunk said: said once
        self._lock = threading.Lock()
        self.reporter.start_inference(label, total, done_at_start)

    def chunk(self, done: ChunkDone) -> None:
        """A worker's report: counts only grow (a shard retried from its start reports lower ones again)."""
        with self._lock:
            self.answered[done.label] = max(self.answered.get(done.label, 0), done.answered)
            self.retries[done.label] = max(self.retries.get(done.label, 0), done.retries)
            self._report()

    def shard(self, label: str, answered: int, retries: int) -> None:
        """A shard that returned (`answered`: its answers) or failed (0: none of its answers are kept)."""
        with self._lock:
            self.answered[label] = answered
            self.retries[label] = max(self.retries.get(label, 0), retries)
            self._report()

    def close(self) -> None:
        with self._lock:
            self.closed = True
            self.reporter.end_inference()

    def _report(self) -> None:
        now = (self.done_at_start + sum(self.answered.values()), sum(self.retries.values()))
        if not self.closed and now != self._said:
            self._said = now
            self.reporter.advance(*now)


def _progress_label(runs: list[Run], shards: int) -> str:
    if len(runs) == 1:
        return f"{runs[0].names[0]} × {runs[0].names[1]} ({shards} shard{'s' * (shards != 1)})"
    return f"{len(runs)} runs ({shards} shard{'s' * (shards != 1)})"


@dataclass
class _Sent:
    """A run whose shards are out: how many, how many are still out, and why those that failed did."""

    run: Run
    shards: int
    pending: int
    failures: list[str]


class ClusterExecutor:
    """The pipeline's executor for a Dask or Ray runner (flows/pipeline.py's `Executor`): every run's
    missing chunks in `shards` groups, submitted to the flow's task runner as the runs start; each shard's
    answers cached in this process as it returns, and each run handed back once its last shard is back.

    Every model is described (loaded on a worker) when the executor is entered, side by side."""

    def __init__(
        self, models: list[ModelSpec], shards: int, db: str | None, use_cache: bool, context: RunContext
    ) -> None:
        self.specs = {spec.model_dump_json(): spec for spec in models}
        self.shards = shards
        self.db = db
        self.use_cache = use_cache
        self.context = context
        self._stack = ExitStack()
        self._meter: ShardMeter | None = None
        self._futures: dict[int, tuple[PrefectFuture, _Sent, int, str]] = {}  # by id(future)
        self._sent: list[_Sent] = []
        self._ready: list[Run] = []

    def __enter__(self) -> ClusterExecutor:
        self.channel = self._stack.enter_context(listening(self._chunk_done))
        # The workers run torch on this process's threads: a run on them gives the local runner's answers.
        before = self.context.thread_environment
        self.threads = {key: flow_threads(spec, before) for key, spec in self.specs.items()}
        described = {key: describe_model.submit(spec, self.threads[key]) for key, spec in self.specs.items()}
        self.models = {key: future.result() for key, future in described.items()}  # one that cannot load stops here
        return self

    def __exit__(self, *exc: object) -> None:
        if self._meter is not None:
            self._meter.close()
        self._stack.close()

    def _chunk_done(self, done: ChunkDone) -> None:
        if self._meter is not None:  # chunks said before inference was counted are in the shards' results
            self._meter.chunk(done)

    def describe(self, spec: ModelSpec) -> tuple[ModelInfo, ModelIdentity]:
        return self.models[spec.model_dump_json()]

    def submit(self, run: Run) -> None:
        key = run.pair.model_spec.model_dump_json()
        groups = shard(list(run.plan.missing()), self.shards)
        if not groups:  # everything was cached
            self._ready.append(run)
            return
        sent = _Sent(run, len(groups), len(groups), [])
        self._sent.append(sent)
        for number, group in enumerate(groups, 1):
            chunks = [[(run.plan.keys[r.id], r) for r in chunk] for chunk in group]
            label = f"{run.names[0]} × {run.names[1]} [{number}/{len(groups)}]"
            identity = self.models[key][1]
            future = infer_shard.submit(run.pair.model_spec, identity, chunks, label, self.threads[key], self.channel)
            self._futures[id(future)] = (future, sent, number, label)

    def finished(self, wait: bool) -> Iterator[Run]:
        while self._ready:
            yield self._ready.pop(0)
        if not wait or not self._futures:
            return
        runs = [sent.run for sent in self._sent]
        total = sum(len(r.plan.distinct) for r in runs)
        self._meter = ShardMeter(
            self.context.reporter,
            _progress_label(runs, len(self._futures)),
            total,
            sum(len(r.plan.answers) for r in runs),
        )
        warehouse = Warehouse(self.db)
        for future in as_completed([f for f, *_ in self._futures.values()]):
            _, sent, number, label = self._futures[id(future)]
            plan = sent.run.plan
            try:
                result: ShardResult = future.result()
                if self.use_cache:  # before anything else: what came back survives whatever happens next
                    kinds = {k: (plan.distinct[k].kind, c) for k, c in result.answers.items()}
                    warehouse.cache_answers(plan.identity.fingerprint, kinds, sent.run.run_id)
                plan.answers.update(result.answers)
                self._meter.shard(label, len(result.answers), result.retries)
            except Exception as exc:
                sent.failures.append(f"shard {number}/{sent.shards}: {type(exc).__name__}: {exc}")
                self._meter.shard(label, 0, 0)
            sent.pending -= 1
            if sent.pending == 0:
                if sent.failures:
                    sent.run.error = self._failed(sent)
                yield sent.run
        self._futures.clear()

    def _failed(self, sent: _Sent) -> ShardsFailed:
        resume = f"; the others' answers are cached: `helmflow run --resume {sent.run.run_id}` computes the rest"
        return ShardsFailed(
            f"{len(sent.failures)} of {sent.shards} inference shards failed after retries "
            f"({'; '.join(sent.failures)})" + (resume if self.use_cache else "")
        )
