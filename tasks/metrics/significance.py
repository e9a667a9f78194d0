"""Paired significance for comparing two runs on the same instances.

McNemar's exact test for 0/1 statistics (accuracy-like): only the discordant pairs matter; under
no difference each is equally likely to go either way, so p is the two-sided binomial tail of
the smaller count. For other statistics, a seeded paired bootstrap interval of the mean difference.
"""

from __future__ import annotations

import math
import random


def mcnemar_exact(only_a: int, only_b: int) -> float:
    """Two-sided exact p-value: only_a pairs right in A alone, only_b right in B alone."""
    n = only_a + only_b
    if n == 0:
        return 1.0
    k = min(only_a, only_b)
    tail = sum(math.comb(n, i) for i in range(k + 1)) / 2**n
    return min(1.0, 2 * tail)


def paired_bootstrap(
    a: list[float], b: list[float], resamples: int = 2000, seed: int = 0, level: float = 0.95
) -> tuple[float, float]:
    """Percentile interval of mean(b - a) over resampled instances."""
    differences = [y - x for x, y in zip(a, b, strict=True)]
    n = len(differences)
    if n == 0:
        return (math.nan, math.nan)
    rng = random.Random(seed)
    means = sorted(sum(differences[rng.randrange(n)] for _ in range(n)) / n for _ in range(resamples))
    low = means[int((1 - level) / 2 * resamples)]
    high = means[min(resamples - 1, int((1 + level) / 2 * resamples))]
    return low, high
