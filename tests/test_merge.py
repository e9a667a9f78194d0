"""`helmflow merge`: runs from warehouses made on other machines join one history, whole and once."""

from __future__ import annotations

import gzip
import hashlib
import shutil
from pathlib import Path

import pytest

from helmflow.flows.cli import main
from helmflow.tasks.records import Completion, Instance, Metric, Prediction, Request, Stat, ValidationResult
from helmflow.warehouse.db import WarehouseError, connect
from helmflow.warehouse.rows import result_frames
from helmflow.warehouse.runs import RESULT_TABLES
from helmflow.warehouse.store import Warehouse

TABLES = ("runs", *RESULT_TABLES, "inference_cache")
FIXTURE = Path(__file__).parent / "fixtures" / "warehouse_v1.duckdb.gz"


def record_run(
    db: Path,
    run_id: str,
    model: str,
    scenario: str,
    answers: list[int],
    status: str = "succeeded",
    resumed: bool = False,
) -> None:
    """A run as the flow writes it: its row, then every result table in one transaction, and cached answers.
    `resumed`: the run is there, failed, and finishes now (what `helmflow run --resume` writes)."""
    warehouse = Warehouse(db)
    if not resumed:
        warehouse.start_run(
            {
                "run_id": run_id,
                "scenario": scenario,
                "spec_hash": f"spec-{scenario}",
                "spec_json": "{}",
                "model": model,
                "model_fingerprint": f"fp-{model}",
                "model_json": "{}",
                "seed": 0,
                "adapter_json": "{}",
                "num_instances": len(answers),
            }
        )
    instances = [Instance(f"i{k}", f"question {k}", "test", ("yes", "no"), 0) for k in range(len(answers))]
    predictions = []
    for instance, answer in zip(instances, answers, strict=True):
        request = Request(f"{instance.id}:", instance.id, "multiple_choice", instance.input, (" A", " B"))
        logprobs = [-0.1, -2.0] if answer == 0 else [-2.0, -0.1]
        completion = Completion(request.id, logprobs, [1, 1], prompt_tokens=5, latency_s=0.01, batch_size=2)
        predictions.append(Prediction(request, completion, answer, "AB"[answer], 0.8))
    correct = [float(a == 0) for a in answers]
    stats = [Stat(i.id, "accuracy", "exact_match", c) for i, c in zip(instances, correct, strict=True)]
    accuracy = sum(correct) / len(correct)
    metrics = [
        Metric("accuracy", "exact_match", accuracy, len(answers), headline=True),
        Metric("calibration", "ece_10_bin", abs(0.8 - accuracy), len(answers), lower_is_better=True, headline=True),
    ]
    checks = [ValidationResult("predictions", "expect_column_values_to_not_be_null", "{}", True, len(answers), 0, [])]
    if status in ("running", "failed"):  # still going on its machine, or stopped: cached answers, no results
        warehouse.cache_answers(f"fp-{model}", {f"{run_id}-k0": ("multiple_choice", predictions[0].completion)}, run_id)
        if status == "failed":
            warehouse.fail_run(run_id, "killed")
        return
    if resumed:
        warehouse.restart_run(run_id, f"fp-{model}", None)
    tables = result_frames(instances, predictions, stats, metrics, checks)
    warehouse.finish_run(run_id, status, tables, {"wall_seconds": 1.0, "model_calls": len(answers)})
    cache = {f"{scenario}-{model}-k{k}": ("multiple_choice", p.completion) for k, p in enumerate(predictions)}
    warehouse.cache_answers(f"fp-{model}", cache, run_id)


RUNS = {  # run id: (model, scenario, answers); machine A ran model-a, machine B model-b
    "a-s1": ("model-a", "s1", [0, 0, 1, 0]),
    "a-s2": ("model-a", "s2", [1, 1, 0]),
    "b-s1": ("model-b", "s1", [0, 1, 1, 1]),
    "b-s2": ("model-b", "s2", [0, 0, 0]),
}


def machine(tmp_path: Path, name: str, prefix: str) -> Path:
    db = tmp_path / f"{name}.duckdb"
    for run_id, (model, scenario, answers) in RUNS.items():
        if run_id.startswith(prefix):
            record_run(db, run_id, model, scenario, answers)
    return db


