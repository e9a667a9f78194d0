"""Efficiency (METRICS.md §7): observed and denoised runtime per instance, tokens and FLOPs.

`inference_denoised_runtime` fits runtime ≈ a + b·prompt_tokens + c·output_tokens by least
absolute deviations (a median fit, by iteratively reweighted least squares) and averages the
fitted values: a stall or a busy neighbour moves a few observed runtimes a lot but the median
fit little. (HELM instead fits such a model once per model on quiet hardware; a run here has
only its own requests to go on.)
"""

from __future__ import annotations

import statistics

import numpy as np

from helmflow.tasks.metrics.scoring import Category, Scoring
from helmflow.tasks.metrics.types import Metric, mean
from helmflow.tasks.records import Stat


def percentile(values: list[float], q: float) -> float | None:
    """Linear-interpolated percentile (numpy's default method)."""
    if not values:
        return None
    ordered = sorted(values)
    position = (len(ordered) - 1) * q
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def denoised_runtimes(runtimes: list[float], prompt_tokens: list[int], output_tokens: list[int]) -> list[float]:
    """Per-instance runtimes from a median regression on token counts."""
    y = np.asarray(runtimes, dtype=float)
    x = np.column_stack([np.ones(len(y)), prompt_tokens, output_tokens]).astype(float)
    weights = np.ones(len(y))
    coef = np.zeros(3)
    for _ in range(50):
        coef_new = np.linalg.lstsq(x * weights[:, None], y * weights, rcond=None)[0]
        residuals = np.abs(y - x @ coef_new)
        weights = 1.0 / np.sqrt(np.maximum(residuals, 1e-9))
        if np.allclose(coef_new, coef, rtol=1e-10, atol=1e-12):
            break
        coef = coef_new
    return [float(v) for v in np.maximum(x @ coef_new, 0.0)]


def aggregate(
    runtimes: list[float],
    prompt_tokens: list[int],
    output_tokens: list[int],
    num_parameters: int | None = None,
    prompt_tokens_requested: list[int] | None = None,
    prompt_tokens_computed: list[float] | None = None,
) -> list[Metric]:
    n = len(runtimes)
    total_time = sum(runtimes)
    tokens = [p + o for p, o in zip(prompt_tokens, output_tokens, strict=True)]

    def per_second(amount: float) -> float | None:
        return amount / total_time if total_time > 0 else None

    metrics = [
        Metric("efficiency", "inference_runtime", mean(runtimes), n, lower_is_better=True, headline=True),
        Metric(
            "efficiency",
            "inference_runtime_p50",
            statistics.median(runtimes) if runtimes else None,
            n,
            lower_is_better=True,
        ),
        Metric("efficiency", "inference_runtime_p95", percentile(runtimes, 0.95), n, lower_is_better=True),
        Metric(
            "efficiency",
            "inference_denoised_runtime",
            mean(denoised_runtimes(runtimes, prompt_tokens, output_tokens)) if n else None,
            n,
            lower_is_better=True,
        ),
        Metric("efficiency", "prompt_tokens", mean([float(t) for t in prompt_tokens]), n, lower_is_better=True),
        Metric("efficiency", "output_tokens", mean([float(t) for t in output_tokens]), n, lower_is_better=True),
        Metric("efficiency", "tokens_per_second", per_second(sum(tokens)), n),
        Metric("efficiency", "instances_per_second", per_second(n), n),
    ]
    if prompt_tokens_requested and prompt_tokens_computed and sum(prompt_tokens_requested) > 0:
        # What reusing shared prefixes saved: tokens the scoring needed, whole, against those computed.
        metrics += [
            Metric("efficiency", "prompt_tokens_requested", mean([float(t) for t in prompt_tokens_requested]), n),
            Metric("efficiency", "prompt_tokens_computed", mean(prompt_tokens_computed), n, lower_is_better=True),
        ]
    if num_parameters:
        flops = [2.0 * num_parameters * t for t in tokens]
        metrics += [
            Metric("efficiency", "idealized_flops", mean(flops), n, lower_is_better=True),
            Metric("efficiency", "achieved_flop_per_second", per_second(sum(flops)), n),
        ]
    return metrics


def _instance_stats(scoring: Scoring) -> list[Stat]:
    return [
        Stat(p.request.instance_id, "efficiency", "inference_runtime", p.completion.latency_s)
        for p in scoring.unperturbed
    ]


def _aggregate(scoring: Scoring) -> list[Metric]:
    completions = [p.completion for p in scoring.unperturbed]
    return aggregate(
        [c.latency_s for c in completions],
        [c.prompt_tokens for c in completions],
        [c.output_tokens for c in completions],
        scoring.num_parameters,
        [c.prompt_tokens_requested for c in completions],
        [c.prompt_tokens_computed for c in completions],
    )


CATEGORY = Category(instance_stats=_instance_stats, aggregate=_aggregate)
