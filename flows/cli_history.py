"""`helmflow runs | query | leaderboard | history | compare | regressions | rescore | export`."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from helmflow.flows.cli_common import EXIT_BAD_INPUT, EXIT_FAILED, EXIT_OK

if TYPE_CHECKING:
    import pandas as pd

    from helmflow.specs.reference_rows import ReferenceRow, References


def cmd_runs(args: argparse.Namespace) -> int:
    from helmflow.flows.display import print_frame
    from helmflow.warehouse.store import Warehouse

    print_frame(Warehouse(args.db).runs(args.limit), "table")
    return EXIT_OK


def cmd_query(args: argparse.Namespace) -> int:
    from helmflow.flows.display import print_frame
    from helmflow.warehouse.query import QueryLimits, QueryRefused
    from helmflow.warehouse.store import Warehouse

    limits = QueryLimits(memory_mb=args.memory_limit, seconds=args.timeout, rows=args.max_rows)
    try:
        frame = Warehouse(args.db).query(args.sql, limits)
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
    from helmflow.tasks.metrics import CATEGORIES
    from helmflow.warehouse.store import Warehouse

    scenarios = None
    if args.layout and not args.suite:
        print("error: --layout needs --suite (the scenarios whose layout to show)", file=sys.stderr)
        return EXIT_BAD_INPUT
    if args.suite:
        from helmflow.specs.library import find

        scenarios = [e.scenario for e in find("suite", args.suite).spec.scenarios]  # type: ignore[union-attr]
    from helmflow.flows.leaderboard import board_frame, leaderboard_of, tie_lines
    from helmflow.flows.reference_view import contamination_marks, with_mark
    from helmflow.specs.reference_rows import load_references

    # Read first: a references file with a mistake stops the command with its file and line, before any work.
    references = load_references(getattr(args, "references", None) or ())
    warehouse = Warehouse(args.db)
    if args.layout:
        from helmflow.flows.layout import layout_lines, suite_layout

        print("\n".join(layout_lines(suite_layout(warehouse, args.suite))))
        print()
    runs = warehouse.report_runs(scenarios)
    latest = runs[runs.latest]
    result = leaderboard_of(warehouse, latest, args.category)
    if not result.rates:
        print("no column has two or more models yet: run another model on the same scenarios")
        return EXIT_OK
    frame = board_frame(result, CATEGORIES)
    # The board is the models' alone (references are never columns); a model with a declared contamination
    # among its results is marked, and the footnotes below the values say which result and why.
    marks = contamination_marks(references, zip(latest.model, latest.scenario, strict=True))
    shown = pd.DataFrame({"model": [with_mark(m, marks.of_model(m)) for m in frame.model]})
    for category in [c for c in ["overall", *CATEGORIES] if c in frame.columns]:
        shown[category] = [
            with_interval(v, lo, hi)
            for v, lo, hi in zip(frame[category], frame[f"{category}_low"], frame[f"{category}_high"], strict=True)
        ]
    print_frame(shown, "table")
    print(
        "mean win rate (HELM): in each scenario × category headline column, the share of other models beaten "
        "(equal values half); [low, high]: 95% bootstrap interval over instances"
    )
    for line in tie_lines(result):
        print(line)
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
            "value [95% interval]": with_mark(
                with_interval(m.value, m.ci_low, m.ci_high, m.ci_method), marks.of_pair(*where[m.run_id])
            ),
        }
        for m in metrics.itertuples()
    ]
    if rows:
        frame, cited = _with_reference_rows(rows, references)
        print_frame(frame, "table")
        for line in [*cited, *(f.line for f in marks.footnotes)]:
            print(line)
    return EXIT_OK


def _with_reference_rows(rows: list[dict[str, str]], references: References) -> tuple[pd.DataFrame, list[str]]:
    """The headline rows with, after the models' rows of each scenario × category, the published reference
    rows for that headline metric (labelled, the number as reported); and the lines that cite them."""
    import pandas as pd

    from helmflow.flows.reference_view import REFERENCE_NOTE, REFERENCE_PREFIX, Headline, cited, shown_references

    shown = shown_references(
        references, [Headline(r["model"], r["scenario"], r["category"], r["metric"], None) for r in rows]
    )
    refs = [
        {
            "model": REFERENCE_PREFIX + row.label,
            "scenario": scenario,
            "category": row.category,
            "metric": row.metric,
            "value [95% interval]": f"{row.value:.4g} · reported {row.reported}",
        }
        for scenario, row in shown
    ]
    frame = pd.DataFrame(rows).sort_values(["scenario", "category", "model"]).assign(reference=0)
    if refs:
        frame = pd.concat([frame, pd.DataFrame(refs).assign(reference=1)])
    # A stable sort: within each scenario × category the models (by name), then the references (files' order).
    frame = frame.sort_values(["scenario", "category", "reference"], kind="stable").drop(columns="reference")
    lines = [REFERENCE_NOTE + ":", *cited(row for _, row in shown)] if refs else []
    return frame, lines


BAR_WIDTH = 30  # blocks for the whole scale
_EIGHTHS = " ▏▎▍▌▋▊▉"  # a block's left 1/8 .. 7/8, so that bars differ by less than a block


def bar_scale(values: list[float]) -> float:
    """The value a full bar stands for. Bars start at zero, so their lengths compare as the values do (a
    0.007 change is a quarter of a block, not the whole bar): metrics in [0, 1] (proportions, rates) are
    drawn on 0 to 1, others from 0 to the largest magnitude."""
    if all(0.0 <= v <= 1.0 for v in values):
        return 1.0
    return max((abs(v) for v in values), default=1.0) or 1.0


def bar(value: float | None, scale: float, width: int = BAR_WIDTH) -> str:
    """A terminal bar from zero: `width` blocks stand for `scale`, drawn to an eighth of a block; a negative
    value (a bias score) is drawn by its magnitude after a minus sign; zero draws nothing."""
    if value is None or value != value:  # a missing value (None, NaN): no bar
        return ""
    eighths = round(min(abs(value) / scale, 1.0) * width * 8)
    drawn = "█" * (eighths // 8) + (_EIGHTHS[eighths % 8] if eighths % 8 else "")
    return ("-" if value < 0 else "") + drawn


def scale_line(scale: float) -> str:
    """What the bars' length means, printed under the table."""
    if scale == 1.0:
        return f"bars: from 0, {BAR_WIDTH} blocks = 1"
    return f"bars: from 0, {BAR_WIDTH} blocks = {scale:.4g} (the largest value)"


