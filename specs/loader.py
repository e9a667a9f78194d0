"""Load spec YAML files into the pydantic models, with errors that name file, line and field."""

from __future__ import annotations

import difflib
import hashlib
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from helmflow.specs.compose import (
    VARIABLE,
    Node,
    SpecError,
    Variables,
    _reads,
    from_plain,
    has_placeholders,
    locate,
    merge,
    read,
    substitute,
    to_plain,
    without,
)
from helmflow.specs.schema import (
    SPEC_KINDS,
    ForEach,
    ModelSpec,
    ScenarioSpec,
    Strict,
    SuiteSpec,
    model_path_problem,
)

__all__ = ["LoadedSpec", "SpecError", "load_spec", "spec_hash"]


@dataclass(frozen=True)
class LoadedSpec:
    kind: str
    # The file read: relative data paths are read from its folder. For a scenario made by a suite's
    # for_each, the template's file (the suite's, for a template written inline).
    path: Path
    spec: ScenarioSpec | ModelSpec | SuiteSpec
    # How the spec was composed, for `specs show`: "extends ...", "for_each item at ...". Empty: one file as written.
    origin: str = ""
    # A suite's for_each expansions, scenario name -> its LoadedSpec.
    expansions: dict[str, LoadedSpec] = field(default_factory=dict, repr=False)
    # The scenario as written, after its extends and for_each, with lines: what `extends: NAME` merges onto.
    tree: Node | None = field(default=None, repr=False, compare=False)


FOLDER_KINDS = {"scenarios": "scenario", "models": "model", "suites": "suite"}


def _guess_kind(path: Path, data: dict) -> str:
    folder_kind = FOLDER_KINDS.get(path.parent.name)
    if folder_kind:
        return folder_kind
    if "scenarios" in data:
        return "suite"
    if "backend" in data:
        return "model"
    return "scenario"


def _allowed_keys(model: type[BaseModel], loc: tuple) -> list[str]:
    """The field names a model accepts at the parent of `loc` (for 'did you mean')."""
    current: type[BaseModel] | None = model
    for key in loc[:-1]:
        if current is None or isinstance(key, int):
            continue
        field_info = current.model_fields.get(str(key))
        if field_info is None:
            return []
        annotation = field_info.annotation
        candidates = [a for a in getattr(annotation, "__args__", (annotation,)) if isinstance(a, type)]
        current = next((a for a in candidates if issubclass(a, BaseModel)), None)
        if current is None:
            for a in getattr(annotation, "__args__", ()):
                inner = [b for b in getattr(a, "__args__", ()) if isinstance(b, type)]
                current = next((b for b in inner if issubclass(b, BaseModel)), current)
    if current is None:
        return []
    return sorted(f.alias or name for name, f in current.model_fields.items())


def _describe(model: type[BaseModel], error: dict, prefix: tuple = ()) -> str:
    loc = tuple(p for p in error["loc"] if not (isinstance(p, str) and p.startswith("function-")))
    field_name = ".".join(str(p) for p in (*prefix, *loc)) or "(top level)"
    if error["type"] == "extra_forbidden":
        allowed = _allowed_keys(model, loc)
        close = difflib.get_close_matches(str(loc[-1]), allowed, n=1)
        hint = f"; did you mean '{close[0]}'?" if close else ""
        return f"unknown field '{field_name}'{hint} (expected one of: {', '.join(allowed)})"
    if error["type"] == "missing":
        return f"field '{field_name}' is required"
    return f"field '{field_name}': {error['msg']}"


def _validate(model: type[Strict], tree: Node, prefix: tuple = (), note: str = "") -> Any:
    """The tree validated by the model; SpecError with one line per problem, each at the file and line that wrote it.

    `prefix` is where the tree sits in its file (a suite entry's "scenarios.3"), `note` is said after each problem.
    """
    try:
        return model.model_validate(to_plain(tree))
    except ValidationError as exc:
        messages = []
        for error in exc.errors():
            file, line = locate(tree, tuple(error["loc"]))
            messages.append(f"{file}:{line}: {_describe(model, error, prefix)}{note}")
        raise SpecError("\n".join(messages)) from None


def _read_mapping(path: Path) -> Node:
    tree = read(path)
    if tree is None or not tree.is_mapping:
        raise SpecError(f"{path}:{1 if tree is None else tree.line}: expected a mapping of fields at the top level")
    return tree


