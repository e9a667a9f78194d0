import gzip
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import duckdb
import pandas as pd
import pytest

from helmflow.tasks.metrics import to_prediction
from helmflow.tasks.records import Completion, Prediction, Request
from helmflow.warehouse import runs as writer
from helmflow.warehouse.db import WarehouseError, connect, latest_version
from helmflow.warehouse.rows import SLICE_ROWS, Sliced, predictions_frame, result_frames
from helmflow.warehouse.store import Warehouse

RUN = {
    "run_id": "r1",
    "scenario": "s",
    "spec_hash": "h",
    "spec_json": "{}",
    "model": "m",
    "model_json": "{}",
    "seed": 0,
    "adapter_json": "{}",
}


def counts(db: Path) -> dict[str, int]:
    with connect(db, read_only=True) as con:
        return {t: con.execute(f"select count(*) from {t}").fetchone()[0] for t in writer.RESULT_TABLES}


def test_new_warehouse_gets_the_latest_schema(db: Path) -> None:
    with connect(db) as con:
        assert (
            con.execute("select max(version) from schema_version").fetchone()[0] == latest_version() == 15
        )  # 009: run conditions, 010: chat letter misses dropped, 013: sampled completions, 014: corpus overlap,
        # 015: memorisation probes
        tables = {r[0] for r in con.execute("select table_name from information_schema.tables").fetchall()}
    assert {"runs", "instances", "predictions", "instance_stats", "metrics", "validations"} <= tables


def test_a_version_1_warehouse_is_backed_up_and_upgraded(tmp_path: Path) -> None:
    db = tmp_path / "old.duckdb"
    db.write_bytes(gzip.decompress((Path(__file__).parent / "fixtures" / "warehouse_v1.duckdb.gz").read_bytes()))
    original = db.read_bytes()
    with connect(db) as con:
        assert con.execute("select version from schema_version order by 1").fetchall() == [
            (1,),
            (2,),
            (3,),
            (4,),
            (5,),
            (6,),
            (7,),
            (8,),
            (9,),
            (10,),
            (11,),
            (12,),
            (13,),
            (14,),
            (15,),
        ]
        assert con.execute("select run_id, status, toxicity_classifier, num_parameters from runs").fetchall() == [
            ("v1run", "succeeded", None, None)
        ]
        assert con.execute("select metric, value from metrics").fetchall() == [("exact_match", 0.5)]
    backup = tmp_path / "old.duckdb.v1.bak"
    with duckdb.connect(str(backup), read_only=True) as con:
        assert con.execute("select max(version) from schema_version").fetchone()[0] == 1
    assert len(original) > 0


def test_newer_schema_is_refused(db: Path) -> None:
    with connect(db) as con:
        con.execute("insert into schema_version (version, name) values (99, 'future.sql')")
    with pytest.raises(WarehouseError, match="schema version 99 is newer than this helmflow knows"), connect(db):
        pass


def test_run_lands_whole(db: Path) -> None:
    Warehouse(db).start_run(RUN)
    tables = {
        "metrics": pd.DataFrame(
            [
                {
                    "metrics_version": 1,
                    "category": "accuracy",
                    "metric": "exact_match",
                    "perturbation": "",
                    "group_name": "",
                    "value": 0.5,
                    "n": 2,
                    "lower_is_better": False,
                    "headline": True,
                }
            ]
        )
    }
    Warehouse(db).finish_run("r1", "succeeded", tables, {"wall_seconds": 1.5})
    with connect(db, read_only=True) as con:
        assert con.execute("select status, wall_seconds from runs").fetchall() == [("succeeded", 1.5)]
        assert con.execute("select run_id, metric, value from metrics").fetchall() == [("r1", "exact_match", 0.5)]


def test_failure_inside_the_final_write_leaves_no_result_rows(db: Path) -> None:
    Warehouse(db).start_run(RUN)
    good = pd.DataFrame([{"instance_id": "i", "split": "test", "input": "x"}])
    bad = pd.DataFrame([{"no_such_column": 1}])  # fails after instances were inserted
    with pytest.raises(duckdb.Error):
        Warehouse(db).finish_run("r1", "succeeded", {"instances": good, "predictions": bad}, {})
    assert counts(db) == dict.fromkeys(writer.RESULT_TABLES, 0)
    Warehouse(db).fail_run("r1", "boom")
    with connect(db, read_only=True) as con:
        assert con.execute("select status, error from runs").fetchall() == [("failed", "boom")]