def _groups_line(args: argparse.Namespace, groups: list[str]) -> str:
    """The one line for a --group the history does not have: which groups it has."""
    where = f"{args.model} on {args.scenario} ({args.metric}{', ' + args.perturbation if args.perturbation else ''})"
    if not groups:
        return f"no group '{args.group}' in the history of {where}: it has no groups"
    return f"no group '{args.group}' in the history of {where}: its groups are {', '.join(groups)}"


def cmd_history(args: argparse.Namespace) -> int:
    from helmflow.flows.display import print_frame, with_interval
    from helmflow.flows.reference_view import REFERENCE_PREFIX, contamination_marks
    from helmflow.specs.reference_rows import load_references
    from helmflow.warehouse.store import Warehouse

    category = getattr(args, "category", None)
    group = getattr(args, "group", None)
    references = load_references(getattr(args, "references", None) or ())
    warehouse = Warehouse(args.db)
    where = (args.model, args.scenario, args.metric, args.perturbation)
    if group is None:
        frame = warehouse.history_with_intervals(*where, category)
    else:
        groups = warehouse.history_groups(*where, category)
        if group not in groups:
            print(_groups_line(args, groups), file=sys.stderr)
            return EXIT_BAD_INPUT
        frame = warehouse.group_history(*where, group, category)
    if frame.empty:
        print(f"no succeeded runs of {args.model} on {args.scenario} with metric {args.metric}")
        return EXIT_FAILED
    frame["value [95% interval]"] = [
        with_interval(v, lo, hi) for v, lo, hi in zip(frame.value, frame.ci_low, frame.ci_high, strict=True)
    ]
    # Published references of this metric, on the same scale as the runs' bars: only for the whole run's
    # unperturbed value, which is what a reference reports (not a group's, not a perturbed variant's).
    refs: list[ReferenceRow] = []
    if group is None and not args.perturbation:
        for row in references.rows_for(args.scenario, category, args.metric):
            if row.category in set(frame.category) and row.baseline not in {r.baseline for r in refs}:
                refs.append(row)
    scale = bar_scale([float(v) for v in frame.value.dropna()] + [r.value for r in refs])
    frame["chart"] = [bar(v, scale) for v in frame.value]
    named = ["group_name"] if group is not None else []
    columns = ["started_at", "run_id", "category", *named, "value [95% interval]", "n", "chart"]
    print_frame(frame[columns].rename(columns={"group_name": "group"}), "table")
    for row in refs:
        # The category is said only where the table has several (exact_match is accuracy's and robustness's).
        said = f" [{row.category}]" if frame.category.nunique() > 1 else ""
        print(
            f"{REFERENCE_PREFIX}{row.label}{said}: {row.value:.4g} {bar(row.value, scale)} · reported {row.reported} "
            f"· {row.source} (a published result, not a run)"
        )
    for footnote in contamination_marks(references, [(args.model, args.scenario)], numbered=False).footnotes:
        print(footnote.line)
    print(scale_line(scale))
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
            "significant": "not comparable" if m.not_comparable else ("yes" if m.significant else ""),
        }
        for m in result.metrics
    ]
    print_frame(pd.DataFrame(rows), args.format)
    for reason in sorted({m.not_comparable for m in result.metrics if m.not_comparable}):
        print(f"efficiency not comparable ({reason}): runtimes measured under other conditions are not tested")
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
    from helmflow.flows.pipeline import rescore

    version = rescore(args.db, args.run)
    print(f"run {args.run}: metrics version {version} stored")
    return EXIT_OK


def cmd_export(args: argparse.Namespace) -> int:
    from helmflow.warehouse.store import Warehouse

    for path in Warehouse(args.db).export(Path(args.dir), args.format):
        print(f"{path}")
    return EXIT_OK
