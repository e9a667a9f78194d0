"""`helmflow specs validate | list | show | metrics` and `helmflow perturb`."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from helmflow.flows.cli_common import EXIT_BAD_INPUT, EXIT_OK
from helmflow.specs.loader import LoadedSpec, SpecError
from helmflow.specs.schema import ModelSpec, ScenarioSpec, SuiteSpec

# How many rows of each split `specs validate` maps through the spec's fields: enough to catch a
# misspelt column or a template that fails on real rows, few enough to stay quick.
VALIDATE_ROWS = 3


def cmd_specs_validate(args: argparse.Namespace) -> int:
    """Load each spec; for a scenario, also map the first rows of the data it reads, where they are here."""
    from helmflow.specs.library import load_file
    from helmflow.tasks.data import DataError

    status = EXIT_OK
    for path in args.paths:
        try:
            loaded = load_file(path)  # a suite's for_each scenarios resolve by name, as `run` resolves them
            spec = loaded.spec
            notes = check_scenario_data(spec, loaded.path.parent) if isinstance(spec, ScenarioSpec) else []
            if isinstance(spec, SuiteSpec):
                notes = check_suite(spec, loaded.path)
            if isinstance(spec, ModelSpec):
                notes = check_model(loaded)
            print(f"ok  {path} ({loaded.kind} '{loaded.spec.name}'{''.join('; ' + n for n in notes)})")
        except SpecError as exc:
            print(str(exc), file=sys.stderr)
            status = EXIT_BAD_INPUT
        except DataError as exc:  # names the data file, the row and the spec field
            print(f"{path}: {exc}", file=sys.stderr)
            status = EXIT_BAD_INPUT
    return status


def check_suite(suite: SuiteSpec, path: Path) -> list[str]:
    """What running the suite would resolve first: each entry's scenario with its overrides, each model."""
    from helmflow.flows.plans import suite_plans
    from helmflow.specs.library import find_model

    try:
        plans = suite_plans(suite)
        for name in suite.models:
            try:
                find_model(name)
            except SpecError as exc:
                raise SpecError(f"suite '{suite.name}', models: {exc}") from None
    except SpecError as exc:
        raise SpecError(f"{path}: {exc}") from None
    return [f"{len(plans)} scenario(s) and {len(suite.models)} model(s) resolved"]


def check_model(loaded: LoadedSpec) -> list[str]:
    """An `hf` model's path: a local folder that is here, or a hub id (not contacted); SpecError otherwise."""
    from helmflow.specs.loader import check_model_path

    spec = loaded.spec
    assert isinstance(spec, ModelSpec)
    if spec.backend != "hf" or spec.path is None:
        return []
    check_model_path(loaded)
    if Path(spec.path).is_dir():
        return [f"path: local folder {Path(spec.path).resolve()}"]
    # Said, because "models/my-model" is a hub id unless that folder is here: ./models/my-model is always local.
    return [f"path: hub id {spec.path}, not contacted by validate (a local folder is written ./{spec.path})"]


def check_scenario_data(spec: ScenarioSpec, spec_dir: Path) -> list[str]:
    """Map the first rows of each split the scenario reads, from its offline files only; notes for its ok line.

    Raises DataError when a row does not map (a misspelt column, a failing template). The Hub is
    never contacted: validating stays quick and works offline, so hub-only data is reported as not here.
    """
    from helmflow.tasks.data import load_rows, offline_for, to_instances

    splits = [spec.source.split, *([spec.adapter.fewshot_split] if spec.adapter.fewshot_split else [])]
    rendered, missing = [], []
    for split in dict.fromkeys(splits):
        if offline_for(spec, split, spec_dir) is None:
            missing.append(f"{split}: {unreachable_reason(spec, split, spec_dir)}")
            continue
        rows, source = load_rows(spec, split, "offline", spec_dir)
        # As load_instances decides it: only a multiple-choice spec that maps choices needs options in each row.
        needs_choices = spec.adapter.method.startswith("multiple_choice") and source.fields.choices is not None
        to_instances(rows[:VALIDATE_ROWS], source.fields, split, needs_choices)
        rendered.append(split)
    notes = [f"rendered the first {VALIDATE_ROWS} rows of {', '.join(rendered)}"] if rendered else []
    if missing:
        notes.append(f"data not reachable here: {'; '.join(missing)}")
    return notes


def unreachable_reason(spec: ScenarioSpec, split: str, spec_dir: Path) -> str:
    """Why no offline copy of a split is here: the first offline alternative's reason, and the Hub if any."""
    from helmflow.tasks.sources import SourceMissing, split_files

    reason = f"no offline files for split '{split}'"
    for offline in spec.source.offline_sources:
        if split in offline.files:
            try:
                split_files(offline, split, spec_dir, fetch=False)
            except SourceMissing as exc:
                reason = str(exc)
                break
    if spec.source.hub:
        reason += f" (the Hub, {spec.source.hub.path}, is not contacted by validate)"
    return reason


def source_kinds(spec: ScenarioSpec) -> str:
    """Where a scenario's data can come from: hub, package, archive (a PyPI sdist), local files."""
    kinds = ["hub"] if spec.source.hub else []
    for offline in spec.source.offline_sources:
        kind = "package" if offline.package else "archive" if offline.archive else "local"
        if kind not in kinds:
            kinds.append(kind)
    return ", ".join(kinds)


