"""Past one machine: fan a benchmark's inference out over a Dask or Ray cluster through Prefect's task runners.

Who does what:

- The flow process is the one writer. For every (model, scenario) run it looks the inference
  cache up, cuts what is missing into the same fixed chunks the local runner uses (so every
  answer is computed in the same batch as on one machine), groups whole chunks into shards and
  submits them. It writes each shard's answers to the cache as the shard returns, and it alone
  writes the runs, so `--resume` finishes a run whose shards did not all come back.
- Workers only compute. Each worker process loads a model once and keeps it (`_MODELS`) for every
  shard it gets, and checks that its copy is the model the run was planned for.
- A worker that dies is the runner's to retry: Dask reschedules its tasks on another worker, Ray
  re-runs them. A shard that still fails fails its run (with the other shards' answers cached),
  never a run that looks complete.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections import Counter, OrderedDict
from dataclasses import dataclass, field

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
from helmflow.flows.inference import InferencePlan, ModelIdentity, compute_chunk, plan_inference
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
        if spec.address:
            return RayTaskRunner(address=spec.address, init_kwargs=quiet)
        return RayTaskRunner(init_kwargs={"num_cpus": spec.workers, "include_dashboard": False, **quiet})
    return None


# -- on a worker -----------------------------------------------------------------------------------------

# The models this worker process has loaded, by model spec JSON, most recently used last. A few
# are kept, so a suite of several models does not reload one per shard nor hold every one.
KEEP_MODELS = 2
_MODELS: OrderedDict[str, ModelBackend] = OrderedDict()
_LOADS: Counter[str] = Counter()  # how many times this process loaded each spec (1 is the aim)
_LOCK = threading.Lock()  # a threaded runner's tasks share one process: load each model once


def worker_model(spec: ModelSpec) -> ModelBackend:
    key = spec.model_dump_json()
    with _LOCK:
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


SHARD_OPTIONS = {"cache_policy": NONE, "persist_result": False}


@task(name="describe-model", **SHARD_OPTIONS)
def describe_model(spec: ModelSpec) -> tuple[ModelInfo, ModelIdentity]:
    """Loaded on a worker (and kept there): the info a run records and the identity its keys are hashed with."""
    model = worker_model(spec)
    return model.info, ModelIdentity.of(model)


@task(name="infer-shard", task_run_name="infer {label}", retries=1, retry_delay_seconds=1, **SHARD_OPTIONS)
def infer_shard(
    spec: ModelSpec, identity: ModelIdentity, chunks: list[list[tuple[str, Request]]], label: str
) -> ShardResult:
    """The answers to a shard's chunks, computed chunk by chunk exactly as the local runner does."""
    model = worker_model(spec)
    mine = ModelIdentity.of(model)
    if mine != identity:
        # Answers would be cached under keys that do not describe them.
        raise ModelError(
            f"worker {worker_name()} loaded model '{spec.name}' as {mine}, but the run was planned for {identity}: "
            "every worker must have the same model files and settings"
        )
    began = time.perf_counter()
    answers: dict[str, Completion] = {}
    for chunk in chunks:
        computed = compute_chunk(model, [request for _, request in chunk])
        answers.update({key: computed[request.id] for key, request in chunk})
    return ShardResult(answers, worker_name(), time.perf_counter() - began)


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


def fan_out_runs(
    pairs: list[Pair], seed: int, db: str | None, flow_run_id: str | None, use_cache: bool, shards: int
) -> list[RunOutcome]:
    """Every pair's inference on the flow's task runner; runs are written here, in the pairs' order."""
    warehouse = Warehouse(db)
    described = {}
    for spec in {p.model_spec.model_dump_json(): p.model_spec for p in pairs}.values():
        described[spec.model_dump_json()] = describe_model.submit(spec)
    models = {key: future.result() for key, future in described.items()}  # a model that cannot load stops here
    outcomes: list[RunOutcome | None] = [None] * len(pairs)
    futures: dict[int, tuple[PrefectFuture, int, InFlight, int]] = {}  # by id(future)
    flights: list[InFlight] = []
    for index, pair in enumerate(pairs):
        info, identity = models[pair.model_spec.model_dump_json()]
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
                future = infer_shard.submit(pair.model_spec, identity, chunks, label)
                futures[id(future)] = (future, index, flight, number)
        except Exception as exc:
            outcomes[index] = fail(db, run_id, (pair.prep.plan.spec.name, pair.model_spec.name), exc)
            continue
        flights.append(flight)
        if not groups:  # everything was cached
            outcomes[index] = _finish(flight, db, use_cache)
    total = sum(len(f.plan.distinct) for f in flights)
    progress.reporter.start_inference(f"{len(pairs)} run(s) in {len(futures)} shard(s)", total)
    done = sum(len(f.plan.answers) for f in flights)
    for future in as_completed([f for f, *_ in futures.values()]):
        _, index, flight, number = futures[id(future)]
        try:
            result: ShardResult = future.result()
            if use_cache:  # before anything else: what came back survives whatever happens next
                kinds = {k: (flight.plan.distinct[k].kind, c) for k, c in result.answers.items()}
                warehouse.cache_answers(flight.plan.identity.fingerprint, kinds, flight.run_id)
            flight.plan.answers.update(result.answers)
            flight.calls += len(result.answers)
            done += len(result.answers)
            progress.reporter.advance(done)
        except Exception as exc:
            flight.failures.append(f"shard {number}/{flight.shards}: {type(exc).__name__}: {exc}")
        flight.pending -= 1
        if flight.pending == 0:
            outcomes[index] = _finish(flight, db, use_cache)
    progress.reporter.end_inference()
    return [o for o in outcomes if o is not None]


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
