"""`helmflow runs | query | leaderboard | history | compare | regressions | rescore | export`."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from helmflow.flows.cli_common import EXIT_BAD_INPUT, EXIT_FAILED, EXIT_OK


def cmd_runs(args: argparse.Namespace) -> int:
    from helmflow.flows.display import print_frame
    from helmflow.warehouse.store import Warehouse

    print_frame(Warehouse(args.db).runs(args.limit), "table")
    return EXIT_OK


def cmd_query(args: argparse.Namespace) -> int:
    from helmflow.flows.display import print_frame
    from helmflow.warehouse.query import QueryRefused
    from helmflow.warehouse.store import Warehouse

    try:
        frame = Warehouse(args.db).query(args.sql)
    except QueryRefused as exc:
        print(str(exc), file=sys.stderr)
        return EXIT_BAD_INPUT
    print_frame(frame, args.format)
    return EXIT_OK


def cmd_leaderboard(args: argparse.Namespace) -> int:
    """HELM's mean win rate per category (and overall) over the latest succeeded runs, then the
    headline values behind it with their 95% intervals."""
    import pandas as pd

    from helmflow.flows.display import print_frame, with_interval
    from helmflow.warehouse.store import Warehouse

    scenarios = None
    if args.suite:
        from helmflow.specs.library import find

        scenarios = [e.scenario for e in find("suite", args.suite).spec.scenarios]  # type: ignore[union-attr]
    from helmflow.flows.report.content import leaderboard

    warehouse = Warehouse(args.db)
    runs = warehouse.report_runs(scenarios)
    latest = runs[runs.latest]
    rates = warehouse.report_win_rates(list(latest.run_id))
    if args.category:
        rates = rates[rates.category == args.category]
    board = leaderboard(rates)
    if board.empty:
        print("no column has two or more models yet: run another model on the same scenarios")
        return EXIT_OK
    print_frame(board.round(4), "table")
    print("mean win rate: in each scenario × category headline column, the share of other models beaten (ties half)")
    metrics = warehouse.report_metrics(list(latest.run_id))
    metrics = metrics[metrics.headline & (metrics.group_name == "")]
    if args.category:
        metrics = metrics[metrics.category == args.category]
    where = {r.run_id: (r.model, r.scenario) for r in latest.itertuples()}
    rows = [
        {
            "model": where[m.run_id][0],
            "scenario": where[m.run_id][1],
            "category": m.category,
            "metric": m.metric + (f" ({m.perturbation})" if m.perturbation else ""),
            "value [95% interval]": with_interval(m.value, m.ci_low, m.ci_high),
        }
        for m in metrics.itertuples()
    ]
    if rows:
        print_frame(pd.DataFrame(rows).sort_values(["scenario", "category", "model"]), "table")
    return EXIT_OK


def cmd_history(args: argparse.Namespace) -> int:
    from helmflow.flows.display import bar, print_frame, with_interval
    from helmflow.warehouse.store import Warehouse

    category = getattr(args, "category", None)
    frame = Warehouse(args.db).history_with_intervals(
        args.model, args.scenario, args.metric, args.perturbation, category
    )
    if frame.empty:
        print(f"no succeeded runs of {args.model} on {args.scenario} with metric {args.metric}")
        return EXIT_FAILED
    low, high = frame.value.min(), frame.value.max()
    frame["value [95% interval]"] = [
        with_interval(v, lo, hi) for v, lo, hi in zip(frame.value, frame.ci_low, frame.ci_high, strict=True)
    ]
    frame["chart"] = [bar(v, low, high) for v in frame.value]
    print_frame(frame[["started_at", "run_id", "category", "value [95% interval]", "n", "chart"]], "table")
    return EXIT_OK


def cmd_compare(args: argparse.Namespace) -> int:
    import pandas as pd

    from helmflow.flows.display import print_frame
    from helmflow.flows.history import compare
    from helmflow.warehouse.store import Warehouse

    result = compare(Warehouse(args.db), args.run_a, args.run_b)
    if result.differs:
        print("the runs differ in more than the model's answers:\n  " + "\n  ".join(result.differs))
    rows = [
        {
            "category": m.category,
            "metric": m.metric,
            "perturbation": m.perturbation,
            "a": m.a,
            "b": m.b,
            "delta": m.delta,
            "test": m.test,
            "p_value": m.p_value,
            "interval": f"[{m.interval[0]:.4g}, {m.interval[1]:.4g}]" if m.interval else "",
            "significant": "yes" if m.significant else "",
        }
        for m in result.metrics
    ]
    print_frame(pd.DataFrame(rows), args.format)
    print(f"{len(result.flipped)} instance(s) flipped on the main metric" + (":" if result.flipped else ""))
    for instance, a, b in result.flipped[: args.show]:
        print(f"  {instance}: {a:g} -> {b:g}")
    return EXIT_OK


def cmd_regressions(args: argparse.Namespace) -> int:
    from helmflow.flows.history import regressions
    from helmflow.warehouse.store import Warehouse

    found = regressions(Warehouse(args.db), args.alpha)
    if not found:
        print("no regressions")
        return EXIT_OK
    for r in found:
        print(
            f"REGRESSION {r.model} on {r.scenario}: {r.metric} {r.before:.4f} -> {r.after:.4f} "
            f"(McNemar p = {r.p_value:.3g}; runs {r.before_run} -> {r.after_run})"
        )
        for difference in r.differs:
            print(f"  differs: {difference}")
    return EXIT_FAILED


def cmd_rescore(args: argparse.Namespace) -> int:
    from helmflow.flows.rescore import rescore

    version = rescore(args.db, args.run)
    print(f"run {args.run}: metrics version {version} stored")
    return EXIT_OK


def cmd_export(args: argparse.Namespace) -> int:
    from helmflow.warehouse.store import Warehouse

    for path in Warehouse(args.db).export(Path(args.dir), args.format):
        print(f"{path}")
    return EXIT_OK
