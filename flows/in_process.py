"""The in-process executor: each run's missing answers computed here, chunk by chunk, on one loaded model.

A model is loaded when the first run that needs it starts (or taken as start-up loaded it) and kept
until a run needs another: the pairs come model by model, so each model loads once.
"""

from __future__ import annotations

from collections.abc import Iterator

from prefect import task
from prefect.utilities.annotations import quote

from helmflow.flows import progress
from helmflow.flows.inference import ModelIdentity, answer
from helmflow.flows.pipeline import Run, RunContext
from helmflow.flows.stages import TASK_OPTIONS
from helmflow.specs.schema import ModelSpec
from helmflow.tasks.models import ModelBackend, ModelInfo, load_model
from helmflow.tasks.models.openai_client import ModelServerError
from helmflow.warehouse.store import Warehouse


@task(name="load-model", **TASK_OPTIONS)
def model_stage(spec: ModelSpec, context: RunContext) -> ModelBackend:
    return context.take_model(spec) or load_model(spec)


def _transient(task: object, run: object, state: object) -> bool:
    """Retry inference only for a model server that did not answer (answers so far are kept)."""
    try:
        state.result()  # type: ignore[attr-defined]
    except ModelServerError:
        return True
    except Exception:
        return False
    return False


@task(name="infer", retries=2, retry_delay_seconds=[5, 30], retry_condition_fn=_transient, **TASK_OPTIONS)
def infer_stage(model: ModelBackend, run: Run, db: str | None, use_cache: bool, reporter: progress.Reporter) -> None:
    """The run's missing answers into `run.plan.answers` (a retry starts from those already there)."""
    meter = progress.InferenceProgress(reporter, f"{run.names[0]} × {run.names[1]}", progress.task_retries())
    try:
        answer(model, run.plan, Warehouse(db), run.run_id, use_cache, meter)
    finally:
        reporter.end_inference()


class InProcess:
    """The pipeline's executor for the local runner (flows/pipeline.py's `Executor`)."""

    def __init__(self, context: RunContext, db: str | None, use_cache: bool = True) -> None:
        self.context = context
        self.db = db
        self.use_cache = use_cache
        self._model: tuple[str, ModelBackend] | None = None  # the model loaded now, by spec JSON
        self._done: list[Run] = []

    def __enter__(self) -> InProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self._model = None  # the weights go when the flow's last run has them no more

    def model(self, spec: ModelSpec) -> ModelBackend:
        key = spec.model_dump_json()
        if self._model is None or self._model[0] != key:
            self._model = None  # the previous model's memory first
            loaded = model_stage(spec, self.context)
            self.context.reporter.stage(spec.name, f"loaded ({loaded.info.fingerprint})")
            self._model = (key, loaded)
        return self._model[1]

    def describe(self, spec: ModelSpec) -> tuple[ModelInfo, ModelIdentity]:
        model = self.model(spec)
        return model.info, ModelIdentity.of(model)

    def submit(self, run: Run) -> None:
        try:
            # quote(): Prefect would otherwise walk every request looking for futures.
            infer_stage(self.model(run.pair.model_spec), quote(run), self.db, self.use_cache, self.context.reporter)
        except Exception as exc:  # after the task's retries: the run fails with it, the next run goes on
            run.error = exc
        self._done.append(run)

    def finished(self, wait: bool) -> Iterator[Run]:
        while self._done:
            yield self._done.pop(0)
