"""Find specs by name in the spec library (this folder, plus any folders on HELMFLOW_SPEC_PATH)."""

from __future__ import annotations

import os
import re
import unicodedata
from pathlib import Path

from pydantic import ValidationError

from helmflow.specs.compose import recording
from helmflow.specs.loader import (
    LoadedSpec,
    SpecError,
    allowed_roots,
    check_model_path,
    in_chain,
    load_spec,
    looks_like_path,
)
from helmflow.specs.schema import ModelSpec, ScenarioSpec, SuiteSpec, expand_path, model_path_problem

LIBRARY = Path(__file__).parent
KIND_FOLDERS = {"scenario": "scenarios", "model": "models", "suite": "suites"}
SPEC_PATH_VARIABLE = "HELMFLOW_SPEC_PATH"
# Said with every "unknown ..." error: the usual mistake is a HELMFLOW_SPEC_PATH entry that is the
# models/ folder itself rather than the folder that holds it.
SPEC_PATH_HINT = f"{SPEC_PATH_VARIABLE} adds folders, each holding scenarios/, models/ and suites/"


def library_roots() -> list[Path]:
    """The folders searched for specs by name, first wins: HELMFLOW_SPEC_PATH's (os.pathsep-separated), then ours."""
    extra = [Path(expand_path(p)) for p in os.environ.get(SPEC_PATH_VARIABLE, "").split(os.pathsep) if p.strip()]
    return [*extra, LIBRARY]


def searched(kind: str) -> str:
    """The folders a spec of this kind is looked for in, in order, a missing one marked (for error messages)."""
    folders = [root / KIND_FOLDERS[kind] for root in library_roots()]
    return ", ".join(f"{f}" if f.is_dir() else f"{f} (no such folder)" for f in folders)


def spec_files(kind: str) -> list[Path]:
    """The spec files of this kind by name, first root wins (a suite's for_each scenarios are not files: spec_names)."""
    files: dict[str, Path] = {}
    for root in reversed(library_roots()):  # earlier roots win
        for path in sorted((root / KIND_FOLDERS[kind]).glob("*.yaml")):
            files[path.stem] = path
    return [files[name] for name in sorted(files)]


def spec_names(kind: str) -> list[str]:
    """Every name `find` resolves for this kind: the files, and for scenarios those the suites' for_each make."""
    names = {path.stem for path in spec_files(kind)}
    if kind == "scenario":
        for root in library_roots():
            names.update(root_expansions(root))
    return sorted(names)


# The scenarios made by for_each in suites loaded by path from outside the spec folders (`helmflow run
# my/suite.yaml`), so that the names the suite's entries hold resolve while it is planned. Suites in the
# spec folders are not kept here: their scenarios are found by name in order (root_expansions).
_PATH_SUITE_SCENARIOS: dict[str, LoadedSpec] = {}


def load_file(path: str | Path, kind: str | None = None) -> LoadedSpec:
    """A spec file given by path (`run FILE`, `specs validate FILE`); a suite's for_each scenarios become findable."""
    loaded = load_spec(path, kind)
    suite_folders = [root / KIND_FOLDERS["suite"] for root in library_roots()]
    if loaded.expansions and not in_chain(loaded.path.parent, tuple(suite_folders)):
        _PATH_SUITE_SCENARIOS.update(loaded.expansions)
    return loaded


# Each library suite's for_each scenarios, kept while none of the files they were made from changes (a lookup
# by name loads the suites again, and planning a suite looks up each of its scenarios): resolved suite path ->
# (the spec folders and every file read with its modification time and size, the scenarios).
_SUITE_CACHE: dict[Path, tuple[tuple, dict[str, LoadedSpec]]] = {}


def _stamp(files: list[Path]) -> tuple:
    def one(path: Path) -> tuple:
        try:
            status = path.stat()
        except OSError:
            return (str(path), None)
        return (str(path), status.st_mtime_ns, status.st_size)

    # The folders an instructions_file may be read from (specs/loader.py) too: `{shared}` moves with them.
    folders = (tuple(library_roots()), tuple(allowed_roots(LIBRARY)))
    return (folders, tuple(one(p) for p in dict.fromkeys(files)))


