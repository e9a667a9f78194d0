"""Perturbations of an instance's input: robustness (meaning kept) and fairness (one attribute changed).

Only the instance's own text changes (its question, its passage: what a field template prints from
the row), never the scaffold: the field template's literal words ("Q: ", "\nA:"), a BIG-bench
prompt's prefixes and listed choices (specs/templates.py, TemplateText), nor anything the adapter
adds (instructions, prefixes, lettered options, exemplars). Options and references are not
perturbed either, in the prompt or in what is scored (see perturb_input).

Deterministic: the generator is seeded by the run's seed, the perturbation's name and a key (the
instance id), so the same seed gives byte-identical perturbed prompts whatever the order in which
instances are processed, and another seed gives other ones.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence

from helmflow.tasks.instances import Instance, input_parts
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


# Joins the pieces of an instance's own text for one call of a perturbation. A private-use code point:
# not a letter (typos), a space (extra_space) or a word character (the word lists match whole words),
# so no perturbation changes it, and words on either side of it stay separate words.
_JOIN = "\ue000"


def _perturbation(name: str) -> Perturbation:
    if name not in PERTURBATIONS:
        raise ValueError(f"unknown perturbation '{name}' (known: {', '.join(PERTURBATIONS)})")
    return PERTURBATIONS[name]


def perturb(name: str, text: str, seed: int, key: str = "") -> str:
    return _perturbation(name)(text, random.Random(f"{seed}:{name}:{key}"))


def perturb_parts(name: str, texts: Sequence[str], seed: int, key: str = "") -> list[str]:
    """Several pieces of one instance's own text (a passage and a question), perturbed as one text.

    One call over the pieces joined, so one generator runs over all of them in order (one piece gives
    exactly what `perturb` gives) and race_names gives a name the same substitute in every piece.
    """
    function = _perturbation(name)
    rng = random.Random(f"{seed}:{name}:{key}")
    if not any(_JOIN in text for text in texts):
        pieces = function(_JOIN.join(texts), rng).split(_JOIN)
        if len(pieces) == len(texts):
            return pieces
        rng = random.Random(f"{seed}:{name}:{key}")
    # The data holds the joining character itself (or a perturbation changed it): piece by piece.
    return [function(text, rng) for text in texts]


def perturb_input(name: str, inst: Instance, seed: int) -> str:
    """The instance's input with its own text perturbed and its scaffold kept byte for byte.

    The options and references are left as they are, in the prompt and in what is scored: every
    variant is scored against the instance's unperturbed gold answer (tasks/metrics/accuracy.py), so
    perturbing listed options but not generation references would make one perturbation mean two
    things. HELM does the same for its robustness perturbations (mild_mix: "not fair to have to
    generate broken text"); its fairness perturbations change references too, which helmflow does not.
    """
    parts = input_parts(inst)
    own = iter(perturb_parts(name, [text for text, is_own in parts if is_own], seed, inst.id))
    return "".join(next(own) if is_own else text for text, is_own in parts)
