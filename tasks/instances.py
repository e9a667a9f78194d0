"""Instances (defined in records.py), which part of an input is the instance's own text, and the
fingerprint of a scenario's data."""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict

from helmflow.specs.templates import Part, text_parts
from helmflow.tasks.records import LETTERS, Instance


def input_parts(inst: Instance) -> tuple[Part, ...]:
    """The input as (text, own) parts, in order: own is True for the instance's own text (a question, a
    passage: what perturbations change) and False for scaffold (the field template's literal words,
    "Q: ", a BIG-bench prompt's prefixes and listed choices: kept byte for byte).

    An input rendered from a field template carries its parts (specs/templates.py, TemplateText); any
    other input (a column used as it is, an instance built in code) is the instance's own text whole.
    """
    return text_parts(inst.input)


def instances_fingerprint(instances: list[Instance]) -> str:
    """A hash of the instances' content: changes whenever the evaluated data changes."""
    digest = hashlib.sha256()
    for inst in instances:
        row = asdict(inst)
        row.pop("origin")
        digest.update(json.dumps(row, sort_keys=True, default=list).encode())
    return digest.hexdigest()[:16]


__all__ = ["LETTERS", "Instance", "input_parts", "instances_fingerprint"]
