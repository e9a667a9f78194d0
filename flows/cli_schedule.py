"""`helmflow refresh | schedule | serve`: scheduled refreshes."""

from __future__ import annotations

import argparse
import sys

from helmflow.flows.cli_common import EXIT_BAD_INPUT, EXIT_FAILED, EXIT_OK


def cmd_refresh(args: argparse.Namespace) -> int:
    """One refresh now, in this process (what a scheduled run does)."""
    from helmflow.flows.display import Display
    from helmflow.flows.pipeline import RunContext
    from helmflow.flows.refresh import RefreshFailed, RegressionFound, refresh

    display = Display()
    try:
        with display:
            report = refresh(args.suites, args.model, args.db, context=RunContext(display))
    except RegressionFound as exc:
        print(f"regression(s):\n{exc}", file=sys.stderr)
        return EXIT_FAILED
    except RefreshFailed as exc:
        print(str(exc), file=sys.stderr)
        return EXIT_FAILED
    print(f"ran {len(report.ran)} run(s): {', '.join(report.ran) or '-'}; fresh: {len(report.fresh)}")
    return EXIT_OK


def cmd_schedule(args: argparse.Namespace) -> int:
    from helmflow.flows.deploy import DeployError, schedule

    try:
        name = schedule(args.suite, args.model, args.cron, args.db, args.name, args.work_pool)
    except DeployError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    print(f"deployment {name} scheduled with cron '{args.cron}'")
    return EXIT_OK


def cmd_serve(args: argparse.Namespace) -> int:
    from helmflow.flows.deploy import DeployError, serve_all

    try:
        serve_all(args.limit)
    except DeployError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    return EXIT_OK