def _suite_expansions(suite: Path, chain: tuple[Path, ...]) -> dict[str, LoadedSpec]:
    if chain:  # inside an extends: the suites being loaded are passed over, so the answer may differ
        return load_spec(suite, "suite", chain).expansions
    cached = _SUITE_CACHE.get(suite.resolve())
    if cached and _stamp([Path(f[0]) for f in cached[0][1]]) == cached[0]:
        return cached[1]
    with recording() as reads:
        expansions = load_spec(suite, "suite").expansions
    _SUITE_CACHE[suite.resolve()] = (_stamp(reads), expansions)
    return expansions


def root_expansions(root: Path, chain: tuple[Path, ...] = ()) -> dict[str, LoadedSpec]:
    """The scenarios the for_each entries of a spec folder's suites make, by name.

    Suites in `chain` are being expanded already (a template that extends a scenario by name): they are
    passed over rather than loaded again.
    """
    found: dict[str, LoadedSpec] = {}
    for suite in sorted((root / KIND_FOLDERS["suite"]).glob("*.yaml")):
        # A cheap test first: only a suite that writes for_each can make scenarios.
        if in_chain(suite, chain) or "for_each" not in suite.read_text(encoding="utf-8"):
            continue
        for name, loaded in _suite_expansions(suite, chain).items():
            if name in found:
                raise SpecError(f"{suite}: the scenario '{name}' is also made by another suite ({found[name].origin})")
            found[name] = loaded
    return found


def _named(kind: str, name: str, chain: tuple[Path, ...] = ()) -> LoadedSpec | None:
    """A spec by name: for scenarios, those of suites loaded by path first; then the files, root by root; then,
    for scenarios, the for_each expansions of the suites, root by root. Files in `chain` are passed over."""
    if kind == "scenario" and name in _PATH_SUITE_SCENARIOS and not chain:
        return _PATH_SUITE_SCENARIOS[name]
    for root in library_roots():
        path = root / KIND_FOLDERS[kind] / f"{name}.yaml"
        if path.is_file() and not in_chain(path, chain):
            return load_spec(path, kind, chain)
    if kind == "scenario":
        for root in library_roots():
            found = root_expansions(root, chain).get(name)
            if found:
                return found
    return None


def _unknown(kind: str, ref: str) -> SpecError:
    known = ", ".join(spec_names(kind)) or "none"
    return SpecError(f"unknown {kind} '{ref}': no {ref}.yaml in {searched(kind)} (known: {known}; {SPEC_PATH_HINT})")


def find(kind: str, ref: str) -> LoadedSpec:
    """A spec by file path or by name in the library; a scenario also as `bigbench:TASK[/SUBTASK]`."""
    if kind == "scenario" and ref.startswith(BIGBENCH_PREFIX):
        from helmflow.specs.bigbench_refs import bigbench_scenario

        return bigbench_scenario(ref)
    if kind == "scenario" and ref.startswith(LMEVAL_PREFIX):
        from helmflow.specs.lmeval_refs import lmeval_scenario

        return lmeval_scenario(ref)
    if looks_like_path(ref):
        return load_file(ref, kind)
    found = _named(kind, ref)
    if found is None:
        raise _unknown(kind, ref)
    return found


def extended_scenario(name: str, chain: tuple[Path, ...]) -> LoadedSpec:
    """The library scenario `extends: NAME` names. The files being loaded (`chain`) are passed over, so that
    a spec folder's own mmlu.yaml can say `extends: mmlu` and mean the next folder's (the library's)."""
    if name.startswith(LMEVAL_PREFIX):  # `extends: lmeval:arc_easy`: the translated task, overridden
        from helmflow.specs.lmeval_refs import lmeval_scenario

        return lmeval_scenario(name)
    found = _named("scenario", name, chain)
    if found is not None:
        return found
    if any(in_chain(root / KIND_FOLDERS["scenario"] / f"{name}.yaml", chain) for root in library_roots()):
        raise SpecError(f"a cycle: {' extends '.join(map(str, chain))} extends {name}")
    raise _unknown("scenario", name)


