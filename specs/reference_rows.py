"""Reference rows and declared contamination: published results shown beside the models' own, never among them.

Two kinds of entry, read from YAML files (docs/baselines-and-contamination.md):

- **baselines**: a published score on a scenario (a human baseline, an expert estimate), with its citation.
  The leaderboard, the report and `helmflow history` show it as a labelled reference row; it is never a
  model, so it never takes part in a win rate, a tie or an interval (flows/leaderboard.py never sees it).
- **contamination**: (model, scenario) pairs whose training data a published source says holds the
  scenario's data. Those results are marked (†) with a footnote citing the source; nothing is removed.

The files: helmflow's own (specs/references/*.yaml), then `references/*.yaml` in each folder of
HELMFLOW_SPEC_PATH, then the files HELMFLOW_REFERENCES names (os.pathsep-separated), then the command's
`--references` files. A later baseline of the same name replaces an earlier one (a correction); contamination
entries add up. Errors name the file, line and field, as spec files' do.
"""

from __future__ import annotations

import fnmatch
import math
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator

from helmflow.specs.compose import Node, SpecError, child
from helmflow.specs.loader import _read_mapping, _validate
from helmflow.specs.schema import Strict, expand_path

__all__ = [
    "Declared",
    "ReferenceRow",
    "References",
    "load_references",
    "matches",
    "read_references",
    "reference_files",
]

REFERENCES_VARIABLE = "HELMFLOW_REFERENCES"
FOLDER = "references"  # in the library (this package) and in each HELMFLOW_SPEC_PATH folder
URL = r"^https?://\S+$"  # a source is something a reader can open: a citation without one is refused
NAME = r"^[a-z0-9][a-z0-9_.-]*$"


class BaselineScore(Strict):
    scenario: str = Field(min_length=1, description="a scenario name or glob pattern")
    value: float = Field(description="on the metric's own scale: a proportion is 0.978 for 97.8 %")
    reported: str = Field(min_length=1, description="the number as the source prints it, e.g. '86.3/80.8 (F1/acc)'")
    metric: str | None = Field(None, description="this scenario's metric, when not the baseline's")

    @field_validator("value")
    @classmethod
    def _finite(cls, value: float) -> float:
        if not math.isfinite(value):
            raise ValueError("must be a finite number")
        return value


class Baseline(Strict):
    name: str = Field(pattern=NAME, description="an id; a later file's baseline of the same name replaces it")
    label: str = Field(min_length=1, description="what a reader sees, e.g. 'human baseline (Nangia & Bowman 2019)'")
    citation: str = Field(min_length=1, description="authors, title, venue, and where in it the numbers are")
    source: str = Field(pattern=URL, description="a URL of the source")
    category: str = "accuracy"
    metric: str = "exact_match"
    note: str = ""
    scores: list[BaselineScore] = Field(min_length=1)


class Contamination(Strict):
    models: list[str] = Field(min_length=1, description="model names or glob patterns")
    scenarios: list[str] = Field(min_length=1, description="scenario names or glob patterns")
    level: Literal["strong", "weak"] = Field(
        description="strong: trained on the dataset itself (its training split); weak: some overlap was found"
    )
    source: str = Field(pattern=URL)
    note: str = Field(min_length=1, description="what the source says, in a sentence")

    @field_validator("models", "scenarios")
    @classmethod
    def _no_blank(cls, patterns: list[str]) -> list[str]:
        if any(not p.strip() for p in patterns):
            raise ValueError("a name or pattern may not be blank")
        return patterns


class ReferencesFile(Strict):
    baselines: list[Baseline] = Field(default_factory=list)
    contamination: list[Contamination] = Field(default_factory=list)


def matches(pattern: str, name: str) -> bool:
    """Whether a name or glob pattern names `name`, without regard to case. A pattern with no '/' also matches
    what follows the name's last '/': 'davinci' names openai/davinci, and 'flan-t5-*' google/flan-t5-base."""
    pattern, name = pattern.lower(), name.lower()
    if fnmatch.fnmatchcase(name, pattern):
        return True
    return "/" not in pattern and "/" in name and fnmatch.fnmatchcase(name.rsplit("/", 1)[1], pattern)


@dataclass(frozen=True)
class ReferenceRow:
    """One published value on one scenario: what a reference row shows."""

    baseline: str  # the baseline's name
    label: str
    scenario: str  # a name or pattern, as written
    category: str
    metric: str
    value: float
    reported: str
    citation: str
    source: str
    note: str
    where: str  # file:line of the score


@dataclass(frozen=True)
class Declared:
    """A declared contamination: the pairs it names, what the source says, and where it was read."""

    models: tuple[str, ...]
    scenarios: tuple[str, ...]
    level: str
    source: str
    note: str
    where: str  # file:line of the entry

    def covers(self, model: str, scenario: str) -> bool:
        return any(matches(p, model) for p in self.models) and any(matches(p, scenario) for p in self.scenarios)


