"""`helmflow runs | query | leaderboard | history | compare | regressions | rescore | export`."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from helmflow.flows.cli_common import EXIT_BAD_INPUT, EXIT_FAILED, EXIT_OK


def cmd_runs(args: argparse.Namespace) -> int:
    from helmflow.flows.display import print_frame
    from helmflow.warehouse.db import connect
    from helmflow.warehouse.writer import interrupted_run_ids

    with connect(args.db, read_only=True) as con:
        stale = set(interrupted_run_ids(con))
        frame = con.execute(
            "select run_id, started_at, suite, scenario, model, status, spec_hash, model_fingerprint, "
            "num_instances as n, round(wall_seconds, 1) as wall_s from runs order by started_at desc limit ?",
            [args.limit],
        ).df()
    # A run whose process died is failed, even before the next writer records that.
    frame["status"] = [
        ("failed (interrupted)" if r in stale else s) for r, s in zip(frame.run_id, frame.status, strict=True)
    ]
    print_frame(frame, "table")
    return EXIT_OK


def cmd_query(args: argparse.Namespace) -> int:
    import duckdb

    from helmflow.flows.display import print_frame
    from helmflow.warehouse.db import connect

    with connect(args.db, read_only=True) as con:
        try:
            frame = con.execute(args.sql).df()
        except duckdb.Error as exc:
            print(f"query failed: {exc}", file=sys.stderr)
            return EXIT_BAD_INPUT
    print_frame(frame, args.format)
    return EXIT_OK


def cmd_leaderboard(args: argparse.Namespace) -> int:
    """HELM's mean win rate per category (and overall) over the latest succeeded runs."""
    from helmflow.flows.display import print_frame
    from helmflow.warehouse.db import connect

    scenarios = None
    if args.suite:
        from helmflow.specs.library import find

        scenarios = [e.scenario for e in find("suite", args.suite).spec.scenarios]  # type: ignore[union-attr]
    with connect(args.db, read_only=True) as con:
        where, params = [], []
        if scenarios is not None:
            where.append("scenario in (select unnest(?))")
            params.append(scenarios)
        if args.category:
            where.append("category = ?")
            params.append(args.category)
        # Recomputed from win_rates so that a suite filter also filters the columns averaged.
        frame = con.execute(
            "with rates as (select * from win_rates" + (" where " + " and ".join(where) if where else "") + ") "
            "select model, category, round(avg(win_rate), 4) as mean_win_rate, count(*) as columns from rates "
            "group by all union all select model, 'overall', round(avg(win_rate), 4), count(*) from rates "
            "group by model order by category, mean_win_rate desc, model",
            params,
        ).df()
    if frame.empty:
        print("no column has two or more models yet: run another model on the same scenarios")
        return EXIT_OK
    wide = frame.pivot(index="model", columns="category", values="mean_win_rate").reset_index()
    order = ["model", "overall"] + [c for c in wide.columns if c not in ("model", "overall")]
    print_frame(wide[order].sort_values("overall", ascending=False), "table")
    return EXIT_OK


def cmd_history(args: argparse.Namespace) -> int:
    from helmflow.flows.display import bar, print_frame
    from helmflow.warehouse.db import connect

    with connect(args.db, read_only=True) as con:
        frame = con.execute(
            "select started_at, run_id, value, n from metric_history where model = ? and scenario = ? and metric = ? "
            "and perturbation = ? and group_name = '' order by started_at",
            [args.model, args.scenario, args.metric, args.perturbation],
        ).df()
    if frame.empty:
        print(f"no succeeded runs of {args.model} on {args.scenario} with metric {args.metric}")
        return EXIT_FAILED
    low, high = frame.value.min(), frame.value.max()
    frame["chart"] = [bar(v, low, high) for v in frame.value]
    print_frame(frame, "table")
    return EXIT_OK


def cmd_compare(args: argparse.Namespace) -> int:
    import pandas as pd

    from helmflow.flows.display import print_frame
    from helmflow.flows.history import compare
    from helmflow.warehouse.db import connect

    with connect(args.db, read_only=True) as con:
        result = compare(con, args.run_a, args.run_b)
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
    from helmflow.warehouse.db import connect

    with connect(args.db, read_only=True) as con:
        found = regressions(con, args.alpha)
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
    from helmflow.warehouse.db import connect

    target = Path(args.dir)
    target.mkdir(parents=True, exist_ok=True)
    with connect(args.db, read_only=True) as con:
        tables = [
            t
            for (t,) in con.execute(
                "select table_name from information_schema.tables where table_type = 'BASE TABLE' order by 1"
            ).fetchall()
        ]
        for table in tables:
            path = target / f"{table}.{args.format}"
            options = "(format parquet)" if args.format == "parquet" else "(format csv, header true)"
            con.execute(f"copy {table} to '{path}' {options}")
            print(f"{path}")
    return EXIT_OK
