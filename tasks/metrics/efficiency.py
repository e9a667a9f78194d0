"""Efficiency (METRICS.md §7): observed runtime per instance and token throughput."""

from __future__ import annotations

import statistics

from tasks.metrics.types import Metric, mean


def percentile(values: list[float], q: float) -> float | None:
    """Linear-interpolated percentile (numpy's default method)."""
    if not values:
        return None
    ordered = sorted(values)
    position = (len(ordered) - 1) * q
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def aggregate(runtimes: list[float], prompt_tokens: list[int], output_tokens: list[int]) -> list[Metric]:
    n = len(runtimes)
    total_time = sum(runtimes)
    total_tokens = sum(prompt_tokens) + sum(output_tokens)

    def per_second(amount: float) -> float | None:
        return amount / total_time if total_time > 0 else None

    return [
        Metric("efficiency", "inference_runtime", mean(runtimes), n, lower_is_better=True, headline=True),
        Metric(
            "efficiency",
            "inference_runtime_p50",
            statistics.median(runtimes) if runtimes else None,
            n,
            lower_is_better=True,
        ),
        Metric("efficiency", "inference_runtime_p95", percentile(runtimes, 0.95), n, lower_is_better=True),
        Metric("efficiency", "prompt_tokens", mean([float(t) for t in prompt_tokens]), n, lower_is_better=True),
        Metric("efficiency", "output_tokens", mean([float(t) for t in output_tokens]), n, lower_is_better=True),
        Metric("efficiency", "tokens_per_second", per_second(total_tokens), n),
        Metric("efficiency", "instances_per_second", per_second(n), n),
    ]
