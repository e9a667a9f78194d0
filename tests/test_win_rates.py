"""Rankings with their uncertainty: HELM's win rates with intervals, tied pairs, efficiency compared only under
the same conditions, and ECE differences tested like the other metrics."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from helmflow.flows.cli import main
from helmflow.flows.history import compare, conditions_differ, ece_difference
from helmflow.tasks.metrics.calibration import ece
from helmflow.tasks.metrics.win_rates import Column, board, column_rates, pair_tie
from helmflow.warehouse.db import connect
from helmflow.warehouse.store import Warehouse
from tests.test_merge import record_run
from tests.test_report import CHROMIUM, needs_browser


def _column(values: dict[str, float], answers: dict[str, list[int]] | None = None) -> Column:
    column = Column("s1", "accuracy", "exact_match", False, values, kind="mean" if answers else "")
    for model, correct in (answers or {}).items():
        column.instances[model] = {f"i{k}": (float(c),) for k, c in enumerate(correct)}
    return column


def test_win_rates_are_helm_s_by_hand() -> None:
    # a 0.5, b 0.5, c 0.4: a beats c and ties b (half): (0.5 + 1) / 2; c beats nobody.
    rates = column_rates(_column({"a": 0.5, "b": 0.5, "c": 0.4}), {"a": 0.5, "b": 0.5, "c": 0.4})
    assert rates == {"a": 0.75, "b": 0.75, "c": 0.0}
    lower = Column("s1", "efficiency", "inference_runtime", True, {"a": 2.0, "b": 1.0})
    assert column_rates(lower, dict(lower.values)) == {"a": 0.0, "b": 1.0}
    # A pair kept apart counts for neither: with only that pair, nobody is rated in the column.
    lower.apart = {frozenset(("a", "b")): "conditions differ: num_threads 1 -> 2"}
    assert column_rates(lower, dict(lower.values)) == {}


def test_one_discordant_instance_is_a_tie_with_mcnemar_p_1() -> None:
    column = _column({"a": 0.6, "b": 0.5}, {"a": [1, 1, 1, 0, 1, 0, 1, 0, 1, 0], "b": [1, 1, 1, 0, 0, 0, 1, 0, 1, 0]})
    tie = pair_tie(column, "a", "b")
    assert tie is not None and (tie.test, tie.p_value) == ("mcnemar", 1.0)
    # Ten discordant instances all one way: McNemar p = 2 / 2^10, a real difference.
    far = _column({"a": 1.0, "b": 0.0}, {"a": [1] * 10, "b": [0] * 10})
    assert pair_tie(far, "a", "b") is None


def test_the_board_interval_spans_what_one_instance_can_change() -> None:
    column = _column({"a": 0.6, "b": 0.5}, {"a": [1, 1, 1, 0, 1, 0, 1, 0, 1, 0], "b": [1, 1, 1, 0, 0, 0, 1, 0, 1, 0]})
    result = board([column])
    assert result.rates == {"a": {"accuracy": 1.0, "overall": 1.0}, "b": {"accuracy": 0.0, "overall": 0.0}}
    # Resampled, instance i4 (the one they differ on) is sometimes absent: then they tie, each 0.5.
    assert result.intervals["a"]["overall"] == (0.5, 1.0)
    assert result.intervals["b"]["overall"] == (0.0, 0.5)
    assert [(t.a, t.b) for t in result.ties] == [("a", "b")]


@pytest.fixture
def two_models(tmp_path: Path) -> Path:
    """The same answers under two model names, but for one instance of twelve."""
    db = tmp_path / "w.duckdb"
    answers = [0, 0, 1, 0, 1, 0, 0, 1, 0, 0, 1, 0]
    record_run(db, "run-a", "model-a", "s1", answers)
    record_run(db, "run-b", "model-b", "s1", [*answers[:-1], 1])
    return db


def test_the_leaderboard_shows_two_runs_differing_in_one_instance_tied_with_an_interval(
    two_models: Path, capsys: pytest.CaptureFixture
) -> None:
    capsys.readouterr()
    assert main(["--db", str(two_models), "leaderboard"]) == 0
    out = capsys.readouterr().out
    assert "tied in s1 accuracy (exact_match): model-a ≈ model-b (not significant at 0.05: McNemar p = 1)" in out
    table = out.split("mean win rate (HELM)")[0].splitlines()
    rows = {line.split("│")[1].strip(): [c.strip() for c in line.split("│")[2:-1]] for line in table if "│" in line}
    # HELM's win rate still ranks model-a first; the interval says how little the accuracy lead means.
    # (overall, accuracy, calibration): calibration's ECE cannot be rebuilt without confidences, so it is
    # held fixed in the resamples and its pair untested, which the board says.
    assert rows == {
        "model-a": ["1 [0.75, 1]", "1 [0.5, 1]", "1 [1, 1]"],
        "model-b": ["0 [0, 0.25]", "0 [0, 0.5]", "0 [0, 0]"],
    }
    assert "untested in s1 calibration (ece_10_bin): its value cannot be rebuilt from instances" in out


def _add_runtimes(db: Path, run_id: str, runtimes: list[float], threads: int, load: float) -> None:
    """An efficiency headline and its per-instance runtimes, and the conditions they were measured under."""
    with connect(db) as con:
        con.execute(
            "update runs set num_threads = ?, load_per_core = ?, device = 'cpu' where run_id = ?",
            [threads, load, run_id],
        )
        for k, value in enumerate(runtimes):
            con.execute(
                "insert into instance_stats (run_id, instance_id, category, metric, perturbation, value, "
                "metrics_version) values (?, ?, 'efficiency', 'inference_runtime', '', ?, 1)",
                [run_id, f"i{k}", value],
            )
        con.execute(
            "insert into metrics (run_id, category, metric, perturbation, group_name, value, n, lower_is_better, "
            "headline, metrics_version) values (?, 'efficiency', 'inference_runtime', '', '', ?, ?, true, true, 1)",
            [run_id, sum(runtimes) / len(runtimes), len(runtimes)],
        )


def test_runtimes_under_other_conditions_are_not_compared(two_models: Path, capsys: pytest.CaptureFixture) -> None:
    _add_runtimes(two_models, "run-a", [0.2] * 6 + [0.3] * 6, threads=2, load=0.1)
    _add_runtimes(two_models, "run-b", [0.6] * 6 + [0.9] * 6, threads=1, load=1.4)
    result = compare(Warehouse(two_models), "run-a", "run-b")
    runtime = next(m for m in result.metrics if m.metric == "inference_runtime")
    assert runtime.not_comparable == "conditions differ: num_threads 2 -> 1, load per core 0.10 -> 1.40"
    assert (runtime.test, runtime.significant) == ("", False)
    capsys.readouterr()
    assert main(["--db", str(two_models), "leaderboard"]) == 0
    out = capsys.readouterr().out
    assert (
        "not comparable in s1 efficiency (inference_runtime): model-a and model-b "
        "(conditions differ: num_threads 2 -> 1, load per core 0.10 -> 1.40)"
    ) in out


def test_runtimes_under_the_same_conditions_are_tested(two_models: Path) -> None:
    _add_runtimes(two_models, "run-a", [0.2] * 6 + [0.3] * 6, threads=2, load=0.1)
    _add_runtimes(two_models, "run-b", [0.6] * 6 + [0.9] * 6, threads=2, load=0.2)
    runtime = next(
        m for m in compare(Warehouse(two_models), "run-a", "run-b").metrics if m.metric == "inference_runtime"
    )
    assert (runtime.not_comparable, runtime.test, runtime.significant) == ("", "bootstrap", True)
    assert conditions_differ({"device": "cpu", "load_per_core": None}, {"device": "cpu", "load_per_core": 0.5}) == [
        "machine load recorded for one run only"
    ]


def test_an_ece_difference_gets_a_paired_bootstrap() -> None:
    rng = np.random.default_rng(1)
    confidence = rng.uniform(0.3, 1.0, 200)
    correct = (rng.uniform(0, 1, 200) < confidence).astype(int)  # calibrated: ECE near 0
    overconfident = np.minimum(confidence + 0.3, 1.0)  # the same answers, 0.3 more sure
    pairs = list(zip(confidence, correct, overconfident, correct, strict=True))
    low, high = ece_difference(pairs, 10)
    point = ece(overconfident, correct, 10) - ece(confidence, correct, 10)  # type: ignore[operator]
    assert 0 < low <= point <= high  # B is worse calibrated, and the interval says so
    same = list(zip(confidence, correct, confidence, correct, strict=True))
    assert ece_difference(same, 10) == (0.0, 0.0)


def test_the_refresh_artifact_shows_the_leaderboard_with_ties(two_models: Path) -> None:
    from helmflow.flows.artifacts import refresh_summary
    from helmflow.flows.refresh import RefreshReport

    summary = refresh_summary(RefreshReport(ran=["run-b"]), str(two_models), ["s1"])
    board = summary.split("## Leaderboard\n")[1]
    assert board.splitlines()[1:5] == [
        "| model | overall | accuracy | calibration |",
        "|---|---|---|---|",
        "| model-a | 1 [0.75, 1] | 1 [0.5, 1] | 1 [1, 1] |",
        "| model-b | 0 [0, 0.25] | 0 [0, 0.5] | 0 [0, 0] |",
    ]
    assert "- tied in s1 accuracy (exact_match): model-a ≈ model-b (not significant at 0.05: McNemar p = 1)" in board


@needs_browser
def test_the_report_s_leaderboard_shows_the_interval_and_the_tie(two_models: Path, tmp_path: Path) -> None:
    from playwright.sync_api import sync_playwright

    out = tmp_path / "site"
    assert main(["--db", str(two_models), "report", "--out", str(out)]) == 0
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=["--no-sandbox", "--disable-gpu"])
        page = browser.new_page()
        problems: list[str] = []
        page.on("pageerror", lambda e: problems.append(str(e)))
        page.goto((out / "index.html").as_uri())
        page.wait_for_selector(".chart svg, .chart canvas")
        rows = {
            row.get_attribute("data-model"): [cell.inner_text() for cell in row.locator("td").all()]
            for row in page.locator("#leaderboard tbody tr").all()
        }
        ties = page.locator("#ties li").all_inner_texts()
        note = page.locator("#win-rate-note").inner_text()
        browser.close()
    assert problems == []
    assert rows == {
        "model-a": ["model-a", "1 [0.75, 1]", "1 [0.5, 1]", "1 [1, 1]"],
        "model-b": ["model-b", "0 [0, 0.25]", "0 [0, 0.5]", "0 [0, 0]"],
    }
    assert ties == [
        "tied in s1 accuracy (exact_match): model-a ≈ model-b (not significant at 0.05: McNemar p = 1)",
        "untested in s1 calibration (ece_10_bin): its value cannot be rebuilt from instances "
        "(held fixed in the interval's resamples)",
    ]
    assert "tied in a column when the paired test" in note
