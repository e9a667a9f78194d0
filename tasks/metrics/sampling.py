"""Metrics over several sampled completions of one instance: majority vote (maj@k, self-consistency) and pass@k.

Reasoning tasks are run with n samples per prompt: GSM8K's self-consistency (lm-eval's
gsm8k-cot-self-consistency.yaml: regex, then ``majority_vote``, maj@64 and maj@8 by ``take_first_k``) scores
the most frequent extracted answer, and code tasks score pass@k, the chance that at least one of k samples is
correct, with the unbiased estimator of Chen et al. 2021 ("Evaluating Large Language Models Trained on Code",
figure 3) from n >= k samples of which c are correct.
"""

from __future__ import annotations

import math
import operator
from collections import Counter
from collections.abc import Sequence


def majority_vote(answers: Sequence[str]) -> str:
    """The most frequent answer, as lm-eval's MajorityVoteFilter (lm_eval/filters/selection.py) picks it:
    ``Counter(answers).most_common(1)``, so that a tie goes to the answer seen first."""
    if not answers:
        raise ValueError("majority_vote needs at least one answer")
    return Counter(answers).most_common(1)[0][0]


def maj_at_k(answers: Sequence[str], gold: str, k: int) -> float:
    """1.0 when the majority of the first ``k`` (extracted) answers equals ``gold`` exactly, else 0.0: lm-eval's
    ``take_first_k`` then ``majority_vote``, which also needs at least k answers."""
    if not 1 <= k <= len(answers):
        raise ValueError(f"maj@k needs 1 <= k <= the number of answers ({len(answers)}), got k={k}")
    return float(majority_vote(answers[:k]) == gold)


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k from ``n`` samples of which ``c`` are correct: 1 - C(n-c, k) / C(n, k).

    Computed as the paper's numpy snippet does, ``1 - prod(1 - k / arange(n - c + 1, n + 1))``, since
    C(n-c, k) / C(n, k) = prod_{i=n-c+1..n} (i - k) / i: a product of c factors in (0, 1] instead of two
    binomials that overflow floats for n in the hundreds. When fewer than k samples are wrong (n - c < k), every
    k-subset holds a correct one: 1.0. k = 0 is refused (zero tries pass nothing; a caller asking it has a bug).
    """
    n, c, k = operator.index(n), operator.index(c), operator.index(k)
    if n < 0 or c < 0 or k < 1:
        raise ValueError(f"pass@k needs n >= 0, c >= 0 and k >= 1, got n={n}, c={c}, k={k}")
    if k > n or c > n:
        raise ValueError(f"pass@k needs k <= n and c <= n, got n={n}, c={c}, k={k}")
    if n - c < k:
        return 1.0
    return 1.0 - math.prod(1.0 - k / i for i in range(n - c + 1, n + 1))