def contents(db: Path) -> dict[str, list[tuple]]:
    """Every row of every run table and the cache, without the columns that say when they were written."""
    with connect(db, read_only=True) as con:
        out = {}
        for table in TABLES:
            excluded = {"runs": "exclude (started_at, finished_at, pid)", "inference_cache": "exclude (created_at)"}
            out[table] = con.execute(f"select * {excluded.get(table, '')} from {table} order by all").fetchall()
    return out


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_merged_history_equals_one_warehouse_and_merging_again_adds_nothing(tmp_path: Path) -> None:
    a, b = machine(tmp_path, "a", "a-"), machine(tmp_path, "b", "b-")
    reference = machine(tmp_path, "both", "")  # both machines' runs written into one warehouse directly
    # With the scenarios named: Warehouse.leaderboard() without a filter returns nothing (reads.py passes
    # `scenarios is None`, a boolean, where its SQL tests for null); the lead has the one-line fix.
    scenarios = ["s1", "s2"]
    assert Warehouse(a).leaderboard(scenarios).empty  # one model alone wins nothing
    b_before = digest(b)

    [report] = Warehouse(a).merge([b])
    assert report.runs_added == ["b-s1", "b-s2"] and report.runs_present == 0 and report.runs_skipped == []
    assert report.rows_added == {
        "instances": 7,
        "predictions": 7,
        "samples": 0,
        "instance_stats": 7,
        "metrics": 4,
        "validations": 2,
    }
    assert report.cache_added == 7
    board = Warehouse(a).leaderboard(scenarios)
    assert len(board) == 6
    assert board.to_dict("records") == Warehouse(reference).leaderboard(scenarios).to_dict("records")
    overall = {r["model"]: r["mean_win_rate"] for r in board.to_dict("records") if r["category"] == "overall"}
    assert overall == {"model-a": 0.5, "model-b": 0.5}  # a wins s1 accuracy, b wins s2; calibration likewise
    assert contents(a) == contents(reference)
    # The rows of a run come back in the order they were written (what re-scoring reads).
    assert Warehouse(a).stored_run("b-s1") == Warehouse(b).stored_run("b-s1")
    assert digest(b) == b_before  # the source is only read

    [again] = Warehouse(a).merge([b])
    assert again.runs_added == [] and again.runs_present == 2 and again.cache_added == 0
    assert set(again.rows_added.values()) == {0}
    assert contents(a) == contents(reference)


def test_several_sources_at_once_into_a_new_warehouse(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    a, b = machine(tmp_path, "a", "a-"), machine(tmp_path, "b", "b-")
    central = tmp_path / "central.duckdb"
    assert main(["--db", str(central), "merge", str(a), str(b)]) == 0
    out = capsys.readouterr().out
    assert f"{a}: 2 run(s) added (7 instances, 7 predictions, 7 instance_stats, 4 metrics, 2 validations)" in out
    assert "0 already here, 7 inference cache entries added" in out
    assert contents(central) == contents(machine(tmp_path, "both", ""))
    assert main(["--db", str(central), "merge", str(a), str(b)]) == 0
    assert f"{b}: 0 run(s) added, 2 already here, 0 inference cache entries added" in capsys.readouterr().out


def test_an_older_warehouse_is_read_through_the_migrations_in_a_copy(tmp_path: Path) -> None:
    old = tmp_path / "old.duckdb"
    old.write_bytes(gzip.decompress(FIXTURE.read_bytes()))
    before = digest(old)
    target = machine(tmp_path, "a", "a-")
    [report] = Warehouse(target).merge([old])
    assert report.migrated_from == 1 and report.runs_added == ["v1run"]
    with connect(target, read_only=True) as con:
        assert con.execute("select status, model_calls from runs where run_id = 'v1run'").fetchall() == [
            ("succeeded", None)
        ]
        assert con.execute("select metric, value from metrics where run_id = 'v1run'").fetchall() == [
            ("exact_match", 0.5)
        ]
        assert con.execute("select distinct metrics_version from instance_stats where run_id = 'v1run'").fetchall() in (
            [(1,)],
            [],
        )
    assert digest(old) == before  # never changed in place
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith("old")) == ["old.duckdb"]  # no .bak
    assert Warehouse(target).merge([old])[0].runs_present == 1


