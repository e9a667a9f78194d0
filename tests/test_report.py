"""The static report, opened in a real browser (Debian's Chromium through playwright), and the CLI's intervals.

The warehouse is the session's two real tiny runs plus a copy of the second under another model
with other values, so that the leaderboard has two models to rank.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import time
from html.parser import HTMLParser
from pathlib import Path

import pytest

from helmflow.flows.cli import main
from helmflow.flows.cli_report import cmd_report
from helmflow.flows.display import with_interval
from helmflow.flows.report import Selection, write_site
from helmflow.flows.report.site import write_instances
from helmflow.tasks.metrics.intervals import wilson
from helmflow.warehouse.db import connect
from helmflow.warehouse.store import Warehouse
from tests.conftest import TinyRuns

pytestmark = [pytest.mark.model, pytest.mark.xdist_group("tiny")]

CHROMIUM = Path("/usr/bin/chromium")
OTHER = "other-model"
MODEL = "smollm2-135m-instruct"


def _browser_ready() -> bool:
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return False
    return CHROMIUM.exists()


needs_browser = pytest.mark.skipif(not _browser_ready(), reason="playwright (PyPI) or /usr/bin/chromium is absent")


def _clone_run_as_other_model(db: Path, run_id: str) -> str:
    """Copy a run's rows under another model, its accuracy 0.1 higher and its runtime a third."""
    clone = "other0000001"
    with connect(db) as con:
        con.execute(
            "insert into runs select * replace (? as run_id, ? as model, started_at + interval 1 minute as started_at) "
            "from runs where run_id = ?",
            [clone, OTHER, run_id],
        )
        for table in ("instances", "predictions", "instance_stats", "validations"):
            con.execute(
                f"insert into {table} select * replace (? as run_id) from {table} where run_id = ?", [clone, run_id]
            )
        con.execute(
            "insert into metrics select * replace (? as run_id, case when category = 'accuracy' then value + 0.1 "
            "when category = 'efficiency' then value / 3 else value end as value) from metrics where run_id = ?",
            [clone, run_id],
        )
    return clone


@pytest.fixture(scope="module")
def site(tiny_runs: TinyRuns, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, str]:
    folder = tmp_path_factory.mktemp("report")
    db = folder / "w.duckdb"
    shutil.copy(tiny_runs.both, db)
    clone = _clone_run_as_other_model(db, tiny_runs.run_ids[1])
    out = folder / "site"
    args = argparse.Namespace(db=str(db), out=str(out), suite=None, model=None, since=None)
    assert cmd_report(args) == 0
    return db, out, clone


class _Cells(HTMLParser):
    """data-* attributes of every <td> and <tr> (static parsing: what the browser would show)."""

    def __init__(self) -> None:
        super().__init__()
        self.cells: list[dict[str, str]] = []
        self.row: dict[str, str] = {}

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        found = {k: v or "" for k, v in attrs}
        if tag == "tr":
            self.row = found
        elif tag == "td" and "data-value" in found:
            self.cells.append({**{f"row-{k}": v for k, v in self.row.items()}, **found})


def _cells(path: Path) -> list[dict[str, str]]:
    parser = _Cells()
    parser.feed(path.read_text())
    return parser.cells


def test_every_page_is_written_with_its_assets(site: tuple[Path, Path, str], tiny_runs: TinyRuns) -> None:
    _, out, clone = site
    for run_id in [*tiny_runs.run_ids, clone]:
        assert (out / f"run-{run_id}.html").exists() and (out / f"instances-{run_id}.html").exists()
        assert (out / "data" / f"instances-{run_id}.js").exists()  # the index of its data pages
        assert (out / "data" / f"instances-{run_id}" / "page-0.js").exists()
    for name in ("index.html", "matrix.html", "history.html", "compare.html"):
        assert (out / name).exists()
    # No page names anything outside the folder: no http(s) URL in a src or href.
    for page in out.glob("*.html"):
        assert not re.search(r'(src|href)="(https?:)?//', page.read_text()), page.name
    assert {p.name for p in (out / "assets").iterdir()} >= {"vega.min.js", "vega-lite.min.js", "vega-embed.min.js"}


