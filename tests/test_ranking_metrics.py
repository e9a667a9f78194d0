import math
import random

import pytest

from helmflow.tasks.metrics.ranking import (
    REGULAR_THRESHOLD,
    TREC_THRESHOLD,
    ndcg_at_k,
    rank,
    ranking_score,
    recall_at_k,
    reciprocal_rank_at_k,
    success_at_k,
)

# --- ranking_score / rank: HELM's Yes/No ordering -----------------------------------------------


def test_helm_order_yes_then_no_then_other() -> None:
    # Best first: Yes by falling probability, No by rising probability, anything else by rising probability.
    answers = {
        "other_sure": ("maybe", 0.9),
        "no_sure": ("No", 0.9),
        "yes_unsure": ("Yes", 0.6),
        "other_unsure": ("maybe", 0.1),
        "no_unsure": ("No", 0.2),
        "yes_sure": ("Yes", 0.95),
    }
    scores = {pid: ranking_score(answer, p) for pid, (answer, p) in answers.items()}
    assert rank(scores) == ["yes_sure", "yes_unsure", "no_unsure", "no_sure", "other_unsure", "other_sure"]


def test_answer_matching_is_strip_and_lower_only() -> None:
    assert ranking_score(" YES\n", 0.5) == ranking_score("Yes", 0.5)
    assert ranking_score("no ", 0.5) == ranking_score("No", 0.5)
    # "Yes." is not "yes": it falls to the bottom tier, as in HELM.
    assert ranking_score("Yes.", 0.99) < ranking_score("No", 0.99)
    assert ranking_score("", 0.5) == ranking_score("missing", 0.5)


def test_tiers_never_overlap_at_the_extremes() -> None:
    assert ranking_score("Yes", 0.0) > ranking_score("No", 0.0)  # least sure Yes beats the best No
    assert ranking_score("No", 1.0) > ranking_score("other", 0.0)  # surest No beats the best other answer


def test_missing_probability_is_helm_logprob_zero() -> None:
    # HELM reads a missing log-prob as 0.0, i.e. probability 1.
    assert ranking_score("Yes", None) == ranking_score("Yes", 1.0)
    assert ranking_score("No", None) == ranking_score("No", 1.0)


@pytest.mark.parametrize("bad", [-0.1, 1.5, math.nan])
def test_probability_out_of_range_is_rejected(bad: float) -> None:
    with pytest.raises(ValueError, match="probability"):
        ranking_score("Yes", bad)


def helm_key(answer: str, logprob: float) -> tuple[int, float]:
    # HELM's sort key restated (metrics/ranking_metrics.py, object_to_score_binary_ranking), sorted descending.
    normalized = answer.strip().lower()
    if normalized == "yes":
        return 2, logprob
    if normalized == "no":
        return 1, -logprob
    return 0, -logprob


def test_same_order_as_helms_tuple_key_on_random_answers() -> None:
    rng = random.Random(7)
    answers = {}
    for i in range(200):
        answer = rng.choice(["Yes", "No", " yes", "NO", "Maybe", ""])
        logprob = rng.choice([0.0, -0.5, -2.0]) if i % 5 == 0 else -rng.expovariate(1.0)  # some exact ties
        answers[f"p{i}"] = (answer, logprob)
    ours = rank({pid: ranking_score(a, math.exp(lp)) for pid, (a, lp) in answers.items()})
    helm = sorted(answers, key=lambda pid: helm_key(*answers[pid]), reverse=True)  # stable, like HELM's
    assert ours == helm


def test_ties_keep_the_given_order() -> None:
    # trec_eval would put "b" before "a" (equal scores -> docid descending); HELM, and we, keep input order.
    assert rank({"a": 4.5, "c": 2.0, "b": 4.5}) == ["a", "b", "c"]
    assert rank({"b": 4.5, "a": 4.5}) == ["b", "a"]


# --- reciprocal rank, success, recall -------------------------------------------------------------


