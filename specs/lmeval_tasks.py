"""lm-evaluation-harness's task YAMLs, found by name and read as lm-eval 0.4.13 reads them (for `lmeval:NAME`).

Where: the folders on HELMFLOW_LMEVAL_PATH (`helmflow run --lmeval-path DIR`), then the `tasks/` folder of the
installed `lm_eval` package (the `lmeval` extra), found without importing it: importing lm_eval pulls its scoring
dependencies, and reading YAML needs none of them. A name is a task (`task:`), a group (`group:` with a `task:`
list) or a tag (every task whose `tag:` names it), as lm_eval/tasks/_index.py classifies a file.

How: `include:` bases are merged as lm_eval/tasks/_yaml_loader.py merges them (each base in order, read relative
to the including file, its task_list dropped; the file's own keys last). `!function utils.process_docs` becomes a
FunctionRef (the file beside the YAML and the function's name) and is never imported here: specs/lmeval_translate.py
decides whether it may run, tasks/lmeval_hooks.py runs it.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import os
import re
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any, Literal

import yaml

from helmflow.specs.loader import SpecError

PATH_VARIABLE = "HELMFLOW_LMEVAL_PATH"
# Set by `helmflow run --trust-task-code`: hooks outside the installed lm_eval package may run (tasks/lmeval_hooks.py).
TRUST_VARIABLE = "HELMFLOW_TRUST_TASK_CODE"
_IGNORED_FOLDERS = {"__pycache__", ".ipynb_checkpoints"}


@dataclass(frozen=True)
class FunctionRef:
    """A `!function MODULE.NAME` hook: MODULE's file, read from the YAML's own folder as lm-eval reads it."""

    file: Path
    name: str
    written: str

    def __str__(self) -> str:
        return f"!function {self.written} ({self.file})"


@dataclass(frozen=True)
class TaskEntry:
    name: str
    kind: Literal["task", "python", "group", "tag"]
    path: Path | None  # a tag has no file of its own
    root: Path
    members: tuple[str, ...] = field(default=())  # a tag's tasks, sorted as lm-eval builds them


@cache
def package_tasks_dir() -> Path | None:
    """The installed lm_eval package's tasks/ folder, or None when lm_eval is not installed (asked once a process)."""
    spec = importlib.util.find_spec("lm_eval")
    if spec is None or not spec.submodule_search_locations:
        return None
    folder = Path(next(iter(spec.submodule_search_locations))) / "tasks"
    return folder if folder.is_dir() else None


@cache
def package_version() -> str | None:
    try:
        return importlib.metadata.version("lm_eval")
    except importlib.metadata.PackageNotFoundError:
        return None


def user_folders() -> list[Path]:
    return [Path(p).expanduser() for p in os.environ.get(PATH_VARIABLE, "").split(os.pathsep) if p.strip()]


def roots() -> list[Path]:
    """Where task names are looked up, first wins: the user's folders (as lm-eval's --include_path, which
    overrides its own tasks), then the package's."""
    package = package_tasks_dir()
    return [*user_folders(), *([package] if package else [])]


def in_package(path: Path) -> bool:
    """Whether a file lies inside the installed lm_eval package's tasks folder: code that came with lm_eval."""
    package = package_tasks_dir()
    return package is not None and path.resolve().is_relative_to(_resolved(package))


@cache
def _resolved(path: Path) -> Path:
    return path.resolve()


def no_tasks_reason() -> str:
    users = user_folders()
    where = f" and no task folder on {PATH_VARIABLE}" if not users else f" (searched {', '.join(map(str, users))})"
    return (
        f"lm-evaluation-harness is not installed{where}: pip install -e '.[lmeval]' installs its task YAMLs "
        f"without its model backends, or name a folder of task YAMLs with --lmeval-path"
    )


# -- reading one YAML file ------------------------------------------------------------------------------------

_Base: type = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def _loader(folder: Path) -> type:
    class Loader(_Base):  # type: ignore[misc, valid-type]
        pass

    def function(loader: yaml.Loader, node: yaml.Node) -> FunctionRef:
        written = str(loader.construct_scalar(node))  # type: ignore[arg-type]
        module, _, name = written.rpartition(".")
        file = folder / f"{module.replace('.', '/')}.py"
        package = package_tasks_dir()
        if not file.is_file() and module.startswith("lm_eval.") and package is not None:
            # lm-eval imports a module it does not find beside the YAML: lm_eval.tasks.x.utils is its own file.
            file = package.parents[1] / f"{module.replace('.', '/')}.py"
        return FunctionRef(file, name, written)

    Loader.add_constructor("!function", function)
    return Loader