def cmd_specs_list(args: argparse.Namespace) -> int:
    if getattr(args, "source", "library") == "lmeval":
        from helmflow.flows.cli_lmeval import cmd_specs_list_lmeval

        return cmd_specs_list_lmeval(args)
    import pandas as pd

    from helmflow.flows.display import print_frame
    from helmflow.specs.library import find, spec_files, spec_names
    from helmflow.tasks.data import offline_available

    rows = []
    for kind in ("suite", "scenario", "model"):
        try:
            names = spec_names(kind)  # scenarios: the files and what the suites' for_each make
        except SpecError as exc:  # a suite whose for_each is broken: its row says why, the files still list
            names = [p.stem for p in spec_files(kind)]
            rows.append(
                {
                    "kind": kind,
                    "name": "(for_each)",
                    "sources": "",
                    "offline here": "",
                    "description": f"INVALID: {exc}",
                }
            )
        for name in names:
            row = {"kind": kind, "name": name, "sources": "", "offline here": "", "description": ""}
            try:
                loaded = find(kind, name)
            except SpecError as exc:
                rows.append({**row, "description": f"INVALID: {exc}"})
                continue
            spec = loaded.spec
            if isinstance(spec, ScenarioSpec):
                row["sources"] = source_kinds(spec)
                row["offline here"] = "yes" if offline_available(spec, loaded.path.parent) else "no"
            rows.append({**row, "description": " ".join(spec.description.split())[:80]})
    print_frame(pd.DataFrame(rows + registry_rows()), "table")
    return EXIT_OK


def registry_rows() -> list[dict[str, str]]:
    """The backends, metrics and data formats specs may name, helmflow's own and installed plugins'."""
    from helmflow.specs import registry

    def row(kind: str, name: str, plugin: registry.Plugin, description: str) -> dict[str, str]:
        whose = "" if plugin.own else f" (plugin: {plugin.distribution} {plugin.version})"
        return {"kind": kind, "name": name, "sources": "", "offline here": "", "description": description + whose}

    rows = [row("backend", name, registry.backend(name), "model backend") for name in registry.backend_names()]
    for info in registry.metrics().values():
        better = "higher" if info.higher_is_better else "lower"
        rows.append(row("metric", info.name, info.plugin, f"{info.category}: {info.display_name}; {better} is better"))
    rows += [row("format", name, registry.source(name), "data format") for name in registry.source_names()]
    return rows


METHOD_SHORT = {
    "multiple_choice_joint": "mc joint",
    "multiple_choice_separate": "mc separate",
    "multiple_choice_calibrated": "mc calibrated",
    "generation": "generation",
}


def cmd_specs_metrics(args: argparse.Namespace) -> int:
    """The metric registry as a Markdown table (the reference of what `metrics:` may name), plugins' too."""
    from helmflow.specs import registry

    print("| metric | category | better | adapter methods | display name | from | description |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for info in registry.metrics().values():
        better = "higher" if info.higher_is_better else "lower"
        methods = ", ".join(METHOD_SHORT.get(m, m) for m in info.methods)
        whose = "helmflow" if info.plugin.own else f"{info.plugin.distribution} {info.plugin.version}"
        description = " ".join(info.description.split()).replace("|", "\\|")
        cells = [f"`{info.name}`", info.category, better, methods, info.display_name, whose, description]
        print("| " + " | ".join(cells) + " |")
    return EXIT_OK


def cmd_specs_show(args: argparse.Namespace) -> int:
    """The resolved spec as YAML, then two prompts rendered from its data (offline, else the Hub)."""
    import yaml

    from helmflow.specs.library import find
    from helmflow.tasks.adapt import build_requests
    from helmflow.tasks.data import fewshot_pool, load_instances, select

    loaded = find("scenario", args.name)
    spec = loaded.spec
    assert isinstance(spec, ScenarioSpec)
    print(f"# {loaded.path}")
    if loaded.origin:  # composed: say from what, since the file alone does not show this spec
        print(f"# {loaded.origin}")
    print(yaml.safe_dump(spec.model_dump(mode="json"), sort_keys=False, allow_unicode=True, width=110))
    instances, source = load_instances(spec, base_dir=loaded.path.parent, groups=spec.groups)
    instances = select(instances, spec.groups, 2, seed=args.seed)
    pool = fewshot_pool(spec, base_dir=loaded.path.parent)
    chat = None
    if getattr(args, "model", None):  # the prompts as that model reads them (its chat template)
        from helmflow.specs.library import find_model
        from helmflow.tasks.models.chat_format import chat_format_for

        chat = chat_format_for(find_model(args.model))
    for request in build_requests(spec.adapter, instances, pool, args.seed, chat=chat):
        print(f"# prompt for {request.instance_id} ({source.kind}: {source.description})")
        print(request.prompt)
        if request.continuations:
            print(f"# continuations scored: {list(request.continuations)}")
        print()
    return EXIT_OK


def cmd_perturb(args: argparse.Namespace) -> int:
    from helmflow.tasks.perturb import perturb

    try:
        print(perturb(args.name, args.text, args.seed, args.key))
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    return EXIT_OK
