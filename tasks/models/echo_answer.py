"""The part of an echoed completions answer that log-likelihood scoring reads, decoded by msgspec.

An echo answer carries, for every token of the prompt, its text, its log-prob, its offset and (with
`logprobs: 1`) a one-entry dict of the top token: about 50 kB for a 5-shot MMLU prompt, of which scoring
reads the last few tokens (the continuation's), the first token (a server's BOS shift) and the counts.
So the body is decoded into typed structs whose three arrays stay raw JSON (msgspec checks the whole
body is JSON and skips the rest without making a Python object of it), and `EchoedLogprobs` reads an
array from its end: 0.08 ms a 42 kB answer against 0.17 ms for the arrays decoded whole and 0.30 ms for
orjson's dicts (tests/bench/bench_serving.py shows the whole client's CPU per request).

Reading from the end is exact for the arrays it is used on: `token_logprobs` and `text_offset` are flat
arrays of numbers (or null), checked to hold no string, array or object before a comma is taken as a
separator, and the part read is decoded by msgspec as numbers. Anything else (a string where a log-prob
goes, a length that differs, offsets that do not rise) makes `tail` give None, and the caller reads the
arrays whole (`lists()`, what orjson would give) on its generic path, so its error messages are unchanged.

What does not fit the types at all (a missing field, NaN, which is not JSON, an empty `choices`) gives
None from decode_echo, and the body is parsed as any answer (openai_async's generic path).
"""

from __future__ import annotations

import itertools
import json
from bisect import bisect_left
from typing import Any

import msgspec

# What an array of numbers never contains: a string, an object or a nested array (its own "[" is the first).
_NOT_NUMBERS = (b'"', b"{")
# The first token of an echo is short ("<s>", "<|begin_of_text|>", a word): read from this many bytes.
FIRST_TOKEN_BYTES = 1024


class _Logprobs(msgspec.Struct):
    token_logprobs: msgspec.Raw
    text_offset: msgspec.Raw
    tokens: msgspec.Raw = msgspec.Raw(b"null")


class _Choice(msgspec.Struct):
    logprobs: _Logprobs | None = None
    index: int | None = None


class _Answer(msgspec.Struct):
    choices: list[_Choice]


_DECODER = msgspec.json.Decoder(_Answer)  # stateless: builds the same structs for the same bytes
_OFFSETS = msgspec.json.Decoder(list[int])
_LOGPROBS = msgspec.json.Decoder(list[float | None])


def _count(raw: bytes) -> int | None:
    """The number of elements of a flat JSON array of numbers, or None when `raw` is not one."""
    body = raw.strip()
    if not body.startswith(b"[") or any(mark in body for mark in _NOT_NUMBERS) or body.count(b"[") != 1:
        return None
    return 0 if not body[1:-1].strip() else body.count(b",") + 1


def _last(raw: bytes, n: int, decoder: msgspec.json.Decoder[Any]) -> list[Any] | None:
    """The last n elements of a flat array of numbers (all of them when it has fewer), or None."""
    _head, *rest = raw.rsplit(b",", n)
    part = b"[" + b",".join(rest) if len(rest) == n else raw  # the split's first piece is the array's head
    try:
        return decoder.decode(part)
    except msgspec.DecodeError:  # a null offset, a string log-prob: the generic path decides
        return None


class EchoedLogprobs:
    """One echoed prompt's log-prob arrays, kept as raw JSON and read from the end."""

    __slots__ = ("count", "text_offset", "token_logprobs", "tokens")

    def __init__(self, token_logprobs: bytes, text_offset: bytes, tokens: bytes) -> None:
        self.token_logprobs, self.text_offset, self.tokens = token_logprobs, text_offset, tokens
        # None unless both are flat arrays of numbers of the same length: tail() then reads nothing.
        count = _count(text_offset)
        self.count = count if count is not None and count == _count(token_logprobs) else None

    def lists(self) -> dict[str, Any]:
        """The three arrays decoded whole, as orjson's dicts give them (the generic path reads these)."""
        return {
            "token_logprobs": msgspec.json.decode(self.token_logprobs),
            "text_offset": msgspec.json.decode(self.text_offset),
            "tokens": msgspec.json.decode(self.tokens),
        }

    def head(self) -> tuple[list[int], str | None] | None:
        """The first two offsets and the first token (None when there are fewer than two tokens), or None."""
        if self.count is None or self.count < 2:
            return None
        first_two = self.text_offset.strip()[1:].split(b",", 2)[:2]  # the second ends in "]" when it is the last
        try:
            offsets = _OFFSETS.decode(b"[" + first_two[0] + b"," + first_two[1].split(b"]")[0] + b"]")
        except msgspec.DecodeError:  # a null offset: read whole
            return None
        text = self.tokens[:FIRST_TOKEN_BYTES].decode("utf-8", errors="ignore").lstrip()
        if not text.startswith("["):
            return offsets, None  # null: no tokens echoed
        try:
            first, end = json.JSONDecoder().raw_decode(text, len(text) - len(text[1:].lstrip()))
        except ValueError:
            return None  # a first token longer than FIRST_TOKEN_BYTES: read whole
        more = text[end:].lstrip().startswith(",")
        return offsets, first if isinstance(first, str) and more else None

    def tail(self, boundary: int, end: int) -> tuple[list[float | None], int] | None:
        """The log-probs of the tokens whose offsets are in [boundary, end), and how many come before them.

        Reads the last 8 elements, then 16, ..., until the first one read is before `boundary` (or all are
        read); None when the arrays are not what _count accepts or the offsets read do not rise."""
        if self.count is None:
            return None
        n = 8
        while True:
            offsets = _last(self.text_offset, n, _OFFSETS)
            if offsets is None or any(a > b for a, b in itertools.pairwise(offsets)):
                return None
            if len(offsets) == self.count or (offsets and offsets[0] < boundary):
                break
            n *= 2
        start = self.count - len(offsets)
        first, past = bisect_left(offsets, boundary), bisect_left(offsets, end)
        logprobs = _last(self.token_logprobs, len(offsets), _LOGPROBS)
        if logprobs is None or len(logprobs) != len(offsets):
            return None
        return logprobs[first:past], start + first


def decode_echo(raw: bytes) -> dict[str, Any] | None:
    """The answer as the dicts OpenAIModel._echo_scored reads, each choice's "logprobs" an EchoedLogprobs
    (or None), or None when the body does not fit the types."""
    try:
        answer = _DECODER.decode(raw)
    except msgspec.DecodeError:  # ValidationError included: not the shape scoring reads
        return None
    if not answer.choices:
        return None
    return {
        "choices": [
            {
                "index": choice.index,
                "logprobs": None
                if choice.logprobs is None
                else EchoedLogprobs(
                    bytes(choice.logprobs.token_logprobs),
                    bytes(choice.logprobs.text_offset),
                    bytes(choice.logprobs.tokens),
                ),
            }
            for choice in answer.choices
        ]
    }
