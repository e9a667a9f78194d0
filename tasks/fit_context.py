"""Context-window fitting, the way Stanford HELM does it: drop exemplars first, then truncate.

A request must fit the model's context window together with the tokens it may generate. HELM's rule
(`InContextLearningAdapter._make_prompt_fit` with `LocalWindowService.fits_within_context_window` and
`truncate_from_right`), restated:

1. The prompt fits when ``tokens(prompt) + max_tokens <= context_window``: the completion's
   ``max_tokens`` are reserved in full, whatever the model will actually generate.
2. While it does not fit and exemplars remain, the LAST exemplar is removed, one at a time, so the
   prompt keeps the first k exemplars for the largest k that fits (the fewest removed). Instructions
   and the instance's own block are never removed.
3. With no exemplar left and still no fit, the WHOLE prompt text (instructions + the instance's block)
   is cut from the right to ``context_window - max_tokens`` tokens: its beginning is kept, its end lost.
   HELM re-checks the cut and shortens it further when re-tokenisation overshoots.
4. Per request HELM records ``num_train_instances`` (exemplars kept, after fitting) and
   ``prompt_truncated`` (whether the text was cut, step 3; dropping exemplars alone is not a truncation).

How this differs from the issue's wording ("drop exemplars first, then truncate the long passage"):
HELM does not truncate the passage. Its open-book scenarios (NaturalQuestions' openbook modes via
`PassageQuestionInput`, NarrativeQA, QuAC) flatten passage and question into one input text, passage
first, so the adapter cannot see the passage, and step 3 cuts the prompt's END: the question and the
"Answer:" prefix go first and the passage's beginning stays. HELM's maintainers noted exactly this
(stanford-crfm/helm#367, "for QA we are throwing away the question itself") and answered it by counting
truncations (#741) and by offering NaturalQuestions' `openbook_longans` mode (a short passage that fits),
not by changing the rule. So the DEFAULT here is HELM's whole-prompt right truncation, and truncating
only the passage is an option (`passage=`): with no exemplar left, the passage is cut from its right so
that the prompt around it stays whole; when even the prompt without any passage does not fit, it falls
back to HELM's rule. `Fitted.truncation` says which happened; `prompt_truncated` is true for either.

Nothing here knows a tokenizer or a model: the caller passes ``count_tokens`` and ``truncate`` (a Hugging
Face tokenizer's encode / decode, or whitespace words in tests) and ``render`` (tasks/adapt's
`render_prompt` with the first k exemplars).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

# "none": the prompt fits as rendered (possibly after dropping exemplars); "passage": the instance's
# passage was cut (the `passage=` option); "prompt": the whole prompt was cut from the right (HELM's rule).
Truncation = Literal["none", "passage", "prompt"]


class ContextWindowError(ValueError):
    """No prompt can fit: the window is too small for max_tokens, or the tokenizer cannot cut short enough."""


@dataclass(frozen=True)
class Passage:
    """The instance's long passage, for truncating it alone instead of the whole prompt.

    ``text`` is the passage as it appears in the prompt; ``render(cut)`` returns the prompt with NO
    exemplars and ``cut`` in place of the passage, so ``render(text)`` must equal the caller's
    ``render(0)`` (checked: a mismatch means the passage is not where the caller thinks it is).
    """

    text: str
    render: Callable[[str], str]


@dataclass(frozen=True)
class Window:
    """A model's context window and how to count and cut text in its tokens (tasks/models/window.py)."""

    context_window: int
    count_tokens: Callable[[str], int]
    truncate: Callable[[str, int], str]
    # Tokens put before every text (a BOS token); with them, a text's UTF-8 bytes bound its tokens from above.
    prefix_tokens: int = 0

    def surely_fits(self, text: str, room: int) -> bool:
        """True when the text fits without counting: every token of a byte-level or byte-fallback tokenizer
        covers at least one byte, and one more is allowed for a SentencePiece tokenizer's leading space."""
        return len(text.encode("utf-8")) + self.prefix_tokens + 1 + room <= self.context_window


@dataclass(frozen=True)
class Fitted:
    """The prompt to send and what fitting did to it (HELM's RequestState fields)."""

    prompt: str
    # Exemplars kept: the prompt holds the first `num_train_instances` of those offered.
    num_train_instances: int
    truncation: Truncation = "none"

    @property
    def prompt_truncated(self) -> bool:
        """HELM's `prompt_truncated`: the model does not see the whole of the instance's text."""
        return self.truncation != "none"


