"""Passage-ranking metrics for MS MARCO the way HELM computes them (RR@k, NDCG@k, success@k, recall@k).

HELM's ranking adapter asks the model once per (query, passage) pair "Does the passage answer the
query?" and ranks a query's passages by the answer and its probability (`ranking_score`, `rank`).
The ranking is then scored with trec_eval measures (HELM calls pytrec_eval): the regular track
reports RR@10 with binary relevance, the TREC track (TREC DL 2019, grades 0-3) reports NDCG@10 and,
for the binary measures, counts only grades 2 and 3 as relevant (`threshold=2`).

These functions re-derive those rules from HELM's `metrics/ranking_metrics.py` and
`scenarios/msmarco_scenario.py` and trec_eval's definitions, so they need neither package; the tests
check them against pytrec_eval to 1e-9.

Conventions, for one query:
- `ranking` is the list of passage ids, best first (what `rank` returns).
- `relevance` maps passage id -> judged grade; a passage missing from it counts as grade 0. NDCG's
  ideal ranking is built from every passage in `relevance`, retrieved or not, as in trec_eval.
  (HELM's candidate passages always include all judged ones, so this is the same set.)
- HELM's "(topk=K)" variants drop from the ranking the passages whose BM25 rank is above K, keeping the
  model's order and the full `relevance`; pass such a filtered list to get them.
"""

from __future__ import annotations

import math

from helmflow.tasks.metrics.scoring import GENERATION, MetricRecord, Scoring
from helmflow.tasks.records import Prediction, Stat

REGULAR_THRESHOLD = 1  # MS MARCO dev qrels only hold grade 1 = the gold passage.
TREC_THRESHOLD = 2  # TREC DL: grades 0-1 are "not relevant" for binary measures (HELM zeroes grade 1).

CORRECT_ANSWER = "yes"
WRONG_ANSWER = "no"


def ranking_score(answer: str, probability: float | None) -> float:
    """The number HELM sorts a query's passages by (higher = ranked earlier).

    HELM's order, best first:
      1. "Yes" answers, most probable first (the model is surest the passage answers);
      2. "No" answers, least probable first (the model is least sure it does not);
      3. any other answer, least probable first.
    Answers are compared after strip() and lower() ("  Yes" counts, "Yes." does not).

    HELM sorts by the pair (tier, +-logprob); this folds the pair into one float by giving each tier
    its own band (Yes: [4, 5], No: [2, 3], other: [0, 1]). Since log is monotone the order within a
    band is the same as by log-prob, down to float resolution (probabilities closer than ~1e-15
    become a tie, settled by `rank`'s tie rule).

    `probability` is the probability of the model's whole answer, exp(sum of its token log-probs).
    None (a server that gave no log-probs) is taken as 1.0: HELM reads a missing log-prob as 0.0.
    """
    p = 1.0 if probability is None else probability
    if not 0.0 <= p <= 1.0:  # also rejects NaN
        raise ValueError(f"probability must be in [0, 1], got {probability}")
    normalized = answer.strip().lower()
    if normalized == CORRECT_ANSWER:
        return 4.0 + p
    if normalized == WRONG_ANSWER:
        return 2.0 + (1.0 - p)
    return 1.0 - p


def rank(scores: dict[str, float]) -> list[str]:
    """Passage ids by descending score; ties keep the order the passages were given in (`scores`' order).

    That is HELM's behaviour: it sorts the passages with Python's stable sort, in the order of the
    instance's references (a seeded shuffle of the passage ids), and hands trec_eval the distinct scores
    N, N-1, ..., 1, so trec_eval's own tie rule (equal scores -> docid descending) never comes into play.
    We keep HELM's rule rather than trec_eval's so a caller who passes the passages in HELM's reference
    order gets HELM's ranking; either way the result is deterministic for a given input.
    """
    return sorted(scores, key=lambda passage: scores[passage], reverse=True)  # sorted() is stable


def reciprocal_rank_at_k(ranking: list[str], relevance: dict[str, int], k: int = 10, threshold: int = 1) -> float:
    """1 / (rank of the first passage with grade >= threshold among the top k), or 0 if there is none.

    trec_eval's recip_rank has no cutoff; HELM makes RR@k by keeping only the top k passages of the run.
    """
    _check_k(k)
    for position, passage in enumerate(ranking[:k], start=1):
        if relevance.get(passage, 0) >= threshold:
            return 1.0 / position
    return 0.0


