"""A model's chat format (tasks/chat.py) from its spec: the tokenizer's chat template, the system prompt and
whether exemplars are turns of their own (`apply_chat_template`, `system_prompt`, `fewshot_as_multiturn`).

The template is applied when requests are built, so the prompt the warehouse stores, the inference cache keys
and the instance browser all hold the exact text the model read. The template text, the system prompt and the
turn layout are part of the model fingerprint (`fingerprint_suffix`): a run with another template is another
model for refreshes and comparisons.
"""

from __future__ import annotations

import hashlib
from typing import Any

from helmflow.specs.schema import ModelSpec
from helmflow.tasks.chat import ChatFormat, Message
from helmflow.tasks.models.base import ModelError


def _short_hash(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:8]


def fingerprint_suffix(spec: ModelSpec, template: str | None) -> str:
    """What the chat format adds to the model fingerprint ("" when the spec asks for none)."""
    if not spec.apply_chat_template and not spec.system_prompt:
        return ""
    system = _short_hash(spec.system_prompt or "")
    if not spec.apply_chat_template:
        return f"+system:{system}"
    layout = "multiturn" if spec.fewshot_as_multiturn else "one-turn"
    return f"+chat(template:{_short_hash(template or '')},system:{system},{layout})"


def spec_fingerprint_suffix(spec: ModelSpec) -> str:
    """fingerprint_suffix without a loaded model: the template read from the tokenizer alone (a refresh's check)."""
    if not spec.apply_chat_template:
        return fingerprint_suffix(spec, None)
    from helmflow.tasks.models.window import tokenizer_of

    return fingerprint_suffix(spec, template_of(spec, tokenizer_of(spec)))


def template_of(spec: ModelSpec, tokenizer: Any) -> str:
    """The tokenizer's chat template; a clear error when it has none."""
    template = getattr(tokenizer, "chat_template", None)
    if isinstance(template, dict):  # several named templates: transformers applies "default"
        template = template.get("default")
    if not template:
        raise ModelError(
            f"model '{spec.name}': apply_chat_template is true, but its tokenizer has no chat template "
            "(tokenizer_config.json 'chat_template' or chat_template.jinja); it is a base model, or set it false"
        )
    return str(template)


def renderer(tokenizer: Any) -> Any:
    """Messages -> templated text with the generation prompt, as lm-evaluation-harness's HFLM applies it:
    a template that refuses a system message (Gemma's) is applied again without it."""
    import jinja2

    def render(messages: list[Message]) -> str:
        try:
            text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        except jinja2.exceptions.TemplateError:
            kept = [m for m in messages if m["role"] != "system"]
            text = tokenizer.apply_chat_template(kept, tokenize=False, add_generation_prompt=True)
        return str(text)

    return render


def chat_format_for(spec: ModelSpec) -> ChatFormat | None:
    """The model's chat format, or None where prompts are plain text (or a server applies its own template)."""
    if spec.backend not in ("hf", "embedded") or not (spec.apply_chat_template or spec.system_prompt):
        return None
    if not spec.apply_chat_template:
        return ChatFormat(None, spec.system_prompt, False, fingerprint_suffix(spec, None))
    from helmflow.tasks.models.window import tokenizer_of

    tokenizer = tokenizer_of(spec)
    template = template_of(spec, tokenizer)
    return ChatFormat(
        renderer(tokenizer), spec.system_prompt, spec.fewshot_as_multiturn, fingerprint_suffix(spec, template)
    )


__all__ = ["chat_format_for", "fingerprint_suffix", "renderer", "spec_fingerprint_suffix", "template_of"]
