"""One (scenario, model) run, stage by stage: the only place the stage sequence is written.

    open the run (a new row, or a failed run marked running again)
    -> requests (the adapter's prompts, perturbed copies, calibration baselines)
    -> the inference plan (what the inference cache answers; the rest in fixed chunks)
    -> answers, from an executor: chunk by chunk in this process (flows/in_process.py) or in shards
       on a Dask or Ray cluster (flows/runners.py)
    -> predictions -> their checks -> scores -> the scores' checks -> the run written whole
       (or marked failed with what it had; its cached answers stay for --resume)

`run_pairs` drives it for every pair of a flow run: the benchmark and resume flows
(flows/benchmark.py) and the refresh (flows/refresh.py) call it, whatever the runner; `rescore` enters
it at the predictions stage. Nothing here holds state between calls: what the caller made ready
before the flow (data checked, a model loaded) and where progress goes arrive in a `RunContext`.
"""

from __future__ import annotations

import os
import time
import traceback
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import NoReturn, Protocol

from prefect.utilities.annotations import quote

from helmflow.flows import progress
from helmflow.flows.artifacts import publish_run
from helmflow.flows.failures import cannot_write
from helmflow.flows.inference import InferencePlan, ModelIdentity, plan_inference
from helmflow.flows.plans import ScenarioPlan
from helmflow.flows.prepare import PlanKey, Prepared
from helmflow.flows.stages import (
    open_run,
    perturbations_of,
    predictions_of,
    requests_of,
    score_predictions,
    score_stage,
    stored_predictions,
    validate_predictions_stage,
    validate_stats_stage,
    with_baselines,
    write_stage,
)
from helmflow.flows.validation_process import ValidationWorker
from helmflow.specs.loader import spec_hash
from helmflow.specs.schema import ModelSpec, ScenarioSpec
from helmflow.tasks.chat import ChatFormat
from helmflow.tasks.fit_context import Window
from helmflow.tasks.metrics import Prediction
from helmflow.tasks.models import ModelBackend, ModelInfo
from helmflow.tasks.models.chat_format import chat_format_for
from helmflow.tasks.models.window import window_for
from helmflow.tasks.prompt_store import PromptStore
from helmflow.tasks.records import Request
from helmflow.tasks.samples import expected_samples
from helmflow.warehouse.rows import result_frames
from helmflow.warehouse.store import Warehouse


@dataclass(frozen=True)
class RunOutcome:
    run_id: str
    scenario: str
    model: str
    status: str
    error: str | None = None


class RunContext:
    """What a flow run is handed by whoever started it: the scenarios prepared and the model loaded before
    the flow (flows/startup.py), each taken once by the flow's load stages, and where progress goes.

    A plain slotted class, not a dataclass: Prefect records a flow run's parameters, and would otherwise
    copy every instance and the model's weights into that record (it records this one by its type name).
    """

    __slots__ = (
        "chats",
        "checks",
        "models",
        "prepared",
        "release_checks",
        "reporter",
        "thread_environment",
        "unavailable",
        "windows",
    )

    def __init__(self, reporter: progress.Reporter | None = None) -> None:
        # Where the data, prediction and score checks run: a worker process once the caller starts it
        # (flows/startup.py), this process otherwise. The caller stops it (helmflow.evaluate).
        self.checks = ValidationWorker()
        # Whether the worker may stop once the last run's checks are done (helmflow.evaluate: no check comes after
        # that run), so that its ~380 MiB are not held through the run's write, the command's peak.
        self.release_checks = False
        self.prepared: dict[PlanKey, Prepared] = {}
        # Scenarios whose data is not here (flows/prepare.preflight), each with why: recorded as failed runs.
        self.unavailable: list[tuple[ScenarioPlan, str]] = []
        # Each model's context window (its tokenizer, loaded once), for fitting prompts into it.
        self.windows: dict[str, Window | None] = {}
        # Each model's chat format (its template, system prompt, turn layout), applied as requests are built.
        self.chats: dict[str, ChatFormat | None] = {}
        self.models: dict[str, ModelBackend] = {}
        self.reporter: progress.Reporter = reporter if reporter is not None else progress.default_reporter()
        # OMP_NUM_THREADS and MKL_NUM_THREADS as they were before a local cluster started (flows/runners.py)
        self.thread_environment: dict[str, str | None] | None = None

    def __reduce__(self) -> tuple[type[RunContext], tuple[()]]:
        # Prefect sends a flow run's parameters along with each task it gives a Dask or Ray worker. What a
        # context holds belongs to the flow process (a loaded model, a display and its locks): a copy is empty.
        return (RunContext, ())

    def take_prepared(self, key: PlanKey) -> Prepared | None:
        return self.prepared.pop(key, None)

    def take_model(self, spec: ModelSpec) -> ModelBackend | None:
        return self.models.pop(spec.model_dump_json(), None)

    def window(self, spec: ModelSpec) -> Window | None:
        """The model's context window (tasks/models/window.py), None where its tokens cannot be counted here."""
        key = spec.model_dump_json()
        if key not in self.windows:
            self.windows[key] = window_for(spec)
        return self.windows[key]

    def chat(self, spec: ModelSpec) -> ChatFormat | None:
        """The model's chat format (tasks/models/chat_format.py), None where its prompts are plain text."""
        key = spec.model_dump_json()
        if key not in self.chats:
            self.chats[key] = chat_format_for(spec)
        return self.chats[key]


