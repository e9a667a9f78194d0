"""Calibration (docs/metrics.md#calibration): ECE with equal-mass bins, selective accuracy, Platt-scaled ECE.

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
from collections.abc import Callable
from itertools import pairwise

import numpy as np

from helmflow.tasks.metrics.scoring import MetricRecord, Scoring
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


Measure = Callable[[list[float], list[int]], float | None]


def _platt_ece(confidences: list[float], correct: list[int]) -> float | None:
    if not confidences:
        return None
    scaled = platt_scaled(confidences, correct)
    # All-equal correctness leaves nothing to fit: docs/metrics.md#calibration defines Platt ECE as 0 then.
    return ece(scaled, correct, 10) if scaled is not None else 0.0


# name -> (its value from confidences and correctness, lower is better, headline), in the order rows are stored.
MEASURES: dict[str, tuple[Measure, bool, bool]] = {
    "ece_10_bin": (lambda p, y: ece(p, y, 10), True, True),
    "ece_1_bin": (lambda p, y: ece(p, y, 1), True, False),
    "selective_cov_acc_area": (lambda p, y: selective_stats(p, y)[0], False, False),
    "selective_acc@10": (lambda p, y: selective_stats(p, y)[1], False, False),
    "platt_ece_10_bin": (_platt_ece, True, False),
}


def measure(name: str, confidences: list[float], correct: list[int]) -> Metric:
    value, lower_is_better, headline = MEASURES[name]
    return Metric(
        "calibration", name, value(confidences, correct), len(confidences), lower_is_better, headline=headline
    )


def aggregate(confidences: list[float], correct: list[int]) -> list[Metric]:
    return [measure(name, confidences, correct) for name in MEASURES]


def _instance_stats(scoring: Scoring) -> list[Stat]:
    """Each unperturbed prediction's confidence, where it has one and a main-metric value."""
    main = scoring.main_values()
    return [
        Stat(p.request.instance_id, "calibration", "confidence", p.confidence)
        for p in scoring.unperturbed
        if p.confidence is not None and p.request.instance_id in main
    ]


def _paired(scoring: Scoring) -> tuple[list[float], list[int]]:
    """Each instance's confidence and whether its main metric was right (int of its value)."""
    main = scoring.main_values()
    own = [s for s in scoring.stats if s.category == "calibration" and s.value is not None]
    return [s.value for s in own], [int(main[s.instance_id] or 0) for s in own]  # type: ignore[misc]


def _record(name: str, display_name: str, description: str) -> MetricRecord:
    return MetricRecord(
        name=name,
        category="calibration",
        function=lambda scoring: [measure(name, *_paired(scoring))],
        higher_is_better=not MEASURES[name][1],
        display_name=display_name,
        stats=_instance_stats,
        description=description,
    )


METRICS = [
    _record("ece_10_bin", "ECE (10 bins)", "expected calibration error over 10 equal-mass bins"),
    _record("ece_1_bin", "ECE (1 bin)", "mean confidence minus accuracy, in absolute value"),
    _record("selective_cov_acc_area", "Selective coverage-accuracy area", "area under coverage vs accuracy"),
    _record("selective_acc@10", "Selective accuracy @10%", "accuracy of the 10% most confident answers"),
    _record("platt_ece_10_bin", "Platt-scaled ECE (10 bins)", "ECE after a logistic fit of the confidences"),
]