def test_a_newer_warehouse_is_refused(tmp_path: Path) -> None:
    newer = machine(tmp_path, "b", "b-")
    with connect(newer) as con:
        con.execute("insert into schema_version (version, name) values (99, 'future.sql')")
    target = machine(tmp_path, "a", "a-")
    before = contents(target)
    with pytest.raises(WarehouseError, match=r"b\.duckdb: schema version 99 is newer than this helmflow knows"):
        Warehouse(target).merge([newer])
    assert contents(target) == before


def test_one_run_id_with_two_contents_is_refused_and_nothing_lands(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    a = machine(tmp_path, "a", "a-")
    other = machine(tmp_path, "b", "b-")
    record_run(other, "a-s1", "model-a", "s1", [1, 1, 1, 1])  # the same id, other answers
    before = contents(a)
    with pytest.raises(WarehouseError, match=r"run id\(s\) a-s1 exist here with different content; nothing was"):
        Warehouse(a).merge([other])
    assert contents(a) == before  # not even the runs that would not conflict
    assert main(["--db", str(a), "merge", str(other)]) == 2
    assert "a-s1 exist here with different content" in capsys.readouterr().err

    # Identical but for one predicted answer's log-prob: still a different run.
    twin = tmp_path / "twin.duckdb"
    shutil.copy(a, twin)
    with connect(twin) as con:
        con.execute("update predictions set confidence = 0.7 where run_id = 'a-s2' and request_id = 'i0:'")
    with pytest.raises(WarehouseError, match=r"run id\(s\) a-s2 exist here"):
        Warehouse(a).merge([twin])


def test_running_runs_wait_for_a_later_merge_but_their_answers_come(tmp_path: Path) -> None:
    busy = machine(tmp_path, "b", "b-")
    record_run(busy, "b-s3", "model-b", "s3", [0, 1], status="running")
    target = tmp_path / "central.duckdb"
    [report] = Warehouse(target).merge([busy])
    assert report.runs_added == ["b-s1", "b-s2"] and report.runs_skipped == ["b-s3"]
    assert report.cache_added == 8  # the running run's cached answer included
    with connect(target, read_only=True) as con:
        assert con.execute("select count(*) from runs where run_id = 'b-s3'").fetchall() == [(0,)]


def test_bad_sources_are_named(tmp_path: Path) -> None:
    target = machine(tmp_path, "a", "a-")
    with pytest.raises(WarehouseError, match=r"nowhere\.duckdb: no warehouse file here"):
        Warehouse(target).merge([tmp_path / "nowhere.duckdb"])
    with pytest.raises(WarehouseError, match="this is the warehouse being merged into"):
        Warehouse(target).merge([target])
    import duckdb

    plain = tmp_path / "plain.duckdb"
    duckdb.connect(str(plain)).close()
    with pytest.raises(WarehouseError, match=r"plain\.duckdb: not a helmflow warehouse"):
        Warehouse(target).merge([plain])


def test_a_run_resumed_at_a_site_replaces_its_failed_copy(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    site = machine(tmp_path, "site", "a-")
    record_run(site, "a-s3", "model-a", "s3", [0, 1], status="failed")  # the night's run was killed
    central = tmp_path / "central.duckdb"
    assert Warehouse(central).merge([site])[0].runs_added == ["a-s1", "a-s2", "a-s3"]  # failed: finished too
    before_resume = tmp_path / "site-before-resume.duckdb"
    shutil.copy(site, before_resume)

    record_run(site, "a-s3", "model-a", "s3", [0, 1], resumed=True)  # the next refresh resumed it
    assert main(["--db", str(central), "merge", str(site)]) == 0
    assert "  replaced, failed here and resumed there since: a-s3" in capsys.readouterr().out
    assert contents(central) == contents(site)
    [again] = Warehouse(central).merge([site])
    assert again.runs_replaced == [] and again.runs_present == 3 and set(again.rows_added.values()) == {0}
    # The failed copy, from an older file of the site, is older than the run here: it changes nothing.
    [stale] = Warehouse(central).merge([before_resume])
    assert stale.runs_replaced == [] and stale.runs_present == 3 and contents(central) == contents(site)


def test_rescorings_travel_and_only_versions_both_sides_have_must_agree(tmp_path: Path) -> None:
    site = machine(tmp_path, "site", "a-")
    central = tmp_path / "central.duckdb"
    Warehouse(central).merge([site])
    stats, metrics = [Stat("i0", "accuracy", "exact_match", 1.0)], [Metric("accuracy", "exact_match", 0.75, 4)]
    assert Warehouse(site).add_metrics_version("a-s1", stats, metrics) == 2  # re-scored at the site

    [report] = Warehouse(central).merge([site])
    assert (
        report.rescorings_added == 1 and report.rows_added["metrics"] == 1 and report.rows_added["instance_stats"] == 1
    )
    assert contents(central) == contents(site)
    assert Warehouse(central).add_metrics_version("a-s2", stats, metrics) == 2  # and one at the centre
    assert Warehouse(central).merge([site])[0].rescorings_added == 0  # the site lacks it: nothing to refuse

    # Both re-scored a-s1 again, differently: one version, two contents.
    Warehouse(site).add_metrics_version("a-s1", stats, metrics)
    Warehouse(central).add_metrics_version("a-s1", stats, [Metric("accuracy", "exact_match", 0.5, 4)])
    with pytest.raises(WarehouseError, match=r"run id\(s\) a-s1 exist here with different content"):
        Warehouse(central).merge([site])


def test_an_older_source_brings_what_only_its_write_ahead_log_holds(tmp_path: Path) -> None:
    """A site's writer that was killed before closing its file leaves its last commits in the .wal."""
    import duckdb

    site = machine(tmp_path, "site", "a-")
    raw = duckdb.connect(str(site))
    # Back to schema version 7 (before 008 added the cache's error column, 009 the runs' load, 011 the
    # predictions' prompt fitting, 012 their raw completions, 013 the samples table, 014 and 015 the
    # contamination tables): a source from an older helmflow.
    raw.execute("drop table samples")
    for later in ("contamination_probe_metrics",):  # 014's and 015's objects (a view first: it reads a table)
        raw.execute(f"drop view {later}")
    for later in (
        "contamination_probe_stats",
        "contamination_probe_runs",
        "contamination_instances",
        "contamination_matches",
        "contamination_files",
        "contamination_checks",
    ):
        raw.execute(f"drop table {later}")
    raw.execute("alter table inference_cache drop column error")
    raw.execute("alter table runs drop column load_per_core")
    raw.execute("alter table predictions drop column num_train_instances")
    raw.execute("alter table predictions drop column prompt_truncated")
    raw.execute("alter table predictions drop column raw_completion")
    raw.execute("delete from schema_version where version > 7")
    raw.execute("checkpoint")
    raw.execute("pragma disable_checkpoint_on_shutdown")  # as a process that died before its checkpoint
    raw.execute("update runs set error = 'kept in the log' where run_id = 'a-s1'")
    raw.close()
    assert site.with_name("site.duckdb.wal").exists()
    central = tmp_path / "central.duckdb"
    [report] = Warehouse(central).merge([site])
    assert report.migrated_from == 7 and report.runs_added == ["a-s1", "a-s2"]
    with connect(central, read_only=True) as con:
        assert con.execute("select error from runs where run_id = 'a-s1'").fetchall() == [("kept in the log",)]


def test_a_source_being_written_is_attached_once_its_writer_is_done(tmp_path: Path) -> None:
    import subprocess
    import sys
    import textwrap
    import time

    import duckdb

    from helmflow.warehouse.merge import attach

    site = machine(tmp_path, "site", "a-")
    holder = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(f"""
            import duckdb, time
            con = duckdb.connect({str(site)!r})
            print("locked", flush=True)
            time.sleep(1.5)
        """)],
        stdout=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
    began = time.monotonic()
    con = duckdb.connect(str(tmp_path / "central.duckdb"))
    attach(con, site, "src", str(site))  # waits for the writer instead of failing at once
    assert time.monotonic() - began > 0.5
    assert con.execute("select count(*) from src.runs").fetchall() == [(2,)]
    holder.wait()