def test_rr_first_relevant_at_rank_three() -> None:
    # Ranks 1 and 2 are not relevant, rank 3 is -> 1/3.
    assert reciprocal_rank_at_k(["a", "b", "c", "d"], {"c": 1, "d": 1}) == pytest.approx(1 / 3)


def test_rr_threshold_separates_the_tracks() -> None:
    ranking = ["a", "b", "c"]
    relevance = {"a": 1, "c": 3}
    # Regular track: any grade >= 1 counts, "a" at rank 1 -> 1.
    assert reciprocal_rank_at_k(ranking, relevance, threshold=REGULAR_THRESHOLD) == 1.0
    # TREC track: grade 1 is not relevant, the first is "c" at rank 3 -> 1/3.
    assert reciprocal_rank_at_k(ranking, relevance, threshold=TREC_THRESHOLD) == pytest.approx(1 / 3)


def test_rr_edge_cases() -> None:
    assert reciprocal_rank_at_k(["a", "b"], {}) == 0.0  # no relevant passage
    assert reciprocal_rank_at_k(["a", "b"], {"a": 0, "b": 0}) == 0.0  # judged, all grade 0
    assert reciprocal_rank_at_k([], {"a": 1}) == 0.0  # empty ranking
    ranking = [f"p{i}" for i in range(1, 12)]
    assert reciprocal_rank_at_k(ranking, {"p11": 1}) == 0.0  # relevant at rank 11, beyond k = 10
    assert reciprocal_rank_at_k(ranking, {"p11": 1}, k=11) == pytest.approx(1 / 11)
    assert reciprocal_rank_at_k(["a", "b"], {"b": 1}, k=100) == 0.5  # k larger than the list
    with pytest.raises(ValueError, match="k must be"):
        reciprocal_rank_at_k(["a"], {"a": 1}, k=0)


def test_success_and_recall() -> None:
    ranking = ["a", "b", "c", "d"]
    relevance = {"b": 2, "d": 3, "z": 2, "c": 1}  # "z" is relevant but never retrieved
    assert success_at_k(ranking, relevance, k=1, threshold=2) == 0.0
    assert success_at_k(ranking, relevance, k=2, threshold=2) == 1.0
    # Relevant at threshold 2: b, d, z. Top 2 holds b -> 1/3; top 4 holds b, d -> 2/3.
    assert recall_at_k(ranking, relevance, k=2, threshold=2) == pytest.approx(1 / 3)
    assert recall_at_k(ranking, relevance, k=4, threshold=2) == pytest.approx(2 / 3)
    assert recall_at_k(ranking, {}, k=4) == 0.0


# --- NDCG -----------------------------------------------------------------------------------------


def test_ndcg_worked_example() -> None:
    # Ranking a, b, c with grades 1, 0, 3.
    # DCG  = 1/log2(2) + 0/log2(3) + 3/log2(4) = 1 + 0 + 3/2 = 2.5
    # IDCG = grades sorted 3, 1: 3/log2(2) + 1/log2(3) = 3 + 0.6309297535714575 = 3.6309297535714575
    # NDCG = 2.5 / 3.6309297535714575 = 0.6885289...
    value = ndcg_at_k(["a", "b", "c"], {"a": 1, "b": 0, "c": 3})
    assert value == pytest.approx(2.5 / (3 + 1 / math.log2(3)), abs=1e-12)
    assert value == pytest.approx(0.6885289, abs=1e-7)


def test_ndcg_ideal_counts_unretrieved_judged_passages() -> None:
    # Only "a" retrieved (grade 2); "z" (grade 2) is judged but missing.
    # DCG = 2/log2(2) = 2; IDCG = 2 + 2/log2(3) = 3.2618595...; NDCG = 2 / 3.2618595 = 0.6131471...
    assert ndcg_at_k(["a"], {"a": 2, "z": 2}) == pytest.approx(2 / (2 + 2 / math.log2(3)), abs=1e-12)


def test_ndcg_ideal_is_cut_at_k() -> None:
    # k = 1: DCG@1 = grade of "a" = 1; IDCG@1 = best grade = 3 -> 1/3.
    assert ndcg_at_k(["a", "b"], {"a": 1, "b": 3}, k=1) == pytest.approx(1 / 3)


