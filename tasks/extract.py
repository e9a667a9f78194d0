"""Answer extraction from generated text, as lm-evaluation-harness's filter pipelines do it.

A chain-of-thought completion ("... 9 * 2 = 18. The answer is 18.") is scored on the answer inside it, so
lm-eval tasks declare a ``filter_list`` of steps (``regex``, then ``take_first``, ...). This module gives
each step as a function of ONE completion string (helmflow extracts per completion) with the semantics of
lm-eval 0.4.13's filter classes (lm_eval/filters/extraction.py, transformation.py, selection.py), plus
``parse_steps``, which validates a spec's list written with lm-eval's own keys, and ``extract``, which
applies it. Differences from lm-eval, on purpose:

- ``group_select`` outside the list of matches gives the fallback (lm-eval raises IndexError, ending the run
  on one odd completion);
- ``take_first`` is a no-op: it picks the first of an instance's repeated completions, and there is only one
  here; ``majority_vote`` and ``take_first_k`` work across samples (tasks/metrics/sampling.py: maj@k);
- ``map`` maps the whole text (lm-eval's MapFilter maps each element of what it is given: placed after
  ``take_first``, as polemo2 places it, it maps each character of the string);
- regexes run with the ``regex`` module, see SAFETY.

SAFETY: spec regexes are untrusted and Python's ``re`` cannot be interrupted, so a pattern with nested
quantifiers such as ``(a|aa)+$`` could hang a run. Every match runs through the ``regex`` module with
``timeout=REGEX_TIMEOUT_S`` (a timeout raises RegexTimeoutError naming the pattern), compiled with
``regex.V0`` so that patterns mean what they mean to ``re``; and a regex sees at most the LAST
``MAX_TEXT_CHARS`` characters of a text (the answer of a chain of thought comes at its end), which bounds
the work on an endless completion.
"""

from __future__ import annotations

import re
import sys
import unicodedata
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cache
from typing import Any

import regex as _regex

from helmflow.specs.regexes import compile_pattern  # a spec's patterns are compiled (and checked) there

FALLBACK = "[invalid]"
REGEX_TIMEOUT_S = 1.0
MAX_TEXT_CHARS = 100_000


class RegexTimeoutError(TimeoutError):
    """A spec's regex ran past REGEX_TIMEOUT_S on one text (catastrophic backtracking)."""


def _guarded(pattern: _regex.Pattern[str], text: str, call: Callable[[str], Any]) -> Any:
    text = text[-MAX_TEXT_CHARS:]
    try:
        return call(text)
    except TimeoutError:
        raise RegexTimeoutError(
            f"regex {pattern.pattern!r} ran over {REGEX_TIMEOUT_S:g} s on a {len(text):,}-character text: "
            "nested quantifiers such as (a+)+ backtrack exponentially; simplify the pattern"
        ) from None


def _findall(pattern: _regex.Pattern[str], text: str) -> list[Any]:
    return _guarded(pattern, text, lambda t: pattern.findall(t, timeout=REGEX_TIMEOUT_S))


def _delete(pattern: _regex.Pattern[str], text: str) -> str:
    return _guarded(pattern, text, lambda t: pattern.sub("", t, timeout=REGEX_TIMEOUT_S))


def delete_matches(text: str, pattern: str) -> str:
    """``re.sub(pattern, "", text)`` with a spec regex's guards (see SAFETY): exact_match's ``regexes_to_ignore``
    (tasks/metrics/accuracy.py)."""
    return _delete(compile_pattern(pattern), text)


def regex(text: str, pattern: str, group_select: int = 0, fallback: str = FALLBACK) -> str:
    """lm-eval's RegexFilter on one text: the ``group_select``-th match of ``findall`` (negative counts from the
    end), stripped; with several groups, the first non-empty one; ``fallback`` when nothing matches.
    """
    matches = _findall(compile_pattern(pattern), text)
    if not -len(matches) <= group_select < len(matches):  # also no match at all
        return fallback
    match = matches[group_select]
    if isinstance(match, tuple):
        # As lm-eval: when every group is empty, the fallback goes through .strip() too.
        match = next((group for group in match if group), fallback)
    return match.strip()


def lowercase(text: str) -> str:
    return text.lower()


def uppercase(text: str) -> str:
    return text.upper()