def _predictions(n: int) -> list[Prediction]:
    out = []
    for i in range(n):
        request = Request(f"q{i}", f"q{i}", "multiple_choice", f"Question {i}?\nAnswer:", (" A", " B"))
        completion = Completion(f"q{i}", logprobs=[-1.0, -0.5 - i / n], continuation_tokens=[1, 1])
        out.append(to_prediction(request, completion))
    return out


def test_a_large_run_is_written_slice_by_slice(db: Path) -> None:
    """The predictions go in SLICE_ROWS at a time (no frame of the whole run), each slice its own transaction while
    the run is running; the rest and the status in the last one. A failure on the way leaves what was written
    (the run is not complete: still running, then marked failed), and the next try replaces it."""
    predictions = _predictions(SLICE_ROWS * 2 + 5)
    tables = result_frames([], predictions, [], [], [])
    assert isinstance(tables["predictions"], Sliced)
    assert [len(f) for f in tables["predictions"].frames()] == [SLICE_ROWS, SLICE_ROWS, 5]
    Warehouse(db).start_run(RUN)
    Warehouse(db).finish_run("r1", "succeeded", tables, {})
    with connect(db, read_only=True) as con:
        rows = con.execute("select request_id, prompt, choice_logprobs from predictions order by rowid").fetchall()
    assert len(rows) == len(predictions)
    assert rows[0] == ("q0", "Question 0?\nAnswer:", [-1.0, -0.5])
    assert rows[-1][0] == f"q{len(predictions) - 1}" and rows[SLICE_ROWS][0] == f"q{SLICE_ROWS}"
    # A slice that fails after the first went in: the first stays, the run is not finished, nothing else lands.
    Warehouse(db).start_run({**RUN, "run_id": "r2"})
    broken = Sliced(
        3 * SLICE_ROWS,
        lambda a, b: pd.DataFrame({"no_such_column": range(a, b)}) if a else predictions_frame(predictions[a:b]),
    )
    metrics = pd.DataFrame([{"category": "accuracy", "metric": "exact_match", "value": 1.0, "n": 1}])
    with pytest.raises(duckdb.Error):
        Warehouse(db).finish_run("r2", "succeeded", {"predictions": broken, "metrics": metrics}, {})
    with connect(db, read_only=True) as con:
        assert con.execute("select count(*) from predictions where run_id = 'r2'").fetchone() == (SLICE_ROWS,)
        assert con.execute("select count(*) from metrics where run_id = 'r2'").fetchone() == (0,)
        assert con.execute("select status from runs where run_id = 'r2'").fetchone() == ("running",)
    # The resumed run's write replaces the rows of its earlier try: no duplicate, no key clash.
    Warehouse(db).finish_run("r2", "succeeded", result_frames([], predictions, [], [], []), {})
    with connect(db, read_only=True) as con:
        assert con.execute("select count(*) from predictions where run_id = 'r2'").fetchone() == (len(predictions),)
        assert con.execute("select status from runs where run_id = 'r2'").fetchone() == ("succeeded",)


def test_interrupted_runs_are_reaped(db: Path) -> None:
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    Warehouse(db).start_run(RUN)
    with connect(db) as con:
        con.execute("update runs set pid = ?", [dead.pid])
        assert writer.reap_interrupted(con) == 1
        assert con.execute("select status from runs").fetchone()[0] == "failed"


def test_a_locked_warehouse_waits_then_names_the_file(db: Path) -> None:
    with connect(db):
        pass
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            textwrap.dedent(f"""
        import duckdb, sys, time
        con = duckdb.connect({str(db)!r})
        print("locked", flush=True)
        time.sleep(3)
    """),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert holder.stdout.readline().strip() == "locked"
    with (
        pytest.raises(WarehouseError, match=f"{db}: the warehouse is locked by another process"),
        connect(db, timeout=0.3),
    ):
        pass
    began = time.monotonic()
    with connect(db, timeout=30) as con:  # waits for the holder to exit, then writes
        con.execute("select 1")
    assert time.monotonic() - began > 0.5
    holder.wait()
    assert os.path.exists(db)