def test_leaderboard_and_matrix_numbers_are_the_warehouse_s(site: tuple[Path, Path, str], tiny_runs: TinyRuns) -> None:
    db, out, _ = site
    # Leaderboard: the warehouse's own `leaderboard` view, which ranks the latest run of each model.
    with connect(db, read_only=True) as con:
        expected = {
            (m, c): v for m, c, v in con.execute("select model, category, mean_win_rate from leaderboard").fetchall()
        }
    shown = {(c["row-data-model"], c["data-category"]): float(c["data-value"]) for c in _cells(out / "index.html")}
    assert shown.keys() == expected.keys()
    assert shown == pytest.approx(expected, abs=1e-9)
    # By hand: the clone wins accuracy and efficiency, ties calibration, robustness and fairness:
    # overall (1 + 0.5 + 0.5 + 0.5 + 1) / 5 = 0.7 against (0 + 0.5 + 0.5 + 0.5 + 0) / 5 = 0.3.
    assert shown[(OTHER, "accuracy")] == 1.0 and shown[(OTHER, "efficiency")] == 1.0
    assert shown[(OTHER, "overall")] == pytest.approx(0.7) and shown[(MODEL, "overall")] == pytest.approx(0.3)
    # Matrix: each latest run's headline value and interval, as stored.
    with connect(db, read_only=True) as con:
        rows = con.execute(
            "select r.model, m.category, m.value, m.ci_low, m.ci_high from latest_runs r "
            "join current_metrics m using (run_id) where m.headline and m.group_name = ''"
        ).fetchall()
    cells = {(c["row-data-model"], c["data-category"]): c for c in _cells(out / "matrix.html")}
    assert len(cells) == len(rows) == 10  # two models × five categories with a headline
    for model, category, value, low, high in rows:
        cell = cells[(model, category)]
        assert float(cell["data-value"]) == pytest.approx(value)
        assert float(cell["data-low"]) == pytest.approx(low) and float(cell["data-high"]) == pytest.approx(high)


def test_run_page_says_its_answers_came_from_the_cache(site: tuple[Path, Path, str], tiny_runs: TinyRuns) -> None:
    _, out, _ = site
    first, second = tiny_runs.run_ids
    assert "Every answer was computed in this run" in (out / f"run-{first}.html").read_text()
    cached = (out / f"run-{second}.html").read_text()
    assert re.search(r"(\d+) of \1 answers came from the inference cache \(0 model calls\)", cached)
    assert "batch's wall time shared equally" in cached


@needs_browser
def test_each_page_loads_in_chromium_with_no_error_and_no_network(site: tuple[Path, Path, str]) -> None:
    from playwright.sync_api import sync_playwright

    _, out, _ = site
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=["--no-sandbox", "--disable-gpu"])
        page = browser.new_page()
        problems: list[str] = []
        outside: list[str] = []
        page.on("console", lambda m: problems.append(f"{m.type}: {m.text}") if m.type in ("error", "warning") else None)
        page.on("pageerror", lambda e: problems.append(f"page error: {e}"))
        page.on("requestfailed", lambda r: problems.append(f"failed: {r.url}"))
        page.on("request", lambda r: None if r.url.startswith("file://") else outside.append(r.url))
        charts = {}
        for html in sorted(out.glob("*.html")):
            page.goto(html.as_uri())
            page.wait_for_load_state("load")
            expected = page.locator("div.chart").count()
            if expected:
                page.wait_for_function(f"document.querySelectorAll('div.chart svg').length >= {expected}")
            charts[html.name] = expected
        browser.close()
    assert problems == []
    assert outside == []
    assert charts["history.html"] >= 5  # a chart per model × scenario × headline metric
    assert all(n == 1 for name, n in charts.items() if name.startswith("run-"))  # the reliability diagram


