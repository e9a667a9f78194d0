"""Instances (defined in records.py) and the fingerprint of a scenario's data."""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict

from helmflow.tasks.records import LETTERS, Instance


def instances_fingerprint(instances: list[Instance]) -> str:
    """A hash of the instances' content: changes whenever the evaluated data changes."""
    digest = hashlib.sha256()
    for inst in instances:
        row = asdict(inst)
        row.pop("origin")
        digest.update(json.dumps(row, sort_keys=True, default=list).encode())
    return digest.hexdigest()[:16]


__all__ = ["LETTERS", "Instance", "instances_fingerprint"]