def ndcg_at_k(ranking: list[str], relevance: dict[str, int], k: int = 10) -> float:
    """trec_eval's ndcg_cut.k: DCG of the top k over the DCG of the best possible top k, 0 if that is 0.

    Gain is the grade itself (not 2^grade - 1) and the passage at rank r is discounted by log2(r + 1),
    so rank 1 counts fully, rank 2 by 1/log2(3), and so on. The ideal ranking sorts every judged grade
    of the query, retrieved or not. Only positive grades add gain, as in trec_eval.
    """
    _check_k(k)
    dcg = _dcg([relevance.get(passage, 0) for passage in ranking[:k]])
    ideal = _dcg(sorted((g for g in relevance.values() if g > 0), reverse=True)[:k])
    return dcg / ideal if ideal > 0 else 0.0


def success_at_k(ranking: list[str], relevance: dict[str, int], k: int = 10, threshold: int = 1) -> float:
    """trec_eval's success.k: 1 if any of the top k passages has grade >= threshold, else 0."""
    return 1.0 if reciprocal_rank_at_k(ranking, relevance, k, threshold) > 0 else 0.0


def recall_at_k(ranking: list[str], relevance: dict[str, int], k: int = 10, threshold: int = 1) -> float:
    """trec_eval's recall.k: share of the query's relevant passages (grade >= threshold) in the top k; 0 if none."""
    _check_k(k)
    relevant = {passage for passage, grade in relevance.items() if grade >= threshold}
    if not relevant:
        return 0.0
    return len(relevant.intersection(ranking[:k])) / len(relevant)


def _dcg(grades: list[int]) -> float:
    # Rank r = index + 1, discounted by log2(r + 1) = log2(index + 2).
    return sum(grade / math.log2(index + 2) for index, grade in enumerate(grades) if grade > 0)


def _check_k(k: int) -> None:
    # trec_eval's cutoffs must be positive; k = 0 would silently score every ranking 0.
    if k < 1:
        raise ValueError(f"k must be at least 1, got {k}")


# -- as helmflow metrics -------------------------------------------------------------------------------------
# A ranking scenario's instances are (query, passage) pairs (source.unnest), each with the extras `query_id` and
# `relevance` (the judged grade), and optionally `relevant_from` (the grade from which a passage counts as
# relevant for RR: 2 for TREC DL, as HELM). A query's values are stats of its first passage's instance, so that
# intervals, robustness and fairness, which read stats per instance, see one value per query.

K = 10


def query_stats(scoring: Scoring) -> list[Stat]:
    """RR@10 and NDCG@10 of every query, unperturbed and per perturbation (the answers ranked as HELM ranks)."""
    queries: dict[tuple[str, str], list[Prediction]] = {}
    for prediction in scoring.predictions:
        inst = scoring.by_id[prediction.request.instance_id]
        if "query_id" in inst.extra:
            queries.setdefault((prediction.request.perturbation, inst.extra["query_id"]), []).append(prediction)
    stats = []
    for (perturbation, _), predictions in queries.items():
        instances = [scoring.by_id[p.request.instance_id] for p in predictions]
        # A failed request answered nothing: it ranks with the answers that are neither yes nor no.
        scores = {p.request.instance_id: ranking_score(p.predicted_text, p.confidence) for p in predictions}
        relevance = {inst.id: int(float(inst.extra.get("relevance") or 0)) for inst in instances}
        threshold = int(instances[0].extra.get("relevant_from") or REGULAR_THRESHOLD)
        ranking = rank(scores)
        first = instances[0].id
        if scoring.wants("rr_at_10"):
            value = reciprocal_rank_at_k(ranking, relevance, K, threshold)
            stats.append(Stat(first, "accuracy", "rr_at_10", value, perturbation))
        if scoring.wants("ndcg_at_10"):
            stats.append(Stat(first, "accuracy", "ndcg_at_10", ndcg_at_k(ranking, relevance, K), perturbation))
    return stats


def _record(name: str, display_name: str, description: str) -> MetricRecord:
    from helmflow.tasks.metrics.accuracy import metric_rows

    return MetricRecord(
        name=name,
        category="accuracy",
        function=lambda scoring: metric_rows(scoring.stats, name, scoring.spec.main_metric, scoring.groups),
        display_name=display_name,
        methods=GENERATION,
        stats=query_stats,
        description=description,
        named_only=True,
    )


METRICS = [
    _record("rr_at_10", "RR@10", "reciprocal rank of the first relevant passage in the model's top 10 (HELM)"),
    _record("ndcg_at_10", "NDCG@10", "normalised discounted cumulative gain of the model's top 10 (HELM)"),
]