@needs_browser
def test_instance_browser_filters_as_you_type(site: tuple[Path, Path, str], tiny_runs: TinyRuns) -> None:
    from playwright.sync_api import sync_playwright

    db, out, _ = site
    run_id = tiny_runs.run_ids[0]
    with connect(db, read_only=True) as con:
        [(instance, text)] = con.execute(
            "select instance_id, input from instances where run_id = ? order by instance_id limit 1", [run_id]
        ).fetchall()
        variants = con.execute(
            "select count(*) from predictions where run_id = ? and instance_id = ?", [run_id, instance]
        ).fetchall()[0][0]
        wrong = con.execute(
            "select count(*) from instance_stats where run_id = ? and metric = 'exact_match' and value = 0", [run_id]
        ).fetchall()[0][0]
        total = con.execute("select count(*) from predictions where run_id = ?", [run_id]).fetchall()[0][0]
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=["--no-sandbox", "--disable-gpu"])
        page = browser.new_page()
        page.goto((out / f"instances-{run_id}.html").as_uri())
        assert page.locator("#match-count").inner_text() == f"{total} of {total} rows"
        page.fill("#filter-text", instance)
        ids = page.locator("#instance-rows tr td:first-child").all_inner_texts()
        assert ids == [instance] * variants  # the instance and each of its perturbed variants
        page.fill("#filter-text", text[:40])
        assert instance in page.locator("#instance-rows tr td:first-child").all_inner_texts()
        page.fill("#filter-text", "")
        page.select_option("#filter-correct", "incorrect")
        assert page.locator("#match-count").inner_text() == f"{wrong} of {total} rows"
        assert set(page.locator("#instance-rows tr td:last-child").all_inner_texts()) <= {"no"}
        page.select_option("#filter-perturbation", "(none)")
        shown = page.locator("#instance-rows tr td:nth-child(3)").all_inner_texts()
        assert shown and set(shown) == {""}
        browser.close()


@needs_browser
def test_ten_thousand_instances_open_in_a_couple_of_seconds(site: tuple[Path, Path, str], tmp_path: Path) -> None:
    from playwright.sync_api import sync_playwright

    _, out, _ = site
    big = tmp_path / "big"
    shutil.copytree(out, big)
    page_file = next(big.glob("instances-*.html"))
    run_id = page_file.stem.removeprefix("instances-")
    prompt = "The following are multiple choice questions (with answers) about anatomy.\n\n" + "word " * 300
    rows = (
        {"instance_id": f"test-{k}", "group_name": f"g{k % 7}", "input": None, "choices": ["w", "x", "y", "z"],
         "gold_index": 1, "reference_texts": None, "perturbation": "", "prompt": f"{prompt} {k}",
         "completion": "B", "choice_logprobs": [-1.2, -0.4, -2.0, -3.1], "predicted_index": 1, "confidence": 0.5,
         "error": None, "score": float(k % 3 == 0)}
        for k in range(10_000)
    )  # fmt: skip
    write_instances(big, {"run": run_id, "scenario": "s", "model": "m", "metric": "exact_match"}, rows)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=["--no-sandbox", "--disable-gpu"])
        page = browser.new_page()
        began = time.perf_counter()
        page.goto(page_file.as_uri())
        page.wait_for_function("document.querySelectorAll('#instance-rows tr').length === 100")
        opened = time.perf_counter() - began
        assert page.locator("#page-label").inner_text() == "page 1 of 100"
        page.fill("#filter-text", "test-9999")  # on the last data page: the search reads every page
        page.wait_for_function("document.getElementById('instances').dataset.state === 'ready'")
        assert page.locator("#instance-rows tr td:first-child").all_inner_texts() == ["test-9999"]
        browser.close()
    assert opened < 3.0, f"10,000 instances took {opened:.2f} s to open"


def test_report_filters_select_runs(site: tuple[Path, Path, str], tmp_path: Path) -> None:
    db, _, clone = site
    only = write_site(Warehouse(db), tmp_path / "only", Selection(models=[OTHER]))
    assert only.runs == 1 and (tmp_path / "only" / f"run-{clone}.html").exists()
    later = write_site(Warehouse(db), tmp_path / "later", Selection(since=__import__("datetime").datetime(2999, 1, 1)))
    assert later.runs == 0
    assert "No column has two or more models" in (tmp_path / "later" / "index.html").read_text()