@dataclass(frozen=True)
class References:
    rows: tuple[ReferenceRow, ...] = ()
    declared: tuple[Declared, ...] = ()

    def rows_for(self, scenario: str, category: str | None = None, metric: str | None = None) -> list[ReferenceRow]:
        """The reference rows of a scenario (of one category and metric, when given), in file order."""
        return [
            r
            for r in self.rows
            if matches(r.scenario, scenario)
            and (category is None or r.category == category)
            and (metric is None or r.metric == metric)
        ]

    def declarations(self, model: str, scenario: str) -> list[Declared]:
        return [d for d in self.declared if d.covers(model, scenario)]


def _entry_where(tree: Node, key: str, index: int, *inner: str | int) -> str:
    """file:line of `key[index]` (and deeper keys) in a validated file's tree."""
    node = child(tree, key)
    if node is None:
        return f"{tree.file}:{tree.line}"
    node = node.value[index]
    for step in inner:
        found = child(node, step) if isinstance(step, str) else node.value[step]
        if found is None:
            break
        node = found
    return node.where


def read_references(path: str | Path) -> References:
    """One references file, validated: SpecError with file:line for each problem."""
    path = Path(path)
    if not path.is_file():
        raise SpecError(f"{path}: no such references file")
    tree = _read_mapping(path)
    parsed: ReferencesFile = _validate(ReferencesFile, tree)
    rows = [
        ReferenceRow(
            baseline=b.name,
            label=b.label,
            scenario=s.scenario,
            category=b.category,
            metric=s.metric or b.metric,
            value=s.value,
            reported=s.reported,
            citation=b.citation,
            source=b.source,
            note=b.note,
            where=_entry_where(tree, "baselines", i, "scores", k),
        )
        for i, b in enumerate(parsed.baselines)
        for k, s in enumerate(b.scores)
    ]
    # Every accuracy metric helmflow computes is a proportion or an F1/ROUGE-like score in [0, 1]; 97.8 is the
    # usual slip (a percentage), and would set a reference far off every chart and bar.
    problems = [
        f"{_entry_where(tree, 'baselines', i, 'scores', k, 'value')}: field 'baselines.{i}.scores.{k}.value': "
        f"{s.value:g} is outside [0, 1]: accuracy metrics are proportions (write {s.value / 100:g} for {s.value:g} %)"
        for i, b in enumerate(parsed.baselines)
        for k, s in enumerate(b.scores)
        if b.category == "accuracy" and not 0.0 <= s.value <= 1.0
    ]
    names = [b.name for b in parsed.baselines]
    problems += [
        f"{_entry_where(tree, 'baselines', i, 'name')}: field 'baselines.{i}.name': '{name}' is named twice in this "
        "file (a baseline replaces one of the same name from an earlier file only)"
        for i, name in enumerate(names)
        if name in names[:i]
    ]
    if problems:
        raise SpecError("\n".join(problems))
    declared = [
        Declared(tuple(c.models), tuple(c.scenarios), c.level, c.source, c.note, _entry_where(tree, "contamination", i))
        for i, c in enumerate(parsed.contamination)
    ]
    return References(tuple(rows), tuple(declared))


def reference_files(extra: Sequence[str | Path] = ()) -> list[Path]:
    """The files read, in order: the library's, HELMFLOW_SPEC_PATH folders' (the last folder first, so that
    an earlier folder's baseline wins as its specs do), HELMFLOW_REFERENCES's, then `extra` (the command's)."""
    from helmflow.specs.library import library_roots  # the library imports the loader, as this module does

    files = [p for root in reversed(library_roots()) for p in sorted((root / FOLDER).glob("*.yaml"))]
    named = os.environ.get(REFERENCES_VARIABLE, "").split(os.pathsep)
    files += [Path(expand_path(p)) for p in named if p.strip()]
    return files + [Path(expand_path(str(p))) for p in extra]


def merged(parts: Iterable[References]) -> References:
    """Files' entries together: a baseline named again replaces the earlier one (all its rows), in its place."""
    baselines: dict[str, list[ReferenceRow]] = {}
    declared: list[Declared] = []
    for part in parts:
        fresh: dict[str, list[ReferenceRow]] = {}
        for row in part.rows:
            fresh.setdefault(row.baseline, []).append(row)
        baselines.update(fresh)
        declared += part.declared
    return References(tuple(r for rows in baselines.values() for r in rows), tuple(declared))


def load_references(extra: Sequence[str | Path] = ()) -> References:
    """Every references file's entries (reference_files), merged; SpecError naming the file and line of a problem."""
    return merged(read_references(path) for path in reference_files(extra))
