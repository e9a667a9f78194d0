"""Write the static report: HTML pages, their data and every script and style, in one folder.

The folder opens from disk (file://) with no server and no network: charts are Vega-Lite specs
rendered by the vega bundles in assets/, and each run's instances are scripts (browsers refuse fetch()
of local files, but load local scripts): a small index that sets one global, and data pages of about
2,000 predictions that the instance browser adds as it needs them, each calling window.HELMFLOW_PAGE.

The site is written into a new folder beside the output folder and takes its place only once every
page is written: a failure (a full disk) leaves the previous report as it was, never half of one.
"""

from __future__ import annotations

import json
import shutil
import time
import uuid
from collections.abc import Iterable
from contextlib import closing
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any
from urllib.parse import quote

from jinja2 import Environment, FileSystemLoader, select_autoescape
from markupsafe import Markup, escape

from helmflow.flows.history import compare
from helmflow.flows.reference_view import history_references, matrix_headlines, report_context
from helmflow.flows.report import charts
from helmflow.flows.report.answers import WARNING_RULE
from helmflow.flows.report.content import (
    Content,
    Selection,
    answer_spread_of,
    comparison_pairs,
    gather,
    headline_scores,
    main_metric,
    number,
    plain_records,
    reliability_bins,
    run_sections,
)
from helmflow.flows.report.pages import PAGE_ROWS, InstancePage, InstancePages
from helmflow.specs.reference_rows import References, load_references
from helmflow.specs.registry import CATEGORIES
from helmflow.tasks.metrics.language_modeling import NAMES as LANGUAGE_MODELING_METRICS
from helmflow.tasks.records import LETTERS
from helmflow.warehouse.report_reads import INSTANCE_COLUMNS
from helmflow.warehouse.store import Warehouse

HERE = Path(__file__).parent
ASSETS = ("vega.min.js", "vega-lite.min.js", "vega-embed.min.js", "VEGA-LICENSES.txt", "report.css", "report.js")
ASSETS += ("browser.js",)
WIN_RATE_NOTE = (
    "Mean win rate (HELM): in each column, a scenario × category headline metric over the latest run of each "
    "model, a model's win rate is the share of the other models it beats (ties count half, lower-is-better "
    "metrics respected, columns with one model skipped); a category's score is the mean over its columns and "
    "'overall' the mean over every column. [low, high] is its 95% interval: the whole board recomputed on "
    "bootstrap resamples of each column's instances. Two models are tied in a column when the paired test "
    "(McNemar, or a paired bootstrap) finds their difference not significant at 0.05; runtimes measured under "
    "different conditions (device, threads, batch size, machine load) are not compared."
)


@dataclass(frozen=True)
class SiteSummary:
    folder: Path
    pages: int
    runs: int
    seconds: float


# Characters a string in the data could use to change a page: '<' starts '</script>' or '<!--' (which
# makes the HTML parser skip the next '</script>'), '&' an entity, U+2028/U+2029 end a line in older JS.
# In JSON they only occur inside strings, where the \u escape means the same character.
_SCRIPT_ESCAPES = str.maketrans(
    {"<": "\\u003c", ">": "\\u003e", "&": "\\u0026", "\u2028": "\\u2028", "\u2029": "\\u2029"}
)


class ReportFolderError(ValueError):
    """The output folder holds something other than a report, which writing the report would replace."""


def _json_for_script(value: Any) -> str:
    """JSON that no string in it can end or alter the <script> element (or .js file) it is embedded in."""
    return json.dumps(value, separators=(",", ":"), default=str).translate(_SCRIPT_ESCAPES)


def _json_string_for_script(value: Any) -> str:
    """_json_for_script's JSON in a single-quoted JavaScript string, for JSON.parse (Chromium reads a data
    page of 2,000 rows so in about half the time it takes as an object literal). Only the backslash and
    the quote need escaping: the JSON has no line break, and no '<', '>' or '&' (_SCRIPT_ESCAPES)."""
    return "'" + _json_for_script(value).replace("\\", "\\\\").replace("'", "\\'") + "'"


def _number(value: Any) -> str:
    shown = number(value)
    return "" if shown is None else f"{shown:.4g}"


def _breakable(name: Any) -> Markup:
    """A metric name that may wrap after each underscore (stereotypical_associations_gender_profession is
    wider than a matrix column should be): the escaped name with a <wbr> after every '_'."""
    return Markup(str(escape(name)).replace("_", "_<wbr>"))


