"""`helmflow report`: write the static site of the warehouse's runs (opens from disk, no server)."""

from __future__ import annotations

import argparse
import sys
from datetime import datetime
from pathlib import Path

from helmflow.flows.cli_common import EXIT_BAD_INPUT, EXIT_FAILED, EXIT_OK


def add_report_parser(sub: argparse._SubParsersAction) -> None:
    report = sub.add_parser("report", help="write a static HTML report of the runs (opens from disk)")
    report.add_argument("--out", default="report", help="folder to write (default: ./report)")
    report.add_argument("--suite", help="only this suite's scenarios")
    report.add_argument("--model", action="append", help="only these models (repeatable)")
    report.add_argument("--since", help="only runs started on or after this date (YYYY-MM-DD or ISO time)")
    report.add_argument(
        "--references",
        action="append",
        metavar="FILE",
        help="a references file (published baselines, declared contamination) besides helmflow's own and "
        "$HELMFLOW_REFERENCES's (repeatable; docs/baselines-and-contamination.md)",
    )
    report.set_defaults(func=cmd_report)


def cmd_report(args: argparse.Namespace) -> int:
    from helmflow.flows.report import Selection, write_site
    from helmflow.flows.report.site import ReportFolderError
    from helmflow.warehouse.store import Warehouse

    scenarios = None
    if args.suite:
        from helmflow.specs.library import find

        scenarios = [e.scenario for e in find("suite", args.suite).spec.scenarios]  # type: ignore[union-attr]
    since = None
    if args.since:
        try:
            since = datetime.fromisoformat(args.since)
        except ValueError:
            print(f"error: --since {args.since!r} is not a date (YYYY-MM-DD) or ISO time", file=sys.stderr)
            return EXIT_BAD_INPUT
    out = Path(args.out)
    try:
        selection = Selection(scenarios, args.model, since, args.suite, getattr(args, "references", None))
        summary = write_site(Warehouse(args.db), out, selection)
    except ReportFolderError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except OSError as exc:  # the machine's fault (a full disk, no permission): one line, no traceback
        reason = exc.strerror or str(exc)
        folder = out.resolve()
        print(f"error: could not write the report to {folder}: {reason} (the folder is as it was)", file=sys.stderr)
        return EXIT_FAILED
    index = (summary.folder / "index.html").resolve()
    print(f"{summary.pages} pages for {summary.runs} runs in {summary.seconds:.1f} s: open {index}")
    return EXIT_OK
