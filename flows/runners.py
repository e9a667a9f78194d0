"""Past one machine: fan a benchmark's inference out over a Dask or Ray cluster through Prefect's task runners.

Who does what:

- The flow process is the one writer. For every (model, scenario) run it looks the inference
  cache up, cuts what is missing into the same fixed chunks the local runner uses (so every
  answer is computed in the same batch as on one machine), groups whole chunks into shards and
  submits them. It writes each shard's answers to the cache as the shard returns, and it alone
  writes the runs, so `--resume` finishes a run whose shards did not all come back.
- Workers only compute. Each worker process loads a model once and keeps it (`_MODELS`) for every
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
from collections import Counter, OrderedDict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from typing import Any

from prefect import task
from prefect.cache_policies import NONE
from prefect.futures import PrefectFuture, as_completed
from prefect.task_runners import TaskRunner

from helmflow.flows import progress
from helmflow.flows.benchmark import (
    Prepared,
    RunOutcome,
    complete_run,
    fail,
    open_run,
    predictions_of,
    requests_of,
    with_baselines,
)
from helmflow.flows.inference import InferencePlan, ModelIdentity, compute_chunk, plan_inference, retries_of
from helmflow.specs.loader import SpecError
from helmflow.specs.schema import ModelSpec
from helmflow.tasks.models import ModelBackend, ModelError, ModelInfo, load_model
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
    from helmflow.specs.library import resolve_run_target
    from helmflow.specs.schema import SuiteSpec

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
    remember_thread_environment()  # before a local cluster can change it
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


_KEEPING_SIGTERM: dict[type, type] = {}


def _keeping_sigterm(runner_class: type[TaskRunner]) -> type[TaskRunner]:
    """The task runner class, but SIGTERM is handled after it starts as it was before.

    Ray's driver takes SIGTERM over when it connects (below Python: it prints a stack trace and aborts),
    so neither Prefect's handler nor the command's (flows/termination.py) would run, and the cluster and
    the command's children would not be shut down as they are on every other way out.
    """
    if runner_class not in _KEEPING_SIGTERM:

        class KeepingSigterm(runner_class):  # type: ignore[valid-type, misc]
            def __enter__(self) -> KeepingSigterm:
                before = signal.getsignal(signal.SIGTERM)
                entered = super().__enter__()
                if before is not None and threading.current_thread() is threading.main_thread():
                    signal.signal(signal.SIGTERM, before)  # installs Python's own handler again, over Ray's
                return entered

        _KEEPING_SIGTERM[runner_class] = KeepingSigterm
    return _KEEPING_SIGTERM[runner_class]


# -- on a worker -----------------------------------------------------------------------------------------

# The models this worker process has loaded, by model spec JSON, most recently used last. A few
# are kept, so a suite of several models does not reload one per shard nor hold every one.
KEEP_MODELS = 2
_MODELS: OrderedDict[str, ModelBackend] = OrderedDict()
_LOADS: Counter[str] = Counter()  # how many times this process loaded each spec (1 is the aim)
_LOCK = threading.Lock()  # a threaded runner's tasks share one process: load each model once


# Backends whose models run elsewhere, not on torch in this process: they have no thread count to match.
REMOTE_BACKENDS = ("openai",)
# What torch reads its default thread count from. A local Dask cluster's nanny sets each to 1 in this
# process's own environment (for the workers it spawns), so torch, imported here after the cluster
# started, would count 1 thread where a local run counts the machine's cores.
THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS")
_thread_environment: dict[str, str | None] | None = None  # as it was before the cluster started


def remember_thread_environment() -> None:
    global _thread_environment
    _thread_environment = {name: os.environ.get(name) for name in THREAD_VARIABLES}


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


def flow_threads(spec: ModelSpec) -> int | None:
    """The torch threads a local run of this model would use (this process's), which the workers then use;
    None for a backend that does not run on torch here."""
    if spec.backend in REMOTE_BACKENDS:
        return None
    # Torch reads the environment once, at its first count: a count made already stands (a test's set_num_threads).
    with _environment(_thread_environment):
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
    key = spec.model_dump_json()
    with _LOCK:
        use_threads(threads)
        model = _MODELS.pop(key, None)
        if model is None:
            model = load_model(spec)
            _LOADS[key] += 1
        _MODELS[key] = model
        while len(_MODELS) > KEEP_MODELS:
            _MODELS.popitem(last=False)
    return model


def model_loads() -> dict[str, int]:
    """This process's model loads by spec JSON (what a test or an operator asks each worker)."""
    return dict(_LOADS)


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


# Handlers of this process's listeners, by token: a shard running in this process (a thread runner) calls
# its flow's handler directly.
_LISTENERS: dict[str, Callable[[ChunkDone], None]] = {}


@dataclass(frozen=True)
class ChunkChannel:
    """What a shard task is given to report its chunks on: the flow's Dask event topic, its Ray queue, or
    (any other runner) its handler in this process. Sending never fails the shard."""

    token: str
    queue: Any = None  # a ray.util.queue.Queue, for the Ray runner

    def send(self, done: ChunkDone) -> None:
        message = {"label": done.label, "answered": done.answered, "retries": done.retries}
        try:
            if self.queue is not None:
                self.queue.put_nowait(message)
            elif self.token in _LISTENERS:
                _LISTENERS[self.token](done)
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
        _LISTENERS[token] = handler
        try:
            yield ChunkChannel(token)
        finally:
            del _LISTENERS[token]


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


@dataclass(frozen=True)
class Pair:
    """One (model, scenario) run to make, or to finish (`resume_run_id`)."""

    prep: Prepared
    model_spec: ModelSpec
    resume_run_id: str | None = None


class ShardsFailed(RuntimeError):
    """Some of a run's shards failed after the runner's retries; the others' answers are cached."""


@dataclass
class InFlight:
    pair: Pair
    run_id: str
    info: ModelInfo
    requests: list[Request]
    baselines: dict[str, Request]
    plan: InferencePlan
    began: float
    shards: int = 0
    pending: int = 0
    calls: int = 0
    failures: list[str] = field(default_factory=list)

    @property
    def names(self) -> tuple[str, str]:
        return self.pair.prep.plan.spec.name, self.pair.model_spec.name


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

    def __init__(self, label: str, total: int, done_at_start: int) -> None:
        self.done_at_start = done_at_start
        self.answered: dict[str, int] = {}  # by shard label
        self.retries: dict[str, int] = {}
        self.closed = False
        self._said = (done_at_start, 0)  # a shard's result repeats what its last chunk said: said once
        self._lock = threading.Lock()
        progress.reporter.start_inference(label, total, done_at_start)

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
            progress.reporter.end_inference()

    def _report(self) -> None:
        now = (self.done_at_start + sum(self.answered.values()), sum(self.retries.values()))
        if not self.closed and now != self._said:
            self._said = now
            progress.reporter.advance(*now)


def _progress_label(flights: list[InFlight], shards: int) -> str:
    if len(flights) == 1:
        return f"{flights[0].names[0]} × {flights[0].names[1]} ({shards} shard{'s' * (shards != 1)})"
    return f"{len(flights)} runs ({shards} shard{'s' * (shards != 1)})"


def fan_out_runs(
    pairs: list[Pair], seed: int, db: str | None, flow_run_id: str | None, use_cache: bool, shards: int
) -> list[RunOutcome]:
    """Every pair's inference on the flow's task runner; runs are written here, in the pairs' order."""
    meter: ShardMeter | None = None

    def chunk_done(done: ChunkDone) -> None:
        if meter is not None:
            meter.chunk(done)

    with listening(chunk_done) as channel:
        outcomes, futures, flights = _submit_runs(pairs, seed, db, flow_run_id, use_cache, shards, channel)
        total = sum(len(f.plan.distinct) for f in flights)
        done = sum(len(f.plan.answers) for f in flights)
        meter = ShardMeter(_progress_label(flights, len(futures)), total, done)
        try:
            _collect(futures, outcomes, meter, db, use_cache)
        finally:
            meter.close()
    return [o for o in outcomes if o is not None]


Submitted = dict[int, tuple[PrefectFuture, int, InFlight, int, str]]  # by id(future): index, flight, number, label


def _submit_runs(
    pairs: list[Pair],
    seed: int,
    db: str | None,
    flow_run_id: str | None,
    use_cache: bool,
    shards: int,
    channel: ChunkChannel,
) -> tuple[list[RunOutcome | None], Submitted, list[InFlight]]:
    """Open every pair's run and submit its shards; a run with nothing to compute is finished here."""
    warehouse = Warehouse(db)
    specs = {p.model_spec.model_dump_json(): p.model_spec for p in pairs}
    # The workers run torch on this process's threads: a run on them gives the local runner's answers.
    threads = {key: flow_threads(spec) for key, spec in specs.items()}
    described = {key: describe_model.submit(spec, threads[key]) for key, spec in specs.items()}
    models = {key: future.result() for key, future in described.items()}  # a model that cannot load stops here
    outcomes: list[RunOutcome | None] = [None] * len(pairs)
    futures: Submitted = {}
    flights: list[InFlight] = []
    for index, pair in enumerate(pairs):
        key = pair.model_spec.model_dump_json()
        info, identity = models[key]
        began = time.perf_counter()
        run_id = open_run(pair.prep, info, pair.model_spec, seed, db, flow_run_id, pair.resume_run_id)
        try:
            requests = requests_of(pair.prep, seed)
            sent, baselines = with_baselines(requests)
            plan = plan_inference(sent, identity, warehouse, use_cache)
            flight = InFlight(pair, run_id, info, requests, baselines, plan, began)
            groups = shard(plan.missing(), shards)
            flight.shards = flight.pending = len(groups)
            for number, group in enumerate(groups, 1):
                chunks = [[(plan.keys[r.id], r) for r in chunk] for chunk in group]
                label = f"{flight.names[0]} × {flight.names[1]} [{number}/{len(groups)}]"
                future = infer_shard.submit(pair.model_spec, identity, chunks, label, threads[key], channel)
                futures[id(future)] = (future, index, flight, number, label)
        except Exception as exc:
            outcomes[index] = fail(db, run_id, (pair.prep.plan.spec.name, pair.model_spec.name), exc)
            continue
        flights.append(flight)
        if not groups:  # everything was cached
            outcomes[index] = _finish(flight, db, use_cache)
    return outcomes, futures, flights


def _collect(
    futures: Submitted, outcomes: list[RunOutcome | None], meter: ShardMeter, db: str | None, use_cache: bool
) -> None:
    """Each shard's answers as it returns (cached first), and each run finished once its last shard is back."""
    warehouse = Warehouse(db)
    for future in as_completed([f for f, *_ in futures.values()]):
        _, index, flight, number, label = futures[id(future)]
        try:
            result: ShardResult = future.result()
            if use_cache:  # before anything else: what came back survives whatever happens next
                kinds = {k: (flight.plan.distinct[k].kind, c) for k, c in result.answers.items()}
                warehouse.cache_answers(flight.plan.identity.fingerprint, kinds, flight.run_id)
            flight.plan.answers.update(result.answers)
            flight.calls += len(result.answers)
            meter.shard(label, len(result.answers), result.retries)
        except Exception as exc:
            flight.failures.append(f"shard {number}/{flight.shards}: {type(exc).__name__}: {exc}")
            meter.shard(label, 0, 0)
        flight.pending -= 1
        if flight.pending == 0:
            outcomes[index] = _finish(flight, db, use_cache)


def _finish(flight: InFlight, db: str | None, use_cache: bool) -> RunOutcome:
    """Score and write a run whose shards have all returned, or fail it if one did not."""
    try:
        if flight.failures:
            raise ShardsFailed(
                f"{len(flight.failures)} of {flight.shards} inference shards failed after retries "
                f"({'; '.join(flight.failures)})"
                + (
                    f"; the others' answers are cached: `helmflow run --resume {flight.run_id}` computes the rest"
                    if use_cache
                    else ""
                )
            )
        result = flight.plan.result(flight.calls)
        predictions = predictions_of(flight.requests, flight.baselines, result.completions)
        counts = (result.model_calls, result.cache_hits)
        return complete_run(
            flight.pair.prep, flight.info, flight.names[1], flight.run_id, predictions, counts, flight.began, db
        )
    except Exception as exc:
        return fail(db, flight.run_id, flight.names, exc)
