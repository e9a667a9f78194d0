"""Calibration (METRICS.md §2): expected calibration error with equal-mass bins.

The binning is that of `uncertainty-calibration` (module `calibration`, the code HELM calls):
sort the confidences, split them into `num_bins` near-equal runs (numpy's array_split), put the
bin edges half-way between neighbouring runs, then weight each bin's |mean p - mean y| by its
share of the points. The tests check agreement with that package to 1e-9.
"""

from __future__ import annotations

import math
from itertools import pairwise

from tasks.metrics.types import Metric


def option_probabilities(logprobs: list[float]) -> list[float]:
    """Softmax of the options' log-likelihoods: probabilities renormalised over the options."""
    top = max(logprobs)
    exps = [math.exp(x - top) for x in logprobs]
    total = sum(exps)
    return [e / total for e in exps]


def ece(confidences: list[float], correct: list[int], num_bins: int) -> float | None:
    if not confidences:
        return None
    import numpy as np

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


def aggregate(confidences: list[float], correct: list[int]) -> list[Metric]:
    n = len(confidences)
    return [Metric("calibration", "ece_10_bin", ece(confidences, correct, 10), n, lower_is_better=True, headline=True)]