def test_ndcg_edge_cases() -> None:
    assert ndcg_at_k(["a", "b"], {"b": 3, "a": 1}) == pytest.approx((1 + 3 / math.log2(3)) / (3 + 1 / math.log2(3)))
    assert ndcg_at_k(["b", "a"], {"b": 3, "a": 1}) == pytest.approx(1.0)  # ideal order
    assert ndcg_at_k(["a", "b"], {}) == 0.0  # nothing relevant: IDCG = 0 -> 0, as trec_eval
    assert ndcg_at_k(["a", "b"], {"a": 0}) == 0.0
    assert ndcg_at_k([], {"a": 2}) == 0.0
    ranking = [f"p{i}" for i in range(1, 12)]
    assert ndcg_at_k(ranking, {"p11": 3}) == 0.0  # only relevant passage at rank 11
    with pytest.raises(ValueError, match="k must be"):
        ndcg_at_k(["a"], {"a": 1}, k=0)


# --- agreement with pytrec_eval -------------------------------------------------------------------

# The expected values were printed by pytrec_eval-terrier 0.5.11 (the trec_eval wrapper HELM uses, in a
# throwaway venv outside the repo) with /tmp/rankref_work/reference.py: each ranking went in as a run with
# the distinct scores len - index (as HELM passes it); NDCG@10 is ndcg_cut.10 on the graded qrels; RR@10 is
# recip_rank on the run's top 10 (HELM's RR@10), with the raw qrels (threshold 1) and with HELM's
# binarize_dict (grade 1 -> 0, so threshold 2); success.10 and recall.10 on the binarized qrels.
REFERENCE_CASES = {
    "mixed": (
        ["p1", "p2", "p3", "p4", "p5", "p6", "p7", "p8", "p9", "p10", "p11", "p12"],
        {"p2": 1, "p3": 3, "p5": 2, "p9": 1, "p12": 3, "p20": 2, "p4": 0},
        {"ndcg": 0.4275815437525442, "rr_t1": 0.5, "rr_t2": 0.3333333333333333, "success_t2": 1.0, "recall_t2": 0.5},
    ),
    "best_last_in_cut": (
        ["a", "b", "c", "d", "e", "f", "g", "h", "i", "j"],
        {"j": 3, "a": 1, "e": 2},
        {"ndcg": 0.554594290205607, "rr_t1": 1.0, "rr_t2": 0.2, "success_t2": 1.0, "recall_t2": 1.0},
    ),
    "relevant_beyond_10": (
        [f"d{i}" for i in range(1, 16)],
        {"d11": 3, "d14": 2, "d3": 1},
        {"ndcg": 0.10500099787698204, "rr_t1": 0.3333333333333333, "rr_t2": 0.0, "success_t2": 0.0, "recall_t2": 0.0},
    ),
    "short_list": (
        ["x", "y", "z"],
        {"z": 2, "y": 3, "w": 1, "x": 0},
        {"ndcg": 0.6074915180456525, "rr_t1": 0.5, "rr_t2": 0.5, "success_t2": 1.0, "recall_t2": 1.0},
    ),
}


@pytest.mark.parametrize("case", REFERENCE_CASES)
def test_agrees_with_pytrec_eval(case: str) -> None:
    ranking, relevance, expected = REFERENCE_CASES[case]
    assert ndcg_at_k(ranking, relevance, k=10) == pytest.approx(expected["ndcg"], abs=1e-9)
    assert reciprocal_rank_at_k(ranking, relevance, k=10, threshold=1) == pytest.approx(expected["rr_t1"], abs=1e-9)
    assert reciprocal_rank_at_k(ranking, relevance, k=10, threshold=2) == pytest.approx(expected["rr_t2"], abs=1e-9)
    assert success_at_k(ranking, relevance, k=10, threshold=2) == pytest.approx(expected["success_t2"], abs=1e-9)
    assert recall_at_k(ranking, relevance, k=10, threshold=2) == pytest.approx(expected["recall_t2"], abs=1e-9)
