"""Calibration (METRICS.md §2): ECE with equal-mass bins, selective accuracy, Platt-scaled ECE.

The binning is that of `uncertainty-calibration` (module `calibration`, the code HELM calls):
sort the confidences, split them into `num_bins` near-equal runs (numpy's array_split), put the
bin edges half-way between neighbouring runs, then weight each bin's |mean p - mean y| by its
share of the points. The tests check agreement with that package to 1e-9.

One departure: selective accuracy sorts by confidence with a stable sort, so ties keep the
instances' order and the result is reproducible; the package's default sort leaves tie order
to numpy's quicksort.
"""

from __future__ import annotations

import math
from itertools import pairwise

import numpy as np

from helmflow.tasks.metrics.scoring import Category, Scoring
from helmflow.tasks.metrics.types import Metric
from helmflow.tasks.records import Stat

PLATT_EPS = 1e-12


def option_probabilities(logprobs: list[float]) -> list[float]:
    """Softmax of the options' log-likelihoods: probabilities renormalised over the options."""
    top = max(logprobs)
    exps = [math.exp(x - top) for x in logprobs]
    total = sum(exps)
    return [e / total for e in exps]


def ece(confidences: list[float] | np.ndarray, correct: list[int] | np.ndarray, num_bins: int) -> float | None:
    if len(confidences) == 0:
        return None
    p = np.clip(np.asarray(confidences, dtype=float), 0.0, 1.0)
    y = np.asarray(correct, dtype=float)
    runs = np.array_split(np.sort(p), min(num_bins, len(p)))
    edges = sorted({(a[-1] + b[0]) / 2.0 for a, b in pairwise(runs)} | {1.0})
    bins = np.searchsorted(edges, p)  # left side: a point on an edge belongs to the lower bin
    error = 0.0
    for b in np.unique(bins):
        members = bins == b
        error += members.mean() * abs(p[members].mean() - y[members].mean())
    return float(error)


def selective_stats(confidences: list[float], correct: list[int]) -> tuple[float | None, float | None]:
    """Area under the coverage-accuracy curve, and the accuracy of the 10% most confident."""
    if not confidences:
        return None, None
    order = np.argsort(-np.asarray(confidences, dtype=float), kind="stable")
    hits = np.asarray(correct, dtype=float)[order]
    accuracy_at_k = np.cumsum(hits) / np.arange(1, len(hits) + 1)
    return float(accuracy_at_k.mean()), float(accuracy_at_k[int(0.1 * len(hits))])


def platt_scaled(confidences: list[float], correct: list[int]) -> np.ndarray | None:
    """Confidences after a logistic fit of correctness on logit(p); None when all y are equal."""
    if len(set(correct)) < 2:
        return None
    from sklearn.linear_model import LogisticRegression

    def logit(p: np.ndarray) -> np.ndarray:
        p = np.clip(p, PLATT_EPS, 1 - PLATT_EPS)
        return np.log(p / (1 - p))

    x = logit(np.asarray(confidences, dtype=np.float64))
    model = LogisticRegression(C=1e10, solver="lbfgs").fit(x[:, None], np.asarray(correct))
    z = x * model.coef_[0] + model.intercept_
    return 1 / (1 + np.exp(-z))


def aggregate(confidences: list[float], correct: list[int]) -> list[Metric]:
    n = len(confidences)
    area, top10 = selective_stats(confidences, correct)
    scaled = platt_scaled(confidences, correct)
    # All-equal correctness leaves nothing to fit: METRICS.md defines Platt ECE as 0 then.
    platt = (ece(scaled, correct, 10) if scaled is not None else 0.0) if n else None
    return [
        Metric("calibration", "ece_10_bin", ece(confidences, correct, 10), n, lower_is_better=True, headline=True),
        Metric("calibration", "ece_1_bin", ece(confidences, correct, 1), n, lower_is_better=True),
        Metric("calibration", "selective_cov_acc_area", area, n),
        Metric("calibration", "selective_acc@10", top10, n),
        Metric("calibration", "platt_ece_10_bin", platt, n, lower_is_better=True),
    ]


def _instance_stats(scoring: Scoring) -> list[Stat]:
    """Each unperturbed prediction's confidence, where it has one and a main-metric value."""
    main = scoring.main_values()
    return [
        Stat(p.request.instance_id, "calibration", "confidence", p.confidence)
        for p in scoring.unperturbed
        if p.confidence is not None and p.request.instance_id in main
    ]


def _aggregate(scoring: Scoring) -> list[Metric]:
    main = scoring.main_values()
    own = [s for s in scoring.stats if s.category == "calibration" and s.value is not None]
    return aggregate([s.value for s in own], [int(main[s.instance_id] or 0) for s in own])  # type: ignore[misc]


CATEGORY = Category(instance_stats=_instance_stats, aggregate=_aggregate)
