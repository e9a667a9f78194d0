"""`helmflow specs validate | list | show` and `helmflow perturb`."""

from __future__ import annotations

import argparse
import sys

from helmflow.flows.cli_common import EXIT_BAD_INPUT, EXIT_OK
from helmflow.specs.loader import SpecError
from helmflow.specs.schema import ScenarioSpec


def cmd_specs_validate(args: argparse.Namespace) -> int:
    from helmflow.specs.loader import load_spec

    status = EXIT_OK
    for path in args.paths:
        try:
            loaded = load_spec(path)
            print(f"ok  {path} ({loaded.kind} '{loaded.spec.name}')")
        except SpecError as exc:
            print(str(exc), file=sys.stderr)
            status = EXIT_BAD_INPUT
    return status


def source_kinds(spec: ScenarioSpec) -> str:
    """Where a scenario's data can come from: hub, package, archive (a PyPI sdist), local files."""
    kinds = ["hub"] if spec.source.hub else []
    for offline in spec.source.offline_sources:
        kind = "package" if offline.package else "archive" if offline.archive else "local"
        if kind not in kinds:
            kinds.append(kind)
    return ", ".join(kinds)


def cmd_specs_list(args: argparse.Namespace) -> int:
    import pandas as pd

    from helmflow.flows.display import print_frame
    from helmflow.specs.library import spec_files
    from helmflow.specs.loader import load_spec
    from helmflow.tasks.data import offline_available

    rows = []
    for kind in ("suite", "scenario", "model"):
        for path in spec_files(kind):
            row = {"kind": kind, "name": path.stem, "sources": "", "offline here": "", "description": ""}
            try:
                spec = load_spec(path, kind).spec
            except SpecError as exc:
                rows.append({**row, "description": f"INVALID: {exc}"})
                continue
            if isinstance(spec, ScenarioSpec):
                row["sources"] = source_kinds(spec)
                row["offline here"] = "yes" if offline_available(spec, path.parent) else "no"
            rows.append({**row, "description": " ".join(spec.description.split())[:80]})
    print_frame(pd.DataFrame(rows), "table")
    return EXIT_OK


def cmd_specs_show(args: argparse.Namespace) -> int:
    """The resolved spec as YAML, then two prompts rendered from its data (offline, else the Hub)."""
    import yaml

    from helmflow.specs.library import find
    from helmflow.tasks.adapt import build_requests
    from helmflow.tasks.data import load_instances, select

    loaded = find("scenario", args.name)
    spec = loaded.spec
    assert isinstance(spec, ScenarioSpec)
    print(f"# {loaded.path}")
    print(yaml.safe_dump(spec.model_dump(mode="json"), sort_keys=False, allow_unicode=True, width=110))
    instances, source = load_instances(spec, base_dir=loaded.path.parent)
    instances = select(instances, spec.groups, 2, seed=args.seed)
    pool = []
    if spec.adapter.num_train and spec.adapter.fewshot_split:
        pool, _ = load_instances(spec, spec.adapter.fewshot_split, base_dir=loaded.path.parent)
    for request in build_requests(spec.adapter, instances, pool, args.seed):
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
