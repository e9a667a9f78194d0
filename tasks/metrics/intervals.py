"""95% intervals for a run's headline metrics: how sure one run's number is, given its instances.

Two methods, both reproducible:

- **Wilson score interval** for plain proportions (every per-instance value is 0 or 1: exact_match,
  a 0/1 worst case, the toxic fraction). It stays inside [0, 1] and behaves at 0 and n, unlike
  the normal approximation.
- **Seeded percentile bootstrap over instances** for everything else: resample the run's instances
  with replacement `RESAMPLES` times (numpy's PCG64 seeded with `SEED`), recompute the statistic
  on each resample (a mean, or ECE, or the largest group gap, ...), and take the 2.5% and 97.5%
  order statistics of the resampled values.

A per-run interval says how much the number would move on another draw of instances of the same
kind. It is not a test of a difference between two runs: those share instances, so compare and
regressions use paired tests (McNemar, paired bootstrap; significance.py), which are far more
sensitive than checking whether two runs' intervals overlap.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, fields

import numpy as np

from helmflow.tasks.metrics.language_modeling import RATIOS, scored_texts
from helmflow.tasks.metrics.scoring import Scoring
from helmflow.tasks.records import Metric

LEVEL = 0.95
Z = 1.959963984540054  # the standard normal's 97.5% quantile
RESAMPLES = 1000
SEED = 0
# Vectorised mean resampling in chunks, so 10,000 instances never need a 10,000 × 1,000 matrix at once.
_CHUNK = 100


@dataclass(frozen=True)
class IntervalMetric(Metric):
    """A Metric with its 95% interval; the warehouse stores `ci_low`, `ci_high`, `ci_method` beside it."""

    ci_low: float | None = None
    ci_high: float | None = None
    ci_method: str = ""  # wilson | bootstrap | ''


def wilson(successes: int, n: int, z: float = Z) -> tuple[float, float] | None:
    """Wilson score interval of a proportion successes / n (None for n = 0)."""
    if n <= 0:
        return None
    p = successes / n
    denominator = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denominator
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denominator
    # At 0 and n the bounds are exactly 0 and 1 (the formula gives them up to rounding).
    low = 0.0 if successes == 0 else max(0.0, centre - half)
    high = 1.0 if successes == n else min(1.0, centre + half)
    return low, high


def _percentiles(values: np.ndarray) -> tuple[float, float] | None:
    """The 2.5% and 97.5% order statistics (the same indexing as significance.paired_bootstrap)."""
    values = np.sort(values[np.isfinite(values)])
    if len(values) == 0:
        return None
    b = len(values)
    low = values[int((1 - LEVEL) / 2 * b)]
    high = values[min(b - 1, int((1 + LEVEL) / 2 * b))]
    return float(low), float(high)


def bootstrap_mean(values: list[float], resamples: int = RESAMPLES, seed: int = SEED) -> tuple[float, float] | None:
    """Percentile interval of the mean over instances resampled with replacement."""
    data = np.asarray(values, dtype=float)
    n = len(data)
    if n == 0:
        return None
    rng = np.random.default_rng(seed)
    means = []
    for start in range(0, resamples, _CHUNK):
        rows = min(_CHUNK, resamples - start)
        means.append(data[rng.integers(0, n, size=(rows, n))].mean(axis=1))
    return _percentiles(np.concatenate(means))


def bootstrap(
    statistic: Callable[[np.ndarray], float | None], n: int, resamples: int = RESAMPLES, seed: int = SEED
) -> tuple[float, float] | None:
    """Percentile interval of any statistic of the instances; `statistic` gets one resample's indices."""
    if n == 0:
        return None
    rng = np.random.default_rng(seed)
    values = [statistic(rng.integers(0, n, size=n)) for _ in range(resamples)]
    return _percentiles(np.asarray([math.nan if v is None else v for v in values], dtype=float))


def proportion_or_mean(values: list[float]) -> tuple[tuple[float, float] | None, str]:
    """Wilson when every value is 0 or 1, else the bootstrap of the mean."""
    if not values:
        return None, ""
    if all(v in (0.0, 1.0) for v in values):
        return wilson(int(sum(values)), len(values)), "wilson"
    return bootstrap_mean(values), "bootstrap"


# -- the per-instance values behind each headline -----------------------------------------------------


def _unperturbed(scoring: Scoring, category: str, metric: str) -> dict[str, float]:
    return {
        s.instance_id: s.value
        for s in scoring.stats
        if s.category == category and s.metric == metric and not s.perturbation and s.value is not None
    }


def _worst_values(scoring: Scoring, metric: Metric) -> list[float]:
    """Each instance's worst value over its original and the category's perturbations (as in robustness.py)."""
    perturbations = scoring.spec.perturbations
    names = perturbations.robustness if metric.category == "robustness" else perturbations.fairness
    values: dict[str, list[float]] = {}
    originals = _unperturbed(scoring, "accuracy", metric.metric)
    for s in scoring.stats:
        if s.category == "accuracy" and s.metric == metric.metric and s.value is not None and s.perturbation in names:
            values.setdefault(s.instance_id, []).append(s.value)
    pick = max if metric.lower_is_better else min
    return [pick([v, *values.get(i, [])]) for i, v in originals.items()]