@cache
def _parsed(path: Path, stamp: tuple[int, int]) -> dict[str, Any]:
    # Cached by modification time and size: an index reads a base such as mmlu's template once, not 57 times.
    data = yaml.load(path.read_bytes(), Loader=_loader(path.parent))  # a SafeLoader with one tag more
    if not isinstance(data, dict):
        raise SpecError(f"{path}: expected a mapping of task settings, got {type(data).__name__}")
    return data


def _raw(path: Path) -> dict[str, Any]:
    status = path.stat()
    return dict(_parsed(path, (status.st_mtime_ns, status.st_size)))


def load_config(path: Path, seen: tuple[Path, ...] = ()) -> dict[str, Any]:
    """A task YAML with its `include:` bases merged in, as lm-eval merges them."""
    path = path.expanduser().resolve()
    if path in seen:
        raise SpecError(f"{path}: an include cycle ({' includes '.join(map(str, (*seen, path)))})")
    try:
        config = _raw(path)
    except (OSError, yaml.YAMLError) as exc:
        raise SpecError(f"{path}: not a readable task YAML: {exc}") from None
    includes = config.pop("include", None)
    if includes is None:
        return config
    merged: dict[str, Any] = {}
    for name in includes if isinstance(includes, list) else [includes]:
        base = load_config(path.parent / str(name), (*seen, path))
        base.pop("task_list", None)  # a base's task_list names its own tasks, not the including file's
        merged.update(base)
    merged.update(config)
    return merged


def _kind(config: dict[str, Any]) -> Literal["task", "python", "group"] | None:
    # lm_eval/tasks/_index.py's _kind_of: `class` first, then `group`, then `task`.
    if "class" in config:
        return "python"
    if "group" in config:
        return "group"
    return "task" if "task" in config else None


# -- finding a name -----------------------------------------------------------------------------------------


def _yaml_files(root: Path) -> list[Path]:
    return list(_listed(root.resolve(), root.stat().st_mtime if root.is_dir() else 0.0))


@cache
def _listed(root: Path, stamp: float) -> tuple[Path, ...]:
    files = (p for p in root.glob("**/*.yaml") if not _IGNORED_FOLDERS.intersection(p.parts))
    return tuple(sorted(files, key=lambda p: p.as_posix()))


def _declares(name: str) -> re.Pattern[bytes]:
    quoted = re.escape(name.encode())
    return re.compile(rb"^[\"']?(task|group)[\"']?\s*:\s*[\"']?" + quoted + rb"[\"']?\s*(#.*)?$", re.MULTILINE)


def _quick_find(name: str) -> TaskEntry | None:
    """A task or group whose own file writes `task: NAME` or `group: NAME`: found by reading bytes, without the
    full index (a second rather than several); a name given only by a base, and tags, need the index."""
    pattern = _declares(name)
    for root in roots():
        files = _yaml_files(root)
        # Files named for the task (arc/arc_easy.yaml, super_glue/boolq/default.yaml) first: most names are found
        # reading a few files, not all 14,000 (lm-eval warns when two files give one name; the first wins there).
        named = [p for p in files if name in (p.stem.replace("-", "_"), p.parent.name)]
        for path in [*named, *files]:
            if not pattern.search(path.read_bytes()):
                continue
            try:
                config = load_config(path)
            except SpecError:
                continue
            kind = _kind(config)
            if kind is not None and config.get("group" if kind == "group" else "task") == name:
                return TaskEntry(name, kind, path, root)
    return None


@cache
def _root_index(root: Path, stamp: float) -> dict[str, TaskEntry]:
    """One folder's names, as lm_eval's TaskIndex.build makes them: the first file (in path order) to give a
    name keeps it; files that do not parse are passed over."""
    found: dict[str, TaskEntry] = {}
    tags: dict[str, list[str]] = {}
    for path in _yaml_files(root):
        try:
            config = load_config(path)
        except (SpecError, RecursionError):
            continue
        kind = _kind(config)
        name = config.get("group") if kind == "group" else config.get("task")
        if kind is None or not isinstance(name, str) or name in found:
            continue
        found[name] = TaskEntry(name, kind, path, root)
        if kind != "group":
            written = config.get("tag") or []
            for tag in [written] if isinstance(written, str) else written:
                tags.setdefault(str(tag), []).append(name)
    for tag, members in tags.items():
        found.setdefault(tag, TaskEntry(tag, "tag", None, root, tuple(sorted(members))))
    return found