@dataclass(frozen=True)
class Pair:
    """One (model, scenario) run to make, or to finish (`resume_run_id`)."""

    prep: Prepared
    model_spec: ModelSpec
    resume_run_id: str | None = None


@dataclass
class Run:
    """A run between its start and its write: its executor fills `plan.answers` in, and sets `error` when
    the answers could not all be computed."""

    pair: Pair
    run_id: str
    info: ModelInfo
    requests: list[Request]
    baselines: dict[str, Request]
    plan: InferencePlan
    began: float
    # The prompts of `requests` (which carry none) until the run is written; closed by `finish`.
    prompts: PromptStore = field(default_factory=PromptStore)
    error: Exception | None = field(default=None)

    @property
    def names(self) -> tuple[str, str]:
        return self.pair.prep.plan.spec.name, self.pair.model_spec.name


class Executor(Protocol):
    """Where a run's missing answers are computed. Used as a context manager around a flow run's pairs."""

    def __enter__(self) -> Executor: ...

    def __exit__(self, *exc: object) -> None: ...

    def describe(self, spec: ModelSpec) -> tuple[ModelInfo, ModelIdentity]:
        """The model's info (what the run records) and identity (what its answers are cached under)."""
        ...

    def submit(self, run: Run) -> None:
        """Start computing `run.plan.missing()` (an in-process executor computes it before returning)."""
        ...

    def finished(self, wait: bool) -> Iterator[Run]:
        """Submitted runs whose answers are all in (or whose `error` says why not), each once; `wait`:
        also those still being computed, as they finish."""
        ...


def run_pairs(
    pairs: list[Pair],
    executor: Executor,
    context: RunContext,
    seed: int,
    db: str | None,
    flow_run_id: str | None,
    use_cache: bool = True,
) -> list[RunOutcome]:
    """Every pair through the stages, in the pairs' order; runs are written in this process only."""
    outcomes: dict[int, RunOutcome] = {}
    index_of: dict[str, int] = {}

    def last(index: int) -> bool:  # every pair started, and no other run still to finish
        return index == len(pairs) - 1 and len(outcomes) == len(pairs) - 1

    with executor:
        for index, pair in enumerate(pairs):
            started = start(pair, executor, context, seed, db, flow_run_id, use_cache)
            if isinstance(started, RunOutcome):
                outcomes[index] = started
                continue
            index_of[started.run_id] = index
            executor.submit(started)
            for run in executor.finished(wait=False):
                outcomes[index_of[run.run_id]] = finish(run, context, db, last(index))
        for run in executor.finished(wait=True):
            outcomes[index_of[run.run_id]] = finish(run, context, db, len(outcomes) == len(pairs) - 1)
    return [outcomes[i] for i in sorted(outcomes)]


