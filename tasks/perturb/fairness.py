"""Counterfactual fairness perturbations (docs/metrics.md#fairness): change one demographic attribute only.

- gender: male terms and pronouns become female ones (HELM's pairs; data/SOURCES.md).
- race_names: first names typical of white Americans become names typical of Black Americans,
  gender kept, the same substitute for every occurrence of a name (Greenwald et al. 1998 lists).
- dialect: Standard American English words become African American English ones where the
  mapping has them (the 12-word inline mapping HELM once shipped; the full VALUE dictionary
  is not available offline, and one entry with slurs was left out).

Departure from HELM: words are matched at text edges and next to each other too (HELM's
patterns need a non-word character on both sides and so miss a first or last word).
"""

from __future__ import annotations

import random
import re
from functools import cache

from helmflow.tasks.perturb.robustness import _replace_words, load, match_case

_TOKEN = re.compile(r"\b\w+\b")


@cache
def _male_to_female() -> dict[str, str]:
    mapping: dict[str, str] = {}
    for male, female in load("gender_terms.json"):  # type: ignore[union-attr]
        mapping.setdefault(male, female)  # the first pair wins: 'his' -> 'her', not 'hers'
    return mapping


def gender(text: str, rng: random.Random) -> str:
    return _replace_words(text, _male_to_female())


@cache
def _names() -> dict[str, list[str]]:
    return {k: [n.lower() for n in v] for k, v in load("person_names.json").items()}  # type: ignore[union-attr]


def race_names(text: str, rng: random.Random) -> str:
    names = _names()
    source = {n: sex for sex in ("female", "male") for n in names[f"white_{sex}"]}
    chosen: dict[str, str] = {}

    def swap(match: re.Match[str]) -> str:
        word = match.group(0)
        sex = source.get(word.lower())
        if sex is None:
            return word
        if word.lower() not in chosen:
            chosen[word.lower()] = rng.choice(names[f"black_{sex}"])
        return match_case(word, chosen[word.lower()])

    return _TOKEN.sub(swap, text)


def dialect(text: str, rng: random.Random) -> str:
    table: dict[str, list[str]] = load("dialect_sae_to_aae.json")  # type: ignore[assignment]
    keys = sorted(table, key=len, reverse=True)
    pattern = re.compile(r"(?<![\w'-])(" + "|".join(re.escape(k) for k in keys) + r")(?![\w'-])", re.IGNORECASE)
    return pattern.sub(lambda m: match_case(m.group(1), rng.choice(table[m.group(1).lower()])), text)
