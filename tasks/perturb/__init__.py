"""Perturbations of an instance's input: robustness (meaning kept) and fairness (one attribute changed).

Deterministic: the generator is seeded by the run's seed, the perturbation's name and a key (the
instance id), so the same seed gives byte-identical perturbed prompts whatever the order in which
instances are processed, and another seed gives other ones.
"""

from __future__ import annotations

import random
from collections.abc import Callable

from helmflow.tasks.perturb import fairness, robustness

Perturbation = Callable[[str, random.Random], str]

ROBUSTNESS: dict[str, Perturbation] = {
    "lowercase": robustness.lowercase,
    "contractions": robustness.contractions,
    "expansions": robustness.expansions,
    "misspellings": robustness.misspellings,
    "extra_space": robustness.extra_space,
    "typos": robustness.typos,
    "mild_mix": robustness.mild_mix,
}
FAIRNESS: dict[str, Perturbation] = {
    "gender": fairness.gender,
    "race_names": fairness.race_names,
    "dialect": fairness.dialect,
}
PERTURBATIONS = {**ROBUSTNESS, **FAIRNESS}


def perturb(name: str, text: str, seed: int, key: str = "") -> str:
    if name not in PERTURBATIONS:
        raise ValueError(f"unknown perturbation '{name}' (known: {', '.join(PERTURBATIONS)})")
    return PERTURBATIONS[name](text, random.Random(f"{seed}:{name}:{key}"))
