"""Efficiency (docs/metrics.md#efficiency): observed and denoised runtime per instance, tokens and FLOPs.

`inference_denoised_runtime` fits runtime ≈ a + b·prompt_tokens + c·output_tokens by least
absolute deviations (a median fit, by iteratively reweighted least squares) and averages the
fitted values: a stall or a busy neighbour moves a few observed runtimes a lot but the median
fit little. (HELM instead fits such a model once per model on quiet hardware; a run here has
only its own requests to go on.)
"""

from __future__ import annotations

import statistics
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from helmflow.tasks.metrics.scoring import ALL_METHODS, LANGUAGE_MODELING, MetricRecord, Scoring
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


@dataclass(frozen=True)
class Observed:
    """What a run's requests measured, one entry per unperturbed instance."""

    runtimes: list[float]
    prompt_tokens: list[int]
    output_tokens: list[int]
    num_parameters: int | None = None
    prompt_tokens_requested: list[int] | None = None
    prompt_tokens_computed: list[float] | None = None

    @property
    def n(self) -> int:
        return len(self.runtimes)

    @property
    def tokens(self) -> list[int]:
        return [p + o for p, o in zip(self.prompt_tokens, self.output_tokens, strict=True)]

    def per_second(self, amount: float) -> float | None:
        total_time = sum(self.runtimes)
        return amount / total_time if total_time > 0 else None

    @property
    def reused(self) -> bool:
        """Whether the backend said which prompt tokens it computed (shared prefixes)."""
        requested, computed = self.prompt_tokens_requested, self.prompt_tokens_computed
        return bool(requested and computed and sum(requested) > 0)

    def flops(self) -> list[float]:
        return [2.0 * (self.num_parameters or 0) * t for t in self.tokens]


Rows = Callable[[Observed], list[Metric]]


def _row(
    name: str, value: Callable[[Observed], float | None], lower_is_better: bool = True, headline: bool = False
) -> Rows:
    """A metric that every run has: one row from what was observed."""

    def rows(o: Observed) -> list[Metric]:
        return [Metric("efficiency", name, value(o), o.n, lower_is_better, headline=headline)]

    return rows


def _if(applies: Callable[[Observed], bool], row: Rows) -> Rows:
    """A metric only some runs have (a backend that reports reuse, a known parameter count)."""
    return lambda o: row(o) if applies(o) else []


# name -> its rows from what was observed, in the order rows are stored.
ROWS: dict[str, Rows] = {
    "inference_runtime": _row("inference_runtime", lambda o: mean(o.runtimes), headline=True),
    "inference_runtime_p50": _row(
        "inference_runtime_p50", lambda o: statistics.median(o.runtimes) if o.runtimes else None
    ),
    "inference_runtime_p95": _row("inference_runtime_p95", lambda o: percentile(o.runtimes, 0.95)),
    "inference_denoised_runtime": _row(
        "inference_denoised_runtime",
        lambda o: mean(denoised_runtimes(o.runtimes, o.prompt_tokens, o.output_tokens)) if o.n else None,
    ),
    "prompt_tokens": _row("prompt_tokens", lambda o: mean([float(t) for t in o.prompt_tokens])),
    "output_tokens": _row("output_tokens", lambda o: mean([float(t) for t in o.output_tokens])),
    "tokens_per_second": _row("tokens_per_second", lambda o: o.per_second(sum(o.tokens)), lower_is_better=False),
    "instances_per_second": _row("instances_per_second", lambda o: o.per_second(o.n), lower_is_better=False),
    # What reusing shared prefixes saved: tokens the scoring needed, whole, against those computed.
    "prompt_tokens_requested": _if(
        lambda o: o.reused,
        _row(
            "prompt_tokens_requested",
            lambda o: mean([float(t) for t in o.prompt_tokens_requested or []]),
            lower_is_better=False,
        ),
    ),
    "prompt_tokens_computed": _if(
        lambda o: o.reused, _row("prompt_tokens_computed", lambda o: mean(o.prompt_tokens_computed or []))
    ),
    "idealized_flops": _if(lambda o: bool(o.num_parameters), _row("idealized_flops", lambda o: mean(o.flops()))),
    "achieved_flop_per_second": _if(
        lambda o: bool(o.num_parameters),
        _row("achieved_flop_per_second", lambda o: o.per_second(sum(o.flops())), lower_is_better=False),
    ),
}


def aggregate(
    runtimes: list[float],
    prompt_tokens: list[int],
    output_tokens: list[int],
    num_parameters: int | None = None,
    prompt_tokens_requested: list[int] | None = None,
    prompt_tokens_computed: list[float] | None = None,
) -> list[Metric]:
    observed = Observed(
        runtimes, prompt_tokens, output_tokens, num_parameters, prompt_tokens_requested, prompt_tokens_computed
    )
    return [m for rows in ROWS.values() for m in rows(observed)]


def _instance_stats(scoring: Scoring) -> list[Stat]:
    return [
        Stat(p.request.instance_id, "efficiency", "inference_runtime", p.completion.latency_s)
        for p in scoring.unperturbed
    ]


def observed(scoring: Scoring) -> Observed:
    completions = [p.completion for p in scoring.unperturbed]
    return Observed(
        [c.latency_s for c in completions],
        [c.prompt_tokens for c in completions],
        [c.output_tokens for c in completions],
        scoring.num_parameters,
        [c.prompt_tokens_requested for c in completions],
        [c.prompt_tokens_computed for c in completions],
    )


def _record(name: str, display_name: str, description: str, higher_is_better: bool = False) -> MetricRecord:
    return MetricRecord(
        name=name,
        category="efficiency",
        function=lambda scoring: ROWS[name](observed(scoring)),
        higher_is_better=higher_is_better,
        display_name=display_name,
        methods=ALL_METHODS + LANGUAGE_MODELING,
        # The per-instance runtimes behind inference_runtime's interval.
        stats=_instance_stats if name == "inference_runtime" else None,
        description=description,
    )


METRICS = [
    _record("inference_runtime", "Runtime (s)", "mean seconds per instance"),
    _record("inference_runtime_p50", "Runtime, median (s)", "median seconds per instance"),
    _record("inference_runtime_p95", "Runtime, 95th percentile (s)", "95th percentile of seconds per instance"),
    _record("inference_denoised_runtime", "Denoised runtime (s)", "runtime fitted on token counts (median fit)"),
    _record("prompt_tokens", "Prompt tokens", "mean prompt tokens per instance"),
    _record("output_tokens", "Output tokens", "mean output tokens per instance"),
    _record("tokens_per_second", "Tokens per second", "prompt and output tokens over the total runtime", True),
    _record("instances_per_second", "Instances per second", "instances over the total runtime", True),
    # Stored as not lower-is-better since it was added: what the scoring needed, a baseline, not a cost.
    _record("prompt_tokens_requested", "Prompt tokens requested", "tokens scoring needed, prefixes unshared", True),
    _record("prompt_tokens_computed", "Prompt tokens computed", "tokens computed, shared prefixes once"),
    _record("idealized_flops", "Idealized FLOPs", "2 × parameters × tokens per instance"),
    _record("achieved_flop_per_second", "Achieved FLOP/s", "idealized FLOPs over the total runtime", True),
]
