"""What every model backend returns, and the interface it implements."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from helmflow.tasks.adapt import Request


class ModelError(RuntimeError):
    """A model that cannot be loaded or used; the message says what to do."""


@dataclass
class Completion:
    request_id: str
    # multiple_choice: the log-likelihood of each continuation. generation: each output token's log-prob.
    logprobs: list[float] = field(default_factory=list)
    # multiple_choice: how many tokens each continuation has (for per-token normalisation).
    continuation_tokens: list[int] = field(default_factory=list)
    # multiple_choice_calibrated: each continuation's log-likelihood after the bare answer prompt.
    baseline_logprobs: list[float] = field(default_factory=list)
    text: str = ""
    # Generation: tokens the model produced before the stop sequence or end-of-text cut them
    # (an immediate newline under stop ["\n"] leaves text "" but is still an answer).
    generated_tokens: int = 0
    prompt_tokens: int = 0
    output_tokens: int = 0
    # Wall seconds of the batch(es) that served this request, shared equally over their members.
    latency_s: float = 0.0
    batch_size: int = 0
    # Seconds spent inside the model's forward passes (the rest of latency is tokenisation etc.).
    forward_s: float = 0.0
    error: str | None = None


@dataclass(frozen=True)
class ModelInfo:
    name: str
    backend: str
    fingerprint: str
    device: str
    dtype: str
    batch_size: int
    num_threads: int
    num_parameters: int | None


class ModelBackend(Protocol):
    info: ModelInfo

    def loglikelihood(
        self, requests: list[Request], progress: Callable[[int, int], None] | None = None
    ) -> list[Completion]: ...

    def generate(
        self, requests: list[Request], progress: Callable[[int, int], None] | None = None
    ) -> list[Completion]: ...
