"""llama-cpp-python's OpenAI-compatible server with the top-log-probs sort cut to the top K entries.

Run it with the arguments of `python -m llama_cpp.server`:

    python -m tests.llama_cpp_server --model model.gguf --logits_all true ...   (or by its path)

Why: llama-cpp-python 0.3.36's `Llama._create_completion` builds each token's `top_logprobs` with
`list(sorted(zip(logprobs_token, range(len(logprobs_token))), reverse=True))`, a Python sort of the
whole vocabulary (49,152 entries for SmolLM2: 49 ms; `heapq.nlargest(20, ...)`: 4.4 ms), for every
echoed token, and then keeps only `sorted_logprobs[:logprobs]` (upstream's own TODO above that loop
says it may move to numpy). One echo request of 52 tokens took 8.5 s on two cores shared with other
work, 1.6 s with this launcher; at 8.5 s the test's 400 MMLU continuations would take about an hour.
All three `sorted(` calls in llama_cpp/llama.py are of this form, and nothing else there calls
`sorted`; the name is looked up in the module's globals before the builtins, so setting
`llama_cpp.llama.sorted` replaces exactly these three calls.

`heapq.nlargest(k, items)` is documented to equal `sorted(items, reverse=True)[:k]`, and the items
are (log-prob, token id) pairs, which never compare equal, so the first k entries are the same ones
in the same order. The values returned are therefore unchanged whenever a request asks for at most
TOP_K log-probs: `token_logprobs` are read from `logprobs_token[token]`, not from the sorted list,
and `top_logprobs` are built from the same first `logprobs` entries. A request for more than TOP_K
would get only TOP_K; the tests ask for 1. Any other call of `sorted` (with `key=`, or ascending)
goes to the builtin. Checked once against the stock server (same GGUF and flags): one echo request
(52 tokens, max_tokens 1) with logprobs 1 and with logprobs 5 gave the same JSON apart from `id` and
`created`.
"""

from __future__ import annotations

import builtins
import heapq
from collections.abc import Callable, Iterable
from typing import Any

# The most top log-probs a request may ask for without a change (OpenAI's API allows at most 20).
TOP_K = 20


def top_k_sorted(
    iterable: Iterable[Any], *, key: Callable[[Any], Any] | None = None, reverse: bool = False
) -> list[Any]:
    """sorted(iterable, reverse=True)[:TOP_K] for llama.cpp's top-log-probs calls; builtin sorted otherwise."""
    if reverse and key is None:
        return heapq.nlargest(TOP_K, iterable)
    return builtins.sorted(iterable, key=key, reverse=reverse)


def patch() -> None:
    """Make llama_cpp.llama's three `sorted(...)` calls keep only the top TOP_K entries."""
    import llama_cpp.llama

    llama_cpp.llama.sorted = top_k_sorted  # type: ignore[attr-defined]


def main() -> None:
    patch()
    from llama_cpp.server.__main__ import main as serve

    serve()


if __name__ == "__main__":
    main()
