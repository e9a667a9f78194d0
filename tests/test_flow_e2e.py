"""The real flow on the real embedded model, into a temporary DuckDB file."""

import json
import math
from pathlib import Path

import pytest

from helmflow.flows.cli import main
from helmflow.specs.library import apply_suite_entry, find_scenario
from helmflow.specs.loader import spec_hash
from helmflow.tasks.adapt import build_requests
from helmflow.tasks.data import load_instances, select
from helmflow.tasks.metrics.calibration import ece, option_probabilities
from helmflow.warehouse.db import connect
from tests.conftest import TINY_SUITE, TinyRuns, write

# One worker runs the whole module (its fixtures are module- or session-scoped).
pytestmark = [pytest.mark.model, pytest.mark.xdist_group("tiny")]

SUITE = TINY_SUITE  # shared with the session fixture tiny_runs (conftest.py)


@pytest.fixture(scope="module")
def finished_run(tiny_runs: TinyRuns) -> tuple[Path, int]:
    """The session's tiny suite (SUITE), run once through the CLI (which returned 0) into a new warehouse."""
    return tiny_runs.first, 0


def rows(db: Path, sql: str) -> list[tuple]:
    with connect(db, read_only=True) as con:
        return con.execute(sql).fetchall()


def test_run_succeeds_with_its_provenance(finished_run: tuple[Path, int]) -> None:
    db, code = finished_run
    assert code == 0
    spec = apply_suite_entry(
        find_scenario("mmlu"), groups=["abstract_algebra", "anatomy"], max_instances=6, num_train=0
    )
    [(suite, status, hashed, fingerprint, seed, n, flow_run, versions)] = rows(
        db,
        "select suite, status, spec_hash, model_fingerprint, seed, num_instances, flow_run_id, package_versions "
        "from runs",
    )
    assert (suite, status, hashed, seed, n) == ("tiny", "succeeded", spec_hash(spec), 3, 6)
    assert fingerprint.startswith("gguf-sha256:")
    assert len(flow_run) == 36  # Prefect's flow-run UUID
    assert json.loads(versions)["torch"].startswith("2.13.0")


def test_stored_instances_and_prompts_are_the_seeded_selection(finished_run: tuple[Path, int]) -> None:
    db, _ = finished_run
    spec = find_scenario("mmlu")
    everything, _ = load_instances(spec)
    chosen = select(everything, ["abstract_algebra", "anatomy"], 6, seed=3)
    assert rows(db, "select instance_id, gold_index from instances order by rowid") == [
        (i.id, i.gold_index) for i in chosen
    ]
    expected_prompts = {r.instance_id: r.prompt for r in build_requests(spec.adapter, chosen, [], 3)}
    stored = dict(rows(db, "select instance_id, prompt from predictions where perturbation = ''"))
    assert stored == expected_prompts


def test_predictions_are_argmax_of_stored_logprobs(finished_run: tuple[Path, int]) -> None:
    db, _ = finished_run
    for logprobs, index, letter, confidence, latency, tokens in rows(
        db, "select choice_logprobs, predicted_index, completion, confidence, latency_s, prompt_tokens from predictions"
    ):
        assert len(logprobs) == 4 and all(lp < 0 for lp in logprobs)
        assert index == max(range(4), key=lambda k: logprobs[k])
        assert letter == "ABCD"[index]
        assert confidence == pytest.approx(option_probabilities(logprobs)[index], abs=1e-12)
        assert latency > 0 and tokens > 20


def test_metrics_equal_what_the_stored_rows_give(finished_run: tuple[Path, int]) -> None:
    db, _ = finished_run
    stats = rows(
        db,
        "select p.confidence, s.value from predictions p join instance_stats s using (run_id, "
        "instance_id, perturbation) where s.metric = 'exact_match' and perturbation = '' order by p.instance_id",
    )
    metrics = dict(rows(db, "select metric, value from metrics where group_name = ''"))
    assert metrics["exact_match"] == pytest.approx(sum(v for _, v in stats) / 6, abs=1e-12)
    assert metrics["ece_10_bin"] == pytest.approx(ece([c for c, _ in stats], [int(v) for _, v in stats], 10))
    runtimes = [r for (r,) in rows(db, "select latency_s from predictions where perturbation = ''")]
    assert metrics["inference_runtime"] == pytest.approx(sum(runtimes) / 6)
    assert math.isclose(metrics["instances_per_second"], 6 / sum(runtimes))
    by_group = rows(
        db, "select group_name, n from metrics where metric = 'exact_match' and group_name != '' order by 1"
    )
    assert [g for g, _ in by_group] == ["abstract_algebra", "anatomy"] and sum(n for _, n in by_group) == 6