def _environment() -> Environment:
    # finalize: a missing value (a served model's device details) shows as nothing, not as "None".
    env = Environment(
        loader=FileSystemLoader(HERE / "templates"),
        autoescape=select_autoescape(["html"]),
        finalize=lambda v: "" if v is None else v,
    )
    env.filters["num"] = _number
    env.filters["breakable"] = _breakable
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
        self.references = References()  # read by write(): published baselines, declared contamination

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
        # First: a references file with a mistake stops the report (file and line) before any page is written.
        self.references = load_references(self.selection.references or ())
        self.out.mkdir(exist_ok=True)
        (self.out / "assets").mkdir(exist_ok=True)
        (self.out / "data").mkdir(exist_ok=True)
        for name in ASSETS:
            shutil.copyfile(HERE / "assets" / name, self.out / "assets" / name)
        content = gather(self.warehouse, self.selection)
        layout = self.layout_context(self.selection.suite) if self.selection.suite else None
        self.leaderboard(content, layout)
        self.matrix(content)
        if layout is not None:
            self.page("layout.html", "layout.html", layout=layout)
        for run in plain_records(content.runs):
            self.run_page(content, run)
        self.history(content)
        self.compare_pages(content)
        return SiteSummary(self.out, self.pages, len(content.runs), time.perf_counter() - began)

    def leaderboard(self, content: Content, layout: dict[str, Any] | None = None) -> None:
        board = content.board
        rows = [
            {
                "model": r["model"],
                "scores": {c: number(r.get(c)) for c in ["overall", *CATEGORIES] if c in board.columns},
                "intervals": {
                    c: (number(r.get(f"{c}_low")), number(r.get(f"{c}_high")))
                    for c in ["overall", *CATEGORIES]
                    if c in board.columns
                },
            }
            for r in board.to_dict("records")
        ]
        columns = [c for c in ["overall", *CATEGORIES] if c in board.columns]
        chart = self.chart(charts.win_rates(board)) if len(board) else None
        # With no column to rank (one model so far), the front page shows the latest runs' headline scores.
        score_columns, scores = headline_scores(content.matrix)
        self.page(
            "index.html",
            "leaderboard.html",
            rows=rows,
            columns=columns,
            chart=chart,
            note=WIN_RATE_NOTE,
            ties=content.ties,
            scores=scores,
            score_columns=score_columns,
            models=sorted({row["model"] for row in scores}),
            layout=layout,
            # Reference rows and contamination marks (templates/references.html): beside the board, never in it.
            refs=report_context(self.references, matrix_headlines(content.matrix, CATEGORIES)),
        )

    def layout_context(self, suite: str) -> dict[str, Any]:
        """What layout_tables.html shows of the suite's layout (flows/layout.py)."""
        from helmflow.flows.layout import NOT_MEASURED, suite_layout
        from helmflow.tasks.metrics import CATEGORIES

        layout = suite_layout(self.warehouse, suite)
        measured, total = layout.coverage
        tables = [
            {
                "model": model,
                "rows": [
                    {"row": row, "cells": [layout.cells[(model, row, c)] for c in CATEGORIES]}
                    for row in layout.scenarios
                ],
            }
            for model in layout.models
        ]
        return {
            "suite": layout.suite,
            "categories": CATEGORIES,
            "tables": tables,
            "coverage": [{"row": r, "marks": [c in layout.measured[r] for c in CATEGORIES]} for r in layout.scenarios],
            "share": f"{measured} of {total} cells ({100 * measured / total:.1f} %)" if total else "-",
            "not_measured": NOT_MEASURED,
        }

    def matrix(self, content: Content) -> None:
        self.page("matrix.html", "matrix.html", matrix=content.matrix)

    def run_page(self, content: Content, run: dict[str, Any]) -> None:
        run_id = run["run_id"]
        metrics = content.metrics[content.metrics.run_id == run_id]
        main = main_metric(run["spec_json"])
        outcomes = self.warehouse.report_instance_outcomes(run_id, main)
        scored = outcomes[outcomes.confidence.notna() & outcomes.score.notna()]
        reliability = None
        # A text scored by itself (language modelling) has no confidence in an answer: nothing to calibrate.
        if len(scored) and main not in LANGUAGE_MODELING_METRICS:
            bins = reliability_bins(list(scored.confidence), list(scored.score))
            reliability = self.chart(charts.reliability(bins))
        validations = plain_records(self.warehouse.report_validations([run_id]))
        hits = int(run["cache_hits"] or 0)
        calls = int(run["model_calls"] or 0)
        self.page(
            f"run-{run_id}.html",
            "run.html",
            run=run,
            main=main,
            sections=run_sections(metrics),
            reliability=reliability,
            no_reliability=(
                "None: each text is scored by itself (language modelling), with no answer to be confident in."
                if main in LANGUAGE_MODELING_METRICS
                else "No confidences with a main-metric value."
            ),
            validations=validations,
            versions=_versions(run["package_versions"]),
            cache_hits=hits,
            model_calls=calls,
            answers=answer_spread_of(outcomes),
            answer_rule=WARNING_RULE,
        )
        meta = {"run": run_id, "scenario": run["scenario"], "model": run["model"], "metric": main}
        with closing(self.warehouse.report_instance_batches(run_id, main)) as batches:
            rows = (dict(zip(INSTANCE_COLUMNS, row, strict=True)) for batch in batches for row in batch)
            index = write_instances(self.out, meta, rows)
        self.page(
            f"instances-{run_id}.html",
            "instances.html",
            run=run,
            main=main,
            count=index["rows"],
            data_pages=len(index["pages"]),
            index_src=quote(instance_files(run_id)[0]),
        )

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
            refs = history_references(self.references, model, scenario, category, metric, perturbation)
            series.append(
                {"model": model, "scenario": scenario, "name": name, "chart": chart, "runs": len(frame), "refs": refs}
            )
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


