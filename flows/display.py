"""What the CLI shows: live progress while a flow runs, and tables of results."""

from __future__ import annotations

import sys
from types import TracebackType

import pandas as pd
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

console = Console(stderr=True)


class Display:
    """A rich progress bar for inference, plus one line per finished stage (to stderr)."""

    def __init__(self) -> None:
        self.progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=console,
            transient=True,
            # Redrawn by a thread that takes the GIL from the forward passes: four times a second on a
            # terminal, never when stderr is a file or a pipe (nobody watches it move; rich still renders).
            auto_refresh=console.is_terminal,
            refresh_per_second=4,
        )
        self.task_id: int | None = None

    def __enter__(self) -> Display:
        self.progress.start()
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.progress.stop()

    def stage(self, label: str, message: str) -> None:
        console.print(f"[bold]{label}[/bold]: {message}")

    def start_inference(self, label: str, total: int) -> None:
        self.task_id = self.progress.add_task(f"{label}: inference", total=total)

    def advance(self, done: int) -> None:
        if self.task_id is not None:
            self.progress.update(self.task_id, completed=done)

    def end_inference(self) -> None:
        if self.task_id is not None:
            self.progress.remove_task(self.task_id)
            self.task_id = None


def bar(value: float, low: float, high: float, width: int = 30) -> str:
    """A terminal bar for a value between low and high (at least one block, so zero still shows)."""
    share = 1.0 if high == low else (value - low) / (high - low)
    return "█" * max(1, round(share * width))


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


def with_interval(value: object, low: object = None, high: object = None) -> str:
    """'0.4667 [0.3208, 0.6180]': a value and its 95% interval, or the value alone when it has none."""
    if _missing(value):
        return ""
    text = f"{value:.4g}" if isinstance(value, float) else str(value)
    if _missing(low) or _missing(high):
        return text
    return f"{text} [{low:.4g}, {high:.4g}]"


def results_table(db: str | None, run_ids: list[str]) -> None:
    """One row per run with each category's headline value and 95% interval, then a legend of the metrics."""
    from helmflow.tasks.metrics import CATEGORIES
    from helmflow.warehouse.store import Warehouse

    if not run_ids:
        return
    warehouse = Warehouse(db)
    long = warehouse.headline_results(run_ids)
    metrics = warehouse.report_metrics(run_ids)
    headline = {
        (r.run_id, r.category): with_interval(r.value, r.ci_low, r.ci_high)
        for r in metrics.itertuples()
        if r.headline and r.group_name == ""
    }
    frame = long[["run_id", "scenario", "model", "status", "n", "wall_s"]].drop_duplicates("run_id")
    for category in CATEGORIES:
        frame.insert(len(frame.columns) - 1, category, [headline.get((r, category), "") for r in frame.run_id])
    print_frame(frame, "table")
    names = sorted({(c, m) for c, m in zip(long.category, long.headline_metric, strict=True) if isinstance(c, str)})
    print("headline metrics: " + "; ".join(f"{c}: {m}" for c, m in names))
    print("[low, high]: 95% interval (Wilson for proportions, else a seeded bootstrap over instances)")
    for run_id, (calls, hits) in warehouse.cache_counts(run_ids).items():
        if hits:
            # Cached answers keep the runtimes measured when they were first computed.
            print(
                f"run {run_id}: {hits} of {calls + hits} answers came from the inference cache; its efficiency "
                "metrics are the runtimes measured when those answers were first computed"
            )
