"""What the report's reader sees must be true: a model that answers one letter is named on its run page,
history charts show every interval whole, the instance browser shows the question first, and the matrix
fits a 1280 px window. Warehouses are written row by row as the flow writes them (no model: fast); the
pages are opened in Chromium where the browser draws what is checked.
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from helmflow.flows.cli import main
from helmflow.flows.display import results_table
from helmflow.flows.report.answers import answer_spread
from helmflow.flows.report.charts import TIME_PADDING_PX
from helmflow.warehouse.db import connect
from tests.test_report import needs_browser
from tests.truth_runs import BIAS_METRIC, McRun, record_mc_run

MODEL = "smollm2-135m-instruct"
# 60 MMLU-like instances, gold A 12, B 16, C 15, D 17 (interleaved), and a model that answers "A" to all.
GOLDS = [k % 4 for k in range(48)] + [1, 2, 3, 1, 3, 1, 2, 3, 1, 3, 2, 3]
SUBJECTS = ["anatomy", "college_physics", "world_religions"]
ALL_CATEGORIES = {
    ("calibration", "ece_10_bin"): (0.31234, 0.22345, 0.40123),
    ("robustness", "exact_match_worst_case"): (0.23333, 0.13456, 0.33456),
    ("fairness", "exact_match_worst_case"): (0.23333, 0.13456, 0.33456),
    ("bias", BIAS_METRIC): (0.66667, 0.51234, 0.81234),
    ("toxicity", "toxic_fraction"): (0.01667, 0.00295, 0.08864),
    ("efficiency", "inference_runtime"): (0.023456, 0.020123, 0.026612),
}
DEGENERATE_WARNING = (
    "A took 60 of 60 predictions (100%) against 12 of 60 gold answers (20%): the model may be answering one "
    "letter whatever the question"
)


def report(db: Path, out: Path) -> None:
    assert main(["--db", str(db), "report", "--out", str(out)]) == 0


def degenerate(run_id: str = "degen0000001", started: datetime = datetime(2025, 1, 1, 12)) -> McRun:
    groups = [SUBJECTS[k % 3] for k in range(len(GOLDS))]
    return McRun(run_id, MODEL, "mmlu", GOLDS, [0] * len(GOLDS), started, groups=groups, extra=ALL_CATEGORIES)


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """The degenerate run; a later run of the same model that answers right half the time; another model."""
    folder = tmp_path_factory.mktemp("truths")
    db, out = folder / "w.duckdb", folder / "site"
    record_mc_run(db, degenerate())
    better = [g if k % 2 else 0 for k, g in enumerate(GOLDS)]
    record_mc_run(db, McRun("better000001", MODEL, "mmlu", GOLDS, better, datetime(2025, 1, 3, 8)))
    record_mc_run(db, McRun("other0000001", "other-model", "mmlu", GOLDS, GOLDS, datetime(2025, 1, 2, 12)))
    report(db, out)
    return db, out


def open_page(browser: Any, path: Path, width: int = 1280) -> tuple[Any, list[str]]:
    page = browser.new_page(viewport={"width": width, "height": 900})
    problems: list[str] = []
    page.on("pageerror", lambda e: problems.append(f"page error: {e}"))
    page.on("console", lambda m: problems.append(f"{m.type}: {m.text}") if m.type in ("error", "warning") else None)
    page.goto(path.as_uri())
    page.wait_for_load_state("load")
    return page, problems


def gold_and_predicted(db: Path, run_id: str) -> tuple[dict[int, int], dict[int, int]]:
    """Counts per option index of gold answers and predictions, unperturbed, straight from the tables."""
    with connect(db, read_only=True) as con:
        gold = dict(
            con.execute(
                "select i.gold_index, count(*) from instances i join predictions p using (run_id, instance_id) "
                "where run_id = ? and p.perturbation = '' group by 1",
                [run_id],
            ).fetchall()
        )
        predicted = dict(
            con.execute(
                "select predicted_index, count(*) from predictions where run_id = ? and perturbation = '' group by 1",
                [run_id],
            ).fetchall()
        )
    return gold, predicted


# -- 4: a model that answers one letter ------------------------------------------------------------------


@needs_browser
def test_a_model_answering_one_letter_is_named_on_its_run_page(
    site: tuple[Path, Path], browser: Any, tmp_path: Path
) -> None:
    db, out = site
    gold, predicted = gold_and_predicted(db, "degen0000001")
    assert gold == {0: 12, 1: 16, 2: 15, 3: 17} and predicted == {0: 60}  # the premise, as stored
    page, problems = open_page(browser, out / "run-degen0000001.html")
    warning = page.locator("#answer-warning").inner_text()
    rows = [[c.inner_text() for c in r.locator("td").all()] for r in page.locator("#answer-spread tbody tr").all()]
    header = page.locator("#answer-spread thead th").all_inner_texts()
    # The warning sits above the metrics, where the accuracy of 0.2 is read.
    above = page.evaluate(
        "document.getElementById('answer-warning').getBoundingClientRect().top < "
        "document.getElementById('metrics-overall').getBoundingClientRect().top"
    )
    page.screenshot(path=str(tmp_path / "degenerate-run.png"), full_page=True)
    page.close()
    assert problems == [] and above
    assert warning == f"Warning: {DEGENERATE_WARNING}. See predicted options against gold."
    assert header[:3] == ["option", "predicted", "gold"]
    assert [r[:3] for r in rows] == [
        ["A", "60 (100%)", "12 (20%)"],
        ["B", "0 (0%)", "16 (27%)"],
        ["C", "0 (0%)", "15 (25%)"],
        ["D", "0 (0%)", "17 (28%)"],
    ]


@needs_browser
def test_a_model_that_answers_the_question_gets_no_warning(site: tuple[Path, Path], browser: Any) -> None:
    db, out = site
    gold, predicted = gold_and_predicted(db, "better000001")
    page, problems = open_page(browser, out / "run-better000001.html")
    warnings = page.locator("#answer-warning").count()
    rows = {
        r.get_attribute("data-option"): (int(r.get_attribute("data-predicted")), int(r.get_attribute("data-gold")))
        for r in page.locator("#answer-spread tbody tr").all()
    }
    page.close()
    # Half its answers are "A" (30 of 60, not more than half) against 12 gold "A": no warning, and the
    # table's counts are the warehouse's.
    assert problems == [] and warnings == 0
    assert rows == {"ABCD"[k]: (predicted.get(k, 0), gold[k]) for k in range(4)}
    assert rows["A"] == (30, 12)  # the even instances say A; the odd ones, all B, C or D, are answered right


def test_when_one_letter_is_worth_a_warning() -> None:
    """More than half the predictions and 25 points above the letter's gold share, in 20 or more instances."""
    # A yes/no task that is 55% "yes" answered "yes" 65% of the time: a preference the data explains.
    leaning = [(0, 0, 2, 55), (1, 1, 2, 35), (0, 1, 2, 10)]
    assert answer_spread(leaning).warning is None  # type: ignore[union-attr]
    # 80% "yes" against 50%: 30 points above.
    yes = answer_spread([(0, 0, 2, 50), (0, 1, 2, 30), (1, 1, 2, 20)])
    assert yes is not None and yes.warning == (
        "A took 80 of 100 predictions (80%) against 50 of 100 gold answers (50%): the model may be answering one "
        "letter whatever the question"
    )
    # 19 instances all "A": too few to tell from chance.
    assert answer_spread([(0, k % 4, 4, 1) for k in range(19)]).warning is None  # type: ignore[union-attr]
    # Answers with no option count in neither column's options but in the total.
    errors = answer_spread([(None, 0, 4, 5), (0, 0, 4, 5), (0, 1, 4, 20)])
    assert errors is not None and errors.unanswered == 5 and errors.total == 30
    assert errors.warning is not None and errors.warning.startswith(
        "A took 25 of 30 predictions (83%) against 10 of 30 gold answers (33%)"
    )
    # 25 of 30 "A" where 20 of 30 are gold "A" (17 points above): the data explains most of it.
    assert answer_spread([(None, 0, 4, 5), (0, 0, 4, 15), (0, 1, 4, 10)]).warning is None  # type: ignore[union-attr]
    assert answer_spread([]) is None  # a generation task has no options


