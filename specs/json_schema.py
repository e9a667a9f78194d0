"""The JSON Schema of each spec kind, from the pydantic models, for editors and other tools.

Shipped specs start with `# yaml-language-server: $schema=../schemas/<kind>.schema.json`, so an
editor with the YAML language server checks them as people type. `helmflow specs schema KIND`
prints the same schema; `write_schemas` regenerates the files (a test keeps them current).
"""

from __future__ import annotations

import json
from pathlib import Path

from helmflow.specs.schema import SPEC_KINDS

SCHEMAS = Path(__file__).parent / "schemas"


def json_schema(kind: str) -> dict:
    schema = SPEC_KINDS[kind].model_json_schema()
    return {**schema, "$schema": "https://json-schema.org/draft/2020-12/schema", "title": f"helmflow {kind} spec"}


def schema_text(kind: str) -> str:
    return json.dumps(json_schema(kind), indent=2, sort_keys=True) + "\n"


def modeline(kind: str) -> str:
    """The first line of a shipped spec of this kind (paths relative to its folder)."""
    return f"# yaml-language-server: $schema=../schemas/{kind}.schema.json"


def write_schemas() -> list[Path]:
    SCHEMAS.mkdir(exist_ok=True)
    written = []
    for kind in SPEC_KINDS:
        path = SCHEMAS / f"{kind}.schema.json"
        path.write_text(schema_text(kind))
        written.append(path)
    return written


if __name__ == "__main__":
    for path in write_schemas():
        print(path)