def test_every_expectation_is_stored_and_passed(finished_run: tuple[Path, int]) -> None:
    db, _ = finished_run
    stored = rows(db, "select stage, count(*), bool_and(success) from validations group by 1 order by 1")
    # instances: 6, the null gold check included; predictions: 5, plus the two finiteness checks of the
    # hardening issue (log-probs, confidence)
    assert stored == [("instances", 6, True), ("predictions", 7, True), ("stats", 6, True)]


def test_cli_query_and_runs_read_the_warehouse(finished_run: tuple[Path, int], capsys: pytest.CaptureFixture) -> None:
    db, _ = finished_run
    capsys.readouterr()
    assert main(["--db", str(db), "query", "select scenario, status, num_instances from runs", "--format", "csv"]) == 0
    assert capsys.readouterr().out == "scenario,status,num_instances\nmmlu,succeeded,6\n"
    assert main(["--db", str(db), "runs"]) == 0
    assert "succeeded" in capsys.readouterr().out
    assert main(["--db", str(db), "query", "delete from runs"]) == 2  # read-only
    assert rows(db, "select count(*) from runs") == [(1,)]


@pytest.mark.slow  # make test-slow: make test's margin (the model, several seconds)
def test_batched_scores_equal_one_at_a_time_scores() -> None:
    import torch

    from helmflow.specs.library import find_model
    from helmflow.tasks.models import load_model

    model = load_model(find_model("smollm2-135m-instruct"))
    spec = find_scenario("mmlu")
    chosen = select(load_instances(spec)[0], ["anatomy"], 5, seed=0)
    requests = build_requests(spec.adapter, chosen, [], 0)
    batched = model.loglikelihood(requests)
    for request, completion in zip(requests, batched, strict=True):
        ids = model.tokenizer(request.prompt, add_special_tokens=False, return_tensors="pt").input_ids
        with torch.inference_mode():
            logprobs = torch.log_softmax(model.model(ids).logits[0, -1].float(), dim=-1)
        letters = [model.tokenizer(c, add_special_tokens=False).input_ids[0] for c in request.continuations]
        assert completion.logprobs == pytest.approx([float(logprobs[t]) for t in letters], abs=1e-4)


GENERATION = """
name: capitals
source:
  offline: {files: {test: capitals.jsonl}}
fields: {input: prompt, references: answers}
adapter:
  method: generation
  instructions: "Complete the sentence.\\n"
  input_suffix: ""
  output_prefix: ""
  max_tokens: 6
  stop: [".", "\\n"]
metrics: [accuracy, calibration, efficiency]
main_metric: quasi_exact_match
"""


def test_generation_scenario_runs_end_to_end(tmp_path: Path) -> None:
    data = [
        {"prompt": "The capital of France is", "answers": ["Paris"]},
        {"prompt": "The capital of Italy is", "answers": ["Rome", "Roma"]},
        {"prompt": "On a clear day the colour of the sky is", "answers": ["blue"]},
    ]
    write(tmp_path / "capitals.jsonl", "\n".join(json.dumps(r) for r in data))
    spec = write(tmp_path / "capitals.yaml", GENERATION)
    db = tmp_path / "gen.duckdb"
    assert main(["--db", str(db), "run", str(spec)]) == 0
    stored = rows(
        db,
        "select p.prompt, p.completion, p.output_tokens, p.confidence, s.value from predictions "
        "p join instance_stats s using (run_id, instance_id) where s.metric = "
        "'quasi_exact_match' order by p.instance_id",
    )
    assert stored[0][0] == "Complete the sentence.\nThe capital of France is"
    assert stored[0][1] == " Paris"  # greedy, cut at the stop sequence "."
    assert stored[0][4] == 1.0
    for _, completion, tokens, confidence, _ in stored:
        assert "\n" not in completion and 0 < tokens <= 6 and 0 < confidence <= 1
    [(value,)] = rows(db, "select value from metrics where metric = 'quasi_exact_match' and group_name = ''")
    assert value == pytest.approx(sum(r[4] for r in stored) / 3)


@pytest.mark.slow  # make test-slow: make test's margin (the model, several seconds)
def test_batched_generation_equals_one_at_a_time() -> None:
    from helmflow.specs.library import find_model
    from helmflow.tasks.adapt import Request
    from helmflow.tasks.models import load_model

    model = load_model(find_model("smollm2-135m-instruct"))
    prompts = ["The capital of France is", "Once upon a time, in a small village far away,", "1, 2, 3,"]
    requests = [
        Request(id=str(i), instance_id=str(i), kind="generation", prompt=p, max_tokens=8, stop=(".",))
        for i, p in enumerate(prompts)
    ]
    together = model.generate(requests)
    alone = [model.generate([r])[0] for r in requests]
    assert [c.text for c in together] == [c.text for c in alone]
    for c in together:
        assert "." not in c.text and len(c.logprobs) == c.output_tokens <= 8
        assert c.logprobs == pytest.approx(alone[int(c.request_id)].logprobs, abs=1e-3)
