"""tasks/metrics/sampling.py: majority vote as lm-eval 0.4.13's MajorityVoteFilter, maj@k, and the unbiased
pass@k of Chen et al. 2021 against hand arithmetic and against enumerating every k-subset."""

from __future__ import annotations

import math
from fractions import Fraction
from itertools import combinations

import pytest

from helmflow.tasks.metrics.sampling import maj_at_k, majority_vote, pass_at_k

# lm-eval 0.4.13 printed these: MajorityVoteFilter().apply([votes], None) (lm_eval/filters/selection.py), by
# /tmp/lmeval_agree/print_expected.py with lm-eval's own Python. Ties go to the answer seen first.
MAJORITY = [
    (["18", "17", "18", "17"], "18"),
    (["17", "18", "18", "17"], "17"),
    (["a", "b", "b"], "b"),
    (["x", "y"], "x"),
    (["y", "x"], "y"),
    (["z"], "z"),
    (["1", "2", "3", "2", "1"], "1"),
]


@pytest.mark.parametrize(("votes", "expected"), MAJORITY)
def test_majority_vote_agrees_with_lm_eval(votes: list[str], expected: str) -> None:
    assert majority_vote(votes) == expected


def test_majority_vote_needs_an_answer() -> None:
    with pytest.raises(ValueError, match="at least one answer"):
        majority_vote([])


def test_maj_at_k() -> None:
    answers = ["17", "18", "18", "17", "17"]
    assert maj_at_k(answers, "18", 1) == 0.0  # ["17"]
    assert maj_at_k(answers, "18", 3) == 1.0  # 18 twice, 17 once
    assert maj_at_k(answers, "18", 4) == 0.0  # 2 against 2: "17" was seen first
    assert maj_at_k(answers, "17", 5) == 1.0  # 17 three times
    assert maj_at_k(["18."], "18", 1) == 0.0  # exact text: extraction normalises, not maj@k


@pytest.mark.parametrize("k", [0, -1, 6])
def test_maj_at_k_needs_k_answers(k: int) -> None:
    with pytest.raises(ValueError, match="1 <= k <= the number of answers"):
        maj_at_k(["1"] * 5, "1", k)


@pytest.mark.parametrize(
    ("n", "c", "k", "expected"),
    [
        (5, 2, 2, 0.7),  # 1 - C(3,2)/C(5,2) = 1 - 3/10
        (10, 3, 1, 0.3),  # k = 1: c/n; 1 - C(7,1)/C(10,1) = 1 - 7/10
        (10, 3, 5, 11 / 12),  # 1 - C(7,5)/C(10,5) = 1 - 21/252 = 1 - 1/12
        (4, 1, 2, 0.5),  # 1 - C(3,2)/C(4,2) = 1 - 3/6
        (5, 0, 3, 0.0),  # no correct sample: C(5,3)/C(5,3) = 1
        (5, 5, 3, 1.0),  # all correct
        (5, 4, 2, 1.0),  # n - c = 1 < k = 2: every pair holds a correct one
        (3, 1, 3, 1.0),  # k = n, c >= 1
    ],
)
def test_pass_at_k_by_hand(n: int, c: int, k: int, expected: float) -> None:
    assert pass_at_k(n, c, k) == pytest.approx(expected, abs=1e-12)


def brute_force(n: int, c: int, k: int) -> Fraction:
    """The share of k-subsets of n samples (the first c correct) holding at least one correct sample."""
    subsets = list(combinations(range(n), k))
    return Fraction(sum(any(i < c for i in s) for s in subsets), len(subsets))


def test_pass_at_k_equals_enumerating_every_subset() -> None:
    for n in range(1, 9):
        for c in range(n + 1):
            for k in range(1, n + 1):
                assert pass_at_k(n, c, k) == pytest.approx(float(brute_force(n, c, k)), abs=1e-12), (n, c, k)


def test_pass_at_k_is_stable_for_large_n() -> None:
    # C(1000, 500) is about 2.7e299, near float's limit: the product form stays exact to float precision.
    for n, c, k in [(200, 13, 100), (1000, 1, 500), (1000, 3, 10)]:
        exact = 1 - Fraction(math.comb(n - c, k), math.comb(n, k))
        assert pass_at_k(n, c, k) == pytest.approx(float(exact), rel=1e-12)


@pytest.mark.parametrize(
    ("n", "c", "k", "message"),
    [
        (5, 2, 6, "k <= n"),
        (5, 6, 2, "c <= n"),
        (-1, 0, 1, "n >= 0"),
        (5, -1, 1, "c >= 0"),
        (5, 2, -1, "k >= 1"),
        (5, 2, 0, "k >= 1"),
    ],
)
def test_pass_at_k_refuses_impossible_counts(n: int, c: int, k: int, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        pass_at_k(n, c, k)


def test_pass_at_k_refuses_non_integers() -> None:
    with pytest.raises(TypeError):
        pass_at_k(5.0, 2, 2)  # type: ignore[arg-type]