def find_scenario(ref: str) -> ScenarioSpec:
    return find("scenario", ref).spec  # type: ignore[return-value]


def hf_model_name(target: str) -> str:
    """The spec name of `hf:<target>`: the folder's (or hub id's) last part made a valid name.

    A spec name is what runs, history and the leaderboard call the model, so it is derived rather than
    refused: lowercase, accents dropped, "_" as "-" (as before, so the names warehouses hold stay the same),
    any other run of characters a name cannot hold (spaces, "!", ...) as one "-" ("My Model!" is
    `my-model`). Two folders that reduce to one name stay apart in the warehouse by their model fingerprint.
    """
    last = Path(target).name
    plain = unicodedata.normalize("NFKD", last).encode("ascii", "ignore").decode()
    name = re.sub(r"[^a-z0-9.\-]+", "-", plain.lower()).strip("-.")
    return name or "model"


def find_model(ref: str) -> ModelSpec:
    """A model spec by name or path, or `hf:<hub id or local dir>` for any transformers model."""
    if ref.startswith("hf:"):
        target = ref[3:]
        if not target.strip():
            raise SpecError(
                f"'{ref}': give a hub id or a local directory after hf:, e.g. hf:HuggingFaceTB/SmolLM2-360M-Instruct"
            )
        spec = ModelSpec(name=hf_model_name(target), backend="hf", path=target)
        # A missing local folder fails here, before any data is loaded, not inside transformers after.
        problem = model_path_problem(spec.path or "")
        if problem:
            raise SpecError(f"{ref}: {problem}")
        return spec
    try:
        loaded = find("model", ref)
    except SpecError as exc:
        if "unknown model" in str(exc):
            raise SpecError(f"{exc}; or use hf:<hub id or local directory>") from None
        raise
    check_model_path(loaded)
    return loaded.spec  # type: ignore[return-value]


def resolve_run_target(ref: str) -> LoadedSpec:
    """What `helmflow run REF` names: a suite or scenario file, a suite/scenario name, or `bigbench:TASK`."""
    if ref.startswith(BIGBENCH_PREFIX) and not Path(ref).is_file():
        from helmflow.specs.bigbench_refs import bigbench_scenario

        return bigbench_scenario(ref)
    if ref.startswith(LMEVAL_PREFIX) and not Path(ref).is_file():
        from helmflow.specs.lmeval_refs import lmeval_target

        loaded = lmeval_target(ref)
        _PATH_SUITE_SCENARIOS.update(loaded.expansions)  # a group's tasks, found by name while it is planned
        return loaded
    if Path(ref).is_file():
        return load_file(ref)
    if ref.endswith((".yaml", ".yml")):
        raise SpecError(f"{ref}: no such spec file")
    for kind in ("suite", "scenario"):
        found = _named(kind, ref)
        if found is not None:
            return found
    raise SpecError(
        f"unknown suite or scenario '{ref}': no {ref}.yaml in {searched('suite')}, {searched('scenario')} "
        f"(suites: {', '.join(p.stem for p in spec_files('suite'))}; "
        f"scenarios: {', '.join(spec_names('scenario'))}; {SPEC_PATH_HINT})"
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


# `bigbench:TASK[/SUBTASK]` names any BIG-bench JSON task as a scenario (specs/bigbench_refs.py).
BIGBENCH_PREFIX = "bigbench:"
# `lmeval:TASK` names an lm-evaluation-harness task (a group or tag: a suite of them): specs/lmeval_refs.py.
LMEVAL_PREFIX = "lmeval:"

__all__ = [
    "BIGBENCH_PREFIX",
    "ModelSpec",
    "ScenarioSpec",
    "SpecError",
    "SuiteSpec",
    "find",
    "find_model",
    "find_scenario",
    "load_file",
    "spec_names",
]
