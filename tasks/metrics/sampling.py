"""Metrics over several sampled completions of one instance: majority vote (maj@k, self-consistency) and pass@k.

Reasoning tasks are run with n samples per prompt: GSM8K's self-consistency (lm-eval's
gsm8k-cot-self-consistency.yaml: regex, then ``majority_vote``, maj@64 and maj@8 by ``take_first_k``) scores
the most frequent extracted answer, and code tasks score pass@k, the chance that at least one of k samples is
correct, with the unbiased estimator of Chen et al. 2021 ("Evaluating Large Language Models Trained on Code",
figure 3) from n >= k samples of which c are correct.

A run samples with the adapter's `num_samples` (n; tasks/samples.py). Its metrics, category accuracy, read
only the sampled predictions (Scoring.samples; the greedy pass is what every other metric reads), each
sample's answer after the spec's answer extraction, in sample order:
- `maj@n`: the majority vote of the n answers (exact text), scored with the main metric as accuracy scores
  an answer (instance_accuracy: the best over the references);
- `pass@1` and `pass@n`: pass@k with c the samples whose main-metric value is 1 (correct, as calibration
  counts correct: a graded metric counts only a perfect score).
Per instance in `instance_stats`, their means in `metrics` (and per group, as accuracy's).
"""

from __future__ import annotations

import math
import operator
from collections import Counter
from collections.abc import Sequence

from helmflow.specs.schema import ExactMatchOptions
from helmflow.tasks.metrics.accuracy import instance_accuracy, metric_rows
from helmflow.tasks.metrics.scoring import GENERATION, MetricRecord, Scoring
from helmflow.tasks.records import Instance, Metric, Prediction, Stat


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


# -- the run metrics -----------------------------------------------------------------------------------------


def sampled_names(num_samples: int) -> tuple[str, list[str]]:
    """The stored names of maj@k (k = num_samples) and of pass@k (k = 1 and num_samples)."""
    return f"maj@{num_samples}", [f"pass@{k}" for k in dict.fromkeys((1, num_samples))]


def _main_value(inst: Instance, answer: str, main: str, options: ExactMatchOptions | None = None) -> float | None:
    """An answer's main-metric value against the instance's gold, as accuracy scores a generated answer."""
    return instance_accuracy(inst, None, answer, None, [main], options).get(main)


def instance_values(
    inst: Instance, answers: list[str], main: str, num_samples: int, options: ExactMatchOptions | None = None
) -> dict[str, float]:
    """One instance's maj@n, pass@1 and pass@n from its n sampled answers (in sample order); {} when the main
    metric gives the instance no value (no reference) or it has fewer than n answers. `options`: the spec's
    exact_match_options."""
    values = [_main_value(inst, a, main, options) for a in answers]
    if len(answers) < num_samples or not answers or any(v is None for v in values):
        return {}
    maj, passes = sampled_names(num_samples)
    voted = _main_value(inst, majority_vote(answers[:num_samples]), main, options)
    assert voted is not None  # the instance has references: every answer has a value
    correct = sum(1 for v in values[:num_samples] if v == 1.0)
    out = {maj: voted}
    for name in passes:
        out[name] = pass_at_k(num_samples, correct, int(name.removeprefix("pass@")))
    return out


def _instance_stats(scoring: Scoring) -> list[Stat]:
    """maj@n and pass@k of every instance that has samples (the metrics asked for among them)."""
    n = scoring.spec.adapter.num_samples
    if not n or not scoring.samples:
        return []
    by_instance: dict[str, list[Prediction]] = {}
    for prediction in scoring.samples:
        if not prediction.request.perturbation:  # tasks/samples.py samples unperturbed inputs only
            by_instance.setdefault(prediction.request.instance_id, []).append(prediction)
    wanted_maj, wanted_pass = scoring.wants("maj@k"), scoring.wants("pass@k")
    stats = []
    for instance_id, samples in by_instance.items():
        answers = [p.predicted_text for p in sorted(samples, key=lambda p: p.request.sample)]
        spec = scoring.spec
        values = instance_values(scoring.by_id[instance_id], answers, spec.main_metric, n, spec.exact_match_options)
        for name, value in values.items():
            if wanted_maj if name.startswith("maj@") else wanted_pass:
                stats.append(Stat(instance_id, "accuracy", name, value))
    return stats


def _rows(scoring: Scoring, prefix: str) -> list[Metric]:
    """The means of this family's stats (maj@ or pass@), for the run and per group; [] without samples."""
    maj, passes = sampled_names(scoring.spec.adapter.num_samples)
    names = [maj] if prefix == "maj@" else passes
    return [m for name in names for m in metric_rows(scoring.stats, name, scoring.spec.main_metric, scoring.groups)]


METRICS = [
    MetricRecord(
        name="maj@k",
        category="accuracy",
        function=lambda scoring: _rows(scoring, "maj@"),
        display_name="Majority vote (maj@k)",
        methods=GENERATION,
        stats=_instance_stats,
        description="the main metric of the most frequent answer of the num_samples samples (stored as maj@<n>)",
    ),
    MetricRecord(
        name="pass@k",
        category="accuracy",
        function=lambda scoring: _rows(scoring, "pass@"),
        display_name="pass@k",
        methods=GENERATION,
        stats=_instance_stats,
        description="unbiased chance that one of k samples is right (Chen et al. 2021; pass@1 and pass@<n>)",
    ),
]
