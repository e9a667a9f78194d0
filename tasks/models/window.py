"""A model's context window for fitting prompts (tasks/fit_context.py), from its spec: its tokenizer and its
`max_length`, counted the way the backend will feed the text (tasks/models/hf_tokens.py: the tokens the
tokenizer puts before a text, then the text's own).

hf and embedded models have a tokenizer to count with; an OpenAI-compatible server counts (and cuts, or
refuses) on its side, and a plugin backend says nothing of its window, so neither is fitted: None.
"""

from __future__ import annotations

import functools
from typing import Any

from helmflow.specs.schema import ModelSpec
from helmflow.tasks.fit_context import Window


def tokenizer_of(spec: ModelSpec) -> Any:
    """The tokenizer of an hf or embedded model, loaded once per process (its window and chat format read it)."""
    return _tokenizer(spec.backend, spec.path, spec.revision)


@functools.lru_cache(maxsize=8)
def _tokenizer(backend: str, path: str | None, revision: str | None) -> Any:
    from transformers import AutoTokenizer

    if backend == "embedded":
        from helmflow.tasks.models.embedded import converted_dir

        return AutoTokenizer.from_pretrained(converted_dir()[0])
    return AutoTokenizer.from_pretrained(path, revision=revision)


def window_for(spec: ModelSpec) -> Window | None:
    """The model's window (max_length tokens), or None where helmflow cannot count the model's tokens."""
    if spec.backend not in ("hf", "embedded"):
        return None
    from helmflow.tasks.models.hf_tokens import prompt_prefix

    tokenizer = tokenizer_of(spec)
    prefix = len(prompt_prefix(tokenizer, spec.add_bos_token, spec.name))

    def ids(text: str) -> list[int]:
        return tokenizer(text, add_special_tokens=False).input_ids

    def count_tokens(text: str) -> int:
        return prefix + len(ids(text))

    def truncate(text: str, n: int) -> str:
        return tokenizer.decode(ids(text)[: max(n - prefix, 0)])

    return Window(spec.max_length, count_tokens, truncate, prefix)
