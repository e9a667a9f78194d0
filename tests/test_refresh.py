"""Refresh decides stale or fresh, the inference cache never serves a stale answer, regressions alert."""

import dataclasses
import re
from pathlib import Path

import pandas as pd
import pytest

from helmflow.flows.inference import infer
from helmflow.flows.refresh import RefreshFailed, RegressionFound, refresh, resumable_run, staleness
from helmflow.specs.library import find_model
from helmflow.tasks.adapt import Request
from helmflow.tasks.models import load_model
from helmflow.warehouse import runs as writer
from helmflow.warehouse.db import connect
from helmflow.warehouse.store import Warehouse
from tests.conftest import write

pytestmark = pytest.mark.model

SUITE = """name: {name}
models: [smollm2-135m-instruct]
seed: 3
{extra}
scenarios:
  - scenario: mmlu
    groups: [abstract_algebra, anatomy]
    max_instances: {n}
    num_train: 0
"""


@pytest.fixture
def library(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("HELMFLOW_SPEC_PATH", str(tmp_path))
    return tmp_path


def test_staleness_reasons() -> None:
    now = writer.now()
    current = {"spec_hash": "s", "model_fingerprint": "m", "dataset_fingerprint": "d", "metrics_code_version": "v"}
    assert staleness(current, None, None) == ["no succeeded run yet"]
    assert staleness(current, {**current, "started_at": now}, 3600) == []
    changed = {**current, "model_fingerprint": "m2", "metrics_code_version": "v0", "started_at": now}
    assert staleness(current, changed, None) == ["model_fingerprint changed", "metrics_code_version changed"]
    old = {**current, "started_at": now - pd.Timedelta(hours=2).to_pytimedelta()}
    assert staleness(current, old, 3600)[0].startswith("older than max_age")


def test_a_crashed_run_is_resumed_only_when_it_asked_the_same_questions() -> None:
    current = {"spec_hash": "s", "model_fingerprint": "m", "dataset_fingerprint": "d", "metrics_code_version": "v"}
    crashed = {**current, "run_id": "r1", "seed": 3, "metrics_code_version": "v0"}  # older metric code: fine
    assert resumable_run(crashed, current, 3) == "r1"
    assert resumable_run(None, current, 3) is None
    assert resumable_run(crashed, current, 4) is None  # another seed: other exemplars and perturbations
    assert resumable_run({**crashed, "dataset_fingerprint": "d0"}, current, 3) is None  # the data changed
    assert resumable_run({**crashed, "spec_hash": "s0"}, current, 3) is None


@pytest.mark.slow  # make test-slow: several runs of the model
def test_cache_hits_only_the_same_model_and_decoding(tmp_path: Path) -> None:
    db = str(tmp_path / "cache.duckdb")
    model = load_model(find_model("smollm2-135m-instruct"))
    requests = [
        Request("a", "a", "multiple_choice", "The sky is", (" blue", " green")),
        Request("g", "g", "generation", "Once upon a time", max_tokens=4, stop=("\n",)),
    ]
    first = infer(model, requests, db, "run1")
    assert (first.model_calls, first.cache_hits) == (2, 0)
    again = infer(model, requests, db, "run2")
    assert (again.model_calls, again.cache_hits) == (0, 2)
    assert again.completions["a"].logprobs == first.completions["a"].logprobs
    assert again.completions["g"].text == first.completions["g"].text
    longer = [requests[0], dataclasses.replace(requests[1], max_tokens=5)]
    assert infer(model, longer, db, "run3").model_calls == 1  # a decoding parameter changed: a miss
    model.info = dataclasses.replace(model.info, fingerprint="another-revision")
    assert infer(model, requests, db, "run4").model_calls == 2  # another model: every request misses


@pytest.mark.slow  # three refresh flows on the model (about 20 s): make test-slow
def test_second_refresh_makes_no_model_call_and_an_edit_runs_again(library: Path) -> None:
    db = str(library / "r.duckdb")
    write(library / "suites" / "tiny.yaml", SUITE.format(name="tiny", extra="", n=8))
    first = refresh(["tiny"], None, db)
    second = refresh(["tiny"], None, db)
    assert len(first.ran) == 1 and first.fresh == []
    assert second.ran == [] and len(second.fresh) == 1
    write(library / "suites" / "tiny.yaml", SUITE.format(name="tiny", extra="", n=9))  # one more instance
    third = refresh(["tiny"], None, db)
    assert third.reasons["smollm2-135m-instruct × mmlu"][0] == "spec_hash changed"
    with connect(db, read_only=True) as con:
        calls = dict(con.execute("select run_id, model_calls from runs").fetchall())
        hits = dict(con.execute("select run_id, cache_hits from runs").fetchall())
    assert calls[first.ran[0]] > 0
    # The edit added one instance (and its perturbed variants): only those go to the model.
    assert 0 < calls[third.ran[0]] <= 6 and hits[third.ran[0]] >= calls[first.ran[0]] - 6


@pytest.mark.slow  # two refresh flows on the model (about 20 s): make test-slow
def test_a_regression_fails_the_refresh_and_notifies(library: Path) -> None:
    db = str(library / "r.duckdb")
    message_file = library / "message.txt"
    write(
        library / "suites" / "alert.yaml",
        SUITE.format(name="alert", extra=f'notify: {{command: "cat > {message_file}"}}', n=12),
    )
    baseline = refresh(["alert"], None, db)
    with connect(db) as con:
        # Replace that run by an earlier, perfect one on the same instances (its answers stay cached).
        ids = [i for (i,) in con.execute("select instance_id from instances where run_id = ?", baseline.ran).fetchall()]
        for table in ("runs", *writer.RESULT_TABLES):
            con.execute(f"delete from {table} where run_id = ?", baseline.ran)
    Warehouse(db).start_run(
        {
            "run_id": "perfect",
            "scenario": "mmlu",
            "spec_hash": "older",
            "spec_json": "{}",
            "model": "smollm2-135m-instruct",
            "model_json": "{}",
            "seed": 3,
            "adapter_json": "{}",
        },
    )
    stats = pd.DataFrame(
        [
            {
                "instance_id": i,
                "perturbation": "",
                "category": "accuracy",
                "metric": "exact_match",
                "value": 1.0,
                "metrics_version": 1,
            }
            for i in ids
        ]
    )
    Warehouse(db).finish_run("perfect", "succeeded", {"instance_stats": stats}, {})
    with pytest.raises(RegressionFound, match=r"smollm2-135m-instruct on mmlu: exact_match 1\.0000 ->"):
        refresh(["alert"], None, db)  # the latest run's spec hash is 'older': stale, so it runs (from the cache)
    assert message_file.read_text().startswith("helmflow refresh of suite alert: 1 regression(s)")


def test_a_run_that_fails_fails_the_refresh_and_notifies(
    library: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    from helmflow.flows import refresh as refreshing
    from helmflow.flows.cli import main
    from helmflow.flows.pipeline import RunOutcome

    db = str(library / "f.duckdb")
    message_file = library / "message.txt"
    write(
        library / "suites" / "night.yaml",
        SUITE.format(name="night", extra=f'notify: {{command: "cat > {message_file}"}}', n=4),
    )
    # The fault: the model server went away mid-run (the pipeline marks such a run failed and returns).
    failed = RunOutcome("r1", "mmlu", "smollm2-135m-instruct", "failed", "ModelServerError: no answer after 4 tries")
    monkeypatch.setattr(refreshing, "run_pairs", lambda *args, **kwargs: [failed])
    line = "smollm2-135m-instruct × mmlu: failed (run r1): ModelServerError: no answer after 4 tries"
    with pytest.raises(RefreshFailed, match=re.escape(line)):
        refresh(["night"], None, db)
    assert message_file.read_text() == f"helmflow refresh of suite night: 1 run(s) failed\n{line}"
    assert main(["--db", db, "refresh", "night"]) == 1
    assert f"failed run(s):\n{line}" in capsys.readouterr().err
