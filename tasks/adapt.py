"""Adapter: instances become model requests (HELM's adapter stage).

`multiple_choice_joint` lists the lettered options in the prompt and scores the option letters
at the answer position, the way lm-evaluation-harness scores MMLU. `generation` asks for a
greedy completion. Both take zero or k exemplars from a named split, label-balanced and seeded.
"""

from __future__ import annotations

import random
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import replace
from functools import lru_cache

from helmflow.specs.schema import AdapterSpec, group_words
from helmflow.tasks.chat import ChatFormat
from helmflow.tasks.data import DataError
from helmflow.tasks.fit_context import Window, fit_prompt
from helmflow.tasks.lmeval_fewshot import lmeval_exemplars
from helmflow.tasks.records import LETTERS, Instance, Request, RequestKind


def fill_instructions(template: str, group: str | None) -> str:
    # Plain replacement rather than str.format: instructions may contain literal braces.
    return template.replace("{group_words}", group_words(group)).replace("{group}", group or "")


def render_block(adapter: AdapterSpec, inst: Instance) -> str:
    """One instance's question part, up to and including the output prefix."""
    # The input is used as written; a spec strips it where the format wants that ({{ question.strip() }}).
    text = f"{adapter.input_prefix}{inst.input}{adapter.input_suffix}"
    if adapter.method == "multiple_choice_joint":
        for letter, choice in zip(LETTERS, inst.choices, strict=False):
            text += adapter.option_format.replace("{letter}", letter).replace("{text}", choice)
    return text + adapter.output_prefix


def check_letterable(adapter: AdapterSpec, instances: list[Instance]) -> None:
    """A lettered question (multiple_choice_joint) lists its options A to Z: 26 at most. Past that the
    options would be cut off the prompt and a gold option among them could never be chosen."""
    if adapter.method != "multiple_choice_joint":
        return
    for inst in instances:
        if len(inst.choices) > len(LETTERS):
            raise DataError(
                f"{inst.origin or inst.id}: {len(inst.choices)} options, but multiple_choice_joint letters them "
                f"A to Z ({len(LETTERS)} at most); score them with adapter.method multiple_choice_separate"
            )


def target_text(adapter: AdapterSpec, inst: Instance) -> str:
    if adapter.method == "multiple_choice_joint":
        return LETTERS[inst.gold_index or 0]
    return inst.gold_text or ""


def _request(
    adapter: AdapterSpec,
    inst: Instance,
    prompt: str,
    request_id: str,
    perturbation: str,
    chat: ChatFormat | None = None,
) -> Request:
    if adapter.method == "language_modeling":
        # The text is the one continuation, after an empty prompt: the backend scores it from the model's prefix
        # token (BOS, else EOS), in rolling windows when it is longer than the model's window (hf_tokens.py).
        text = inst.input
        return Request(request_id, inst.id, "multiple_choice", "", (text,), (text,), perturbation=perturbation)
    if adapter.method == "generation":
        return Request(
            request_id,
            inst.id,
            "generation",
            prompt,
            max_tokens=adapter.max_tokens,
            stop=tuple(adapter.stop),
            perturbation=perturbation,
        )
    joint = adapter.method == "multiple_choice_joint"
    options = _letters(len(inst.choices)) if joint else inst.choices
    # Inside a chat template the answer is the assistant's message, right after the generation prompt: no
    # delimiter before it (lm-eval's construct_requests drops target_delimiter under --apply_chat_template).
    delimiter = "" if chat is not None and chat.templated else adapter.target_delimiter
    continuations = _continuations(delimiter, options)
    baseline = adapter.output_prefix if adapter.method == "multiple_choice_calibrated" else None
    return Request(
        request_id, inst.id, "multiple_choice", prompt, continuations, options, baseline, perturbation=perturbation
    )


# A run's requests share their options' tuples (every lettered question has the same " A" to " D"): made once,
# not once per request, they are not 84,252 copies of the same four strings in the full MMLU.
@lru_cache(maxsize=64)
def _letters(count: int) -> tuple[str, ...]:
    return tuple(LETTERS[:count])


@lru_cache(maxsize=4096)
def _continuations(delimiter: str, options: tuple[str, ...]) -> tuple[str, ...]:
    return tuple(delimiter + option for option in options)


def choose_exemplars(
    pool: list[Instance], k: int, seed: int, group: str | None, order: str = "random"
) -> list[Instance]:
    """k exemplars from the same group when it has any: the first k in file order ("first_n"), or
    label-balanced (round-robin over gold labels) and shuffled with the seed ("random")."""
    if k == 0 or not pool:
        return []
    same_group = [p for p in pool if p.group == group]
    candidates = same_group if same_group else pool
    if order == "first_n":
        return candidates[:k]
    rng = random.Random(f"{seed}:{group}")
    by_label: dict[object, list[Instance]] = defaultdict(list)
    for inst in candidates:
        by_label[inst.gold_index if inst.gold_index is not None else inst.gold_text].append(inst)
    buckets = [by_label[label] for label in sorted(by_label, key=str)]
    for bucket in buckets:
        rng.shuffle(bucket)
    rng.shuffle(buckets)
    chosen: list[Instance] = []
    while len(chosen) < k and any(buckets):
        for bucket in buckets:
            if bucket and len(chosen) < k:
                chosen.append(bucket.pop())
    rng.shuffle(chosen)
    return chosen