def load_spec(path: str | Path, kind: str | None = None, chain: tuple[Path, ...] = ()) -> LoadedSpec:
    """A spec file, its `extends:` (scenarios) or `for_each:` entries (suites) resolved, validated.

    `chain` holds the files being loaded already (an extends or a for_each in progress), to refuse cycles.
    """
    path = Path(path)
    if not path.is_file():
        raise SpecError(f"{path}: no such spec file")
    tree = _read_mapping(path)
    kind = kind or _guess_kind(path, tree.value)
    chain = (*chain, path)
    origin, expansions = "", {}
    if kind == "scenario":
        tree, bases = resolve_extends(tree, path, chain)
        origin = extends_note(bases)
    elif kind == "suite":
        tree, expansions = _expand_suite(tree, path, chain)
    try:
        # The tree kept (LoadedSpec.tree, what `extends:` merges) is as written: instructions_file unread.
        spec = _validate(SPEC_KINDS[kind], resolve_instructions_file(tree, path) if kind == "scenario" else tree)
    except SpecError as exc:
        if kind == "scenario" and has_placeholders(tree):  # said, because its placeholders fail name's pattern
            raise SpecError(
                f"{exc}\n{path}: this file has ${{...}} placeholders: it is a for_each template; "
                "validate the suite that expands it"
            ) from None
        raise
    return LoadedSpec(kind, path, spec, origin, expansions, tree if kind == "scenario" else None)


# -- extends ---------------------------------------------------------------------------------------


def _same(a: Path, b: Path) -> bool:
    return a.resolve() == b.resolve()


def in_chain(path: Path, chain: tuple[Path, ...]) -> bool:
    return any(_same(path, p) for p in chain)


def looks_like_path(ref: str) -> bool:
    """Whether a reference to a spec is a file (ends in .yaml, or has a folder) rather than a library name."""
    return ref.endswith((".yaml", ".yml")) or "/" in ref or os.sep in ref


def resolve_extends(tree: Node, path: Path, chain: tuple[Path, ...]) -> tuple[Node, list[str]]:
    """A scenario tree with its `extends:` merged under it (recursively); and what it extends, nearest first.

    `path` is the file that wrote `tree` (the suite, for a template written inline); `extends:` is read
    relative to its folder. `chain` ends with the file being loaded.
    """
    ref = tree.value.get("extends")
    if ref is None:
        return tree, []
    where = f"{ref.key_where}: field 'extends'"
    if not isinstance(ref.value, str) or not ref.value.strip():
        raise SpecError(f"{where}: give a scenario file (relative to this one) or a library scenario name")
    if looks_like_path(ref.value):
        base_path = path.parent / ref.value
        if in_chain(base_path, chain):
            raise SpecError(f"{where}: a cycle: {' extends '.join(map(str, (*chain, base_path)))}")
        if not base_path.is_file():
            raise SpecError(f"{where}: no such file {base_path}")
        # A base named by its file is only ever merged, never loaded alone: it may leave out required keys.
        base, bases = resolve_extends(_read_mapping(base_path), base_path, (*chain, base_path))
        bases = [str(base_path), *bases]
    else:
        from helmflow.specs.library import extended_scenario  # the library finds names; it imports this module

        try:
            found = extended_scenario(ref.value, chain)
        except SpecError as exc:
            raise SpecError(f"{where}: {exc}") from None
        assert found.tree is not None
        base, bases = found.tree, [f"{ref.value} ({found.path}{', ' + found.origin if found.origin else ''})"]
    return merge(base, without(tree, "extends")), bases


def extends_note(bases: list[str]) -> str:
    return "extends " + ", which extends ".join(bases) if bases else ""


# -- for_each --------------------------------------------------------------------------------------


def _expand_suite(tree: Node, path: Path, chain: tuple[Path, ...]) -> tuple[Node, dict[str, LoadedSpec]]:
    """The suite with each for_each entry replaced by one plain entry per scenario it makes; and those scenarios."""
    entries = tree.value.get("scenarios")
    if entries is None or not isinstance(entries.value, list):
        return tree, {}
    items: list[Node] = []
    expansions: dict[str, LoadedSpec] = {}
    for k, entry in enumerate(entries.value):
        if not (entry.is_mapping and "for_each" in entry.value):
            items.append(entry)
            continue
        block: ForEach = _validate(ForEach, entry, prefix=("scenarios", k))
        for item, loaded in _expand(block, entry, path, chain, f"scenarios.{k}"):
            name = loaded.spec.name
            if name in expansions:
                raise SpecError(
                    f"{item.where}: field 'scenarios.{k}.for_each': the scenario '{name}' is made twice in this suite "
                    f"(first {expansions[name].origin})"
                )
            expansions[name] = loaded
            items.append(from_plain({"scenario": name, **block.overrides()}, entry.file, entry.line))
    return replace(tree, value={**tree.value, "scenarios": replace(entries, value=items)}), expansions


