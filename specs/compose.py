"""The mechanics of spec composition: YAML read into a tree that remembers where each value was written,
`extends:`'s deep merge, and `for_each:`'s placeholder substitution.

Composition works on the YAML as written, before pydantic sees it, so that after a merge or an expansion
every value still knows its file and line: an error in the result names the file that wrote the
offending key (the extending file's line if it set the key, the base's otherwise). The loader
(loader.py) decides what to merge and expand; this module knows nothing of scenarios or suites.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import yaml


class SpecError(ValueError):
    """A spec file that cannot be used. The message names the file, line and field."""


@dataclass(frozen=True)
class Node:
    """A YAML value and where it was written. Trees are never changed in place: merges build new ones."""

    # dict[key, Node] for a mapping, list[Node] for a sequence, else the scalar itself.
    value: Any
    file: Path
    line: int  # 1-based: where the value starts
    # For a value inside a mapping: where its key was written (errors about a field point at its key).
    key_file: Path | None = None
    key_line: int | None = None

    @property
    def is_mapping(self) -> bool:
        return isinstance(self.value, dict)

    @property
    def key_where(self) -> str:
        return f"{self.key_file or self.file}:{self.key_line or self.line}"

    @property
    def where(self) -> str:
        return f"{self.file}:{self.line}"


MAP_TAG, SEQ_TAG = "tag:yaml.org,2002:map", "tag:yaml.org,2002:seq"


class _Reader:
    """Composed YAML nodes to Nodes, scalars constructed by PyYAML's safe loader (the types safe_load gives)."""

    def __init__(self, loader: yaml.SafeLoader, path: Path) -> None:
        self.loader, self.path = loader, path
        # An alias is the same yaml node twice: convert it once, as safe_load shares the object.
        self.done: dict[int, Node] = {}
        self.busy: set[int] = set()

    def convert(self, node: yaml.Node) -> Node:
        if id(node) in self.done:
            return self.done[id(node)]
        line = node.start_mark.line + 1
        if id(node) in self.busy:
            raise SpecError(f"{self.path}:{line}: not valid YAML: an alias that contains itself")
        self.busy.add(id(node))
        if isinstance(node, yaml.MappingNode) and node.tag == MAP_TAG:
            value: Any = self._mapping(node)
        elif isinstance(node, yaml.SequenceNode) and node.tag == SEQ_TAG:
            value = [self.convert(item) for item in node.value]
        else:  # a scalar, or a collection with another tag (!!set, !!omap): the safe loader's value
            value = self.loader.construct_object(node, deep=True)
        self.busy.discard(id(node))
        self.done[id(node)] = Node(value, self.path, line)
        return self.done[id(node)]

    def _mapping(self, node: yaml.MappingNode) -> dict[Any, Node]:
        self.loader.flatten_mapping(node)  # `<<: *anchor` merge keys, as safe_load reads them
        pairs: dict[Any, Node] = {}
        for key_node, value_node in node.value:
            key = self.loader.construct_object(key_node, deep=True)
            key_line = key_node.start_mark.line + 1
            try:
                hash(key)
            except TypeError:
                raise SpecError(f"{self.path}:{key_line}: not valid YAML: a key must be a plain value") from None
            pairs[key] = replace(self.convert(value_node), key_file=self.path, key_line=key_line)
        return pairs


# The files read while recording (see `recording`), or None.
_reads: ContextVar[list[Path] | None] = ContextVar("helmflow_spec_reads", default=None)


@contextmanager
def recording() -> Iterator[list[Path]]:
    """The files `read` reads inside the block (nested blocks' too): what a cached composition depends on."""
    outer = _reads.get()
    reads: list[Path] = []
    token = _reads.set(reads)
    try:
        yield reads
    finally:
        _reads.reset(token)
        if outer is not None:
            outer.extend(reads)


def read(path: Path) -> Node | None:
    """A YAML file as a Node tree (None when it is empty); SpecError naming the line when it is not valid YAML."""
    reads = _reads.get()
    if reads is not None:
        reads.append(path)
    text = path.read_text(encoding="utf-8")
    loader = yaml.SafeLoader(text)
    try:
        root = loader.get_single_node()
        return None if root is None else _Reader(loader, path).convert(root)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f":{mark.line + 1}" if mark else ""
        raise SpecError(f"{path}{line}: not valid YAML: {getattr(exc, 'problem', exc)}") from None
    finally:
        loader.dispose()


def from_plain(value: Any, file: Path, line: int) -> Node:
    """A Node tree for data the loader makes itself (a suite entry a for_each expands to), all at one line."""
    if isinstance(value, dict):
        value = {k: replace(from_plain(v, file, line), key_file=file, key_line=line) for k, v in value.items()}
    elif isinstance(value, list):
        value = [from_plain(v, file, line) for v in value]
    return Node(value, file, line)


def to_plain(node: Node, memo: dict[int, Any] | None = None) -> Any:
    """The tree's data, as yaml.safe_load gives it (shared values stay shared)."""
    memo = {} if memo is None else memo
    if id(node) in memo:
        return memo[id(node)]
    if node.is_mapping:
        plain: Any = {k: to_plain(v, memo) for k, v in node.value.items()}
    elif isinstance(node.value, list):
        plain = [to_plain(v, memo) for v in node.value]
    else:
        plain = node.value
    memo[id(node)] = plain
    return plain


