"""Write the static report: HTML pages, their data and every script and style, in one folder.

The folder opens from disk (file://) with no server and no network: charts are Vega-Lite specs
rendered by the vega bundles in assets/, and each run's instances are a <script> that sets one
global (browsers refuse fetch() of local files, but load local scripts).
"""

from __future__ import annotations

import json
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, select_autoescape

from helmflow.flows.history import compare
from helmflow.flows.report import charts
from helmflow.flows.report.content import (
    Content,
    Selection,
    comparison_pairs,
    gather,
    instance_rows,
    main_metric,
    number,
    reliability_bins,
    run_sections,
)
from helmflow.specs.registry import CATEGORIES
from helmflow.warehouse.store import Warehouse

HERE = Path(__file__).parent
ASSETS = ("vega.min.js", "vega-lite.min.js", "vega-embed.min.js", "VEGA-LICENSES.txt", "report.css", "report.js")
ASSETS += ("browser.js",)
WIN_RATE_NOTE = (
    "Mean win rate (HELM): in each column, a scenario × category headline metric over the latest run of each "
    "model, a model's win rate is the share of the other models it beats (ties count half, lower-is-better "
    "metrics respected, columns with one model skipped); a category's score is the mean over its columns and "
    "'overall' the mean over every column."
)


@dataclass(frozen=True)
class SiteSummary:
    folder: Path
    pages: int
    runs: int
    seconds: float


def _json_for_script(value: Any) -> str:
    """JSON safe inside <script>: '</' cannot close the element early."""
    return json.dumps(value, separators=(",", ":"), default=str).replace("</", "<\\/")


def _environment() -> Environment:
    env = Environment(loader=FileSystemLoader(HERE / "templates"), autoescape=select_autoescape(["html"]))
    env.filters["num"] = lambda v: "" if v is None else f"{v:.4g}"
    env.filters["tojs"] = _json_for_script
    env.globals["categories"] = CATEGORIES
    return env


class Writer:
    def __init__(self, warehouse: Warehouse, out: Path, selection: Selection) -> None:
        self.warehouse = warehouse
        self.out = out
        self.selection = selection
        self.env = _environment()
        self.pages = 0
        self.charts: list[dict[str, Any]] = []

    def chart(self, spec: dict[str, Any]) -> int:
        """Register a chart for the page being written; the template puts a div with this index."""
        self.charts.append(spec)
        return len(self.charts) - 1

    def page(self, name: str, template: str, **context: Any) -> None:
        html = self.env.get_template(template).render(
            charts=self.charts, selection=self.selection, generated=time.strftime("%Y-%m-%d %H:%M"), **context
        )
        (self.out / name).write_text(html, encoding="utf-8")
        self.charts = []
        self.pages += 1

    def write(self) -> SiteSummary:
        began = time.perf_counter()
        self.out.mkdir(parents=True, exist_ok=True)
        (self.out / "assets").mkdir(exist_ok=True)
        (self.out / "data").mkdir(exist_ok=True)
        for name in ASSETS:
            shutil.copyfile(HERE / "assets" / name, self.out / "assets" / name)
        content = gather(self.warehouse, self.selection)
        self.leaderboard(content)
        self.matrix(content)
        for run in content.runs.itertuples():
            self.run_page(content, run)
        self.history(content)
        self.compare_pages(content)
        return SiteSummary(self.out, self.pages, len(content.runs), time.perf_counter() - began)

    def leaderboard(self, content: Content) -> None:
        board = content.board
        rows = [
            {
                "model": r["model"],
                "scores": {c: number(r.get(c)) for c in ["overall", *CATEGORIES] if c in board.columns},
            }
            for r in board.to_dict("records")
        ]
        columns = [c for c in ["overall", *CATEGORIES] if c in board.columns]
        chart = self.chart(charts.win_rates(board)) if len(board) else None
        self.page("index.html", "leaderboard.html", rows=rows, columns=columns, chart=chart, note=WIN_RATE_NOTE)

    def matrix(self, content: Content) -> None:
        self.page("matrix.html", "matrix.html", matrix=content.matrix)

    def run_page(self, content: Content, run: Any) -> None:
        metrics = content.metrics[content.metrics.run_id == run.run_id]
        main = main_metric(run.spec_json)
        frame = self.warehouse.report_instances(run.run_id, main)
        unperturbed = frame[(frame.perturbation == "") & frame.confidence.notna() & frame.score.notna()]
        reliability = None
        if len(unperturbed):
            bins = reliability_bins(list(unperturbed.confidence), list(unperturbed.score))
            reliability = self.chart(charts.reliability(bins))
        validations = self.warehouse.report_validations([run.run_id]).to_dict("records")
        versions = json.loads(run.package_versions or "{}")
        hits = int(run.cache_hits or 0)
        calls = int(run.model_calls or 0)
        self.page(
            f"run-{run.run_id}.html",
            "run.html",
            run=run,
            main=main,
            sections=run_sections(metrics),
            reliability=reliability,
            validations=validations,
            versions=versions,
            cache_hits=hits,
            model_calls=calls,
        )
        rows = instance_rows(frame)
        data = {"run": run.run_id, "scenario": run.scenario, "model": run.model, "metric": main, "rows": rows}
        (self.out / "data" / f"instances-{run.run_id}.js").write_text(
            "window.HELMFLOW_INSTANCES = " + _json_for_script(data) + ";\n", encoding="utf-8"
        )
        self.page(f"instances-{run.run_id}.html", "instances.html", run=run, main=main, count=len(rows))

    def history(self, content: Content) -> None:
        series = []
        metrics = content.metrics[content.metrics.headline & (content.metrics.group_name == "")]
        joined = metrics.merge(content.runs[["run_id", "started_at", "model", "scenario"]], on="run_id")
        for (model, scenario, category, metric, perturbation), frame in joined.groupby(
            ["model", "scenario", "category", "metric", "perturbation"], sort=True
        ):
            frame = frame.sort_values("started_at").assign(
                regression=lambda f: f.run_id.isin(content.regression_runs) & (f.category == "accuracy")
            )
            data = frame[["started_at", "run_id", "value", "ci_low", "ci_high", "n", "regression"]]
            name = f"{category}: {metric}" + (f" ({perturbation})" if perturbation else "")
            title = f"{model} × {scenario} — {name}"
            chart = self.chart(charts.history(data, title, bool(frame.lower_is_better.iloc[0])))
            series.append({"model": model, "scenario": scenario, "name": name, "chart": chart, "runs": len(frame)})
        self.page("history.html", "history.html", series=series, regressions=sorted(content.regression_runs))

    def compare_pages(self, content: Content) -> None:
        links = []
        names = {r.run_id: f"{r.model} × {r.scenario} ({r.run_id})" for r in content.runs.itertuples()}
        for a, b in comparison_pairs(content):
            result = compare(self.warehouse, a, b)
            name = f"compare-{a}-{b}.html"
            self.page(name, "compare.html", result=result, a=names[a], b=names[b], shown=result.flipped[:500])
            links.append({"href": name, "a": names[a], "b": names[b], "flipped": len(result.flipped)})
        self.page("compare.html", "compare_index.html", links=links)


def write_site(warehouse: Warehouse, out: Path, selection: Selection | None = None) -> SiteSummary:
    return Writer(warehouse, out, selection or Selection()).write()
