"""What the CLI shows: live progress while a flow runs, and tables of results."""

from __future__ import annotations

import sys
from types import TracebackType

import pandas as pd
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table

from helmflow.flows.progress import Lines, Meter, plural


def stderr_is_terminal(console: Console) -> bool:
    """Whether a person watches stderr move (not rich's FORCE_COLOR view of it: a CI log is not a terminal)."""
    try:
        return console.file.isatty()
    except (AttributeError, ValueError):  # a replaced or closed stream
        return False


class Display:
    """Progress while a flow runs, to stderr: on a terminal a rich bar for inference (requests done of
    the total, the rate, the retries so far) and one line per finished stage; elsewhere (a log file, a
    pipe, a CI job) the plain lines of `progress.Lines`, one per chunk answered, which nobody has to
    watch move to read."""

    def __init__(self) -> None:
        self.console = Console(stderr=True)
        self.live = stderr_is_terminal(self.console)
        self.lines = Lines()
        self.progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[rate]}"),
            TextColumn("{task.fields[retries]}"),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            console=self.console,
            transient=True,
            # Redrawn by a thread that takes the GIL from the forward passes, four times a second.
            auto_refresh=True,
            refresh_per_second=4,
        )
        self.task_id: int | None = None
        self.meter: Meter | None = None

    def __enter__(self) -> Display:
        if self.live:  # off a terminal rich would still render the bar, for nobody
            self.progress.start()
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        if self.live:
            self.progress.stop()

    def stage(self, label: str, message: str) -> None:
        if self.live:
            self.console.print(f"[bold]{label}[/bold]: {message}")
        else:
            self.lines.stage(label, message)

    def start_inference(self, label: str, total: int, done: int = 0, retries: int = 0) -> None:
        if not self.live:
            self.lines.start_inference(label, total, done, retries)
            return
        self.end_inference()
        self.meter = Meter.start(label, total, done, retries)
        self.task_id = self.progress.add_task(f"{label}: inference", total=total, completed=done, **self._fields())

    def advance(self, done: int, retries: int = 0) -> None:
        if not self.live:
            self.lines.advance(done, retries)
        elif self.task_id is not None and self.meter is not None:
            self.meter.update(done, retries)
            self.progress.update(self.task_id, completed=done, **self._fields())

    def end_inference(self) -> None:
        if not self.live:
            self.lines.end_inference()
        elif self.task_id is not None:
            self.progress.remove_task(self.task_id)
            self.task_id = None
            self.meter = None

    def _fields(self) -> dict[str, str]:
        meter = self.meter
        assert meter is not None
        # No rate before the first chunk is answered: 0.0 req/s would read as a stuck model.
        rate = f"{meter.rate:.1f} req/s" if meter.done > meter.done_at_start else ""
        return {"rate": rate, "retries": plural(meter.retries, "retry", "retries")}


def print_frame(frame: pd.DataFrame, fmt: str) -> None:
    if fmt == "csv":
        frame.to_csv(sys.stdout, index=False)
    elif fmt == "json":
        print(frame.to_json(orient="records", date_format="iso", indent=2))
    else:
        table = Table(show_lines=False)
        for column in frame.columns:
            table.add_column(str(column), overflow="fold")
        for row in frame.itertuples(index=False):
            table.add_row(
                *[
                    ""
                    if v is None or (isinstance(v, float) and pd.isna(v))
                    else (f"{v:.4g}" if isinstance(v, float) else str(v))
                    for v in row
                ]
            )
        # Piped output gets a wide fixed width rather than rich's 80 columns.
        Console(width=None if sys.stdout.isatty() else 220).print(table)


def _missing(value: object) -> bool:
    return value is None or (isinstance(value, float) and pd.isna(value))


def with_interval(value: object, low: object = None, high: object = None, method: object = None) -> str:
    """'0.4667 [0.3208, 0.6180]': a value and its 95% interval, or the value alone when it has none, marked
    '(no interval)' when one could not be estimated (the method's reason is printed beside the table)."""
    if _missing(value):
        return ""
    text = f"{value:.4g}" if isinstance(value, float) else str(value)
    if _missing(low) or _missing(high):
        if isinstance(method, str) and method.startswith("none:"):
            return f"{text} (no interval)"
        return text
    return f"{text} [{low:.4g}, {high:.4g}]"


def no_interval_reasons(metrics: pd.DataFrame) -> set[str]:
    """Why some headline has no interval ('none: why' in ci_method), once per reason."""
    methods = metrics.ci_method[metrics.headline & (metrics.group_name == "")].dropna()
    return {m.removeprefix("none:").strip() for m in methods if str(m).startswith("none:")}


def results_table(db: str | None, run_ids: list[str]) -> None:
    """One row per run with each category's headline value and 95% interval, then a legend of the metrics."""
    from helmflow.flows.report.answers import answer_spread
    from helmflow.specs.registry import categories
    from helmflow.warehouse.store import Warehouse

    if not run_ids:
        return
    warehouse = Warehouse(db)
    long = warehouse.headline_results(run_ids)
    metrics = warehouse.report_metrics(run_ids)
    headline = {
        (r.run_id, r.category): with_interval(r.value, r.ci_low, r.ci_high, r.ci_method)
        for r in metrics.itertuples()
        if r.headline and r.group_name == ""
    }
    frame = long[["run_id", "scenario", "model", "status", "n", "wall_s"]].drop_duplicates("run_id")
    for category in categories():  # helmflow's, then those installed plugins add
        frame.insert(len(frame.columns) - 1, category, [headline.get((r, category), "") for r in frame.run_id])
    print_frame(frame, "table")
    names = sorted({(c, m) for c, m in zip(long.category, long.headline_metric, strict=True) if isinstance(c, str)})
    print("headline metrics: " + "; ".join(f"{c}: {m}" for c, m in names))
    print("[low, high]: 95% interval (Wilson for proportions, else a seeded bootstrap over instances)")
    for reason in sorted(no_interval_reasons(metrics)):
        print(f"(no interval): {reason}")
    for run_id, counts in warehouse.answer_counts(run_ids).items():
        spread = answer_spread(counts)  # a model answering one letter scores that letter's share of gold
        if spread is not None and spread.warning:
            print(f"run {run_id}: {spread.warning}")
    for run_id, (calls, hits) in warehouse.cache_counts(run_ids).items():
        if hits:
            # Cached answers keep the runtimes measured when they were first computed.
            print(
                f"run {run_id}: {hits} of {calls + hits} answers came from the inference cache; its efficiency "
                "metrics are the runtimes measured when those answers were first computed"
            )
