"""Context-window fitting (tasks/fit_context.py) on a tiny window with a whitespace tokenizer.

A token is a whitespace-separated word, so every count below can be checked by eye and every
expected prompt is written out in full.
"""

from __future__ import annotations

import re
from dataclasses import replace

import pytest

from helmflow.specs.schema import AdapterSpec
from helmflow.tasks.adapt import render_prompt
from helmflow.tasks.fit_context import ContextWindowError, Fitted, Passage, Window, fit_prompt
from helmflow.tasks.records import Instance


def count_words(text: str) -> int:
    return len(text.split())


def first_words(text: str, n: int) -> str:
    """The text up to the end of its n-th word: its own newlines kept, so expected prompts read as prompts."""
    words = list(re.finditer(r"\S+", text))
    if n <= 0:
        return ""
    return text if n >= len(words) else text[: words[n - 1].end()]


# Instructions 2 words, each exemplar 5, the instance's block 4: render(2) = 16, render(1) = 11, render(0) = 6.
INSTRUCTIONS = "Answer briefly.\n\n"
EXEMPLARS = ["Q: sky colour?\nA: blue\n\n", "Q: grass colour?\nA: green\n\n"]
BLOCK = "Q: snow colour?\nA:"


def render(k: int) -> str:
    return INSTRUCTIONS + "".join(EXEMPLARS[:k]) + BLOCK


def fit(context_window: int, max_tokens: int) -> Fitted:
    return fit_prompt(
        render,
        len(EXEMPLARS),
        count_tokens=count_words,
        truncate=first_words,
        context_window=context_window,
        max_tokens=max_tokens,
    )


def test_fits_as_is_at_the_exact_limit() -> None:
    # 16 prompt words + 4 reserved = 20: fits (HELM's test is <=).
    fitted = fit(context_window=20, max_tokens=4)
    assert fitted == Fitted(
        "Answer briefly.\n\nQ: sky colour?\nA: blue\n\nQ: grass colour?\nA: green\n\nQ: snow colour?\nA:", 2, "none"
    )
    assert not fitted.prompt_truncated


def test_drops_the_last_exemplar_first() -> None:
    # 16 + 5 > 20, 11 + 5 <= 20: one exemplar goes, the LAST one (grass), as HELM removes them.
    fitted = fit(context_window=20, max_tokens=5)
    assert fitted.prompt == "Answer briefly.\n\nQ: sky colour?\nA: blue\n\nQ: snow colour?\nA:"
    assert fitted.num_train_instances == 1
    assert not fitted.prompt_truncated  # dropping exemplars is not truncation


def test_fits_only_with_no_exemplar() -> None:
    fitted = fit(context_window=10, max_tokens=4)  # 6 words left: render(1) = 11 is too long, render(0) = 6 fits
    assert fitted == Fitted("Answer briefly.\n\nQ: snow colour?\nA:", 0, "none")


def test_truncates_the_whole_prompt_from_the_right_keeping_max_tokens() -> None:
    # 8 - 4 = 4 words left for render(0) = 6: HELM cuts the prompt's end (the question's end, "A:").
    fitted = fit(context_window=8, max_tokens=4)
    assert fitted == Fitted("Answer briefly.\n\nQ: snow", 0, "prompt")
    assert fitted.prompt_truncated
    assert count_words(fitted.prompt) + 4 == 8
    # The same window with no completion reserved holds the whole 6-word prompt: max_tokens is what cut it.
    assert fit(context_window=8, max_tokens=0) == Fitted("Answer briefly.\n\nQ: snow colour?\nA:", 0, "none")


def test_window_not_larger_than_max_tokens_is_an_error_naming_the_sizes() -> None:
    with pytest.raises(ContextWindowError, match=r"context window of 4 tokens .* max_tokens=5"):
        fit(context_window=4, max_tokens=5)
    with pytest.raises(ContextWindowError, match=r"context window of 5 tokens .* max_tokens=5"):
        fit(context_window=5, max_tokens=5)
    # One token of room is enough for a (very) truncated prompt.
    assert fit(context_window=6, max_tokens=5) == Fitted("Answer", 0, "prompt")


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="max_tokens must be >= 0"):
        fit(context_window=8, max_tokens=-1)
    with pytest.raises(ValueError, match="num_exemplars must be >= 0"):
        fit_prompt(render, -1, count_tokens=count_words, truncate=first_words, context_window=8, max_tokens=1)


def test_an_inexact_tokenizer_is_cut_until_it_fits() -> None:
    # A count that includes a BOS token the cut does not know about: asking for 4 words gives 5 tokens,
    # so the cut is re-counted and shortened (HELM's truncate_from_right re-checks the same way).
    fitted = fit_prompt(
        render,
        2,
        count_tokens=lambda text: count_words(text) + 1,
        truncate=first_words,
        context_window=8,
        max_tokens=4,
    )
    assert fitted == Fitted("Answer briefly.\n\nQ:", 0, "prompt")


# An open-book instance through the real adapter: instructions 3 words, the exemplar 8, the instance's
# block 11 (its passage 6 of them): render(1) = 22, render(0) = 14, render(0) with an empty passage = 8.
ADAPTER = AdapterSpec(
    method="generation", instructions="Read and answer.\n\n", num_train=1, fewshot_split="train", max_tokens=3
)
PASSAGE = "the snow fell all night long"
INSTANCE = Instance("q1", f"Passage: {PASSAGE}\nQuestion: what fell?", "test", references=("snow",))
SHOTS = [Instance("t1", "Passage: it rained\nQuestion: what fell?", "train", references=("rain",))]