def strip(text: str) -> str:
    """Leading and trailing whitespace off; lm-eval's ``remove_whitespace`` (WhitespaceFilter) is exactly this:
    it keeps the whitespace inside the text."""
    return text.strip()


def map_label(text: str, mapping: Mapping[str, Any], default: Any = None) -> Any:
    """lm-eval's MapFilter on one text: ``mapping[text]``, else ``default``."""
    return mapping.get(text, default)


@cache
def _punctuation() -> dict[int, None]:
    # Built once (about 0.3 s): every code point of a Unicode punctuation category, as lm-eval deletes them.
    return dict.fromkeys(i for i in range(sys.maxunicode + 1) if unicodedata.category(chr(i)).startswith("P"))


def multi_choice_regex(
    text: str,
    pattern: str,
    choices: Sequence[str],
    group_select: int = 0,
    fallback: str = FALLBACK,
    ignore_case: bool = False,
    ignore_punctuation: bool = False,
    regexes_to_ignore: Sequence[str] = (),
) -> str:
    """lm-eval's MultiChoiceRegexFilter on one text and its instance's ``choices``: ``pattern``'s match as is;
    else a choice's text found in the text (after deleting ``regexes_to_ignore``, and case and punctuation when
    asked), as "(A)", "(B)", ...; else a letter after a colon ("Answer: C") as "(C)"; else ``fallback``.
    """
    if len(choices) > 26:
        raise ValueError(f"multi_choice_regex takes at most 26 choices (A to Z), got {len(choices)}")
    ignored = [compile_pattern(p) for p in regexes_to_ignore]

    def ignoring(value: str) -> str:
        for p in ignored:
            value = _delete(p, value)
        if ignore_case:
            value = value.lower()
        return value.translate(_punctuation()) if ignore_punctuation else value

    def find(p: _regex.Pattern[str], value: str, to_letter: Mapping[str, str]) -> str:
        matches = _findall(p, value)
        if not -len(matches) <= group_select < len(matches):
            return ""
        match = matches[group_select]
        if isinstance(match, tuple):
            match = next((group for group in match if group), "")
        match = match.strip()
        return to_letter.get(match, match)

    letters = [chr(ord("A") + i) for i in range(len(choices))]
    by_text = {ignoring(choice.strip()): f"({letter})" for letter, choice in zip(letters, choices, strict=True)}
    # Longest alternative first (as lm-eval sorts them, by escaped length; re.escape as lm-eval escapes), so that
    # "Guilty" cannot match inside "Guilty of Romance".
    texts = sorted((re.escape(ignoring(choice.strip())) for choice in choices), key=len, reverse=True)
    answer = (
        find(compile_pattern(pattern), text, {})
        or find(compile_pattern("|".join(texts)), ignoring(text), by_text)
        or find(compile_pattern(rf":[\s]*({'|'.join(letters)})"), text, {x: f"({x})" for x in letters})
    )
    return answer or fallback


@dataclass(frozen=True)
class Step:
    """One extraction step: a function's name (lm-eval's) and its keyword arguments (this module's names)."""

    name: str
    params: Mapping[str, Any] = field(default_factory=dict)


def _int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _str(v: Any) -> bool:
    return isinstance(v, str)


def _bool(v: Any) -> bool:
    return isinstance(v, bool)


def _strs(v: Any) -> bool:
    return isinstance(v, list) and all(isinstance(x, str) for x in v)


def _scalar(v: Any) -> bool:
    return v is None or isinstance(v, str | int | float)


def _mapping(v: Any) -> bool:
    return isinstance(v, dict) and all(isinstance(k, str) and v_ is not None and _scalar(v_) for k, v_ in v.items())