def instance_files(run_id: str) -> tuple[str, str]:
    """A run's instance index script and the folder of its data pages (page-0.js, ...), in the site."""
    return f"data/instances-{run_id}.js", f"data/instances-{run_id}"


def write_instances(
    out: Path, meta: dict[str, Any], rows: Iterable[dict[str, Any]], page_rows: int = PAGE_ROWS
) -> dict[str, Any]:
    """Write one run's instance browser data under out/data: its pages as the rows come, then its index
    (pages.InstancePages describes them). Holds one page at a time. Returns the index."""
    index_name, folder = instance_files(meta["run"])
    (out / folder).mkdir(parents=True, exist_ok=True)
    pages = InstancePages(page_rows)
    listed: list[list[Any]] = []
    run = _json_for_script(meta["run"])

    def write(done: list[InstancePage]) -> None:
        for page in done:
            name = f"{folder}/page-{len(listed)}.js"
            text = f"window.HELMFLOW_PAGE({run},{len(listed)},{_json_string_for_script(page.data())});\n"
            (out / name).write_text(text, encoding="utf-8")
            listed.append([quote(name), page.start, page.rows, sorted(page.groups)])

    for row in rows:
        pages.add(row)
        write(pages.ready())
    write(pages.finish())
    index = {
        **meta,
        "rows": pages.total,
        "groups": list(pages.groups),
        "perturbations": list(pages.perturbations),
        "letters": LETTERS,
        "pages": listed,
    }
    (out / index_name).write_text(f"window.HELMFLOW_INSTANCES = {_json_for_script(index)};\n", encoding="utf-8")
    return index


def _versions(text: str | None) -> dict[str, Any]:
    """The run's package versions (JSON written by the flow; a hand-edited row may hold anything)."""
    try:
        versions = json.loads(text or "{}")
    except ValueError:
        return {}
    return versions if isinstance(versions, dict) else {}


def _is_report(folder: Path) -> bool:
    """An empty folder, or one an earlier `helmflow report` wrote (its front page and its script)."""
    written = (folder / "index.html").is_file() and (folder / "assets" / "report.js").is_file()
    return written or not any(folder.iterdir())


def _check_replaceable(target: Path) -> None:
    """Refuse an output folder whose files the new report would delete (--out . in a project, say)."""
    if target.exists() and not target.is_dir():
        raise ReportFolderError(f"report folder {target} is a file: name a folder with --out")
    if target.is_dir() and not _is_report(target):
        raise ReportFolderError(
            f"report folder {target} holds files that are not a helmflow report (the report replaces the whole "
            "folder): name a new or empty folder with --out"
        )


def _swap_in(staging: Path, target: Path) -> None:
    """Put the written site in the output folder's place: renames within one folder, so each is atomic.

    A folder cannot be renamed over a non-empty one, so the old report steps aside first, and comes back
    if the new one cannot take its place."""
    if not target.exists():
        staging.rename(target)
        return
    old = target.with_name(f".{target.name}.old-{uuid.uuid4().hex[:8]}")
    target.rename(old)
    try:
        staging.rename(target)
    except BaseException:
        old.rename(target)
        raise
    shutil.rmtree(old, ignore_errors=True)


def write_site(warehouse: Warehouse, out: Path, selection: Selection | None = None) -> SiteSummary:
    """Write the report into a new folder beside `out` that replaces `out` once every page is written.

    On any failure (a full disk, an interrupt) the new folder is removed and `out` is left as it was.
    A symbolic link named as `out` keeps pointing where it did: its target is what gets replaced.
    """
    target = Path(out).resolve()
    _check_replaceable(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = target.with_name(f".{target.name}.writing-{uuid.uuid4().hex[:8]}")
    try:
        staging.mkdir()
        summary = Writer(warehouse, staging, selection or Selection()).write()
        _swap_in(staging, target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return replace(summary, folder=Path(out))
