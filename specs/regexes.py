"""Regular expressions a spec writes (answer extraction's patterns, exact_match's regexes_to_ignore), compiled.

They are untrusted text, so they are compiled with the ``regex`` module (whose matches take a timeout; Python's
``re`` cannot be interrupted) in its ``V0`` mode, so that a pattern means what it means to ``re``, as in
lm-evaluation-harness. Here, in specs/, so that a spec's patterns are checked when the spec is validated; the
matching itself, with its timeout, is tasks/extract.py's.
"""

from __future__ import annotations

from functools import lru_cache

import regex as _regex


@lru_cache(maxsize=512)
def compile_pattern(pattern: str) -> _regex.Pattern[str]:
    """``pattern`` compiled as ``re`` reads it; ValueError naming it when it does not compile."""
    try:
        return _regex.compile(pattern, _regex.V0)
    except _regex.error as exc:
        raise ValueError(f"regex {pattern!r} does not compile: {exc}") from None
