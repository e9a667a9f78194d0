"""The canonical instance every scenario's rows are mapped onto (HELM's Instance, simplified)."""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field

LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"


@dataclass(frozen=True)
class Instance:
    id: str
    input: str
    split: str
    # Multiple choice: the options and the gold option's index. Generation: references instead.
    choices: tuple[str, ...] = ()
    gold_index: int | None = None
    references: tuple[str, ...] = ()
    group: str | None = None
    # Where the row came from, for error messages: "file.jsonl row 12" or "cais/mmlu test row 12".
    origin: str = ""
    extra: dict[str, str] = field(default_factory=dict, compare=False)

    @property
    def gold_text(self) -> str | None:
        if self.gold_index is not None and 0 <= self.gold_index < len(self.choices):
            return self.choices[self.gold_index]
        return self.references[0] if self.references else None


def instances_fingerprint(instances: list[Instance]) -> str:
    """A hash of the instances' content: changes whenever the evaluated data changes."""
    digest = hashlib.sha256()
    for inst in instances:
        row = asdict(inst)
        row.pop("origin")
        digest.update(json.dumps(row, sort_keys=True, default=list).encode())
    return digest.hexdigest()[:16]