def child(node: Node, key: Any) -> Node | None:
    if not node.is_mapping:
        return None
    if key in node.value:
        return node.value[key]
    # pydantic names a key by its text (a YAML `1:` key is the int 1).
    return next((v for k, v in node.value.items() if str(k) == str(key)), None)


def locate(node: Node, loc: tuple) -> tuple[Path, int]:
    """The file and line of a pydantic error location: a field's key, or the closest value written."""
    for depth, key in enumerate(loc):
        if node.is_mapping:
            found = child(node, key)
            if found is None:
                return node.file, node.line
            if depth == len(loc) - 1:
                return found.key_file or found.file, found.key_line or found.line
            node = found
        elif isinstance(node.value, list) and isinstance(key, int) and 0 <= key < len(node.value):
            node = node.value[key]
        else:
            return node.file, node.line
    return node.file, node.line


def without(node: Node, key: str) -> Node:
    return replace(node, value={k: v for k, v in node.value.items() if k != key})


def merge(base: Node | None, over: Node) -> Node:
    """`over` deep-merged onto `base`: mappings key by key, anything else replaced, and a null in `over`
    removes the key (JSON Merge Patch, RFC 7386), so the field takes its default. Each value keeps
    where it was written; a mapping both wrote is placed where `over` wrote it."""
    if not over.is_mapping:
        return over
    merged = dict(base.value) if base is not None and base.is_mapping else {}
    for key, value in over.value.items():
        if value.value is None:
            merged.pop(key, None)
            continue
        merged[key] = replace(merge(merged.get(key), value), key_file=value.key_file, key_line=value.key_line)
    return replace(over, value=merged)


# -- for_each placeholders -------------------------------------------------------------------------

# `${name}`; `$${...}` is the text `${...}` itself. Other braces (`{{ jinja }}`, `{shared}`, `{group}`)
# already mean something in a scenario, so the placeholders have a sign of their own.
PLACEHOLDER = re.compile(r"\$(\$?)\{([^{}]*)\}")
VARIABLE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
# A value placed into a field map must be a plain name: field maps are Jinja, rendered for every row,
# and anything more (`{{ 7*7 }}`, `a ~ b`, `x.__class__`) would run there as template code.
PLAIN_NAME = re.compile(r"^[A-Za-z0-9_]+$")
# The most values one substitution visits: bounds a template that aliases a value into itself many times.
MAX_TEMPLATE_NODES = 100_000


@dataclass
class Variables:
    """One for_each item's variables, where the item was written, and which placeholders used them."""

    values: dict[str, str]
    item: str  # "file:line" of the for_each item, for messages
    used: set[str] = field(default_factory=set)
    visited: int = 0


def has_placeholders(node: Node) -> bool:
    if isinstance(node.value, str):
        return any(not escaped for escaped, _ in PLACEHOLDER.findall(node.value))
    children = node.value.values() if node.is_mapping else node.value if isinstance(node.value, list) else ()
    return any(has_placeholders(c) for c in children)


def substitute(node: Node, variables: Variables, loc: tuple = ()) -> Node:
    """The tree with every `${name}` in its string values replaced by the variable's text, in one pass.

    A value goes in as text and is never read again: not as a placeholder, not as Jinja, not as a
    format string. Keys and non-string values are left as they are.
    """
    variables.visited += 1
    if variables.visited > MAX_TEMPLATE_NODES:
        raise SpecError(f"{node.where}: the for_each template has more than {MAX_TEMPLATE_NODES:,} values")
    if isinstance(node.value, str):
        return replace(node, value=_fill(node, variables, loc))
    if node.is_mapping:
        return replace(node, value={k: substitute(v, variables, (*loc, k)) for k, v in node.value.items()})
    if isinstance(node.value, list):
        return replace(node, value=[substitute(v, variables, (*loc, k)) for k, v in enumerate(node.value)])
    return node


def _fill(node: Node, variables: Variables, loc: tuple) -> str:
    where = f"{node.where}: field '{'.'.join(map(str, loc)) or '(top level)'}'"

    def one(match: re.Match[str]) -> str:
        escaped, name = match.groups()
        if escaped:
            return "${" + name + "}"
        if not VARIABLE.fullmatch(name):
            raise SpecError(
                f"{where}: '${{{name}}}' is not a placeholder: write ${{name}} with a variable's name "
                "(letters, digits, _), or $${...} for the text itself"
            )
        if name not in variables.values:
            known = ", ".join(sorted(variables.values)) or "none"
            raise SpecError(
                f"{where}: ${{{name}}} names no variable of the for_each item at {variables.item} "
                f"(its variables: {known})"
            )
        value = variables.values[name]
        if "fields" in loc and not PLAIN_NAME.fullmatch(value):
            raise SpecError(
                f"{where}: the value {value!r} of ${{{name}}} (for_each item at {variables.item}) cannot go into a "
                "field map, which is Jinja read for every row: there a value must be a plain name (letters, digits, _)"
            )
        variables.used.add(name)
        return value

    return PLACEHOLDER.sub(one, node.value)
