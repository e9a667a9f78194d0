"""History: leaderboard win rates by hand, compare and regressions, rescore, export, README SQL."""

import re
import shutil
from pathlib import Path

import pandas as pd
import pytest
from scipy.stats import binomtest

from helmflow.flows.cli import main
from helmflow.flows.history import compare, regressions
from helmflow.flows.pipeline import rescore
from helmflow.warehouse.db import connect
from helmflow.warehouse.store import Warehouse
from tests.conftest import TINY_SUITE, TinyRuns

# One worker runs the whole module (its fixtures are module- or session-scoped).
pytestmark = [pytest.mark.model, pytest.mark.xdist_group("tiny")]

TINY = TINY_SUITE  # shared with the session fixture tiny_runs (conftest.py)


def direct_run(
    db: Path,
    run_id: str,
    model: str,
    scenario: str,
    metrics: list[tuple],
    stats: list[tuple] = (),
    spec_hash: str = "h",
) -> None:
    """A run written straight into the warehouse: metrics (category, metric, value, lower_is_better)."""
    Warehouse(db).start_run(
        {
            "run_id": run_id,
            "scenario": scenario,
            "spec_hash": spec_hash,
            "spec_json": "{}",
            "model": model,
            "model_json": "{}",
            "seed": 0,
            "adapter_json": "{}",
        },
    )
    tables = {
        "metrics": pd.DataFrame(
            [
                {
                    "metrics_version": 1,
                    "category": c,
                    "metric": m,
                    "perturbation": "",
                    "group_name": "",
                    "value": v,
                    "n": 10,
                    "lower_is_better": lower,
                    "headline": True,
                }
                for c, m, v, lower in metrics
            ]
        ),
        "instance_stats": pd.DataFrame(
            [
                {
                    "instance_id": i,
                    "perturbation": "",
                    "category": "accuracy",
                    "metric": "exact_match",
                    "value": v,
                    "metrics_version": 1,
                }
                for i, v in stats
            ]
        ),
    }
    Warehouse(db).finish_run(run_id, "succeeded", tables, {})


@pytest.fixture(scope="module")
def warehouse(tiny_runs: TinyRuns, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[str]]:
    """Two real runs of the same tiny suite (TINY), copied from the session's shared warehouse: these tests
    add runs and metrics versions, which the other users of the shared file must not see."""
    db = tmp_path_factory.mktemp("history") / "h.duckdb"
    shutil.copy(tiny_runs.both, db)
    return db, tiny_runs.run_ids


def headline(db: Path, run_id: str, category: str) -> float:
    with connect(db, read_only=True) as con:
        return con.execute(
            "select value from metrics where run_id = ? and category = ? and headline and group_name = ''",
            [run_id, category],
        ).fetchone()[0]


def test_identical_runs_give_no_regression(warehouse: tuple[Path, list[str]], capsys) -> None:
    db, _ = warehouse
    assert regressions(Warehouse(db)) == []
    assert main(["--db", str(db), "regressions"]) == 0
    assert "no regressions" in capsys.readouterr().out


def test_leaderboard_win_rates_by_hand(warehouse: tuple[Path, list[str]]) -> None:
    db, real = warehouse
    a_acc = headline(db, real[-1], "accuracy")
    a_ece = headline(db, real[-1], "calibration")
    assert 0 < a_ece < 1 and a_acc < 1
    # Model b is best everywhere; model c ties a on accuracy and is worst on the rest.
    direct_run(
        db,
        "b1",
        "model-b",
        "mmlu",
        [
            ("accuracy", "exact_match", 1.0, False),
            ("calibration", "ece_10_bin", 0.0, True),
            ("efficiency", "inference_runtime", 1e-9, True),
        ],
    )
    direct_run(
        db,
        "c1",
        "model-c",
        "mmlu",
        [
            ("accuracy", "exact_match", a_acc, False),
            ("calibration", "ece_10_bin", 1.0, True),
            ("efficiency", "inference_runtime", 1e9, True),
        ],
    )
    # accuracy:    b beats a and c -> 1; a ties c (0.5) and loses to b -> 0.25; c likewise 0.25
    # calibration: b 1; a beats c -> 0.5; c 0.   efficiency: b 1; a 0.5; c 0
    # robustness and fairness columns have only model a: skipped.
    # overall = mean over the 3 columns: b 1, a (0.25 + 0.5 + 0.5) / 3, c 0.25 / 3
    with connect(db, read_only=True) as con:
        board = {
            (m, c): v for m, c, v in con.execute("select model, category, mean_win_rate from leaderboard").fetchall()
        }
    a = "smollm2-135m-instruct"
    assert board == pytest.approx(
        {
            (a, "accuracy"): 0.25,
            (a, "calibration"): 0.5,
            (a, "efficiency"): 0.5,
            (a, "overall"): 1.25 / 3,
            ("model-b", "accuracy"): 1.0,
            ("model-b", "calibration"): 1.0,
            ("model-b", "efficiency"): 1.0,
            ("model-b", "overall"): 1.0,
            ("model-c", "accuracy"): 0.25,
            ("model-c", "calibration"): 0.0,
            ("model-c", "efficiency"): 0.0,
            ("model-c", "overall"): 0.25 / 3,
        }
    )
    assert main(["--db", str(db), "leaderboard", "--category", "accuracy"]) == 0


