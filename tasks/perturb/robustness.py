"""Meaning-preserving perturbations (docs/metrics.md#robustness): lowercase, contractions, expansions,
misspellings, extra_space, typos and their canonical blend mild_mix.

The word lists are HELM's (see data/SOURCES.md). Each function takes the text and a seeded
random generator; the same generator state gives the same output.
"""

from __future__ import annotations

import json
import random
import re
from functools import cache
from pathlib import Path

DATA = Path(__file__).parent / "data"
MISSPELLING_PROBABILITY = 0.1
TYPO_PROBABILITY = 0.05
_WORD = re.compile(r"\b[\w']+\b")


@cache
def load(name: str) -> object:
    return json.loads((DATA / name).read_text(encoding="utf-8"))


def match_case(source: str, target: str) -> str:
    """Give target the case pattern of source: all lower, all upper, or capitalised."""
    if source.islower():
        return target.lower()
    if source.isupper() and len(source) > 1:
        return target.upper()
    if source[:1].isupper():
        return target[:1].upper() + target[1:]
    return target


def _replace_words(text: str, mapping: dict[str, str]) -> str:
    """Replace whole words or phrases (case-insensitive), longest first so 'could not have' beats 'could not'."""
    if not mapping:
        return text
    keys = sorted(mapping, key=len, reverse=True)
    pattern = re.compile(r"(?<![\w'])(" + "|".join(re.escape(k) for k in keys) + r")(?![\w'])", re.IGNORECASE)
    lower = {k.lower(): v for k, v in mapping.items()}
    return pattern.sub(lambda m: match_case(m.group(1), lower[m.group(1).lower()]), text)


def lowercase(text: str, rng: random.Random) -> str:
    return text.lower()


@cache
def _contractions() -> dict[str, str]:
    return {k.lower(): v for k, v in load("contractions.json").items()}  # type: ignore[union-attr]


@cache
def _expansions() -> dict[str, str]:
    expanded = {v.lower(): k for k, v in _contractions().items()}
    expanded["ain't"] = "is not"  # lost when HELM's map was inverted (isn't also expands to 'is not')
    return expanded


def contractions(text: str, rng: random.Random) -> str:
    return _replace_words(text, _contractions())


def expansions(text: str, rng: random.Random) -> str:
    return _replace_words(text, _expansions())


@cache
def _misspellings() -> dict[str, list[str]]:
    # Single lowercase words only: match_case restores capitals, so the capitalised twins are not needed.
    table = load("misspellings.json")
    return {k: v for k, v in table.items() if k.islower() and " " not in k}  # type: ignore[union-attr]


def misspellings(text: str, rng: random.Random, probability: float = MISSPELLING_PROBABILITY) -> str:
    table = _misspellings()

    def swap(match: re.Match[str]) -> str:
        word = match.group(0)
        options = table.get(word.lower())
        if options and rng.random() < probability:
            return match_case(word, rng.choice(options))
        return word

    return _WORD.sub(swap, text)


def extra_space(text: str, rng: random.Random) -> str:
    """Each space becomes one to three spaces."""
    return re.sub(" ", lambda _: " " * rng.randint(1, 3), text)


def typos(text: str, rng: random.Random, probability: float = TYPO_PROBABILITY) -> str:
    """Each letter, with the given probability, becomes a neighbouring QWERTY key (case kept)."""
    neighbours: dict[str, str] = load("keyboard_neighbors.json")  # type: ignore[assignment]
    out = []
    for char in text:
        keys = neighbours.get(char.lower())
        if keys and rng.random() < probability:
            new = rng.choice(keys)
            char = new.upper() if char.isupper() else new
        out.append(char)
    return "".join(out)


def mild_mix(text: str, rng: random.Random) -> str:
    """HELM's canonical robustness perturbation: lowercase, contract, misspell, space, in that order."""
    for step in (lowercase, contractions, misspellings, extra_space):
        text = step(text, rng)
    return text