def start(
    pair: Pair,
    executor: Executor,
    context: RunContext,
    seed: int,
    db: str | None,
    flow_run_id: str | None,
    use_cache: bool,
) -> Run | RunOutcome:
    """The run opened, its requests built and its inference planned; a failure after the run's row exists
    is that run's outcome (a model that cannot load raises: it would fail every run after it)."""
    info, identity = executor.describe(pair.model_spec)
    began = time.perf_counter()
    run_id = open_run(pair.prep, info, pair.model_spec, seed, db, flow_run_id, pair.resume_run_id)
    # The run's prompts wait on disk until the model and the write read them (tasks/prompt_store.py).
    prompts = PromptStore()
    try:
        window, chat = context.window(pair.model_spec), context.chat(pair.model_spec)
        requests = requests_of(pair.prep, seed, window, chat, prompts)
        sent, baselines = with_baselines(requests)
        plan = plan_inference(sent, identity, Warehouse(db), use_cache, prompts)
        return Run(pair, run_id, info, requests, baselines, plan, began, prompts)
    except Exception as exc:
        prompts.close()
        return fail(db, run_id, (pair.prep.plan.spec.name, pair.model_spec.name), exc, context.reporter)


def finish(run: Run, context: RunContext, db: str | None, last: bool = False) -> RunOutcome:
    """Predictions from the answers, then checks, scores and the write; or the run failed, if its answers
    could not all be computed."""
    try:
        if run.error is not None:
            raise run.error
        # Every answer the cache did not give went to the model for this run (in an earlier try, perhaps).
        result = run.plan.result(len(run.plan.answers) - len(run.plan.cached))
        run.plan.release()
        predictions = predictions_of(run.requests, run.baselines, result.completions, run.pair.prep.plan.spec)
        counts = (result.model_calls, result.cache_hits)
        del result  # its completions live on in the predictions
        prep, model_name = run.pair.prep, run.names[1]
        return complete_run(
            prep, run.info, model_name, run.run_id, predictions, counts, run.began, db, context, last, run.prompts
        )
    except Exception as exc:
        return fail(db, run.run_id, run.names, exc, context.reporter)
    finally:
        run.prompts.close()


def complete_run(
    prep: Prepared,
    info: ModelInfo,
    model_name: str,
    run_id: str,
    predictions: list[Prediction],
    counts: tuple[int, int],
    began: float,
    db: str | None,
    context: RunContext,
    last: bool = False,
    prompts: PromptStore | None = None,
) -> RunOutcome:
    """Validate and score the predictions, then write the run whole; `counts` is (model calls, cache hits).
    `last`: no run of this command comes after it (its checks are the last: the worker may stop before the write).
    `prompts`: where the predictions' prompts are, when their requests carry none."""
    spec = prep.plan.spec
    calls, hits = counts
    # What the adapter promises, counted from the instances, not from the predictions: one answer per
    # instance and per instance and perturbation, and num_samples sampled answers per instance.
    count = len(prep.instances)
    expected = count * (1 + len(perturbations_of(spec))) + expected_samples(spec.adapter, count)
    # quote(): Prefect would otherwise walk every element of these lists looking for futures (about a second
    # of a 514-instance run); the values are plain data made in this process.
    checks = list(prep.checks) + validate_predictions_stage(quote(predictions), expected, context.checks)
    unscored = None
    try:
        stats, metrics, classifier = score_stage(spec, quote(prep.instances), quote(predictions), info.num_parameters)
    except Exception as exc:
        if all(c.success for c in checks):
            raise
        # Predictions that failed their checks (a NaN log-prob) may not be scorable: the run still lands
        # as validation_failed, with its predictions and the checks that name the bad rows.
        stats, metrics, classifier = [], [], None
        unscored = f"not scored ({type(exc).__name__}: {exc})"
    checks += validate_stats_stage(quote(metrics), context.checks) if metrics else []
    if last and context.release_checks:
        context.checks.stop()
    failed = [c for c in checks if not c.success]
    status = "validation_failed" if failed else "succeeded"
    tables = result_frames(prep.instances, predictions, stats, metrics, checks, prompts.text if prompts else None)
    error = "; ".join([*(c.describe() for c in failed), *([unscored] if unscored else [])]) or None
    updates = {
        "error": error,
        "wall_seconds": time.perf_counter() - began,
        "toxicity_classifier": classifier,
        "num_parameters": info.num_parameters,
        "model_calls": calls,
        "cache_hits": hits,
        # What the runtimes were measured under: a busy machine makes every request slower (history.py
        # compares efficiency only between runs whose conditions match).
        "load_per_core": os.getloadavg()[0] / (os.cpu_count() or 1),
    }
    write_stage(db, run_id, status, quote(tables), updates)
    label = f"{spec.name} × {model_name}"
    context.reporter.stage(label, f"{status} (run {run_id}; {calls} model calls, {hits} from the cache)")
    publish_run(db, [run_id])  # the run's headline table and summary in the Prefect UI
    return RunOutcome(run_id, spec.name, model_name, status, error)


