"""Sampling (issue 27, item 3): num_samples sampled completions per generation request besides the greedy one,
each with a seed of its own (tasks/samples.py); the hf decode loop's draw (tasks/models/hf_generate.py); maj@k
and pass@k over the samples (tasks/metrics/sampling.py), which no other metric reads; the samples table."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
from pydantic import ValidationError

from helmflow.flows.inference import ModelIdentity, request_key
from helmflow.specs.schema import AdapterSpec, ScenarioSpec
from helmflow.tasks.extract import parse_steps
from helmflow.tasks.metrics import score, to_prediction
from helmflow.tasks.metrics.sampling import instance_values
from helmflow.tasks.models.openai import decoding
from helmflow.tasks.records import Completion, Instance, Prediction, Request
from helmflow.tasks.samples import expected_samples, sample_id, sample_seed, with_samples

GENERATION = {"method": "generation", "max_tokens": 8, "stop": ["\n"]}
IDENTITY = ModelIdentity("fp", "float32", 2048, 4)


def gen(request_id: str, perturbation: str = "") -> Request:
    instance = request_id.split("|")[0]
    return Request(
        request_id, instance, "generation", f"Q {instance}\nA:", max_tokens=8, stop=("\n",), perturbation=perturbation
    )


# -- requests ------------------------------------------------------------------------------------------------


def test_each_unperturbed_generation_request_gets_num_samples_seeded_copies() -> None:
    adapter = AdapterSpec(**GENERATION, num_samples=2, temperature=0.5, top_p=0.9)
    requests = [gen("a"), gen("a|typos", "typos"), gen("b")]
    out = with_samples(requests, adapter, run_seed=7)
    assert out[:3] == requests  # the greedy requests first, unchanged
    sampled = out[3:]
    assert [r.id for r in sampled] == ["a#sample1", "a#sample2", "b#sample1", "b#sample2"]
    assert [(r.instance_id, r.sample, r.temperature, r.top_p) for r in sampled] == [
        ("a", 1, 0.5, 0.9),
        ("a", 2, 0.5, 0.9),
        ("b", 1, 0.5, 0.9),
        ("b", 2, 0.5, 0.9),
    ]
    assert all(r.prompt == f"Q {r.instance_id}\nA:" and r.max_tokens == 8 and r.stop == ("\n",) for r in sampled)
    assert [r.seed for r in sampled] == [
        sample_seed(7, "a", 1),
        sample_seed(7, "a", 2),
        sample_seed(7, "b", 1),
        sample_seed(7, "b", 2),
    ]
    assert expected_samples(adapter, 2) == len(sampled) == 4
    plain = AdapterSpec(**GENERATION)
    assert with_samples(requests, plain, 7) is requests and expected_samples(plain, 2) == 0


def test_a_samples_seed_is_a_hash_of_the_run_seed_the_request_and_the_index() -> None:
    digest = hashlib.sha256(b"3|q1|2").digest()
    assert sample_seed(3, "q1", 2) == int.from_bytes(digest[:8], "big") % 2**31
    seeds = {sample_seed(s, r, k) for s in (0, 1) for r in ("q1", "q2") for k in (1, 2)}
    assert len(seeds) == 8 and all(0 <= s < 2**31 for s in seeds)  # no two samples share a stream
    assert sample_id("q1|x", 3) == "q1|x#sample3"


def test_greedy_keys_stay_as_they_were_and_a_samples_key_names_its_draw() -> None:
    request = gen("a")
    # The key every greedy answer in a warehouse's inference cache was stored under before sampling existed.
    before = {
        "kind": "generation",
        "prompt": "Q a\nA:",
        "continuations": [],
        "max_tokens": 8,
        "stop": ["\n"],
        "decoding": "greedy",
        "dtype": "float32",
        "max_length": 2048,
    }
    assert request_key(request, IDENTITY) == hashlib.sha256(json.dumps(before, sort_keys=True).encode()).hexdigest()
    [sampled] = with_samples([request], AdapterSpec(**GENERATION, num_samples=1, temperature=0.7), 0)[1:]
    after = {**before, "decoding": "sample", "temperature": 0.7, "top_p": 1.0, "seed": sampled.seed}
    assert request_key(sampled, IDENTITY) == hashlib.sha256(json.dumps(after, sort_keys=True).encode()).hexdigest()
    from dataclasses import replace

    variants = [replace(sampled, seed=1), replace(sampled, temperature=0.2), replace(sampled, top_p=0.5)]
    keys = {request_key(r, IDENTITY) for r in [request, sampled, *variants]}
    assert len(keys) == 5


def test_the_spec_keys_and_their_checks() -> None:
    assert "num_samples" not in AdapterSpec(**GENERATION).model_dump()  # old specs keep their hash
    adapter = AdapterSpec(**GENERATION, num_samples=4)
    assert (adapter.num_samples, adapter.temperature, adapter.top_p) == (4, 1.0, 1.0)
    assert adapter.model_dump(include={"num_samples", "temperature", "top_p"}) == {"num_samples": 4}
    with pytest.raises(ValidationError, match="num_samples needs method generation"):
        AdapterSpec(num_samples=2)
    with pytest.raises(ValidationError, match="temperature and top_p apply to sampled completions only"):
        AdapterSpec(**GENERATION, temperature=0.2)
    for bad in ({"temperature": 0}, {"top_p": 0}, {"top_p": 1.5}, {"num_samples": -1}):
        with pytest.raises(ValidationError):
            AdapterSpec(**GENERATION, **{"num_samples": 2, **bad})


def test_an_openai_body_decodes_greedily_unless_the_request_is_a_sample() -> None:
    assert decoding(gen("a")) == {"temperature": 0}
    [sampled] = with_samples([gen("a")], AdapterSpec(**GENERATION, num_samples=1, temperature=0.2, top_p=0.95), 5)[1:]
    assert decoding(sampled) == {"temperature": 0.2, "top_p": 0.95, "seed": sample_seed(5, "a", 1)}


# -- the draw ------------------------------------------------------------------------------------------------


def test_a_token_is_drawn_from_the_temperature_scaled_nucleus_by_the_rows_number() -> None:
    import torch

    from helmflow.tasks.models.hf_generate import sample_tokens

    logits = torch.log(torch.tensor([[0.5, 0.3, 0.2]]))

    def draw(u: float, temperature: float = 1.0, top_p: float = 1.0) -> int:
        return int(sample_tokens(torch, logits, [temperature], [top_p], [u])[0])

    # Cumulative 0.5, 0.8, 1.0: the first token whose cumulative mass passes u.
    assert [draw(0.0), draw(0.49), draw(0.5), draw(0.79), draw(0.81), draw(0.999)] == [0, 0, 1, 1, 2, 2]
    # top_p 0.6: tokens 0 (nothing before it) and 1 (0.5 before it < 0.6), renormalised to 0.625 and 0.375.
    assert [draw(0.6, top_p=0.6), draw(0.63, top_p=0.6), draw(0.99, top_p=0.6)] == [0, 1, 1]
    assert draw(0.99, top_p=0.5) == 0  # 0.5 before token 1 is not < 0.5: the top token alone
    # Temperature 0.5 squares the probabilities: 0.25, 0.09, 0.04 over 0.38, cumulative 0.658, 0.895, 1.
    assert [draw(0.65, 0.5), draw(0.66, 0.5), draw(0.89, 0.5), draw(0.9, 0.5)] == [0, 1, 1, 2]
    # Equal probabilities keep the vocabulary's order.
    assert [int(t) for t in sample_tokens(torch, torch.zeros((2, 2)), [1.0, 1.0], [1.0, 1.0], [0.4, 0.6])] == [0, 1]


def test_greedy_rows_take_the_argmax_and_sampled_rows_their_own_streams_number() -> None:
    import random

    import torch

    from helmflow.tasks.models.hf_generate import _Row, next_tokens

    logits = torch.log(torch.tensor([[0.1, 0.2, 0.7], [0.5, 0.3, 0.2], [0.5, 0.3, 0.2]]))
    [sampled] = with_samples([gen("a")], AdapterSpec(**GENERATION, num_samples=1), 0)[1:]
    rows = [_Row(gen("g"), [1]), _Row(sampled, [1]), _Row(sampled, [1])]
    assert rows[0].stream is None and rows[1].stream is not None
    first = random.Random(sampled.seed).random()
    expected = 0 if first < 0.5 else 1 if first < 0.8 else 2
    assert next_tokens(torch, logits, rows) == [2, expected, expected]  # both copies of the sample draw alike


# -- metrics -------------------------------------------------------------------------------------------------


def scenario(num_samples: int) -> ScenarioSpec:
    return ScenarioSpec(
        name="sums",
        source={"offline": {"files": {"test": "sums.jsonl"}}},
        adapter={**GENERATION, "num_samples": num_samples, "temperature": 0.7},
        answer_extraction=[{"function": "regex", "regex_pattern": r"The answer is (\d+)"}, {"function": "take_first"}],
        metrics=["accuracy", "calibration"],
    )


INSTANCES = [
    Instance(i, f"question {i}", "test", references=(gold,)) for i, gold in (("a", "18"), ("b", "5"), ("c", "7"))
]
GREEDY = {"a": "18", "b": "4", "c": "7"}
# Each instance's 4 sampled answers, in sample order.
SAMPLED = {"a": ["18", "17", "18", "20"], "b": ["4", "4", "5", "6"], "c": ["1", "2", "3", "1"]}


def predictions(spec: ScenarioSpec) -> list[Prediction]:
    requests = [gen(i.id) for i in INSTANCES]
    steps = parse_steps(spec.answer_extraction)
    texts = {r.id: f"So. The answer is {GREEDY[r.id]}." for r in requests}
    for request in with_samples(requests, spec.adapter, 0)[len(requests) :]:
        texts[request.id] = f"Hmm. The answer is {SAMPLED[request.instance_id][request.sample - 1]}."
        requests.append(request)
    out = []
    for r in requests:
        completion = Completion(r.id, logprobs=[-0.1, -0.2], text=texts[r.id], generated_tokens=2, latency_s=0.1)
        out.append(to_prediction(r, completion, steps))
    return out


def test_maj_at_k_and_pass_at_k_by_hand_and_the_greedy_pass_alone_feeds_the_rest() -> None:
    spec = scenario(4)
    stats, metrics = score(spec, INSTANCES, predictions(spec))
    by_instance = {(s.instance_id, s.metric): s.value for s in stats}
    # a: 18 twice of 4 (maj 18, right); c = 2: pass@1 = 2/4, pass@4 = 1 (only 2 wrong, fewer than 4).
    # b: 4 twice (maj 4, wrong); c = 1: pass@1 = 1/4, pass@4 = 1 - C(3,4)/C(4,4) = 1.
    # c: 1 twice (maj 1, wrong); c = 0: both 0.
    assert {k: v for k, v in by_instance.items() if "@" in k[1]} == {
        ("a", "maj@4"): 1.0,
        ("a", "pass@1"): 0.5,
        ("a", "pass@4"): 1.0,
        ("b", "maj@4"): 0.0,
        ("b", "pass@1"): 0.25,
        ("b", "pass@4"): 1.0,
        ("c", "maj@4"): 0.0,
        ("c", "pass@1"): 0.0,
        ("c", "pass@4"): 0.0,
    }
    run = {m.metric: (m.value, m.n) for m in metrics if not m.group}
    assert run["maj@4"] == (pytest.approx(1 / 3), 3)
    assert run["pass@1"] == (pytest.approx(0.25), 3)
    assert run["pass@4"] == (pytest.approx(2 / 3), 3)
    # The greedy answers 18, 4, 7 (right, wrong, right): the samples change no other metric.
    assert run["exact_match"] == (pytest.approx(2 / 3), 3)
    assert run["ece_1_bin"][1] == 3  # calibration pairs the 3 greedy answers only
    assert not any(m.headline for m in metrics if "@" in m.metric)
    greedy_only = score(spec, INSTANCES, [p for p in predictions(spec) if not p.request.sample])
    assert [m for m in greedy_only[1] if "@" not in m.metric] == [m for m in metrics if "@" not in m.metric]


def test_pass_at_k_with_more_samples_than_k_and_a_tied_vote() -> None:
    inst = Instance("x", "q", "test", references=("3",))
    # n = 5, c = 2: pass@1 = 1 - C(3,1)/C(5,1) = 2/5; pass@5 = 1. The vote 3, 4 (twice each) goes to the first
    # seen: 4.
    values = instance_values(inst, ["4", "3", "4", "3", "9"], "exact_match", 5)
    assert values == {"maj@5": 0.0, "pass@1": pytest.approx(0.4), "pass@5": 1.0}
    # n = 3, c = 1, k = 3 is n: pass@3 = 1 - C(2,3)/C(3,3) = 1; and one sample alone is pass@1 only.
    assert instance_values(inst, ["3", "1", "2"], "exact_match", 3)["pass@3"] == 1.0
    assert instance_values(inst, ["3"], "exact_match", 1) == {"maj@1": 1.0, "pass@1": 1.0}
    # quasi_exact_match scores the voted answer after normalisation, and counts " 3." right.
    assert instance_values(inst, [" 3.", "3", "4"], "quasi_exact_match", 3)["pass@1"] == pytest.approx(2 / 3)
    assert instance_values(Instance("o", "q", "test"), ["a"], "exact_match", 1) == {}  # no reference: no value


def test_a_spec_naming_one_family_gets_only_it() -> None:
    spec = scenario(4).model_copy(update={"metrics": ["maj@k"]})
    stats, metrics = score(spec, INSTANCES, predictions(spec))
    assert {m.metric for m in metrics} == {"exact_match", "maj@4"}
    assert not [s for s in stats if s.metric.startswith("pass@")]


# -- the warehouse -------------------------------------------------------------------------------------------


def test_samples_are_stored_apart_and_read_back_for_rescoring(tmp_path: Path) -> None:
    from helmflow.flows.stages import stored_predictions
    from helmflow.warehouse.rows import result_frames
    from helmflow.warehouse.store import Warehouse

    spec = scenario(4)
    made = predictions(spec)
    stats, metrics = score(spec, INSTANCES, made)
    warehouse = Warehouse(tmp_path / "w.duckdb")
    row = {"run_id": "r", "scenario": "sums", "spec_hash": "h", "spec_json": spec.model_dump_json(), "model": "m"}
    warehouse.start_run({**row, "model_json": "{}", "seed": 0, "adapter_json": "{}"})
    warehouse.finish_run("r", "succeeded", result_frames(INSTANCES, made, stats, metrics, []), {})
    [(greedy,)] = warehouse.query("select count(*) from predictions").values.tolist()
    assert greedy == 3  # the greedy pass only: every reader of predictions sees what it saw before
    stored = warehouse.query(
        "select request_id, sample, seed, temperature, top_p, completion, raw_completion from samples order by rowid"
    ).values.tolist()
    assert [r[:2] for r in stored[:2]] == [["a#sample1", 1], ["a#sample2", 2]] and len(stored) == 12
    assert stored[0][2:] == [sample_seed(0, "a", 1), 0.7, 1.0, "18", "Hmm. The answer is 18."]
    run = warehouse.stored_run("r")
    again = stored_predictions(spec, run.instances, run.answers)
    assert [(p.request.id, p.request.sample, p.request.prompt, p.predicted_text) for p in again[3:5]] == [
        ("a#sample1", 1, "Q a\nA:", "18"),
        ("a#sample2", 2, "Q a\nA:", "17"),
    ]
    assert score(spec, run.instances, again)[1] == metrics


# -- on the model --------------------------------------------------------------------------------------------

PROMPTS = {"tale": "Once upon a time,", "food": "My favourite food is"}


@pytest.fixture(scope="module")
def local_model():  # -> HFModel
    from helmflow.specs.schema import ModelSpec
    from helmflow.tasks.models.embedded import converted_dir
    from helmflow.tasks.models.hf import HFModel

    # batch_size 2: a group's prompts are prefilled in several batches, then decoded together.
    spec = ModelSpec(name="local", backend="hf", path=str(converted_dir()[0]), batch_size=2)
    return HFModel(spec, fingerprint="test")


def sampled_requests(run_seed: int) -> list[Request]:
    greedy = [Request(k, k, "generation", p, max_tokens=8, stop=("\n",)) for k, p in PROMPTS.items()]
    return with_samples(greedy, AdapterSpec(**GENERATION, num_samples=2), run_seed)


@pytest.mark.model
@pytest.mark.slow  # make test-slow: tens of seconds of the model on 2 cores
def test_a_sample_is_the_same_on_every_call_and_in_any_batch(local_model) -> None:
    requests = sampled_requests(0)  # 2 greedy, then 2 samples of each
    together = {c.request_id: c for c in local_model.generate(requests)}
    reordered = {c.request_id: c for c in local_model.generate(requests[::-1])}
    alone = {r.id: local_model.generate([r])[0] for r in requests[2:4]}
    assert {k: c.text for k, c in together.items()} == {k: c.text for k, c in reordered.items()}
    for request_id, completion in alone.items():
        assert completion.text == together[request_id].text
        assert completion.logprobs == pytest.approx(together[request_id].logprobs, abs=1e-4)
    texts = {k: c.text for k, c in together.items()}
    # At temperature 1 the draws wander off the greedy answer, and each sample its own way.
    assert len({texts["tale"], texts["tale#sample1"], texts["tale#sample2"]}) == 3
    other = {c.request_id: c.text for c in local_model.generate(sampled_requests(1)[2:])}
    assert all(other[k] != texts[k] for k in other)  # another run seed, other samples


@pytest.mark.model
@pytest.mark.slow  # make test-slow: tens of seconds of the model on 2 cores
def test_transformers_generate_samples_each_request_alone_with_its_seed(local_model) -> None:
    from helmflow.tasks.models.hf_generate import transformers_generate

    requests = [sampled_requests(0)[i] for i in (0, 2, 3)]  # "tale", greedy and its 2 samples
    first = transformers_generate(local_model, requests)
    assert transformers_generate(local_model, requests) == first
    assert transformers_generate(local_model, requests[2:])[0][0] == first[2][0]
    assert len({g[0] for g in first}) == 3
    assert all(0 < len(g[1]) <= 8 and all(lp <= 0 for lp in g[1]) for g in first)  # the model's own log-probs


SAMPLED_SCENARIO = """
name: sampled_capitals
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
  num_samples: 3
  temperature: 0.8
