"""Load spec YAML files into the pydantic models, with errors that name file, line and field."""

from __future__ import annotations

import difflib
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import yaml
from pydantic import BaseModel, ValidationError

from helmflow.specs.schema import SPEC_KINDS, ModelSpec, ScenarioSpec, SuiteSpec


class SpecError(ValueError):
    """A spec file that cannot be used. The message names the file, line and field."""


@dataclass(frozen=True)
class LoadedSpec:
    kind: str
    path: Path
    spec: ScenarioSpec | ModelSpec | SuiteSpec


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


def _node_at(node: yaml.Node, loc: tuple) -> yaml.Node:
    """The YAML node along a pydantic error location (for its line): the key for a mapping field."""
    for depth, key in enumerate(loc):
        if isinstance(node, yaml.MappingNode):
            pair = next(((k, v) for k, v in node.value if k.value == key), None)
            if pair is None:
                return node
            node = pair[0] if depth == len(loc) - 1 else pair[1]
        elif isinstance(node, yaml.SequenceNode) and isinstance(key, int) and key < len(node.value):
            node = node.value[key]
        else:
            return node
    return node


def _allowed_keys(model: type[BaseModel], loc: tuple) -> list[str]:
    """The field names a model accepts at the parent of `loc` (for 'did you mean')."""
    current: type[BaseModel] | None = model
    for key in loc[:-1]:
        if current is None or isinstance(key, int):
            continue
        field = current.model_fields.get(str(key))
        if field is None:
            return []
        annotation = field.annotation
        candidates = [a for a in getattr(annotation, "__args__", (annotation,)) if isinstance(a, type)]
        current = next((a for a in candidates if issubclass(a, BaseModel)), None)
        if current is None:
            for a in getattr(annotation, "__args__", ()):
                inner = [b for b in getattr(a, "__args__", ()) if isinstance(b, type)]
                current = next((b for b in inner if issubclass(b, BaseModel)), current)
    return sorted(current.model_fields) if current else []


def _describe(model: type[BaseModel], error: dict) -> str:
    loc = tuple(p for p in error["loc"] if not (isinstance(p, str) and p.startswith("function-")))
    field = ".".join(str(p) for p in loc) or "(top level)"
    if error["type"] == "extra_forbidden":
        allowed = _allowed_keys(model, loc)
        close = difflib.get_close_matches(str(loc[-1]), allowed, n=1)
        hint = f"; did you mean '{close[0]}'?" if close else ""
        return f"unknown field '{field}'{hint} (expected one of: {', '.join(allowed)})"
    if error["type"] == "missing":
        return f"field '{field}' is required"
    return f"field '{field}': {error['msg']}"


def load_spec(path: str | Path, kind: str | None = None) -> LoadedSpec:
    path = Path(path)
    if not path.is_file():
        raise SpecError(f"{path}: no such spec file")
    text = path.read_text(encoding="utf-8")
    try:
        root = yaml.compose(text)
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f":{mark.line + 1}" if mark else ""
        raise SpecError(f"{path}{line}: not valid YAML: {getattr(exc, 'problem', exc)}") from None
    if not isinstance(data, dict):
        raise SpecError(f"{path}:1: expected a mapping of fields at the top level")
    kind = kind or _guess_kind(path, data)
    model = SPEC_KINDS[kind]
    try:
        spec = model.model_validate(data)
    except ValidationError as exc:
        messages = []
        for error in exc.errors():
            node = _node_at(root, tuple(error["loc"]))
            messages.append(f"{path}:{node.start_mark.line + 1}: {_describe(model, error)}")
        raise SpecError("\n".join(messages)) from None
    return LoadedSpec(kind=kind, path=path, spec=spec)  # type: ignore[arg-type]


def spec_hash(spec: BaseModel) -> str:
    """A stable hash of a spec's resolved content (key order and formatting do not matter)."""
    canonical = json.dumps(spec.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]