def test_history_shows_category_and_intervals(site: tuple[Path, Path, str], capsys: pytest.CaptureFixture) -> None:
    db, _, _ = site
    code = main(
        ["--db", str(db), "history", "--model", "smollm2-135m-instruct", "--scenario", "mmlu", "--metric",
         "exact_match", "--perturbation", "worst_case"]
    )  # fmt: skip
    out = capsys.readouterr().out
    assert code == 0
    # robustness and fairness both store a worst case of exact_match: each row names its category.
    assert "robustness" in out and "fairness" in out
    # Each run's value with its Wilson interval: 6 instances, k of them right.
    for value in Warehouse(db).metric_history(MODEL, "mmlu", "exact_match", "worst_case").value:
        assert with_interval(value, *wilson(round(value * 6), 6)) in out  # type: ignore[misc]


def test_leaderboard_cli_lists_headline_intervals(site: tuple[Path, Path, str], capsys: pytest.CaptureFixture) -> None:
    db, _, _ = site
    assert main(["--db", str(db), "leaderboard"]) == 0
    out = capsys.readouterr().out
    assert "share of other models beaten" in out
    with connect(db, read_only=True) as con:
        [(value,)] = con.execute(
            "select value from latest_metrics where model = ? and metric = 'exact_match' and headline "
            "and category = 'accuracy'",
            [MODEL],
        ).fetchall()
    assert with_interval(value, *wilson(round(value * 6), 6)) in out  # type: ignore[misc]


def test_run_table_shows_intervals_and_cached_answers(tiny_runs: TinyRuns, capsys: pytest.CaptureFixture) -> None:
    from helmflow.flows.display import results_table

    results_table(str(tiny_runs.both), tiny_runs.run_ids)
    out = capsys.readouterr().out
    with connect(tiny_runs.both, read_only=True) as con:
        [(value, low, high)] = con.execute(
            "select value, ci_low, ci_high from metrics where run_id = ? and headline and category = 'calibration'",
            [tiny_runs.run_ids[0]],
        ).fetchall()
    assert with_interval(value, low, high) in out
    assert f"run {tiny_runs.run_ids[1]}: " in out and "answers came from the inference cache" in out
    assert f"run {tiny_runs.run_ids[0]}: " not in out


def test_history_marks_a_regression(site: tuple[Path, Path, str], tiny_runs: TinyRuns, tmp_path: Path) -> None:
    # A made-up earlier run of the same model that got every instance right: the first real run
    # (0 of 6 right) is then a significant drop (McNemar: 6 discordant pairs, p = 2/64 = 0.031).
    db, _, _ = site
    copy = tmp_path / "w.duckdb"
    shutil.copy(db, copy)
    first = tiny_runs.run_ids[0]
    with connect(copy) as con:
        con.execute(
            "insert into runs select * replace ('earlier00001' as run_id, started_at - interval 1 day as started_at) "
            "from runs where run_id = ?",
            [first],
        )
        for table in ("instances", "metrics"):
            con.execute(
                f"insert into {table} select * replace ('earlier00001' as run_id) from {table} where run_id = ?",
                [first],
            )
        con.execute(
            "insert into instance_stats select * replace ('earlier00001' as run_id, case when metric = 'exact_match' "
            "then 1.0 else value end as value) from instance_stats where run_id = ?",
            [first],
        )
        [(right,)] = con.execute(
            "select sum(value) from instance_stats where run_id = ? and metric = 'exact_match' and perturbation = ''",
            [first],
        ).fetchall()
    assert right == 0  # the premise of the hand-computed p above
    write_site(Warehouse(copy), tmp_path / "site", Selection())
    history = (tmp_path / "site" / "history.html").read_text()
    assert re.search(rf'<p id="regressions" class="bad">Regressions in runs: {first}</p>', history)
    specs = re.findall(r'<script type="application/json" id="chart-spec-\d+">(.*?)</script>', history)
    flagged = [
        row["run_id"]
        for spec in map(json.loads, specs)
        for dataset in spec.get("datasets", {}).values()
        for row in dataset
        if row.get("regression")
    ]
    assert flagged == [first]  # on the accuracy chart only