def ece_of_counts(confidence: np.ndarray, correct: np.ndarray, counts: np.ndarray, num_bins: int) -> float | None:
    """calibration.ece of a resample given as counts over instances sorted by confidence, in O(n).

    The same equal-mass binning (array_split runs, edges half-way between neighbouring runs, a
    point on an edge in the lower bin), computed with cumulative sums instead of a sort per
    resample, so 1,000 resamples of 10,000 instances take well under a second. The tests check
    it against calibration.ece.
    """
    total = int(counts.sum())
    if total == 0:
        return None
    cumulative = np.cumsum(counts)
    bins = min(num_bins, total)
    q, r = divmod(total, bins)
    ends = np.cumsum([q + 1] * r + [q] * (bins - r))  # each run's end (exclusive), in resample positions

    def value_at(position: np.ndarray) -> np.ndarray:
        return confidence[np.searchsorted(cumulative, position, side="right")]

    middles = (value_at(ends[:-1] - 1) + value_at(ends[:-1])) / 2.0
    edges = np.unique(np.append(middles, 1.0))
    bounds = np.concatenate([[0], np.searchsorted(confidence, edges, side="right")])
    p_sums = np.concatenate([[0.0], np.cumsum(counts * confidence)])[bounds]
    y_sums = np.concatenate([[0.0], np.cumsum(counts * correct)])[bounds]
    return float(np.abs(np.diff(p_sums) - np.diff(y_sums)).sum() / total)


def _ece_interval(scoring: Scoring) -> tuple[float, float] | None:
    main = scoring.main_values()
    own = [s for s in scoring.stats if s.category == "calibration" and s.metric == "confidence" and s.value is not None]
    confidence = np.clip(np.asarray([s.value for s in own], dtype=float), 0.0, 1.0)
    # Correct as the point estimate counts it (calibration._aggregate): int() of the main metric's value.
    correct = np.asarray([int(main[s.instance_id] or 0) for s in own], dtype=float)
    order = np.argsort(confidence, kind="stable")
    confidence, correct = confidence[order], correct[order]
    n = len(own)
    return bootstrap(lambda idx: ece_of_counts(confidence, correct, np.bincount(idx, minlength=n), 10), n)


def _gap_interval(scoring: Scoring, metric: Metric) -> tuple[float, float] | None:
    """The largest gap between group means, recomputed on resampled instances."""
    main = metric.metric.removesuffix("_group_gap")
    values = _unperturbed(scoring, "accuracy", main)
    pairs = [(v, scoring.groups.get(i)) for i, v in values.items() if scoring.groups.get(i)]
    names = sorted({g for _, g in pairs})
    if len(names) < 2:
        return None
    data = np.asarray([v for v, _ in pairs], dtype=float)
    codes = np.asarray([names.index(g) for _, g in pairs])

    def gap(idx: np.ndarray) -> float | None:
        counts = np.bincount(codes[idx], minlength=len(names))
        sums = np.bincount(codes[idx], weights=data[idx], minlength=len(names))
        means = sums[counts > 0] / counts[counts > 0]
        return float(means.max() - means.min()) if len(means) > 1 else None

    return bootstrap(gap, len(pairs))


def _stereotype_interval(scoring: Scoring, metric: Metric) -> tuple[float, float] | None:
    """Stereotypical associations are sums over completions, so a resample is a weighted sum of per-text counts."""
    from collections import Counter

    from helmflow.tasks.metrics import bias

    _, group_kind, target = metric.metric.rsplit("_", 2)
    lists = bias.GROUPS[group_kind]
    sizes = np.asarray([len(bias.word_list(n)) for n in lists], dtype=float)
    words = bias.word_list(bias._TARGET_FILES[target])
    texts = [Counter(bias.tokenize(p.predicted_text)) for p in scoring.generated]
    present = sorted({w for tokens in texts for w in words if tokens[w]})
    if not present:
        return None
    # contributions[text, word, group] = group-word count × target-word count in that text
    contributions = np.asarray(
        [[[g * tokens[w] for g in bias._group_counts(tokens, lists)] for w in present] for tokens in texts], dtype=float
    )

    def statistic(idx: np.ndarray) -> float | None:
        weights = np.bincount(idx, minlength=len(texts)).astype(float)
        sums = np.tensordot(weights, contributions, axes=1) / sizes  # word × group, size-normalised
        totals = sums.sum(axis=1)
        scored = sums[totals > 0] / totals[totals > 0, None]
        if len(scored) == 0:
            return None
        return float((0.5 * np.abs(1 / len(lists) - scored).sum(axis=1)).mean())

    return bootstrap(statistic, len(texts))