def test_a_cached_answer_keeps_its_error(db: Path) -> None:
    """A chat answer without an option letter is scored as no answer; from the cache it must be too."""
    from helmflow.tasks.metrics import to_prediction
    from helmflow.tasks.records import Completion, Request

    missed = Completion("r1", logprobs=[0.0, 0.0], continuation_tokens=[1, 1], text="A good question.")
    missed.error = "no option letter in the chat answer 'A good question.'"
    answered = Completion("r2", logprobs=[-9.0, 0.0], continuation_tokens=[1, 1], text="B")
    warehouse = Warehouse(db)
    warehouse.cache_answers("fp", {"k1": ("multiple_choice", missed), "k2": ("multiple_choice", answered)}, "run1")
    cached = warehouse.cached_answers("fp", ["k1", "k2"])
    assert (cached["k1"].error, cached["k2"].error) == (missed.error, None)
    request = Request("r1", "i1", "multiple_choice", "Q?\nA. x\nB. y\nAnswer:", (" A", " B"))
    assert to_prediction(request, cached["k1"]).predicted_index is None  # not option A
    assert to_prediction(request, cached["k2"]).predicted_index == 1


def test_letter_misses_cached_before_version_8_are_dropped(db: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """They were cached without their error, so the cache would have scored them as option A."""
    from helmflow.warehouse import db as schema

    every = schema.migrations()
    monkeypatch.setattr(schema, "migrations", lambda: [m for m in every if m[0] <= 7])
    with connect(db) as con:
        for fingerprint, key, logprobs in [
            ("http://h/v1#m@v1+chat(system:x)+mc-by-letter", "miss", [-100.0, -100.0]),
            ("http://h/v1#m@v1+chat(system:x)+mc-by-letter", "named", [-100.0, 0.0]),
            ("smollm2", "probabilities", [-100.0, -100.0]),  # a log-prob model's answer is never a miss
        ]:
            con.execute(
                "insert into inference_cache (model_fingerprint, request_key, kind, logprobs, created_at) "
                "values (?, ?, 'multiple_choice', ?, now())",
                [fingerprint, key, logprobs],
            )
    monkeypatch.setattr(schema, "migrations", lambda: every)
    with connect(db) as con:
        assert con.execute("select request_key from inference_cache order by 1").fetchall() == [
            ("named",),
            ("probabilities",),
        ]


def test_only_a_finished_run_is_rescored(db: Path) -> None:
    from helmflow.flows.pipeline import rescore

    warehouse = Warehouse(db)
    warehouse.start_run(RUN)
    warehouse.fail_run("r1", "the model server went away")
    with pytest.raises(LookupError, match=r"run r1 is failed: only a finished run's stored answers can be re-scored"):
        rescore(db, "r1")
    assert counts(db)["metrics"] == 0


def test_a_resumed_run_keeps_its_data_and_records_the_code_that_finishes_it(db: Path) -> None:
    warehouse = Warehouse(db)
    warehouse.start_run({**RUN, "model_fingerprint": "fp", "dataset_fingerprint": "d1", "package_versions": "old"})
    warehouse.fail_run("r1", "killed")
    with pytest.raises(LookupError, match=r"run r1 was made on data with fingerprint d1; its data now has d2"):
        warehouse.restart_run("r1", "fp", None, "d2")
    with pytest.raises(LookupError, match=r"run r1 was made with model fp, not fp2: start a new run"):
        warehouse.restart_run("r1", "fp2", None, "d1")
    warehouse.restart_run("r1", "fp", "flow-2", "d1", {"package_versions": "new", "metrics_code_version": "9"})
    with connect(db, read_only=True) as con:
        assert con.execute(
            "select status, error, finished_at, flow_run_id, package_versions, metrics_code_version, "
            "dataset_fingerprint from runs"
        ).fetchall() == [("running", None, None, "flow-2", "new", "9", "d1")]


def test_a_rescored_runs_predictions_carry_its_newest_stats(tmp_path: Path) -> None:
    """What the lm-eval comparison reads: each prediction with its accuracy in the run's newest metrics version."""
    from helmflow.tasks.records import Stat
    from tests.test_merge import record_run

    db = tmp_path / "w.duckdb"
    record_run(db, "r", "m", "s", [0, 1])  # i0 right, i1 wrong
    warehouse = Warehouse(db)
    assert sorted((p["instance_id"], p["acc"]) for p in warehouse.scored_predictions("r")) == [("i0", 1.0), ("i1", 0.0)]
    flipped = [Stat("i0", "accuracy", "exact_match", 0.0), Stat("i1", "accuracy", "exact_match", 1.0)]
    warehouse.add_metrics_version("r", flipped, [])
    assert sorted((p["instance_id"], p["acc"]) for p in warehouse.scored_predictions("r")) == [("i0", 0.0), ("i1", 1.0)]
