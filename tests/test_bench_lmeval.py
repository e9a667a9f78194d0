"""`make bench-lmeval`'s bookkeeping: repeats keep each tool's fastest run and the weakest agreement."""

from __future__ import annotations

from tests.bench.bench_lmeval import Result, table
from tests.bench.bench_lmeval_tasks import Agreement, worst


def test_the_weakest_agreement_of_two_repeats_is_kept_field_by_field() -> None:
    first = Agreement(same_prompts=10, max_abs_logprob_diff=2e-5, same_argmax=10)
    second = Agreement(same_prompts=9, max_abs_logprob_diff=7e-5, same_argmax=10)
    assert worst(first, second) == Agreement(9, 7e-5, 10, None)
    texts = worst(Agreement(5, same_text=5), Agreement(5, same_text=4))
    assert texts == Agreement(5, None, None, 4)


def test_each_tools_fastest_run_is_the_one_compared() -> None:
    result = Result("object_counting", 100, (24.0, 20.0), (30.0, 36.0), Agreement(100, same_text=100), 16)
    assert (result.helmflow_s, result.lm_eval_s) == (20.0, 30.0)
    _, line = table([result])
    # 100 / 20 = 5.00 i/s against 100 / 30 = 3.33 i/s: a ratio of 1.50.
    expected = ["object_counting", "100", "20.0", "5.00", "30.0", "3.33", "1.50", "100/100", "-", "-", "100/100"]
    assert line.split() == expected
