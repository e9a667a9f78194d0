"""Find specs by name in the spec library (this folder, plus any folders on HELMFLOW_SPEC_PATH)."""

from __future__ import annotations

import os
from pathlib import Path

from pydantic import ValidationError

from helmflow.specs.loader import LoadedSpec, SpecError, load_spec
from helmflow.specs.schema import ModelSpec, ScenarioSpec, SuiteSpec

LIBRARY = Path(__file__).parent
KIND_FOLDERS = {"scenario": "scenarios", "model": "models", "suite": "suites"}


def library_roots() -> list[Path]:
    extra = [Path(p) for p in os.environ.get("HELMFLOW_SPEC_PATH", "").split(os.pathsep) if p]
    return [*extra, LIBRARY]


def spec_files(kind: str) -> list[Path]:
    files: dict[str, Path] = {}
    for root in reversed(library_roots()):  # earlier roots win
        for path in sorted((root / KIND_FOLDERS[kind]).glob("*.yaml")):
            files[path.stem] = path
    return [files[name] for name in sorted(files)]


def find(kind: str, ref: str) -> LoadedSpec:
    """A spec by file path or by name in the library."""
    if ref.endswith((".yaml", ".yml")) or os.sep in ref:
        return load_spec(ref, kind)
    for root in library_roots():
        path = root / KIND_FOLDERS[kind] / f"{ref}.yaml"
        if path.is_file():
            return load_spec(path, kind)
    known = ", ".join(p.stem for p in spec_files(kind)) or "none"
    raise SpecError(f"unknown {kind} '{ref}': no file {KIND_FOLDERS[kind]}/{ref}.yaml (known: {known})")


def find_scenario(ref: str) -> ScenarioSpec:
    return find("scenario", ref).spec  # type: ignore[return-value]


def find_model(ref: str) -> ModelSpec:
    """A model spec by name or path, or `hf:<hub id or local dir>` for any transformers model."""
    if ref.startswith("hf:"):
        target = ref[3:]
        name = Path(target).name.lower().replace("_", "-") or "model"
        return ModelSpec(name=name, backend="hf", path=target)
    try:
        return find("model", ref).spec  # type: ignore[return-value]
    except SpecError as exc:
        if "unknown model" in str(exc):
            raise SpecError(f"{exc}; or use hf:<hub id or local directory>") from None
        raise


def resolve_run_target(ref: str) -> LoadedSpec:
    """What `helmflow run REF` names: a suite or scenario file, or a suite/scenario name."""
    if Path(ref).is_file():
        return load_spec(ref)
    if ref.endswith((".yaml", ".yml")):
        raise SpecError(f"{ref}: no such spec file")
    for kind in ("suite", "scenario"):
        for root in library_roots():
            path = root / KIND_FOLDERS[kind] / f"{ref}.yaml"
            if path.is_file():
                return load_spec(path, kind)
    raise SpecError(
        f"unknown suite or scenario '{ref}' (suites: {', '.join(p.stem for p in spec_files('suite'))}; "
        f"scenarios: {', '.join(p.stem for p in spec_files('scenario'))})"
    )


def apply_suite_entry(scenario: ScenarioSpec, **overrides: object) -> ScenarioSpec:
    """A scenario with a suite's per-scenario overrides applied (None means keep), re-validated."""
    # exclude_unset keeps "was this field written in the YAML" for field-map overrides.
    data = scenario.model_dump(exclude_unset=True)
    for key in ("max_instances", "groups"):
        if overrides.get(key) is not None:
            data[key] = overrides[key]
    if overrides.get("num_train") is not None:
        data["adapter"] = {**data.get("adapter", {}), "num_train": overrides["num_train"]}
    try:
        return ScenarioSpec.model_validate(data)
    except ValidationError as exc:  # an override the scenario cannot take (num_train without a few-shot split)
        given = ", ".join(f"{k}: {v}" for k, v in overrides.items() if v is not None)
        problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'spec'}: {e['msg']}" for e in exc.errors())
        raise SpecError(f"scenario '{scenario.name}' with the overrides {{{given}}}: {problems}") from None


__all__ = ["ModelSpec", "ScenarioSpec", "SpecError", "SuiteSpec", "find", "find_model", "find_scenario"]