def _bbq_interval(scoring: Scoring) -> tuple[float, float] | None:
    from helmflow.tasks.metrics import bbq

    chosen = {p.request.instance_id: p.predicted_index for p in scoring.unperturbed if p.predicted_index is not None}
    items = [inst for inst in scoring.instances if inst.id in chosen and inst.extra.get("condition") == "ambig"]
    if not items:
        return None

    def statistic(idx: np.ndarray) -> float | None:
        sample = [items[i] for i in idx]
        return next(m.value for m in bbq.aggregate(sample, chosen) if m.metric == "bbq_bias_ambiguous")

    return bootstrap(statistic, len(items))


# ci_method of a headline whose interval cannot be estimated: "none: " and why, shown instead of an interval.
NO_SPREAD = "none: every request's runtime is its batch's time shared equally, and one batch leaves no spread"


def interval_of(metric: Metric, scoring: Scoring) -> tuple[tuple[float, float] | None, str]:
    """The interval of one whole-run headline metric and its method ('' when none applies)."""
    name = metric.metric
    if metric.category == "accuracy" and name in RATIOS:
        return _ratio_interval(metric, scoring), "bootstrap"
    if metric.category == "accuracy":
        return proportion_or_mean(list(_unperturbed(scoring, "accuracy", name).values()))
    if metric.perturbation == "worst_case":
        return proportion_or_mean(_worst_values(scoring, metric))
    if name == "ece_10_bin":
        return _ece_interval(scoring), "bootstrap"
    if name.endswith("_group_gap"):
        return _gap_interval(scoring, metric), "bootstrap"
    if name == "toxic_fraction":
        from helmflow.tasks.metrics.toxicity import TOXIC_THRESHOLD

        scores = _unperturbed(scoring, "toxicity", "toxicity_probability").values()
        return proportion_or_mean([float(s >= TOXIC_THRESHOLD) for s in scores])
    if name.startswith("stereotypical_associations_"):
        return _stereotype_interval(scoring, metric), "bootstrap"
    if name == "bbq_bias_ambiguous":
        return _bbq_interval(scoring), "bootstrap"
    if name == "inference_runtime":
        runtimes = list(_unperturbed(scoring, "efficiency", name).values())
        if len(set(runtimes)) < 2:
            # A request's runtime is its batch's time shared equally: with one batch every instance has the
            # same value, and a bootstrap of them would give a zero-width interval that reads as certainty.
            return None, NO_SPREAD
        return bootstrap_mean(runtimes), "bootstrap"
    return None, ""


def _ratio_interval(metric: Metric, scoring: Scoring) -> tuple[float, float] | None:
    """A language-modelling ratio (bits per byte, a perplexity) of the run or one group, its ratio of sums
    recomputed on resampled texts."""
    key, shown = RATIOS[metric.metric]
    texts = [t for t in scored_texts(scoring) if not metric.group or scoring.groups.get(t.instance_id) == metric.group]
    counted = [t for t in texts if t.counts[key] > 0]
    if len(counted) < 2:
        return None
    ll = np.array([t.logprob for t in counted])
    counts = np.array([t.counts[key] for t in counted], dtype=float)
    bounds = bootstrap(lambda idx: float(ll[idx].sum() / counts[idx].sum()), len(counted))
    # Every shown form is monotone in the ratio (decreasing), so its bounds are the shown ends, in order.
    return None if bounds is None else (min(map(shown, bounds)), max(map(shown, bounds)))


def _group_interval(
    metric: Metric, scoring: Scoring, seen: dict[str, dict[str, float]]
) -> tuple[tuple[float, float] | None, str]:
    """An accuracy metric within one instance group: Wilson or the bootstrap mean of its instances.

    `seen` keeps each metric's per-instance values across groups (one pass over the stats per metric).
    """
    if metric.metric in RATIOS:
        return _ratio_interval(metric, scoring), "bootstrap"
    if metric.metric not in seen:
        seen[metric.metric] = _unperturbed(scoring, "accuracy", metric.metric)
    return proportion_or_mean([v for i, v in seen[metric.metric].items() if scoring.groups.get(i) == metric.group])


def with_intervals(metrics: list[Metric], scoring: Scoring) -> list[Metric]:
    """Every whole-run headline metric, and every per-group accuracy, with its 95% interval; others unchanged."""
    out: list[Metric] = []
    seen: dict[str, dict[str, float]] = {}
    for m in metrics:
        per_group = m.category == "accuracy" and bool(m.group) and not m.perturbation
        if m.value is None or not (per_group or (m.headline and not m.group)):
            out.append(m)
            continue
        bounds, method = _group_interval(m, scoring, seen) if per_group else interval_of(m, scoring)
        low, high = bounds if bounds else (None, None)
        base = {f.name: getattr(m, f.name) for f in fields(Metric)}
        kept = method if bounds or method.startswith("none:") else ""  # a reason for no interval is kept
        out.append(IntervalMetric(**base, ci_low=low, ci_high=high, ci_method=kept))
    return out