def fail(
    db: str | None, run_id: str, label: tuple[str, str], exc: BaseException, reporter: progress.Reporter
) -> RunOutcome:
    """Record a run as failed (what its inference cached stays for --resume) and say so.

    A write the machine refused (flows/failures.py: a full disk under the warehouse) is raised again once
    recorded, if it can be: it stops the command, as it would fail every run after this one."""
    message = f"{type(exc).__name__}: {exc}"
    if cannot_write(exc):
        _stop_on(db, run_id, label, exc)
    Warehouse(db).fail_run(run_id, message + "\n" + "".join(traceback.format_exception(exc, limit=5)))
    reporter.stage(f"{label[0]} × {label[1]}", f"failed: {message}")
    return RunOutcome(run_id, label[0], label[1], "failed", message)


def _stop_on(db: str | None, run_id: str, label: tuple[str, str], exc: BaseException) -> NoReturn:
    """Mark the run failed if the warehouse still takes that, say which run was lost, and raise `exc` again."""
    run = f"run {run_id} ({label[0]} × {label[1]}) was not stored whole"
    try:
        Warehouse(db).fail_run(run_id, f"{type(exc).__name__}: {exc}")
    except Exception:  # the same full disk: the row stays running, and reads as interrupted once we exit
        exc.add_note(f"{run}; it shows as failed (interrupted) after this command")
    else:
        exc.add_note(f"{run} and is marked failed")
    exc.add_note(f"`helmflow run --resume {run_id}` finishes it once the warehouse can be written")
    raise exc


# -- entering at the predictions stage ---------------------------------------------------------------------

# Runs whose instances and answers are all stored; a failed or running run may have only some of its predictions.
SCORABLE = ("succeeded", "validation_failed")


def rescore(db: str | Path | None, run_id: str) -> int:
    """Score a stored run again with the current metric code (no inference, no prediction row touched) and
    store the result as its next metrics version; returns that version."""
    warehouse = Warehouse(db)
    run = warehouse.stored_run(run_id)
    if run.status not in SCORABLE:
        raise LookupError(
            f"run {run_id} is {run.status}: only a finished run's stored answers can be re-scored "
            "(resume a failed run with helmflow run --resume)"
        )
    spec = ScenarioSpec.model_validate_json(run.spec_json)
    predictions = stored_predictions(spec, run.instances, run.answers)
    stats, metrics, _ = score_predictions(spec, run.instances, predictions, run.num_parameters)
    return warehouse.add_metrics_version(run_id, stats, metrics)


def record_unavailable(
    plan: ScenarioPlan, model_spec: ModelSpec, seed: int, db: str | None, reason: str, reporter: progress.Reporter
) -> RunOutcome:
    """A failed run for a scenario whose data is not here, so the warehouse (and a suite's layout) says why its
    cells are empty; nothing was loaded or asked of the model."""
    spec = plan.spec
    run_id = uuid.uuid4().hex[:12]
    row = {
        "run_id": run_id,
        "suite": plan.suite,
        "scenario": spec.name,
        "spec_hash": spec_hash(spec),
        "spec_json": spec.model_dump_json(),
        "spec_dir": plan.base_dir,
        "model": model_spec.name,
        "model_json": model_spec.model_dump_json(),
        "seed": seed,
        "adapter_json": spec.adapter.model_dump_json(),
    }
    warehouse = Warehouse(db)
    warehouse.start_run(row)
    message = f"DataUnavailable: {reason}"
    warehouse.fail_run(run_id, message)
    reporter.stage(f"{spec.name} × {model_spec.name}", f"failed: {message}")
    return RunOutcome(run_id, spec.name, model_spec.name, "failed", message)