def test_the_cli_prints_the_same_warning_after_a_run(site: tuple[Path, Path], capsys: pytest.CaptureFixture) -> None:
    db, _ = site
    capsys.readouterr()
    results_table(str(db), ["degen0000001", "better000001"])
    lines = capsys.readouterr().out.splitlines()
    assert [line for line in lines if "predictions" in line] == [f"run degen0000001: {DEGENERATE_WARNING}"]


# -- 13: history charts show whole intervals -------------------------------------------------------------


# Every rule (interval) a rendered Vega view drew, from its scenegraph: the run, x, and the pixel ends
# y (ci_low) and y2 (ci_high); with each chart's plot size and y scale domain.
DRAWN_RULES = """Object.values(window.HELMFLOW_VIEWS).map(view => {
    const rules = [];
    const walk = node => {
        if (node.marktype === "rule" && node.role === "mark") node.items.forEach(i => rules.push(
            {run: i.datum.run_id, low: i.datum.ci_low, high: i.datum.ci_high, x: i.x, y: i.y, y2: i.y2}));
        (node.items || []).forEach(walk);
    };
    walk(view.scenegraph().root);
    return {width: view.width(), height: view.height(), domain: view.scale("y").domain(), rules: rules};
})"""


@needs_browser
def test_history_charts_show_every_interval_whole(site: tuple[Path, Path], browser: Any, tmp_path: Path) -> None:
    db, out = site
    page, problems = open_page(browser, out / "history.html")
    charts = page.locator("div.chart").count()
    page.wait_for_function(f"Object.keys(window.HELMFLOW_VIEWS || {{}}).length >= {charts}")
    drawn = page.evaluate(DRAWN_RULES)
    page.screenshot(path=str(tmp_path / "history.png"), full_page=True)
    page.close()
    assert problems == []
    with connect(db, read_only=True) as con:
        stored = con.execute(
            "select run_id, category, ci_low, ci_high from metric_history "
            "where headline and group_name = '' and ci_low is not null order by all"
        ).fetchall()
    # One rule per stored interval: accuracy in each of the three runs, six more categories in the first.
    assert sorted(r["run"] for chart in drawn for r in chart["rules"]) == sorted(r for r, *_ in stored)
    assert len(stored) == 3 + 6
    for chart in drawn:
        low, high = chart["domain"]
        for rule in chart["rules"]:
            assert low <= rule["low"] and rule["high"] <= high, (rule, chart["domain"])
            # In pixels: each rule lies inside the plot, both ends, and the first and last runs' rules keep
            # clear of its left and right sides (the y axis).
            assert 0 <= rule["y2"] <= rule["y"] <= chart["height"], rule
            assert TIME_PADDING_PX - 1 <= rule["x"] <= chart["width"] - TIME_PADDING_PX + 1, rule


