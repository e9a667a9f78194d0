"""Prompts inside a model's chat template (tasks/chat.py, tasks/models/chat_format.py), built as
lm-evaluation-harness builds them with --system_instruction, --apply_chat_template and --fewshot_as_multiturn.

`make bench-lmeval`'s mmlu_5shot_chat shape checks the same against lm-eval's own prompt building on real
MMLU; here the rules are pinned on hand-written conversations."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from helmflow.specs.library import find_scenario
from helmflow.specs.schema import ModelSpec
from helmflow.tasks.adapt import build_requests
from helmflow.tasks.chat import ChatFormat, Message, joined
from helmflow.tasks.data import DataError
from helmflow.tasks.instances import Instance
from helmflow.tasks.models.chat_format import chat_format_for, fingerprint_suffix


def mc(i: int, gold: int) -> Instance:
    return Instance(
        id=f"q{i}", input=f"Question {i}?", split="test", choices=("w", "x"), gold_index=gold, group="anatomy"
    )


def shown(messages: list[Message]) -> str:
    """A stand-in template that shows the messages it was given."""
    return " | ".join(f"{m['role']}:{m['content']!r}" for m in messages) + " | gen"


def mmlu_two_shot() -> tuple:
    adapter = find_scenario("mmlu").adapter.model_copy(update={"num_train": 2, "fewshot_order": "first_n"})
    return adapter, [mc(10, 0), mc(11, 1)]


HEADER = "The following are multiple choice questions (with answers) about anatomy.\n\n"
BLOCK = "Question {}?\nA. w\nB. x\nAnswer:"


def test_exemplars_as_turns_with_the_instructions_as_system_message() -> None:
    adapter, pool = mmlu_two_shot()
    chat = ChatFormat(shown, multiturn=True)
    [request] = build_requests(adapter, [mc(0, 1)], pool, seed=0, chat=chat)
    assert request.prompt == (
        f"system:{HEADER!r} | user:{BLOCK.format(10)!r} | assistant:'A' | user:{BLOCK.format(11)!r} | "
        f"assistant:'B' | user:{BLOCK.format(0)!r} | gen"
    )
    # The answer is the assistant's message, right after the generation prompt: no target delimiter.
    assert request.continuations == ("A", "B")


def test_exemplars_in_one_user_turn_keep_the_plain_prompt_after_the_instructions() -> None:
    adapter, pool = mmlu_two_shot()
    [request] = build_requests(adapter, [mc(0, 1)], pool, seed=0, chat=ChatFormat(shown, system_prompt="Be brief."))
    body = f"{BLOCK.format(10)} A\n\n{BLOCK.format(11)} B\n\n{BLOCK.format(0)}"
    # The system prompt and the instructions are joined by the few-shot delimiter (lm-eval's maybe_delimit).
    assert request.prompt == f"system:{'Be brief.' + chr(10) * 2 + HEADER!r} | user:{body!r} | gen"


def test_a_system_prompt_without_a_template_is_plain_text_before_the_instructions() -> None:
    adapter, pool = mmlu_two_shot()
    [request] = build_requests(adapter, [mc(0, 1)], pool, seed=0, chat=ChatFormat(None, system_prompt="Be brief. "))
    plain = build_requests(adapter, [mc(0, 1)], pool, seed=0)[0]
    assert request.prompt == "Be brief. " + plain.prompt
    assert request.continuations == plain.continuations == (" A", " B")


@pytest.mark.parametrize(
    ("prefix", "suffix", "expected"),
    [("a", "b", "a\n\nb"), ("a ", "b", "a b"), ("a", " b", "a b"), (None, "b", "b"), ("a", "", "a"), ("", "", "")],
)
def test_joined_adds_the_delimiter_only_without_whitespace_at_the_join(prefix, suffix, expected) -> None:
    assert joined(prefix, suffix, "\n\n") == expected


def test_calibrated_multiple_choice_has_no_chat_form() -> None:
    adapter, pool = mmlu_two_shot()
    calibrated = adapter.model_copy(update={"method": "multiple_choice_calibrated"})
    with pytest.raises(DataError, match="multiple_choice_calibrated has no chat-template form"):
        build_requests(calibrated, [mc(0, 1)], pool, seed=0, chat=ChatFormat(shown))


def test_the_spec_keys_are_checked() -> None:
    with pytest.raises(ValidationError, match="fewshot_as_multiturn needs apply_chat_template"):
        ModelSpec(name="m", backend="embedded", fewshot_as_multiturn=True)
    with pytest.raises(ValidationError, match="apply_chat_template is for backends hf and embedded"):
        ModelSpec(name="m", backend="openai", path="http://127.0.0.1:1/v1", apply_chat_template=True)


def test_the_chat_format_is_part_of_the_model_fingerprint() -> None:
    plain = ModelSpec(name="m", backend="embedded")
    chat = ModelSpec(name="m", backend="embedded", apply_chat_template=True, fewshot_as_multiturn=True)
    system = ModelSpec(name="m", backend="embedded", apply_chat_template=True, system_prompt="Be brief.")
    assert fingerprint_suffix(plain, None) == ""
    assert fingerprint_suffix(chat, "T") == "+chat(template:e632b709,system:e3b0c442,multiturn)"
    assert fingerprint_suffix(chat, "U") != fingerprint_suffix(chat, "T")
    assert fingerprint_suffix(system, "T") == "+chat(template:e632b709,system:213c22ed,one-turn)"
    assert chat_format_for(plain) is None


@pytest.mark.model
def test_the_embedded_models_template_makes_chatml_with_its_default_system_message() -> None:
    adapter, pool = mmlu_two_shot()
    spec = ModelSpec(name="m", backend="embedded", apply_chat_template=True)
    chat = chat_format_for(spec)
    assert chat is not None and chat.fingerprint.startswith("+chat(template:")
    no_instructions = adapter.model_copy(update={"instructions": ""})
    [request] = build_requests(no_instructions, [mc(0, 1)], pool, seed=0, chat=chat)
    # No system message of ours: SmolLM2's template puts its own first.
    assert request.prompt == (
        "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n"
        f"<|im_start|>user\n{BLOCK.format(10)} A\n\n{BLOCK.format(11)} B\n\n{BLOCK.format(0)}<|im_end|>\n"
        "<|im_start|>assistant\n"
    )
