"""`make bench-lmeval`'s bookkeeping: repeats keep each tool's fastest run and the weakest agreement; extracted
answers are compared as each tool stored them, and counted real only when no fallback."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from helmflow.tasks.records import Completion, Request
from tests.bench.bench_lmeval import SHAPES, Result, disagreements, table
from tests.bench.bench_lmeval_tasks import Agreement, HelmflowRun, compare, merged, worst


def test_the_weakest_agreement_of_two_repeats_is_kept_field_by_field() -> None:
    first = Agreement(same_prompts=10, max_abs_logprob_diff=2e-5, same_argmax=10)
    second = Agreement(same_prompts=9, max_abs_logprob_diff=7e-5, same_argmax=10)
    assert worst(first, second) == Agreement(9, 7e-5, 10, None)
    texts = worst(Agreement(5, same_text=5), Agreement(5, same_text=4))
    assert texts == Agreement(5, None, None, 4)
    answers = worst(
        Agreement(5, same_text=5, same_extracted=5, real_extracted=4),
        Agreement(5, same_text=5, same_extracted=4, real_extracted=5),
    )
    assert answers == Agreement(5, None, None, 5, 4, 4)


def test_each_tools_fastest_run_is_the_one_compared() -> None:
    result = Result("object_counting", 100, (24.0, 20.0), (30.0, 36.0), Agreement(100, same_text=100), 16)
    assert (result.helmflow_s, result.lm_eval_s) == (20.0, 30.0)
    _, line = table([result])
    # 100 / 20 = 5.00 i/s against 100 / 30 = 3.33 i/s: a ratio of 1.50.
    expected = ["object_counting", "100", "20.0", "5.00", "30.0", "3.33", "1.50", "100/100", "-", "-", "100/100"]
    assert line.split() == [*expected, "-", "-"]


EXTRACTION = [
    {"function": "regex", "regex_pattern": r"[-+]?\d+", "group_select": 0, "fallback": "[invalid]"},
    {"function": "take_first"},
]


def _run(raw: dict[str, str], extracted: dict[str, str]) -> HelmflowRun:
    requests = [Request(f"r{i}", i, "generation", f"Q: {i}?\nA:", max_tokens=8, stop=("\n",)) for i in raw]
    return HelmflowRun(
        run_id="run",
        kind="generation",
        requests=requests,
        answers={r.id: Completion(r.id, text=raw[r.instance_id]) for r in requests},
        golds={i: None for i in raw},
        references={i: ("1",) for i in raw},
        prompt_mismatches=[],
        cache_hits=0,
        batch_size=16,
        spec=SimpleNamespace(answer_extraction=EXTRACTION),  # type: ignore[arg-type]
        instances=[],
        exemplars={},
        extracted={f"r{i}": a for i, a in extracted.items()},
        raw_texts={f"r{i}": t for i, t in raw.items()},
    )


def _sample(i: str, text: str, answer: str) -> dict[str, Any]:
    arguments = {"gen_args_0": {"arg_0": f"Q: {i}?\nA:", "arg_1": {"until": ["\n"], "max_gen_toks": 8}}}
    return {"doc": {"id": i}, "arguments": arguments, "resps": [[text]], "filtered_resps": [answer]}


def test_extracted_answers_are_compared_as_stored_and_counted_real_without_the_fallback() -> None:
    raw = {"a": " 1084", "b": " x", "c": "", "d": " 12"}
    run = _run(raw, {"a": "1084", "b": "[invalid]", "c": "[invalid]", "d": "12"})
    same = {i: _sample(i, t, run.extracted[f"r{i}"]) for i, t in raw.items()}
    assert compare(run, same) == Agreement(4, None, None, 4, 4, 2)
    # lm-eval read another answer out of the same text: the texts agree, the answers do not, and the bench fails.
    other = {**same, "d": _sample("d", " 12", "13")}
    agreement = compare(run, other)
    assert agreement == Agreement(4, None, None, 4, 3, 2)  # real: no fallback on either side
    result = Result("bigbench_arithmetic", 4, (1.0,), (2.0,), agreement, 16)
    assert disagreements([result]) == ["extracted answers differ in: bigbench_arithmetic"]
    assert table([result])[1].split()[-2:] == ["3/4", "2/4"]
    assert disagreements([Result("x", 4, (1.0,), (2.0,), compare(run, same), 16)]) == []


def test_the_arithmetic_shape_is_generative_few_shot_with_a_number_extracted() -> None:
    [shape] = [s for s in SHAPES if s.name == "bigbench_arithmetic"]
    spec = shape.spec(limit=3)
    assert spec["adapter"]["method"] == "generation" and spec["adapter"]["num_train"] == 5
    assert (spec["adapter"]["max_tokens"], spec["adapter"]["stop"], spec["max_instances"]) == (8, ["\n"], 3)
    assert spec["answer_extraction"] == EXTRACTION and "hub" not in spec["source"]
    assert "choices" not in spec["fields"]


def test_overrides_merge_key_by_key_and_none_removes() -> None:
    base = {"a": {"b": 1, "c": 2}, "d": [1], "e": 3}
    assert merged(base, {"a": {"b": 5, "c": None}, "d": [2], "e": None}) == {"a": {"b": 5}, "d": [2]}
    assert base == {"a": {"b": 1, "c": 2}, "d": [1], "e": 3}