# -- 14: the instance browser shows the question first ------------------------------------------------------


@needs_browser
def test_the_instance_browser_shows_the_question_first(site: tuple[Path, Path], browser: Any, tmp_path: Path) -> None:
    db, out = site
    with connect(db, read_only=True) as con:
        inputs = dict(con.execute("select instance_id, input from instances where run_id = 'degen0000001'").fetchall())
        [(prompt,)] = con.execute(
            "select prompt from predictions where run_id = 'degen0000001' and instance_id = 'q000' "
            "and perturbation = ''"
        ).fetchall()
    page, problems = open_page(browser, out / "instances-degen0000001.html")
    cells = page.locator("#instance-rows tr td.prompt")
    first_lines = [text.split("\n")[0] for text in cells.all_inner_texts()]
    ids = page.locator("#instance-rows tr td:first-child").all_inner_texts()
    perturbations = page.locator("#instance-rows tr td:nth-child(3)").all_inner_texts()
    summary = cells.first.locator("summary").inner_text()
    prompt_shown = cells.first.locator("pre").is_visible()
    page.screenshot(path=str(tmp_path / "instances.png"))
    cells.first.locator("summary").click()  # the whole prompt unfolds under the question
    unfolded = cells.first.locator("pre").inner_text()
    page.fill("#filter-text", inputs["q007"][:30])
    found = sorted(set(page.locator("#instance-rows tr td:first-child").all_inner_texts()))
    page.close()
    assert problems == []
    assert prompt.startswith("The following are multiple choice") and not prompt.startswith(inputs["q000"])
    assert len(first_lines) == 100  # a page: 50 instances × (unperturbed, typos)
    for instance, perturbation, line in zip(ids, perturbations, first_lines, strict=True):
        # A perturbed row's input is the stored, unperturbed text, and says so.
        expected = inputs[instance] + (" (before the perturbation)" if perturbation else "")
        assert line == expected
    assert summary == f"whole prompt ({len(prompt):,} characters)" and not prompt_shown
    assert unfolded == prompt
    assert found == ["q007"]


# -- the matrix and the front page fit a 1280 px window ------------------------------------------------------


@needs_browser
def test_a_long_metric_name_wraps_within_a_1280_px_window(tmp_path: Path, browser: Any) -> None:
    """Seven categories with intervals, a long scenario name, and stereotypical_associations_gender_profession."""
    db, out = tmp_path / "w.duckdb", tmp_path / "site"
    for k, scenario in enumerate(("bigbench_sports_understanding", "mmlu")):
        started = datetime(2025, 1, 1) + timedelta(hours=k)
        record_mc_run(db, McRun(f"run{k}", MODEL, scenario, GOLDS, [0] * len(GOLDS), started, extra=ALL_CATEGORIES))
    report(db, out)
    widths = {}
    for name in ("matrix.html", "index.html"):  # one model: the front page shows its headline cells
        page, problems = open_page(browser, out / name)
        widths[name] = page.evaluate("document.documentElement.scrollWidth")
        bias = page.locator("td[data-category=bias] .metric").first
        lines = bias.evaluate(
            "e => Math.round(e.getBoundingClientRect().height / parseFloat(getComputedStyle(e).lineHeight))"
        )
        text = bias.inner_text()
        page.screenshot(path=str(tmp_path / name.replace(".html", ".png")))
        page.close()
        assert problems == []
        assert re.sub(r"\s+", "", text) == BIAS_METRIC + "lowerisbetter" and lines >= 3, (name, text, lines)
    assert widths == {"matrix.html": 1280, "index.html": 1280}
