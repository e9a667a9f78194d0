"""The Python API (`from helmflow import evaluate`) runs what `helmflow run` runs and gives the same metrics."""

from pathlib import Path

import pandas as pd
import pytest

import helmflow
from helmflow import Results, evaluate, open_warehouse, resume
from helmflow.flows import api
from helmflow.flows.cli import main
from helmflow.specs.loader import SpecError
from helmflow.warehouse.db import connect

# The quickstart suite's MMLU entry (zero-shot, three subjects) on the embedded model, 10 instances.
SUITE = """\
name: api-quickstart
models: [smollm2-135m-instruct]
seed: 0
scenarios:
  - scenario: mmlu
    groups: [abstract_algebra, high_school_geography, us_foreign_policy]
    num_train: 0
"""
KEY = ["category", "metric", "perturbation", "group_name"]
COMPARED = [*KEY, "value", "n", "ci_low", "ci_high"]


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Results]:
    folder = tmp_path_factory.mktemp("api")
    suite = folder / "suite.yaml"
    suite.write_text(SUITE)
    cli_db = folder / "cli.duckdb"
    assert main(["--db", str(cli_db), "run", str(suite), "--max-instances", "10"]) == 0
    results = evaluate(str(suite), db=folder / "api.duckdb", max_instances=10)
    return cli_db, results


def _all_metrics(db: Path | str | None, run_ids: list[str]) -> pd.DataFrame:
    frame = open_warehouse(db).report_metrics(run_ids)
    frame = frame[frame.category != "efficiency"]  # runtimes differ from run to run
    return frame[COMPARED].sort_values(KEY).reset_index(drop=True)


@pytest.mark.model
@pytest.mark.slow  # two real runs of the model (about a minute): make test-slow
def test_evaluate_gives_the_metrics_of_helmflow_run(runs: tuple[Path, Results]) -> None:
    cli_db, results = runs
    assert results.ok and list(results.statuses.values()) == ["succeeded"] and results.errors == {}
    with connect(cli_db, read_only=True) as con:
        [cli_run] = con.execute("select run_id from runs").fetchall()
    expected = _all_metrics(cli_db, [cli_run[0]])
    assert len(expected) > 0
    pd.testing.assert_frame_equal(_all_metrics(results.db, results.run_ids), expected)
    headline = results.metrics
    assert set(headline.category) >= {"accuracy", "calibration", "robustness", "fairness", "efficiency"}
    cli_headline = open_warehouse(cli_db).report_metrics([cli_run[0]])
    cli_headline = cli_headline[cli_headline.headline.astype(bool) & (cli_headline.group_name == "")]
    cli_headline = cli_headline[cli_headline.category != "efficiency"]
    mine = headline[headline.category != "efficiency"]
    columns = ["category", "metric", "perturbation", "value", "n", "ci_low", "ci_high"]
    pd.testing.assert_frame_equal(
        mine[columns].sort_values(columns[:3]).reset_index(drop=True),
        cli_headline[columns].sort_values(columns[:3]).reset_index(drop=True),
    )


@pytest.mark.model
@pytest.mark.slow
def test_results_to_frame_has_one_row_per_run_with_each_category(runs: tuple[Path, Results]) -> None:
    _, results = runs
    frame = results.to_frame()
    assert list(frame.columns[:5]) == ["run_id", "scenario", "model", "status", "error"]
    assert frame.scenario.tolist() == ["mmlu"] and frame.model.tolist() == ["smollm2-135m-instruct"]
    accuracy = results.metrics.query("category == 'accuracy'").value.iloc[0]
    assert frame.accuracy.iloc[0] == accuracy


def test_the_package_s_face_is_the_api_and_imports_nothing_heavy() -> None:
    assert (helmflow.evaluate, helmflow.open_warehouse, helmflow.resume, helmflow.Results) == (
        api.evaluate,
        api.open_warehouse,
        api.resume,
        api.Results,
    )
    with pytest.raises(AttributeError, match="module 'helmflow' has no attribute 'evalute'"):
        helmflow.evalute  # noqa: B018
    import subprocess
    import sys

    probe = "import sys, helmflow, helmflow.specs.schema; print('prefect' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout == "False\n"


def test_evaluate_refuses_nothing_to_run_and_unknown_names_before_anything_starts() -> None:
    with pytest.raises(SpecError):
        evaluate([])
    with pytest.raises((SpecError, LookupError)):
        evaluate("no-such-scenario-anywhere")


def test_resume_refuses_a_run_it_cannot_finish_before_anything_starts(tmp_path: Path) -> None:
    db = tmp_path / "w.duckdb"
    with connect(db):  # an empty warehouse
        pass
    with pytest.raises(LookupError, match="nosuchrun"):
        resume("nosuchrun", db=db)


CHILDREN_AFTER_BAD_DATA = """
import json, multiprocessing, sys
from pathlib import Path
from helmflow import evaluate
from helmflow.tasks.validate import ValidationFailed

folder = Path(sys.argv[1])
(folder / "d.jsonl").write_text(json.dumps({"q": "", "opts": ["3", "4"], "gold": 1}) + "\\n")
(folder / "bad.yaml").write_text(
    "name: bad\\nsource: {offline: {files: {test: d.jsonl}}}\\nfields: {input: q, choices: opts, answer: gold}\\n"
)
try:
    evaluate(str(folder / "bad.yaml"), db=folder / "w.duckdb")
except ValidationFailed as exc:
    print("refused:", str(exc).splitlines()[0])
print("children:", [p.name for p in multiprocessing.active_children()])
"""


@pytest.mark.slow  # make test-slow: a whole evaluate() in a child process
def test_evaluate_stops_the_validation_worker_it_started_when_it_raises(tmp_path: Path) -> None:
    """The worker belongs to the call (its RunContext), not to a module: refused data leaves no child behind."""
    import subprocess
    import sys

    done = subprocess.run(
        [sys.executable, "-c", CHILDREN_AFTER_BAD_DATA, str(tmp_path)], capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.startswith("refused: validation failed")
    assert done.stdout.strip().splitlines()[-1] == "children: []"


def test_no_module_of_flows_rebinds_its_own_state() -> None:
    """What a run needs is handed to it (RunContext, a ValidationWorker, the SIGTERM handler's own object):
    no function of flows/ assigns a module's variable."""
    import ast

    flows = Path(__file__).resolve().parents[1] / "flows"
    rebinding = [
        f"{path.name}:{node.lineno}"
        for path in sorted(flows.rglob("*.py"))
        for node in ast.walk(ast.parse(path.read_text()))
        if isinstance(node, ast.Global | ast.Nonlocal)
    ]
    assert rebinding == []
