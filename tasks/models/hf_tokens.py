"""How the `hf` backend turns requests into token ids: lm-evaluation-harness's rules, one place.

- A prompt starts with the tokens the tokenizer itself puts before a text (a BOS token for Llama 3 or
  Gemma, none for SmolLM2), as lm-eval and HELM tokenise; the spec's `add_bos_token` overrides it, and
  a text that already starts with the BOS token gets no second one.
- Multiple choice: trailing spaces of the prompt move into the continuation ("A: " + "yes" is scored as
  "A:" + " yes"); the model reads the context's own tokens, then the tokens of tokenize(context +
  continuation) past the context's length. An empty context is the BOS token alone (the EOS token when
  there is none), and its continuation is tokenised by itself; a text longer than max_length is scored in
  lm-eval's rolling windows (rolling_sequences), as its loglikelihood_rolling scores a document.
- Inputs longer than max_length lose their left end; a generation prompt keeps max_tokens of room.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from helmflow.tasks.models.base import ModelError
from helmflow.tasks.records import Request

if TYPE_CHECKING:
    from helmflow.tasks.models.hf import HFModel


@dataclass
class Sequence:
    """One forward-pass row: input ids and, per scored continuation, its target tokens."""

    request_index: int
    input_ids: list[int]
    # (continuation index, first scored position, target token ids)
    targets: list[tuple[int, int, list[int]]] = field(default_factory=list)


def prompt_prefix(tokenizer: Any, add_bos_token: bool | None, name: str) -> list[int]:
    """The tokens every prompt starts with before its text. None: those the tokenizer itself puts before
    a text (its BOS token, if its config says so); True: the BOS token; False: none."""
    if add_bos_token is False:
        return []
    if add_bos_token:
        if tokenizer.bos_token_id is None:
            raise ModelError(f"model '{name}': add_bos_token is true, but its tokenizer has no BOS token")
        return [tokenizer.bos_token_id]
    text = tokenizer("a", add_special_tokens=False).input_ids
    default = tokenizer("a").input_ids
    starts = [i for i in range(len(default) - len(text) + 1) if default[i : i + len(text)] == text]
    return default[: starts[0]] if starts else []


def encode(model: HFModel, text: str) -> list[int]:
    """A prompt's tokens: the prompt prefix, then the text's (no second BOS on a text that has one)."""
    ids: list[int] = model.tokenizer(text, add_special_tokens=False).input_ids
    bos = model.tokenizer.bos_token
    if not model.prompt_prefix or (bos and text.startswith(bos)):
        return ids
    return [*model.prompt_prefix, *ids]


def empty_context(model: HFModel) -> list[int]:
    """What an empty prompt is read as: the BOS token, else the EOS token (lm-eval's prefix token)."""
    bos = model.tokenizer.bos_token_id
    return [bos if bos is not None else model.tokenizer.eos_token_id]


def generation_prompt(model: HFModel, request: Request) -> list[int]:
    """A generation prompt's tokens, left-truncated so that the prompt and max_tokens fit in max_length
    (a long prompt loses its beginning, never the room to answer)."""
    ids = encode(model, request.prompt) or empty_context(model)
    return ids[-max(1, model.spec.max_length - request.max_tokens) :]


def choice_sequences(model: HFModel, index: int, request: Request) -> list[Sequence]:
    """The rows that score a multiple-choice request's continuations: one row when every continuation is
    a single token after the same context (MMLU's " A".." D"), else one row per continuation."""
    prompt = request.prompt.rstrip()
    moved = request.prompt[len(prompt) :]
    context = encode(model, prompt) if prompt else []
    limit = model.spec.max_length
    continuations = []
    for choice in request.continuations:
        if context:
            tokens = encode(model, prompt + moved + choice)[len(context) :]
        else:
            tokens = model.tokenizer(moved + choice, add_special_tokens=False).input_ids
        if not tokens:
            raise ModelError(
                f"request '{request.id}': the choice {choice!r} adds no token after the prompt (the tokenizer "
                "merges it into the prompt's last token), so it has no log-likelihood to score"
            )
        if len(tokens) > limit and context:
            raise ModelError(
                f"request '{request.id}': the choice {choice!r} is {len(tokens)} tokens, more than the "
                f"model's max_length {limit}"
            )
        continuations.append(tokens)
    if not context and any(len(tokens) > limit for tokens in continuations):
        return [seq for k, tokens in enumerate(continuations) for seq in rolling_sequences(model, index, k, tokens)]
    context = context or empty_context(model)
    if all(len(tokens) == 1 for tokens in continuations):
        kept = context[-limit:]
        return [Sequence(index, kept, [(k, len(kept) - 1, c) for k, c in enumerate(continuations)])]
    sequences = []
    for k, tokens in enumerate(continuations):
        ids = (context + tokens)[-(limit + 1) :]
        sequences.append(Sequence(index, ids[:-1], [(k, len(ids) - len(tokens) - 1, tokens)]))
    return sequences


def rolling_sequences(model: HFModel, index: int, k: int, tokens: list[int]) -> list[Sequence]:
    """A text's tokens scored whole, in windows of max_length, as lm-eval's loglikelihood_rolling scores them
    (lm_eval/utils.py get_rolling_token_windows with context_len 1, then make_disjoint_window): the first window
    reads the prefix token and predicts the first max_length tokens; each next one predicts the next up to
    max_length tokens, reading the max_length tokens before each. The windows' sums add up to the text's."""
    limit = model.spec.max_length
    first = min(limit, len(tokens))
    rows = [Sequence(index, [*empty_context(model), *tokens[: first - 1]], [(k, 0, tokens[:first])])]
    predicted = first
    while predicted < len(tokens):
        end = predicted + min(len(tokens) - predicted, limit)
        target = tokens[predicted:end]
        inputs = tokens[max(0, end - limit - 1) : end - 1]
        rows.append(Sequence(index, inputs, [(k, len(inputs) - len(target), target)]))
        predicted = end
    return rows