def render_prompt(
    adapter: AdapterSpec, inst: Instance, exemplars: list[Instance], chat: ChatFormat | None = None
) -> str:
    if chat is not None:
        pairs = [(render_block(adapter, ex), target_text(adapter, ex)) for ex in exemplars]
        instructions = fill_instructions(adapter.instructions, inst.group)
        return chat.prompt(
            instructions, pairs, render_block(adapter, inst), adapter.target_delimiter, adapter.fewshot_delimiter
        )
    shots = "".join(
        render_block(adapter, ex) + adapter.target_delimiter + target_text(adapter, ex) + adapter.fewshot_delimiter
        for ex in exemplars
    )
    return fill_instructions(adapter.instructions, inst.group) + shots + render_block(adapter, inst)


def _fitted(
    adapter: AdapterSpec,
    inst: Instance,
    variant: Instance,
    exemplars: list[Instance],
    window: Window,
    request_id: str,
    perturbation: str,
    chat: ChatFormat | None = None,
) -> Request:
    """The request with its prompt fitted into the model's window, as HELM fits it (tasks/fit_context.py): the
    last exemplars dropped first, then the prompt cut; room is left for the completion (max_tokens, or the
    longest continuation scored)."""
    plain = _request(adapter, inst, "", request_id, perturbation, chat)
    room = adapter.max_tokens if plain.kind == "generation" else max(map(window.count_tokens, plain.continuations))
    whole = render_prompt(adapter, variant, exemplars, chat)
    if window.surely_fits(whole, room):  # most prompts: no tokenizer call
        return replace(plain, prompt=whole, num_train_instances=len(exemplars))
    fitted = fit_prompt(
        lambda k: render_prompt(adapter, variant, exemplars[:k], chat),
        len(exemplars),
        count_tokens=window.count_tokens,
        truncate=window.truncate,
        context_window=window.context_window,
        max_tokens=room,
    )
    return replace(
        plain,
        prompt=fitted.prompt,
        num_train_instances=fitted.num_train_instances,
        prompt_truncated=fitted.prompt_truncated,
    )


def build_requests(
    adapter: AdapterSpec,
    instances: list[Instance],
    fewshot_pool: list[Instance],
    seed: int,
    perturbations: list[str] | tuple[str, ...] = (),
    window: Window | None = None,
    chat: ChatFormat | None = None,
) -> list[Request]:
    """Every request of `iter_requests`, in a list."""
    return list(iter_requests(adapter, instances, fewshot_pool, seed, perturbations, window, chat))


def iter_requests(
    adapter: AdapterSpec,
    instances: list[Instance],
    fewshot_pool: list[Instance],
    seed: int,
    perturbations: list[str] | tuple[str, ...] = (),
    window: Window | None = None,
    chat: ChatFormat | None = None,
) -> Iterator[Request]:
    """One request per instance, plus one per instance and perturbation (its input perturbed).

    Only the instance's own text changes (tasks/perturb, perturb_input): the scaffold (the field
    template's literal words, the instructions, prefixes and lettered options added here) and the
    exemplars are byte-identical in every variant, and the options scored are the same.

    With the model's `window`, each prompt is fitted into it as HELM fits it (_fitted): a prompt
    that does not fit keeps fewer exemplars, or is cut, and its request says so (num_train_instances,
    prompt_truncated). Each variant is fitted on its own, as HELM fits each request, so a perturbed copy
    that came out longer may keep one exemplar fewer than its original.

    With the model's `chat` format (tasks/chat.py) each prompt is the conversation its template makes.
    Requests come one at a time, instance by instance, so that a caller can put each prompt away as it is
    made (tasks/prompt_store.py) rather than hold a whole run's at once.
    """
    if chat is not None and chat.templated and adapter.method == "multiple_choice_calibrated":
        raise DataError(
            "adapter.method multiple_choice_calibrated has no chat-template form (its bare answer prompt is not a "
            "conversation): run this scenario with apply_chat_template: false, or use multiple_choice_separate"
        )
    from helmflow.tasks.perturb import perturb_input

    exemplar_cache: dict[str | None, list[Instance]] = {}
    # lm-eval's sampler draws each instance's exemplars in turn from one generator (tasks/lmeval_fewshot.py).
    drawn = lmeval_exemplars(adapter, instances, fewshot_pool) if adapter.fewshot_order == "lmeval" else None
    for position, inst in enumerate(instances):
        if drawn is not None:
            exemplars = drawn[position]
        else:
            if inst.group not in exemplar_cache:
                exemplar_cache[inst.group] = choose_exemplars(
                    fewshot_pool, adapter.num_train, seed, inst.group, adapter.fewshot_order
                )
            # Never show an instance as its own exemplar (ids are per split, so compare both).
            exemplars = [e for e in exemplar_cache[inst.group] if (e.id, e.split) != (inst.id, inst.split)]
        variants = [("", inst)] + [
            (name, replace(inst, input=perturb_input(name, inst, seed))) for name in perturbations
        ]
        for name, variant in variants:
            request_id = f"{inst.id}|{name}" if name else inst.id
            if adapter.method == "language_modeling":  # a text, not a prompt: nothing to fit (the backend rolls)
                yield _request(adapter, inst, "", request_id, name, chat)
            elif window is not None:
                yield _fitted(adapter, inst, variant, exemplars, window, request_id, name, chat)
            else:
                yield _request(adapter, inst, render_prompt(adapter, variant, exemplars, chat), request_id, name, chat)


__all__ = ["Request", "RequestKind", "build_requests", "choose_exemplars", "iter_requests", "render_prompt"]