def index() -> dict[str, TaskEntry]:
    """Every name in every root; a user folder's name wins over the package's."""
    merged: dict[str, TaskEntry] = {}
    for root in reversed(roots()):
        stamp = root.stat().st_mtime if root.is_dir() else 0.0
        merged.update(_root_index(root.resolve(), stamp))
    return merged


def find_entry(name: str) -> TaskEntry:
    """The task, group or tag called `name`; SpecError naming close names when there is none."""
    if not roots():
        raise SpecError(f"lmeval:{name}: {no_tasks_reason()}")
    found = _quick_find(name)
    if found is not None:
        return found
    names = index()
    if name in names:
        return names[name]
    import difflib

    close = difflib.get_close_matches(name, list(names), n=3)
    hint = f"; did you mean {', '.join('lmeval:' + c for c in close)}?" if close else ""
    where = ", ".join(map(str, roots()))
    raise SpecError(f"unknown lm-evaluation-harness task or group 'lmeval:{name}' (searched {where}){hint}")


# -- a group's or tag's tasks -------------------------------------------------------------------------------

# lm_eval/config/group.py's GroupConfig fields: a group's other keys are settings its tasks take.
GROUP_KEYS = {"group", "group_alias", "task", "aggregate_metric_list", "metadata"}


@dataclass(frozen=True)
class Member:
    """One task a group or tag runs: its name, its YAML, and the settings the group gives it."""

    name: str
    path: Path | None
    config: dict[str, Any]


def members(entry: TaskEntry, overrides: dict[str, Any] | None = None, depth: int = 0) -> list[Member]:
    """The tasks a group or tag runs, leaves only, in lm-eval's order (lm_eval/tasks/_factory.py)."""
    if depth > 20:
        raise SpecError(f"lmeval:{entry.name}: groups nested more than 20 deep (a cycle?)")
    overrides = overrides or {}
    if entry.kind == "tag":
        names = index()
        return [Member(n, names[n].path, task_config(names[n], overrides)) for n in entry.members if n in names]
    if entry.kind != "group":
        return [Member(entry.name, entry.path, task_config(entry, overrides))]
    assert entry.path is not None
    config = load_config(entry.path)
    given = {**{k: v for k, v in config.items() if k not in GROUP_KEYS}, **overrides}
    listed = config.get("task") or []
    found: list[Member] = []
    for item in [listed] if isinstance(listed, str) else listed:
        found += _member(entry, item, given, depth)
    return found


def _member(group: TaskEntry, item: Any, given: dict[str, Any], depth: int) -> list[Member]:
    names = index()
    if isinstance(item, str):
        name, mine = item, given
    elif isinstance(item, dict) and "group" in item:
        inline = {k: v for k, v in item.items() if k != "group"}
        if item["group"] in names:
            return members(names[item["group"]], {**given, **inline}, depth + 1)
        raise SpecError(f"lmeval:{group.name}: an inline subgroup ({item['group']}) is not supported")
    elif isinstance(item, dict) and "task" in item:
        name, mine = str(item["task"]), {**given, **item}
    else:
        raise SpecError(f"lmeval:{group.name}: a task entry lm-eval would refuse: {item!r}")
    if name not in names:  # a task written inline in the group, named group::task as lm-eval names it
        return [Member(f"{group.name}::{name}", group.path, {**mine, "task": f"{group.name}::{name}"})]
    child = names[name]
    if child.kind in ("group", "tag"):
        return members(child, mine, depth + 1)
    return [Member(name, child.path, task_config(child, {**mine, "task": name}))]


def task_config(entry: TaskEntry, overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    """A task's settings: its YAML's with the group's over them; the structural keys dropped as lm-eval drops them."""
    assert entry.path is not None
    config = {**load_config(entry.path), **(overrides or {})}
    for key in ("tag", "group", "task_list"):
        config.pop(key, None)
    return config
