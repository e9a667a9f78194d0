"""`helmflow history`: bars drawn from zero (so a 0.007 change is not the whole bar) and `--group`, the
metric within one instance group, on warehouses written row by row (no model, fast)."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import pytest

from helmflow.flows.cli import main
from helmflow.flows.cli_history import bar, bar_scale
from tests.truth_runs import McRun, record_mc_run

DAY1, DAY2 = datetime(2025, 3, 1, 9, 30), datetime(2025, 3, 2, 9, 30)


def table_rows(out: str) -> list[list[str]]:
    """The cells of each body row of a rich table (lines between │ bars), stripped."""
    return [[cell.strip() for cell in line.split("│")[1:-1]] for line in out.splitlines() if line.startswith("│")]


def history(db: Path, *extra: str) -> list[str]:
    return ["--db", str(db), "history", "--model", "smol", "--scenario", "mmlu", *extra]


@pytest.fixture
def two_runs(tmp_path: Path) -> Path:
    """Accuracy 0.500 then 0.507 on 1,000 instances; by group: anatomy 0.508 -> 0.508, law 0.492 -> 0.506."""
    db = tmp_path / "w.duckdb"
    golds, groups = [0] * 1000, ["anatomy", "law"] * 500
    first = [0] * 500 + [1] * 500  # instances 0..499 right: 250 anatomy, 250 law
    second = [0] * 507 + [1] * 493  # 7 more right: 4 more in anatomy (even), 3 in law (odd)
    record_mc_run(db, McRun("r1", "smol", "mmlu", golds, first, DAY1, groups=groups, perturbed=False))
    record_mc_run(db, McRun("r2", "smol", "mmlu", golds, second, DAY2, groups=groups, perturbed=False))
    return db


def test_a_small_change_draws_a_nearly_equal_bar(two_runs: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(history(two_runs, "--metric", "exact_match")) == 0
    out = capsys.readouterr().out
    # Wilson intervals of 500/1000 and 507/1000; bars on a 0-1 scale of 30 blocks: 15 blocks, and 15.21
    # (15 blocks and a quarter block, ▎), where the old min-max scale drew 1 block against 30.
    assert table_rows(out) == [
        ["2025-03-01 09:30:00", "r1", "accuracy", "0.5 [0.4691, 0.5309]", "1000", "█" * 15],
        ["2025-03-02 09:30:00", "r2", "accuracy", "0.507 [0.476, 0.5379]", "1000", "█" * 15 + "▎"],
    ]
    assert out.splitlines()[-1] == "bars: from 0, 30 blocks = 1"


def test_group_shows_the_metric_within_one_group(two_runs: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(history(two_runs, "--metric", "exact_match", "--group", "law")) == 0
    out = capsys.readouterr().out
    # law: 250 of 500 right, then 253 (instances 501, 503, 505): 0.5 -> 0.506, each with its Wilson interval.
    assert table_rows(out) == [
        ["2025-03-01 09:30:00", "r1", "accuracy", "law", "0.5 [0.4563, 0.5437]", "500", "█" * 15],
        ["2025-03-02 09:30:00", "r2", "accuracy", "law", "0.506 [0.4623, 0.5496]", "500", "█" * 15 + "▏"],
    ]
    assert main(history(two_runs, "--metric", "exact_match", "--group", "anatomy")) == 0
    values = [row[4].split()[0] for row in table_rows(capsys.readouterr().out)]
    assert values == ["0.5", "0.508"]  # 250 of 500, then 254


def test_an_unknown_group_names_the_groups_there_are(two_runs: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(history(two_runs, "--metric", "exact_match", "--group", "Law")) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err == (
        "no group 'Law' in the history of smol on mmlu (exact_match): its groups are anatomy, law\n"
    )


def test_a_group_in_a_history_without_groups(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    db = tmp_path / "w.duckdb"
    record_mc_run(db, McRun("r1", "smol", "mmlu", [0, 1, 2, 3], [0, 1, 2, 0], DAY1))
    assert main(history(db, "--metric", "exact_match", "--group", "law")) == 2
    assert capsys.readouterr().err == "no group 'law' in the history of smol on mmlu (exact_match): it has no groups\n"


def test_values_outside_zero_to_one_are_drawn_from_zero_to_the_largest(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    db = tmp_path / "w.duckdb"
    for run_id, day, runtime in (("r1", DAY1, 2.0), ("r2", DAY2, 4.0)):
        extra = {("efficiency", "inference_runtime"): (runtime, runtime * 0.9, runtime * 1.1)}
        record_mc_run(db, McRun(run_id, "smol", "mmlu", [0, 1], [0, 1], day, extra=extra))
    assert main(history(db, "--metric", "inference_runtime")) == 0
    out = capsys.readouterr().out
    assert [row[-1] for row in table_rows(out)] == ["█" * 15, "█" * 30]
    assert out.splitlines()[-1] == "bars: from 0, 30 blocks = 4 (the largest value)"


def test_bar_lengths() -> None:
    assert bar_scale([0.5, 0.507]) == 1.0 and bar_scale([2.0, -6.0]) == 6.0 and bar_scale([0.0]) == 1.0
    assert bar(0.0, 1.0) == "" and bar(float("nan"), 1.0) == "" and bar(None, 1.0) == ""
    assert bar(1.0, 1.0) == "█" * 30 and bar(1 / 240, 1.0) == "▏"  # an eighth of a block
    assert bar(-0.25, 1.0) == "-" + "█" * 7 + "▌"  # a negative bias score: its magnitude after a minus