def _template(block: ForEach, entry: Node, suite: Path, chain: tuple[Path, ...]) -> tuple[Node, Path, str]:
    """The for_each template with its extends merged in, the file relative data paths are read from, and a note."""
    written = entry.value["template"]
    if isinstance(block.template, str):
        path = suite.parent / block.template
        if in_chain(path, chain):
            raise SpecError(f"{written.where}: field 'template': a cycle: {' uses '.join(map(str, (*chain, path)))}")
        if not path.is_file():
            raise SpecError(f"{written.where}: field 'template': no such file {path}")
        tree, bases = resolve_extends(_read_mapping(path), path, (*chain, path))
        note = f"template {path}"
    else:
        tree, bases, path = *resolve_extends(written, suite, chain), suite
        note = f"template at {written.where}"
    return tree, path, note + (f", which {extends_note(bases)}" if bases else "")


def _expand(
    block: ForEach, entry: Node, suite: Path, chain: tuple[Path, ...], field_name: str
) -> Iterator[tuple[Node, LoadedSpec]]:
    """Each item's scenario: the template's placeholders filled in, the item's override merged over, validated."""
    template, path, note = _template(block, entry, suite, chain)
    for j, item in enumerate(entry.value["for_each"].value):
        values, override = _variables(item, block.as_, f"{field_name}.for_each.{j}")
        variables = Variables(values, item.where)
        scenario = substitute(template, variables)
        for name in values.keys() - variables.used:
            at = item.value[name].key_where if item.is_mapping else item.where
            raise SpecError(
                f"{at}: field '{field_name}.for_each.{j}.{name}': the variable '{name}' appears in no ${{...}} "
                f"placeholder of the {note}"
            )
        if override is not None:
            scenario = merge(scenario, override)
        at = f" (for_each item at {item.where})"
        spec = _validate(ScenarioSpec, resolve_instructions_file(scenario, path, at), note=at)
        origin = f"for_each item at {item.where}, {note}"
        yield item, LoadedSpec("scenario", path, spec, origin, tree=scenario)


def _variables(item: Node, name: str | None, field_name: str) -> tuple[dict[str, str], Node | None]:
    """One item's variables (name -> text) and its `override` mapping, if any."""
    where = f"field '{field_name}'"
    if name is not None:
        if not isinstance(item.value, str):
            raise SpecError(
                f"{item.where}: {where}: with `as: {name}` each item is one value, written as text "
                "(quote numbers and yes/no); a mapping item names its variables itself, without `as`"
            )
        return {name: item.value}, None
    if not item.is_mapping:
        raise SpecError(
            f"{item.where}: {where}: an item is a mapping of variables (task: anachronisms), or give `as: NAME` "
            "for a list of plain values"
        )
    values: dict[str, str] = {}
    override = None
    for key, value in item.value.items():
        if key == "override":
            if not value.is_mapping:
                raise SpecError(
                    f"{value.key_where}: field '{field_name}.override': a mapping of scenario fields to merge over"
                )
            override = value
        elif not isinstance(key, str) or not VARIABLE.fullmatch(key):
            raise SpecError(f"{value.key_where}: {where}: variable names are letters, digits and _ (not {key!r})")
        elif not isinstance(value.value, str):
            raise SpecError(
                f"{value.key_where}: field '{field_name}.{key}': a variable's value is text (quote numbers and yes/no)"
            )
        else:
            values[key] = value.value
    return values, override


# -- instructions_file -----------------------------------------------------------------------------

# The folders a spec may read files from, as tasks/sources.py (shared_data, data_path_folders, allowed_roots,
# checked) decides them for data files; written again here because specs/ may not import tasks/
# (tests/test_layers.py). tests/test_bbh.py checks that both give the same folders.
DATA_PATH_VARIABLE = "HELMFLOW_DATA_PATH"


def shared_data() -> Path:
    """The shared data folder, `{shared}` in a path: HELMFLOW_SHARED_DATA, else ../shared/data beside the repository."""
    return Path(os.environ.get("HELMFLOW_SHARED_DATA", Path(__file__).resolve().parents[1].parent / "shared" / "data"))


def allowed_roots(spec_dir: Path) -> list[Path]:
    """The folders a spec in `spec_dir` may read: its own, the shared data folder, HELMFLOW_DATA_PATH's (resolved)."""
    extra = [Path(p) for p in os.environ.get(DATA_PATH_VARIABLE, "").split(os.pathsep) if p.strip()]
    return list(dict.fromkeys(f.resolve() for f in (spec_dir, shared_data(), *extra)))