def render_open_book(k: int) -> str:
    return render_prompt(ADAPTER, INSTANCE, SHOTS[:k])


def cut_passage(cut: str) -> str:
    return render_prompt(ADAPTER, replace(INSTANCE, input=INSTANCE.input.replace(PASSAGE, cut, 1)), [])


def fit_open_book(context_window: int, passage: Passage | None = None) -> Fitted:
    return fit_prompt(
        render_open_book,
        len(SHOTS),
        count_tokens=count_words,
        truncate=first_words,
        context_window=context_window,
        max_tokens=ADAPTER.max_tokens,
        passage=passage,
    )


def test_open_book_prompts_as_rendered() -> None:
    assert render_open_book(1) == (
        "Read and answer.\n\nPassage: it rained\nQuestion: what fell?\nAnswer: rain\n\n"
        "Passage: the snow fell all night long\nQuestion: what fell?\nAnswer:"
    )
    assert fit_open_book(25) == Fitted(render_open_book(1), 1, "none")  # 22 + 3 = 25


def test_open_book_default_is_helms_rule_losing_the_question() -> None:
    # 14 - 3 = 11 words left for render(0) = 14: the prompt's end goes, question and "Answer:" with it.
    fitted = fit_open_book(14)
    assert fitted == Fitted("Read and answer.\n\nPassage: the snow fell all night long\nQuestion:", 0, "prompt")


def test_open_book_passage_option_cuts_only_the_passage() -> None:
    # 11 words left, 8 of them the prompt around the passage: the passage keeps its first 3 words.
    fitted = fit_open_book(14, Passage(PASSAGE, cut_passage))
    assert fitted == Fitted("Read and answer.\n\nPassage: the snow fell\nQuestion: what fell?\nAnswer:", 0, "passage")
    assert fitted.prompt_truncated
    # Exemplars still go first: with room for render(1) nothing is cut.
    assert fit_open_book(25, Passage(PASSAGE, cut_passage)) == Fitted(render_open_book(1), 1, "none")


def test_open_book_passage_option_falls_back_when_the_rest_does_not_fit() -> None:
    # 10 - 3 = 7 words left, but the prompt around an empty passage is 8: HELM's rule applies.
    fitted = fit_open_book(10, Passage(PASSAGE, cut_passage))
    assert fitted == Fitted("Read and answer.\n\nPassage: the snow fell", 0, "prompt")


def test_passage_not_in_the_prompt_is_an_error() -> None:
    with pytest.raises(ValueError, match="passage is not where expected"):
        fit_open_book(14, Passage("a passage the prompt does not hold", cut_passage))


# -- in the adapter: every request fitted, and what fitting did recorded on it -------------------------------

WORDS = Window(12, count_words, first_words)


def _instances() -> tuple[list[Instance], list[Instance]]:
    pool = [
        Instance("e1", "sky colour?", "train", references=("blue",)),
        Instance("e2", "grass colour?", "train", references=("green",)),
    ]
    return [Instance("i1", "snow colour?", "test", references=("white",))], pool


def test_the_adapter_drops_the_last_exemplar_that_does_not_fit_and_says_so() -> None:
    from helmflow.tasks.adapt import build_requests

    adapter = AdapterSpec(
        method="generation", input_prefix="Q: ", output_prefix="A:", num_train=2, fewshot_split="train",
        fewshot_order="first_n", max_tokens=2,
    )  # fmt: skip
    instances, pool = _instances()
    # Each block "Q: x colour?\nA: y" is 5 words; the instance's "Q: snow colour?\nA:" 4. Two exemplars: 14 words
    # + 2 for the answer > 12; one: 9 + 2 <= 12.
    [request] = build_requests(adapter, instances, pool, seed=0, window=WORDS)
    assert request.prompt == "Q: sky colour?\nA: blue\n\nQ: snow colour?\nA:"
    assert (request.num_train_instances, request.prompt_truncated) == (1, False)
    [plain] = build_requests(adapter, instances, pool, seed=0)  # no window known: as before, nothing recorded
    assert plain.prompt.count("colour?") == 3 and plain.num_train_instances is None


def test_a_multiple_choice_prompt_keeps_room_for_its_longest_continuation_and_is_cut_last() -> None:
    from helmflow.tasks.adapt import build_requests

    adapter = AdapterSpec(method="multiple_choice_separate", input_prefix="Q: ", output_prefix="A:")
    inst = Instance("i1", "which colour has snow in the winter months?", "test", choices=("white", "pale grey"))
    # The prompt is 10 words; " pale grey" (2 words) is the longest continuation: 10 + 2 > 11, so the prompt
    # is cut to its first 9 words (the output prefix goes: HELM cuts the whole prompt from the right) and says so.
    [request] = build_requests(adapter, [inst], [], seed=0, window=Window(11, count_words, first_words))
    assert request.prompt == "Q: which colour has snow in the winter months?"
    assert (request.num_train_instances, request.prompt_truncated) == (0, True)
