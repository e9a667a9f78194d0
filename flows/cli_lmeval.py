"""The command line's lm-evaluation-harness options: `helmflow run lmeval:TASK --data-dir DIR --trust-task-code`,
`helmflow specs list --source lmeval` (specs/lmeval_refs.py does the work)."""

from __future__ import annotations

import argparse

from helmflow.flows.cli_common import EXIT_OK


def add_run_arguments(run: argparse.ArgumentParser) -> None:
    run.add_argument(
        "--data-dir",
        metavar="DIR",
        help="lmeval:TASK data from local files with the Hub dataset's columns: DIR/SPLIT.jsonl (or .json, "
        ".parquet, .csv, .tsv, SPLIT-*.parquet), in DIR or DIR/DATASET_NAME (docs/lmeval-tasks.md)",
    )
    run.add_argument(
        "--trust-task-code",
        action="store_true",
        help="let lmeval:TASK run the !function hooks of task YAMLs outside the installed lm_eval package",
    )
    add_path_argument(run)


def add_path_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--lmeval-path",
        action="append",
        metavar="DIR",
        help="a folder of lm-evaluation-harness task YAMLs, searched before the installed lm_eval's (repeatable)",
    )


def configure(args: argparse.Namespace) -> None:
    """Hand the options to specs/lmeval_refs.py before any lmeval: reference is resolved."""
    data_dir, trust, paths = (getattr(args, k, None) for k in ("data_dir", "trust_task_code", "lmeval_path"))
    from helmflow.specs.lmeval_refs import configure as configure_refs

    configure_refs(data_dir, bool(trust), paths)  # also forgets an earlier command's --data-dir (tests call main)


def cmd_specs_list_lmeval(args: argparse.Namespace) -> int:
    """Every lm-eval task, group and tag found, with what each needs (its Hub dataset, trust, what is missing):
    one line each, unwrapped (lm-eval 0.4.13 has some 14,000 names; a drawn table of them takes minutes)."""
    from helmflow.specs.lmeval_refs import list_rows

    configure(args)
    rows = list_rows()
    width = max((len(r["name"]) for r in rows), default=0)
    print(f"{'name':<{width}}  {'kind':<13}  {'data':<45}  what it needs")
    for row in rows:
        print(f"{row['name']:<{width}}  {row['kind']:<13}  {row['sources']:<45}  {row['description']}")
    return EXIT_OK
