"""flows/layout.py: a suite's scenarios × the seven categories per model, every empty cell explained, rows that
average several scenarios (HELM's RAFT row), and the coverage share; on runs written straight into a warehouse."""

from __future__ import annotations

from pathlib import Path

import pytest

from helmflow.flows.cli import main
from helmflow.flows.layout import NO_RUN, NOT_MEASURED, layout_lines, suite_layout
from helmflow.warehouse.store import Warehouse
from tests.test_history import direct_run

SUITE = """
name: pairs
scenarios:
  - boolq
  - {scenario: cb, row: cb_and_copa}
  - {scenario: copa, row: cb_and_copa}
"""


def _failed(db: Path, run_id: str, model: str, scenario: str, error: str) -> None:
    warehouse = Warehouse(db)
    warehouse.start_run(
        {"run_id": run_id, "scenario": scenario, "spec_hash": "h", "spec_json": "{}", "model": model,
         "model_json": "{}", "seed": 0, "adapter_json": "{}"}
    )  # fmt: skip
    warehouse.fail_run(run_id, error)


@pytest.fixture
def db_and_suite(tmp_path: Path) -> tuple[Path, Path]:
    db = tmp_path / "w.duckdb"
    direct_run(
        db, "r1", "m1", "boolq", [("accuracy", "exact_match", 0.6, False), ("calibration", "ece_10_bin", 0.1, True)]
    )
    direct_run(db, "r2", "m1", "cb", [("accuracy", "exact_match", 0.5, False)])
    _failed(db, "r3", "m1", "copa", "DataError: scenario 'copa' needs the Hugging Face Hub dataset x/y\nTraceback ...")
    _failed(db, "r4", "m2", "boolq", "ModelError: the server went away")
    suite = tmp_path / "pairs.yaml"
    suite.write_text(SUITE)
    return db, suite


def test_every_cell_is_a_value_or_says_why_not(db_and_suite: tuple[Path, Path]) -> None:
    db, suite = db_and_suite
    layout = suite_layout(Warehouse(db), str(suite))
    assert layout.scenarios == ["boolq", "cb_and_copa"] and layout.models == ["m1", "m2"]
    cell = layout.cells
    assert cell[("m1", "boolq", "accuracy")]["value"] == 0.6  # type: ignore[index]
    assert cell[("m1", "boolq", "calibration")]["value"] == 0.1  # type: ignore[index]
    assert cell[("m1", "boolq", "efficiency")] == "measured, but the run has no headline value here"
    assert cell[("m1", "boolq", "robustness")] == NOT_MEASURED
    # The row of two scenarios: cb's value alone, said to be 1 of the 2 (copa's run failed).
    row = cell[("m1", "cb_and_copa", "accuracy")]
    assert isinstance(row, dict) and row["value"] == 0.5 and row["of"] == "mean of 1 of 2 subsets"
    assert cell[("m1", "cb_and_copa", "calibration")] == "measured, but the run has no headline value here"
    assert cell[("m2", "boolq", "accuracy")] == "latest run failed: ModelError: the server went away"
    assert cell[("m2", "cb_and_copa", "accuracy")] == NO_RUN
    # accuracy, calibration and efficiency of 7 categories in both rows: 6 of 14 cells.
    assert layout.coverage == (6, 14)


def test_the_leaderboard_prints_the_layout_and_its_coverage(
    db_and_suite: tuple[Path, Path], capsys: pytest.CaptureFixture
) -> None:
    db, suite = db_and_suite
    assert main(["--db", str(db), "leaderboard", "--suite", str(suite), "--layout"]) == 0
    out = capsys.readouterr().out
    assert "\n".join(layout_lines(suite_layout(Warehouse(db), str(suite)))) in out
    assert "coverage: 6 of 14 cells (42.9 %)" in out
    assert "[2] mean of 1 of 2 subsets" in out  # [1] is the efficiency cell without a value, first in the table


def test_layout_needs_a_suite(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["--db", str(tmp_path / "w.duckdb"), "leaderboard", "--layout"]) == 2
    assert "--layout needs --suite" in capsys.readouterr().err


def test_the_report_has_the_suite_s_layout_page(db_and_suite: tuple[Path, Path], tmp_path: Path) -> None:
    db, suite = db_and_suite
    out = tmp_path / "site"
    assert main(["--db", str(db), "report", "--suite", str(suite), "--out", str(out)]) == 0
    page = (out / "layout.html").read_text()
    assert "latest run failed: ModelError: the server went away" in page
    assert page.count(">no run yet<") == 3  # m2's cb_and_copa row: accuracy, calibration, efficiency
    assert "6 of 14 cells (42.9 %)" in page
    front = (out / "index.html").read_text()  # the leaderboard page shows the layout too
    assert '<a href="layout.html">Layout</a>' in front
    assert "latest run failed: ModelError: the server went away" in front