def fit_prompt(
    render: Callable[[int], str],
    num_exemplars: int,
    *,
    count_tokens: Callable[[str], int],
    truncate: Callable[[str, int], str],
    context_window: int,
    max_tokens: int,
    passage: Passage | None = None,
) -> Fitted:
    """The prompt with as many of the first exemplars as fit, cut only when none is left and it still
    does not fit, leaving ``max_tokens`` of the window for the completion (HELM's rule; module docstring).

    render: ``render(k)`` is the prompt with the first k of the ``num_exemplars`` exemplars (k from
        num_exemplars down to 0; exemplars are dropped from the end, as HELM drops them).
    count_tokens: the tokens the model will read for a text; count any BOS token the backend adds, so
        that the reserved room is real.
    truncate: ``truncate(text, n)`` is the beginning of ``text`` holding about n tokens. It need not be
        exact: every cut is re-counted and cut shorter while it overshoots (re-tokenisation at the cut can
        add a token), as HELM's `truncate_from_right` re-checks its own.
    context_window: the most tokens the model reads and writes in one sequence (prompt + completion).
    max_tokens: the tokens reserved for the completion. For a scored continuation (multiple choice),
        pass the longest continuation's token count.
    passage: truncate this passage instead of the whole prompt (an option; HELM has none).

    Raises ContextWindowError when ``max_tokens >= context_window``: no prompt token would fit. HELM has
    no such check: with a window of exactly max_tokens its cut can send an empty prompt, and with a smaller
    one its re-check (strip a character, re-count) can never succeed, so it does not end.
    """
    if num_exemplars < 0:
        raise ValueError(f"num_exemplars must be >= 0, got {num_exemplars}")
    if max_tokens < 0:
        raise ValueError(f"max_tokens must be >= 0, got {max_tokens}")
    budget = context_window - max_tokens
    if budget < 1:
        raise ContextWindowError(
            f"a context window of {context_window} tokens has no room for a prompt once max_tokens={max_tokens} "
            f"are reserved for the completion (the window must exceed max_tokens: at least {max_tokens + 1})"
        )

    # Fewest exemplars removed: try k = num_exemplars, num_exemplars - 1, ..., 0 and keep the first that
    # fits. Linear like HELM's loop (k is a handful), and exact whatever the tokenizer does at joins.
    for k in range(num_exemplars, -1, -1):
        prompt = render(k)
        if count_tokens(prompt) <= budget:
            return Fitted(prompt, k)

    # No exemplar left (prompt is render(0)) and it still does not fit: truncate.
    if passage is not None:
        if passage.render(passage.text) != prompt:
            raise ValueError("passage.render(passage.text) differs from render(0): the passage is not where expected")
        cut = _cut_passage(passage, count_tokens, truncate, budget)
        if cut is not None:
            return Fitted(cut, 0, "passage")
        # Even without its passage the prompt is too long (long instructions or question): HELM's rule.
    return Fitted(_cut_from_right(prompt, count_tokens, truncate, budget), 0, "prompt")


def _cut_from_right(
    text: str, count_tokens: Callable[[str], int], truncate: Callable[[str, int], str], budget: int
) -> str:
    """The beginning of ``text`` that counts at most ``budget`` tokens."""
    n = budget
    while n >= 0:
        cut = truncate(text, n)
        used = count_tokens(cut)
        if used <= budget:
            return cut
        # Re-tokenising the cut overshot (or the count includes a BOS that truncate did not): ask for
        # fewer tokens, by the overshoot, so a tokenizer off by many does not take budget rounds.
        n -= max(1, used - budget)
    raise ContextWindowError(
        f"even an empty cut of the prompt counts more than the {budget} tokens left for it: check count_tokens"
    )


def _cut_passage(
    passage: Passage, count_tokens: Callable[[str], int], truncate: Callable[[str, int], str], budget: int
) -> str | None:
    """The prompt with the passage cut from its right so that the whole prompt counts at most ``budget``
    tokens, or None when the prompt around an empty passage already does not fit."""
    frame = count_tokens(passage.render(""))
    if frame > budget:
        return None
    # Tokens do not add up exactly across the passage's edges, so start from the estimate and re-count.
    n = budget - frame
    while n >= 0:
        prompt = passage.render(truncate(passage.text, n))
        used = count_tokens(prompt)
        if used <= budget:
            return prompt
        n -= max(1, used - budget)
    return None


__all__ = ["ContextWindowError", "Fitted", "Passage", "Truncation", "fit_prompt"]
