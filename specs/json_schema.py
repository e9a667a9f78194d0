"""The JSON Schema of each spec kind, from the pydantic models, for editors and other tools.

Shipped specs start with `# yaml-language-server: $schema=../schemas/<kind>.schema.json`, so an
editor with the YAML language server checks them as people type. `helmflow specs schema KIND`
prints the same schema, with the names installed plugins add (backends, metrics, data formats);
`write_schemas` regenerates the files with helmflow's own names (a test keeps them current).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from helmflow.specs import registry
from helmflow.specs.schema import SPEC_KINDS, ForEach

SCHEMAS = Path(__file__).parent / "schemas"

EXTENDS = {
    "type": "string",
    "description": "a scenario file (relative to this one) or a library scenario name; this file's keys are "
    "deep-merged over it (mappings key by key, lists and values replaced, null removes a key)",
}
# Keywords whose values are data, not schemas: left as they are when a schema is made partial.
DATA_KEYWORDS = {"default", "enum", "const", "examples"}


def json_schema(kind: str) -> dict:
    schema = SPEC_KINDS[kind].model_json_schema()
    # The composition keys are resolved by the loader before pydantic validates, so the models do not
    # have them: they are added here, for editors.
    if kind == "scenario":
        schema = _with_extends(schema)
    elif kind == "suite":
        schema = _with_for_each(schema)
    return {**schema, "$schema": "https://json-schema.org/draft/2020-12/schema", "title": f"helmflow {kind} spec"}


def _with_extends(schema: dict) -> dict:
    """A scenario, or with `extends:` a partial one: a file that extends another writes only what it changes."""
    defs = schema.pop("$defs", {})
    extending = _partial(schema)
    extending["properties"]["extends"] = EXTENDS
    extending["required"] = ["extends"]
    return {
        "type": "object",
        "$defs": {
            **defs,
            **{f"Partial{name}": _partial(definition) for name, definition in defs.items()},
            "ScenarioSpec": schema,
            "ExtendingScenarioSpec": extending,
        },
        "if": {"required": ["extends"]},
        "then": {"$ref": "#/$defs/ExtendingScenarioSpec"},
        "else": {"$ref": "#/$defs/ScenarioSpec"},
    }


def _partial(schema: Any) -> Any:
    """A copy of a schema that requires no key, takes null for every key (null removes it from the base),
    and refers to the partial versions of its definitions."""
    if isinstance(schema, list):
        return [_partial(s) for s in schema]
    if not isinstance(schema, dict):
        return schema
    partial: dict[str, Any] = {}
    for key, value in schema.items():
        if key == "required" or key in DATA_KEYWORDS:
            if key != "required":
                partial[key] = value
        elif key == "$ref":
            partial[key] = value.replace("#/$defs/", "#/$defs/Partial")
        elif key == "properties":
            partial[key] = {name: {"anyOf": [_partial(p), {"type": "null"}]} for name, p in value.items()}
        else:
            partial[key] = _partial(value)
    return partial


def _with_for_each(schema: dict) -> dict:
    """A suite whose entries may also be a bare scenario name or a for_each entry."""
    schema.setdefault("$defs", {})["ForEach"] = ForEach.model_json_schema()
    scenarios = schema["properties"]["scenarios"]
    scenarios["items"] = {
        "anyOf": [
            {"type": "string", "description": "a scenario name: shorthand for {scenario: NAME}"},
            scenarios["items"],
            {"$ref": "#/$defs/ForEach"},
        ]
    }
    return schema


def schema_text(kind: str) -> str:
    return json.dumps(json_schema(kind), indent=2, sort_keys=True) + "\n"


def modeline(kind: str) -> str:
    """The first line of a shipped spec of this kind (paths relative to its folder)."""
    return f"# yaml-language-server: $schema=../schemas/{kind}.schema.json"


def write_schemas() -> list[Path]:
    """The published schemas: helmflow's own names only, whatever plugins this environment has."""
    SCHEMAS.mkdir(exist_ok=True)
    written = []
    for kind in SPEC_KINDS:
        path = SCHEMAS / f"{kind}.schema.json"
        with registry.own_only():
            path.write_text(schema_text(kind))
        written.append(path)
    return written


if __name__ == "__main__":
    for path in write_schemas():
        print(path)
