"""`lmeval:NAME`: an lm-evaluation-harness task as a scenario, a group or tag as a suite of them.

specs/library.py sends `lmeval:` references here (`helmflow run lmeval:hellaswag`, `extends: lmeval:arc_easy`,
a suite entry `- lmeval:mmlu_anatomy`). The task's YAML is found and read by specs/lmeval_tasks.py and
translated by specs/lmeval_translate.py; a task that needs what helmflow does not do is refused here, in one
line naming what, before any data or model is loaded. `helmflow run --data-dir DIR` points the tasks at local
files (settings()); --trust-task-code lets hooks from a user's task folder run.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from helmflow.specs.compose import from_plain
from helmflow.specs.library import LMEVAL_PREFIX
from helmflow.specs.lmeval_tasks import (
    PATH_VARIABLE,
    TRUST_VARIABLE,
    TaskEntry,
    find_entry,
    index,
    members,
    no_tasks_reason,
    roots,
    task_config,
)
from helmflow.specs.lmeval_translate import TRUST_NEED, Translation, scenario_name, translate
from helmflow.specs.loader import LoadedSpec, SpecError
from helmflow.specs.schema import SuiteEntry, SuiteSpec


@dataclass
class Settings:
    """What `helmflow run` says about lmeval: references: a folder of local files for their data."""

    data_dir: Path | None = None


SETTINGS = Settings()


def configure(data_dir: str | None = None, trust: bool = False, paths: list[str] | None = None) -> None:
    """The command line's --data-dir, --trust-task-code and --lmeval-path, for the references resolved next.
    Trust and task folders go into the environment, so that the run's data loading (and its workers) see them."""
    SETTINGS.data_dir = Path(data_dir).expanduser().resolve() if data_dir else None
    if data_dir and not SETTINGS.data_dir.is_dir():  # type: ignore[union-attr]
        raise SpecError(f"--data-dir {data_dir}: no such folder")
    if trust:
        os.environ[TRUST_VARIABLE] = "1"
    if paths:
        os.environ[PATH_VARIABLE] = os.pathsep.join(str(Path(p).expanduser().resolve()) for p in paths)


def trusted() -> bool:
    return os.environ.get(TRUST_VARIABLE, "").strip().lower() in {"1", "true", "yes", "on"}


def _name(ref: str) -> str:
    name = ref.removeprefix(LMEVAL_PREFIX).strip()
    if not name:
        raise SpecError(f"'{ref}': name an lm-evaluation-harness task or group after lmeval:, e.g. lmeval:hellaswag")
    return name


def _translated(name: str, path: Path | None, config: dict) -> Translation:
    return translate(name, config, path, data_dir=SETTINGS.data_dir, trusted=trusted())


def _loaded(translation: Translation, path: Path | None, ref: str) -> LoadedSpec:
    if not translation.runs or translation.spec is None:
        raise SpecError(f"{ref}: helmflow cannot run it as lm-eval does: {'; '.join(translation.needs)}")
    # The file relative data paths are read from: the --data-dir folder (its files are then allowed), else the YAML.
    where = (SETTINGS.data_dir / f"{translation.task}.yaml") if SETTINGS.data_dir else (path or Path.cwd())
    origin = f"{ref}, lm-evaluation-harness's {path}, translated (specs/lmeval_translate.py)"
    tree = from_plain(translation.spec.model_dump(mode="json"), where, 1)
    return LoadedSpec("scenario", where, translation.spec, origin, tree=tree)


def lmeval_scenario(ref: str) -> LoadedSpec:
    """The scenario of one lm-eval task; SpecError for a group (run it with `helmflow run`) or what it needs."""
    name = _name(ref)
    entry = find_entry(name)
    if entry.kind != "task":
        kind = "a Python task class" if entry.kind == "python" else f"an lm-eval {entry.kind}"
        raise SpecError(f"{ref} is {kind}, not a task: `helmflow run {ref}` runs a group's or tag's tasks as a suite")
    return _loaded(_translated(name, entry.path, task_config(entry)), entry.path, ref)


def lmeval_target(ref: str) -> LoadedSpec:
    """What `helmflow run lmeval:NAME` runs: a task's scenario, or a group's or tag's tasks as a suite whose
    scenarios are found by name while it is planned (LoadedSpec.expansions)."""
    name = _name(ref)
    entry = find_entry(name)
    if entry.kind == "task":
        return lmeval_scenario(ref)
    return _suite(ref, entry)


def _suite(ref: str, entry: TaskEntry) -> LoadedSpec:
    scenarios: dict[str, LoadedSpec] = {}
    refused: list[str] = []
    for member in members(entry):
        translation = _translated(member.name, member.path, member.config)
        if not translation.runs or translation.spec is None:
            refused.append(f"{member.name} ({'; '.join(translation.needs)})")
            continue
        scenarios[translation.spec.name] = _loaded(translation, member.path, f"lmeval:{member.name}")
    if refused:
        raise SpecError(f"{ref}: helmflow cannot run {len(refused)} of its tasks as lm-eval does: {'; '.join(refused)}")
    if not scenarios:
        raise SpecError(f"{ref}: the lm-eval {entry.kind} has no tasks")
    suite = SuiteSpec(
        name=scenario_name(entry.name),
        description=f"lm-evaluation-harness {entry.kind} {entry.name} ({entry.path or 'its tasks’ tag:'}): "
        f"{len(scenarios)} task(s), each translated (lmeval:TASK)",
        scenarios=[SuiteEntry(scenario=n) for n in scenarios],
    )
    where = entry.path or Path.cwd()
    return LoadedSpec("suite", where, suite, f"{ref}, an lm-eval {entry.kind}", scenarios)


# -- `helmflow specs list --source lmeval` --------------------------------------------------------------------


def list_rows() -> list[dict[str, str]]:
    """Every task, group and tag found, with what each needs: its Hub dataset, trust, what helmflow lacks."""
    if not roots():
        none = {"kind": "lmeval", "name": "(none)", "sources": "", "offline here": ""}
        return [{**none, "description": no_tasks_reason()}]
    rows = []
    for name, entry in sorted(index().items()):
        row = {"kind": f"lmeval {entry.kind}", "name": f"{LMEVAL_PREFIX}{name}", "sources": "", "offline here": ""}
        if entry.kind in ("group", "tag"):
            rows.append({**row, "description": f"runs its tasks as a suite ({entry.path or 'a tag'})"})
            continue
        if entry.kind == "python":
            rows.append({**row, "description": "UNSUPPORTED: a Python task class (no YAML to translate)"})
            continue
        try:
            translation = _translated(name, entry.path, task_config(entry))
        except (SpecError, RecursionError) as exc:
            rows.append({**row, "description": f"INVALID: {exc}"})
            continue
        needs = "; ".join(n for n in translation.needs if not n.startswith(TRUST_NEED))
        trust = f"needs {TRUST_NEED}; " if translation.trust else ""
        row["sources"] = f"hub {translation.hub}" if translation.hub else ""
        rows.append({**row, "description": f"{trust}UNSUPPORTED: {needs}" if needs else f"{trust}runs"})
    return rows
