"""What a flow evaluates: scenario plans from suites and scenarios, with the suite's overrides applied."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from helmflow.specs.library import apply_suite_entry, find, resolve_run_target
from helmflow.specs.loader import SpecError
from helmflow.specs.schema import ScenarioSpec, SuiteSpec


@dataclass(frozen=True)
class ScenarioPlan:
    spec: ScenarioSpec
    base_dir: str | None = None  # the spec file's folder, for relative data paths
    suite: str | None = None


@dataclass
class RunTargets:
    """What `helmflow run` was given, resolved: scenario plans, the suites' models and their seed."""

    plans: list[ScenarioPlan] = field(default_factory=list)
    models: list[str] = field(default_factory=list)
    seed: int | None = None


def maps_choices(spec: ScenarioSpec) -> bool:
    """Whether some source of the spec gives instances options (a field map, or BIG-bench's target_scores)."""
    maps = [spec.fields, *(s.fields for s in spec.source.offline_sources if s.fields)]
    if spec.source.hub and spec.source.hub.fields:
        maps.append(spec.source.hub.fields)
    bigbench = any(s.format == "bigbench" for s in spec.source.offline_sources)
    return bigbench or any(m.choices is not None for m in maps)


def check_plan(spec: ScenarioSpec, where: object) -> None:
    """What a single row cannot show: a multiple-choice scenario with no options mapped at all; answer extraction
    steps that are not lm-eval's (tasks/extract.py names the step and field), or on scored options."""
    from helmflow.tasks.extract import parse_steps

    method = spec.adapter.method
    if method.startswith("multiple_choice") and not maps_choices(spec):
        raise SpecError(
            f"{where}: adapter.method {method} scores options, but fields.choices is not set "
            "(map the options' column, or use method: generation)"
        )
    if spec.answer_extraction:
        if method != "generation":
            raise SpecError(f"{where}: answer_extraction reads generated text; adapter.method {method} generates none")
        try:
            parse_steps(spec.answer_extraction)
        except ValueError as exc:
            raise SpecError(f"{where}: {exc}") from None


def suite_plans(suite: SuiteSpec) -> list[ScenarioPlan]:
    plans = []
    for entry in suite.scenarios:
        try:
            found = find("scenario", entry.scenario)
            spec = apply_suite_entry(found.spec, **entry.model_dump(exclude={"scenario"}))  # type: ignore[arg-type]
        except SpecError as exc:
            raise SpecError(f"suite '{suite.name}', entry '{entry.scenario}': {exc}") from None
        check_plan(spec, found.path)
        plans.append(ScenarioPlan(spec, str(found.path.parent), suite.name))
    return plans


def run_targets(refs: Sequence[str], max_instances: int | None = None) -> RunTargets:
    """Resolve suite and scenario names or files; `max_instances` overrides every scenario's."""
    targets = RunTargets()
    for ref in refs:
        loaded = resolve_run_target(ref)
        if isinstance(loaded.spec, SuiteSpec):
            suite = loaded.spec
            targets.models += [m for m in suite.models if m not in targets.models]
            targets.seed = suite.seed if targets.seed is None else targets.seed
            targets.plans += suite_plans(suite)
        elif loaded.kind == "scenario":
            check_plan(loaded.spec, loaded.path)  # type: ignore[arg-type]
            targets.plans.append(ScenarioPlan(loaded.spec, str(loaded.path.parent)))  # type: ignore[arg-type]
        else:
            raise SpecError(f"{loaded.path}: a {loaded.kind} spec cannot be run; give a suite or a scenario")
    if max_instances is not None:
        targets.plans = [
            ScenarioPlan(apply_suite_entry(p.spec, max_instances=max_instances), p.base_dir, p.suite)
            for p in targets.plans
        ]
    return targets