def test_planted_regression_is_reported_with_what_differs(warehouse: tuple[Path, list[str]], capsys) -> None:
    db, _ = warehouse
    before = [(f"i{k}", 1.0) for k in range(20)]
    after = [(f"i{k}", 0.0 if k < 15 else 1.0) for k in range(20)]  # 15 right -> wrong, none the other way
    direct_run(db, "r1", "model-r", "toy", [("accuracy", "exact_match", 1.0, False)], before)
    direct_run(db, "r2", "model-r", "toy", [("accuracy", "exact_match", 0.25, False)], after, spec_hash="h2")
    [found] = regressions(Warehouse(db))
    assert (found.model, found.before_run, found.after_run, found.before, found.after) == (
        "model-r",
        "r1",
        "r2",
        1.0,
        0.25,
    )
    assert found.p_value == pytest.approx(binomtest(0, 15, 0.5).pvalue)
    assert found.differs == ["spec_hash: h -> h2"]
    assert main(["--db", str(db), "regressions"]) == 1
    assert "REGRESSION model-r on toy" in capsys.readouterr().out


def test_compare_mcnemar_equals_scipy_and_lists_flips(warehouse: tuple[Path, list[str]]) -> None:
    db, _ = warehouse
    # 3 instances right only in A, 10 right only in B, 7 right in both
    a = [(f"j{k}", 1.0 if k < 3 or k >= 13 else 0.0) for k in range(20)]
    b = [(f"j{k}", 0.0 if k < 3 else 1.0) for k in range(20)]
    direct_run(db, "x1", "model-x", "toy2", [("accuracy", "exact_match", 0.5, False)], a)
    direct_run(db, "x2", "model-x", "toy2", [("accuracy", "exact_match", 0.85, False)], b)
    result = compare(Warehouse(db), "x1", "x2")
    [accuracy] = [m for m in result.metrics if m.metric == "exact_match"]
    assert accuracy.test == "mcnemar" and accuracy.pairs == 20
    assert accuracy.p_value == binomtest(3, 13, 0.5).pvalue
    assert accuracy.delta == pytest.approx(0.35)
    assert len(result.flipped) == 13 and ("j0", 1.0, 0.0) in result.flipped
    assert result.differs == []


def test_compare_real_runs_uses_bootstrap_for_runtimes(warehouse: tuple[Path, list[str]], capsys) -> None:
    db, real = warehouse
    result = compare(Warehouse(db), real[0], real[1])
    runtime = next(m for m in result.metrics if m.metric == "inference_runtime")
    assert runtime.test == "bootstrap" and runtime.interval is not None and runtime.pairs == 6
    assert result.flipped == []  # same model, data and seed: the same answers
    assert main(["--db", str(db), "compare", real[0], real[1]]) == 0
    assert "0 instance(s) flipped" in capsys.readouterr().out


def test_rescore_reproduces_metrics_and_touches_no_prediction(warehouse: tuple[Path, list[str]], tmp_path) -> None:
    db, real = warehouse

    def predictions_bytes() -> bytes:
        target = tmp_path / "p.csv"
        with connect(db, read_only=True) as con:
            con.execute(f"copy (select * from predictions order by run_id, request_id) to '{target}' (header true)")
        return target.read_bytes()

    before = predictions_bytes()
    assert rescore(db, real[0]) == 2
    assert predictions_bytes() == before
    with connect(db, read_only=True) as con:
        versions = con.execute(
            "select metrics_version, category, metric, perturbation, group_name, value, n from metrics "
            "where run_id = ? order by 2, 3, 4, 5, 1",
            [real[0]],
        ).fetchall()
        stats = con.execute(
            "select metrics_version, count(*) from instance_stats where run_id = ? group by 1 order by 1", [real[0]]
        ).fetchall()
    first = [row[1:] for row in versions if row[0] == 1]
    second = [row[1:] for row in versions if row[0] == 2]
    assert first == second and len(first) > 20
    assert stats[0][1] == stats[1][1]


def test_export_writes_every_table(warehouse: tuple[Path, list[str]], tmp_path: Path) -> None:
    db, _ = warehouse
    assert main(["--db", str(db), "export", str(tmp_path / "out"), "--format", "parquet"]) == 0
    files = sorted(p.name for p in (tmp_path / "out").iterdir())
    assert files == sorted(
        f"{t}.parquet"
        for t in (
            "inference_cache",
            "instance_stats",
            "instances",
            "metrics",
            "predictions",
            "runs",
            "samples",
            "schema_version",
            "validations",
            "contamination_checks",
            "contamination_files",
            "contamination_instances",
            "contamination_matches",
            "contamination_probe_runs",
            "contamination_probe_stats",
        )
    )
    with connect(db, read_only=True) as con:
        runs = con.execute("select count(*) from runs").fetchone()[0]
    assert len(pd.read_parquet(tmp_path / "out" / "runs.parquet")) == runs
    assert main(["--db", str(db), "export", str(tmp_path / "csv"), "--format", "csv"]) == 0
    assert (tmp_path / "csv" / "metrics.csv").read_text().startswith("run_id,metrics_version,category")


def test_every_sql_example_in_the_readme_runs(warehouse: tuple[Path, list[str]]) -> None:
    db, _ = warehouse
    readme = (Path(__file__).parents[1] / "README.md").read_text()
    examples = re.findall(r"```sql\n(.*?)```", readme, re.S)
    assert len(examples) >= 4
    with connect(db, read_only=True) as con:
        results = [con.execute(sql).df() for sql in examples]
    trend = next(r for sql, r in zip(examples, results, strict=True) if "trend" in sql)
    per_subject = next(r for sql, r in zip(examples, results, strict=True) if "per-subject" in sql)
    assert len(trend) >= 2 and set(per_subject.subject) == {"abstract_algebra", "anatomy"}