_REGEX_FIELDS = {
    "regex_pattern": ("pattern", _str, "a string", True),
    "group_select": ("group_select", _int, "an integer", False),
    "fallback": ("fallback", _str, "a string", False),
}
# A spec's keys are lm-eval's own (so that a task YAML's filter list pastes unchanged): key -> (parameter,
# check, what the check wants, required).
_FIELDS: dict[str, dict[str, tuple[str, Callable[[Any], bool], str, bool]]] = {
    "regex": _REGEX_FIELDS,
    "multi_choice_regex": {
        **_REGEX_FIELDS,
        "ignore_case": ("ignore_case", _bool, "true or false", False),
        "ignore_punctuation": ("ignore_punctuation", _bool, "true or false", False),
        "regexes_to_ignore": ("regexes_to_ignore", _strs, "a list of strings", False),
    },
    "lowercase": {},
    "uppercase": {},
    "strip": {},
    "remove_whitespace": {},
    "map": {
        "mapping_dict": ("mapping", _mapping, "a mapping of strings to strings or numbers", True),
        "default_value": ("default", _scalar, "a string, a number or null", False),
    },
    "take_first": {},
}
_ACROSS_SAMPLES = ("majority_vote", "take_first_k")
_TEXT_FUNCTIONS: dict[str, Callable[..., Any]] = {
    "regex": regex,
    "lowercase": lowercase,
    "uppercase": uppercase,
    "strip": strip,
    "remove_whitespace": strip,
    "map": map_label,
}


def _parse_step(where: str, raw: Any) -> Step:
    if not isinstance(raw, dict) or not isinstance(raw.get("function"), str):
        raise ValueError(f"{where}: must be a mapping with a 'function' name, got {raw!r}")
    name = raw["function"]
    if name in _ACROSS_SAMPLES:
        raise ValueError(f"{where}: {name!r} works across samples, not on one completion: use maj@k")
    if name not in _FIELDS:
        raise ValueError(f"{where}: unknown function {name!r} (known: {', '.join(_FIELDS)})")
    fields = _FIELDS[name]
    params: dict[str, Any] = {}
    for key, value in raw.items():
        if key == "function":
            continue
        if key not in fields:
            raise ValueError(f"{where}: {name} has no field {key!r} (fields: {', '.join(fields) or 'none'})")
        param, check, wanted, _ = fields[key]
        if not check(value):
            raise ValueError(f"{where}: {name}'s {key!r} must be {wanted}, got {value!r}")
        params[param] = value
    for key, (_, _, wanted, required) in fields.items():
        if required and key not in raw:
            raise ValueError(f"{where}: {name} needs {key!r} ({wanted})")
    patterns = [("regex_pattern", params.get("pattern"))]
    patterns += [(f"regexes_to_ignore[{j}]", p) for j, p in enumerate(params.get("regexes_to_ignore", []))]
    for key, pattern in patterns:
        try:
            if pattern is not None:
                compile_pattern(pattern)
        except ValueError as exc:
            raise ValueError(f"{where}: {name}'s {key!r}: {exc}") from None
    if name == "map":
        # Answers are compared as text: a YAML number (polemo2's `A: 0`) becomes its text.
        params["mapping"] = {k: str(v) for k, v in params["mapping"].items()}
        if params.get("default") is not None:
            params["default"] = str(params["default"])
    return Step(name, params)


def parse_steps(raw: Any, where: str = "answer_extraction") -> list[Step]:
    """A spec's list of steps (lm-eval's ``filter:`` list: ``{function: regex, regex_pattern: ...}``), checked:
    ValueError naming the step (``where[i]``) and the field for an unknown function, an unknown, missing or
    ill-typed field, or a regex that does not compile."""
    if not isinstance(raw, list):
        raise ValueError(f"{where}: must be a list of steps, got {raw!r}")
    return [_parse_step(f"{where}[{i}]", step) for i, step in enumerate(raw)]


def extract(text: str, steps: Sequence[Step], choices: Sequence[str] | None = None) -> str:
    """``steps`` applied in order to one completion. ``choices`` (the instance's answer texts) is needed by
    ``multi_choice_regex`` only. A ``map`` with no entry and no default yields None in lm-eval; here the
    extraction stops with the empty answer, which matches no reference."""
    value: Any = text
    for step in steps:
        if step.name == "take_first":
            continue  # one completion: the first of one
        if step.name == "multi_choice_regex":
            if choices is None:
                raise ValueError("multi_choice_regex needs the instance's choices")
            value = multi_choice_regex(value, choices=choices, **step.params)
        elif step.name in _TEXT_FUNCTIONS:
            value = _TEXT_FUNCTIONS[step.name](value, **step.params)
        else:
            raise ValueError(f"unknown extraction step {step.name!r}")
        if value is None:
            return ""
        value = str(value)
    return value