metrics: [accuracy, calibration]
main_metric: quasi_exact_match
"""


SAMPLED_METRICS = (
    "select metric, value from metrics where run_id = ? and group_name = '' "
    "and (metric like 'maj@%' or metric like 'pass@%')"
)


@pytest.mark.slow
def test_two_runs_with_the_same_seed_store_identical_samples(tmp_path: Path) -> None:
    from helmflow.flows.cli import main
    from helmflow.flows.pipeline import rescore
    from helmflow.warehouse.db import connect

    data = [
        {"prompt": "The capital of France is", "answers": ["Paris"]},
        {"prompt": "The capital of Italy is", "answers": ["Rome"]},
    ]
    (tmp_path / "capitals.jsonl").write_text("\n".join(json.dumps(r) for r in data))
    (tmp_path / "sampled.yaml").write_text(SAMPLED_SCENARIO)
    db = tmp_path / "runs.duckdb"
    spec = str(tmp_path / "sampled.yaml")
    # The second run asks the model again (--no-cache): its samples are drawn anew, from the same seeds.
    assert main(["--db", str(db), "run", spec, "--seed", "5"]) == 0
    assert main(["--db", str(db), "run", spec, "--seed", "5", "--no-cache"]) == 0
    with connect(db, read_only=True) as con:
        first, second = (r for (r,) in con.execute("select run_id from runs order by started_at").fetchall())
        columns = "request_id, instance_id, sample, seed, temperature, top_p, completion, output_logprobs, error"

        def samples(run_id: str) -> list[tuple]:
            return con.execute(
                f"select {columns} from samples where run_id = ? order by request_id", [run_id]
            ).fetchall()

        stored = samples(first)
        assert len(stored) == 6 and stored == samples(second)
        assert [r[:6] for r in stored[:3]] == [
            ("test-0#sample1", "test-0", 1, sample_seed(5, "test-0", 1), 0.8, 1.0),
            ("test-0#sample2", "test-0", 2, sample_seed(5, "test-0", 2), 0.8, 1.0),
            ("test-0#sample3", "test-0", 3, sample_seed(5, "test-0", 3), 0.8, 1.0),
        ]
        [(greedy,)] = con.execute("select count(*) from predictions where run_id = ?", [first]).fetchall()
        assert greedy == 2
        metrics = dict(con.execute(f"{SAMPLED_METRICS} and metrics_version = 1", [first]).fetchall())
    assert set(metrics) == {"maj@3", "pass@1", "pass@3"}
    version = rescore(db, first)  # from the stored samples: the same values
    with connect(db, read_only=True) as con:
        again = dict(con.execute(f"{SAMPLED_METRICS} and metrics_version = ?", [first, version]).fetchall())
    assert again == metrics
