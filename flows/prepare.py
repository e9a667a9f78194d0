"""The data stage: a scenario's instances loaded, selected and checked, before anything runs on a model.

`prepare` does it at once; `preflight` does it for every scenario of a command before Prefect has
started (flows/startup.py), its checks running in the validation worker beside the model load.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import pandas as pd

from helmflow.flows.plans import ScenarioPlan
from helmflow.flows.validation_process import ValidationWorker
from helmflow.tasks.adapt import check_letterable
from helmflow.tasks.data import DataUnavailable, ResolvedSource, fewshot_pool, load_instances, select
from helmflow.tasks.instances import Instance
from helmflow.tasks.validate import ValidationFailed, ValidationResult, validate_instances

FEWSHOT_ID = "fewshot:"  # the prefix of an exemplar's id in the instance checks

# What a prepared scenario is looked up by: the same spec, folder, suite, seed and source preference.
PlanKey = tuple[str, str | None, str | None, int, str]


@dataclass(frozen=True)
class Prepared:
    plan: ScenarioPlan
    instances: list[Instance]
    fewshot_pool: list[Instance]
    source: ResolvedSource
    checks: list[ValidationResult]


def plan_key(plan: ScenarioPlan, seed: int, prefer: str) -> PlanKey:
    return (plan.spec.model_dump_json(), plan.base_dir, plan.suite, seed, prefer)


def prepare(plan: ScenarioPlan, seed: int, prefer: str, worker: ValidationWorker) -> Prepared:
    """Load, select and validate a scenario's instances (and its few-shot pool); bad input raises here."""
    loaded = _load(plan, seed, prefer)
    return _checked(loaded, worker.run(validate_instances, loaded.frame))


def preflight(
    plans: list[ScenarioPlan],
    seed: int,
    prefer: str,
    worker: ValidationWorker,
    unavailable: list[tuple[ScenarioPlan, str]],
) -> Callable[[], dict[PlanKey, Prepared]]:
    """Load every scenario's data now (a bad field raises here, before Prefect starts or any model loads) and
    hand its checks to the validation worker; the function returned waits for the checks, and gives back each
    scenario prepared, or raises on data that fails them.

    A scenario whose data is not here (DataUnavailable: the Hub unreachable, offline files missing) is added
    to `unavailable` with its one-line reason, and the others go on (HELM's core suite on a machine without
    the Hub runs what it has offline); when no scenario is left, that reason is raised."""
    pending = []
    for plan in plans:
        try:
            loaded = _load(plan, seed, prefer)
        except DataUnavailable as exc:
            unavailable.append((plan, str(exc)))
            continue
        checks = worker.submit(validate_instances, loaded.frame)
        pending.append((plan_key(plan, seed, prefer), loaded, checks))
    if unavailable and not pending:  # nothing to run: the command fails as for any data error
        raise DataUnavailable(unavailable[0][1])

    def finish() -> dict[PlanKey, Prepared]:
        return {key: _checked(loaded, checks.result()) for key, loaded, checks in pending}

    return finish


@dataclass(frozen=True)
class _Loaded:
    """A scenario's selected instances and few-shot pool, and the frame their checks read."""

    plan: ScenarioPlan
    instances: list[Instance]
    pool: list[Instance]
    source: ResolvedSource
    frame: pd.DataFrame


def _load(plan: ScenarioPlan, seed: int, prefer: str) -> _Loaded:
    spec = plan.spec
    base = Path(plan.base_dir) if plan.base_dir else None
    if spec.adapter.instructions_file and not spec.adapter.instructions:  # the loader found no such file here
        raise DataUnavailable(
            f"scenario '{spec.name}' needs its prompt file {spec.adapter.instructions_file} "
            "(adapter.instructions_file), which is not on this machine"
        )
    instances, source = load_instances(spec, prefer=prefer, base_dir=base, groups=spec.groups)  # type: ignore[arg-type]
    instances = select(instances, spec.groups, spec.max_instances, seed)
    pool = fewshot_pool(spec, prefer, base)  # type: ignore[arg-type]
    check_letterable(spec.adapter, [*instances, *pool])
    # The exemplars are checked with the instances (an exemplar's gold letter is in every prompt), under
    # ids of their own.
    checked = [*instances, *(replace(i, id=FEWSHOT_ID + i.id) for i in pool)]
    frame = pd.DataFrame(
        {
            "instance_id": [i.id for i in checked],
            "input": [i.input for i in checked],
            "n_choices": [len(i.choices) for i in checked],
            "gold_index": pd.array([i.gold_index for i in checked], dtype="Int64"),
        }
    )
    return _Loaded(plan, instances, pool, source, frame)


def _checked(loaded: _Loaded, checks: list[ValidationResult]) -> Prepared:
    if not all(c.success for c in checks):
        # Name the source rows of the failing instances: that is what a person has to fix.
        where = {i.id: i.origin for i in loaded.instances} | {FEWSHOT_ID + i.id: i.origin for i in loaded.pool}
        raise ValidationFailed(checks, where=where)
    return Prepared(loaded.plan, loaded.instances, loaded.pool, loaded.source, checks)
