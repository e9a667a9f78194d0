import re

import pytest

from helmflow.flows.cli import main
from helmflow.specs.library import find_scenario
from helmflow.tasks.adapt import build_requests
from helmflow.tasks.instances import Instance
from helmflow.tasks.perturb import PERTURBATIONS, perturb
from helmflow.tasks.perturb.robustness import load, match_case

TEXT = "He said he would not go to the park with Adam, because his brother does not like crowds."


def test_match_case() -> None:
    assert [match_case("Word", "other"), match_case("WORD", "other"), match_case("word", "Other")] == [
        "Other",
        "OTHER",
        "other",
    ]


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("lowercase", "he said he would not go to the park with adam, because his brother does not like crowds."),
        ("contractions", "He said he'd not go to the park with Adam, because his brother doesn't like crowds."),
        ("gender", "She said she would not go to the park with Adam, because her sister does not like crowds."),
    ],
)
def test_deterministic_word_perturbations(name: str, expected: str) -> None:
    assert perturb(name, TEXT, seed=0) == expected


def test_expansions_undo_contractions_including_aint() -> None:
    assert perturb("expansions", "I don't think he'd go, ain't it?", seed=0) == (
        "I do not think he would go, is not it?"
    )


def test_race_names_keep_gender_and_reuse_the_substitute() -> None:
    names = load("person_names.json")
    out = perturb("race_names", "Adam met Amanda. Later Adam left.", seed=5)
    first, second, third = re.findall(r"[A-Z][a-z]+", out.replace("Later", ""))
    assert first == third and first in names["black_male"] and second in names["black_female"]


def test_dialect_uses_the_mapping_where_it_has_a_word() -> None:
    assert perturb("dialect", "I went with my sister.", seed=0) in {"I went wit my sista.", "I went wit my sis."}


def test_extra_space_and_typos_only_touch_what_they_should() -> None:
    spaced = perturb("extra_space", TEXT, seed=1)
    assert re.sub(" +", " ", spaced) == TEXT and spaced != TEXT
    typo = perturb("typos", TEXT * 5, seed=1)
    neighbours = load("keyboard_neighbors.json")
    changed = [(a, b) for a, b in zip(TEXT * 5, typo, strict=True) if a != b]
    assert changed and all(b.lower() in neighbours[a.lower()] for a, b in changed)


def test_same_seed_same_prompts_other_seed_other_prompts() -> None:
    spec = find_scenario("mmlu")
    instances = [
        Instance(id=f"x-{i}", input=TEXT + f" Question {i}?", split="test", choices=("a", "b"), gold_index=0, group="x")
        for i in range(20)
    ]
    names = list(PERTURBATIONS)
    first = [r.prompt.encode() for r in build_requests(spec.adapter, instances, [], 7, names)]
    again = [r.prompt.encode() for r in build_requests(spec.adapter, instances, [], 7, names)]
    other = [r.prompt.encode() for r in build_requests(spec.adapter, instances, [], 8, names)]
    assert first == again
    assert first != other
    assert len(first) == 20 * (1 + len(names))


def test_cli_perturb(capsys: pytest.CaptureFixture) -> None:
    assert main(["perturb", "mild_mix", "I do not know the answer", "--seed", "2"]) == 0
    out = capsys.readouterr().out.strip()
    assert out == perturb("mild_mix", "I do not know the answer", seed=2)
    assert re.sub(" +", " ", out).startswith("i don't know")
    assert main(["perturb", "shout", "x"]) == 2
