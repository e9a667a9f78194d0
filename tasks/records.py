"""The records every stage passes on: Instance → Request → Completion → Prediction → Stat, Metric.

This module imports nothing else of helmflow's, so every layer (the warehouse included) can use
it: the warehouse turns rows into these records and back, and nowhere else does.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"


@dataclass(frozen=True)
class Instance:
    """The canonical instance every scenario's rows are mapped onto (HELM's Instance, simplified)."""

    id: str
    input: str
    split: str
    # Multiple choice: the options and the gold option's index. Generation: references instead.
    choices: tuple[str, ...] = ()
    gold_index: int | None = None
    references: tuple[str, ...] = ()
    group: str | None = None
    # Where the row came from, for error messages: "file.jsonl row 12" or "cais/mmlu test row 12".
    origin: str = ""
    extra: dict[str, str] = field(default_factory=dict, compare=False)

    @property
    def gold_text(self) -> str | None:
        if self.gold_index is not None and 0 <= self.gold_index < len(self.choices):
            return self.choices[self.gold_index]
        return self.references[0] if self.references else None


RequestKind = Literal["multiple_choice", "generation"]


@dataclass(frozen=True, slots=True)
class Request:
    id: str
    instance_id: str
    kind: RequestKind
    prompt: str
    # multiple_choice: the continuations scored after the prompt (" A", " B", ... or " " + each choice)
    # and the option texts they stand for (for per-character normalisation).
    continuations: tuple[str, ...] = ()
    choices: tuple[str, ...] = ()
    # multiple_choice_calibrated: the bare answer prompt whose log-probs are subtracted (HELM).
    baseline_prompt: str | None = None
    max_tokens: int = 0
    stop: tuple[str, ...] = ()
    perturbation: str = ""
    # What fitting the prompt into the model's context window did (tasks/fit_context.py; HELM's fields): the
    # exemplars kept (None: not fitted, no window known) and whether the prompt was cut.
    num_train_instances: int | None = None
    prompt_truncated: bool = False
    # Generation sampled at temperature > 0 (the adapter's num_samples; tasks/samples.py): its place among the
    # instance's samples (1..n; 0 is the greedy request every instance has), its decoding, and the seed of its
    # random stream, so the same run seed draws the same sample whatever batch the request is computed in.
    sample: int = 0
    temperature: float = 0.0
    top_p: float = 1.0
    seed: int | None = None


@dataclass(slots=True)
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
    # Prompt tokens the request's scoring needed, every sequence whole (what scoring without reuse
    # computes), and the tokens the model did compute for it: its own, plus its share of a prefix
    # computed once for its group (tasks/models/shared_prefix.py). Zero where a backend does not say.
    prompt_tokens_requested: int = 0
    prompt_tokens_computed: float = 0.0
    # Wall seconds of the batch(es) that served this request, shared equally over their members.
    latency_s: float = 0.0
    batch_size: int = 0
    # Seconds spent inside the model's forward passes (the rest of latency is tokenisation etc.).
    forward_s: float = 0.0
    error: str | None = None


@dataclass(frozen=True, slots=True)
class Prediction:
    """A request's outcome as it is stored: what the model chose and how sure it was."""

    request: Request
    completion: Completion
    predicted_index: int | None
    predicted_text: str
    # Multiple choice: the chosen option's probability renormalised over the options.
    # Generation: exp(sum of the output tokens' log-probs), HELM's max_prob.
    confidence: float | None
    # Separate / calibrated multiple choice: the choice picked after dividing each score by its
    # token count ("token") or by its text's length in characters ("char", lm-eval's acc_norm).
    normalized_indices: dict[str, int] = field(default_factory=dict)
    # Generation: predicted_text was read out of completion.text by the scenario's answer_extraction.
    extracted: bool = False


@dataclass(frozen=True, slots=True)
class Stat:
    """One value for one instance (and perturbation; '' is the unperturbed input)."""

    instance_id: str
    category: str
    metric: str
    value: float | None
    perturbation: str = ""


@dataclass(frozen=True)
class Metric:
    """One aggregate for the run; `group` is '' for the whole run, else the instance group."""

    category: str
    metric: str
    value: float | None
    n: int
    lower_is_better: bool = False
    perturbation: str = ""
    group: str = ""
    headline: bool = False


@dataclass(frozen=True)
class ValidationResult:
    """One Great Expectations expectation's outcome on one stage's table."""

    stage: str
    expectation: str
    kwargs: str  # JSON of the expectation's arguments
    success: bool
    element_count: int
    unexpected_count: int
    unexpected_ids: list[str]

    def describe(self, where: dict[str, str] | None = None) -> str:
        """One line; `where` maps row ids to their place in the source (file and row)."""
        names = [f"{i} ({where[i]})" if where and i in where else i for i in self.unexpected_ids[:5]]
        more = " ..." if len(self.unexpected_ids) > 5 else ""
        return f"{self.stage}: {self.expectation} {self.kwargs} failed on {self.unexpected_count} row(s): " + (
            ", ".join(names) + more
        )