def instructions_path(written: str, spec_dir: Path) -> Path:
    """Where an instructions_file is: `{shared}` and $VARS replaced, a relative path read from the spec's folder."""
    expanded = Path(os.path.expandvars(written.replace("{shared}", str(shared_data()))))
    return expanded if expanded.is_absolute() else spec_dir / expanded


def _instructions_problem(path: Path, spec_dir: Path) -> tuple[str | None, str]:
    """Why the file cannot be the instructions (None when it can), and its text."""
    resolved, roots = path.resolve(), allowed_roots(spec_dir)
    if not any(resolved.is_relative_to(root) for root in roots):
        shown = str(path) if path == resolved else f"{path} (which resolves to {resolved})"
        return (
            f"{shown} is outside the spec's folder and the allowed data folders ({', '.join(map(str, roots))}); "
            f"add its folder to {DATA_PATH_VARIABLE} to allow it"
        ), ""
    if not resolved.is_file():
        return f"no such file {path}", ""
    reads = _reads.get()
    if reads is not None:  # a suite cached by the library is made again when the file changes
        reads.append(resolved)
    try:
        text = resolved.read_bytes().decode("utf-8")
    except UnicodeDecodeError as exc:
        return f"{path} is not UTF-8 text (byte {exc.start})", ""
    return (f"{path} is empty" if not text else None), text


def resolve_instructions_file(tree: Node, spec_file: Path, note: str = "") -> Node:
    """The scenario with `adapter.instructions_file`'s text as `adapter.instructions`, byte for byte.

    The path is read as data files are (instructions_path) from the folder of `spec_file`, the file relative data
    paths are read from (LoadedSpec.path), and must lie in the folders data may come from (allowed_roots). A
    tree without the key (or with a value that is not text, which validation refuses) is returned as it is.
    """
    adapter = tree.value.get("adapter")
    ref = adapter.value.get("instructions_file") if adapter is not None and adapter.is_mapping else None
    if ref is None or not isinstance(ref.value, str) or not ref.value:
        return tree
    name = tree.value.get("name")
    of = f" of scenario '{name.value}'" if name is not None and isinstance(name.value, str) else ""
    where = f"{ref.key_where}: field 'adapter.instructions_file'{of}"
    if "instructions" in adapter.value:
        raise SpecError(
            f"{where}: give instructions or instructions_file, not both (instructions at "
            f"{adapter.value['instructions'].key_where}; to replace one a base sets, write it as null){note}"
        )
    path = instructions_path(ref.value, spec_file.parent)
    problem, text = _instructions_problem(path, spec_file.parent)
    if problem is not None and problem.startswith("no such file"):
        # Not on this machine (BBH's prompts come from ../shared/data): the spec loads, as a scenario whose data
        # files are absent does, and a run of it fails at preflight in one line (flows/prepare.py).
        return tree
    if problem is not None:
        written = f" (written {ref.value})" if ref.value != str(path) else ""
        raise SpecError(f"{where}{written}: {problem}{note}")
    adapter = replace(adapter, value={**adapter.value, "instructions": replace(ref, value=text)})
    return replace(tree, value={**tree.value, "adapter": adapter})


def _top_level(path: Path, key: str) -> tuple[int, str | None]:
    """The line of a top-level key of a spec file, and its value as written (before any expansion)."""
    root = yaml.compose(path.read_text(encoding="utf-8"))
    pairs = root.value if isinstance(root, yaml.MappingNode) else []
    for name, value in pairs:
        if name.value == key:
            return name.start_mark.line + 1, value.value if isinstance(value, yaml.ScalarNode) else None
    return 1, None


def check_model_path(loaded: LoadedSpec) -> None:
    """An `hf` model spec's `path` must be a local folder that is here or a hub id (the rule: schema.looks_local).

    Checked when a model is looked up and by `specs validate`, not when the YAML is parsed: a spec read
    back from the warehouse (--resume, rescore) must still load on a machine without the folder.
    """
    spec = loaded.spec
    if not isinstance(spec, ModelSpec) or spec.backend != "hf" or spec.path is None:
        return
    line, written = _top_level(loaded.path, "path")
    problem = model_path_problem(spec.path, written)
    if problem:
        raise SpecError(f"{loaded.path}:{line}: field 'path': {problem}")


def spec_hash(spec: BaseModel) -> str:
    """A stable hash of a spec's resolved content (key order and formatting do not matter)."""
    canonical = json.dumps(spec.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]
