"""Perturbations change only an instance's own text: the scaffold of a prompt (the field template's
literal words, a BIG-bench prompt's prefixes and listed choices, the adapter's instructions, prefixes
and lettered options, the exemplars) is byte-identical under every perturbation, and so is what is scored."""

import copy
import json
import pickle
from pathlib import Path

import pytest

from helmflow.specs.library import find_scenario, spec_names
from helmflow.specs.schema import ScenarioSpec
from helmflow.specs.templates import TemplateError, TemplateText, text_parts, value_of
from helmflow.tasks.adapt import build_requests
from helmflow.tasks.data import fewshot_pool, load_instances
from helmflow.tasks.instances import Instance, input_parts, instances_fingerprint
from helmflow.tasks.perturb import PERTURBATIONS, perturb, perturb_input, perturb_parts
from tests.conftest import write

ROBUSTNESS = ["mild_mix", "typos", "misspellings", "lowercase", "contractions", "expansions", "extra_space"]
FAIRNESS = ["gender", "race_names", "dialect"]
EVERY = ROBUSTNESS + FAIRNESS
SEED = 3

# The instance's own text: words every perturbation changes (capitals, "does not", "didn't", spaces,
# words with listed misspellings, he/his, a name, "brother" and "with" for dialect).
PASSAGE = "Emily told John that her father would not be coming, because he couldn't find the house."
QUESTION = (
    "Why didn't Adam's brother go with his sister? He does not like crowds, and he would rather stay home "
    "because he believes their house is different."
)
# Scaffold that the same perturbations would change, were they let at it.
FIELD_TEMPLATE = "Story for his sister, Adam (do not skip, don't guess):\n{{ passage }}\nQ: {{ question }}\nA:"
ADAPTER = {
    "method": "multiple_choice_joint",
    "instructions": "Answer as his brother would, Adam. Do not guess; don't skip.\n\n",
    "input_prefix": "Read with care:\n",
    "input_suffix": "\n",
    "option_format": "({letter}) {text}\n",
    "output_prefix": "He says:",
    "target_delimiter": " ",
    "num_train": 1,
    "fewshot_split": "dev",
}
CHOICES = ["He does not know", "His sister came with John", "Adam stayed home"]
EXEMPLAR = {"passage": "Adam said he would not go.", "question": "Does he go with his brother?", "gold": 1}


@pytest.fixture
def scaffolded(tmp_path: Path) -> tuple[ScenarioSpec, list[Instance], list[Instance]]:
    write(tmp_path / "test.jsonl", json.dumps({"passage": PASSAGE, "question": QUESTION, "gold": 2}) + "\n")
    write(tmp_path / "dev.jsonl", json.dumps(EXEMPLAR) + "\n")
    spec = ScenarioSpec.model_validate(
        {
            "name": "scaffolded",
            "source": {"offline": {"files": {"test": "test.jsonl", "dev": "dev.jsonl"}}},
            "fields": {"input": FIELD_TEMPLATE, "choices": str(CHOICES), "answer": "gold"},
            "adapter": ADAPTER,
        }
    )
    instances, _ = load_instances(spec, base_dir=tmp_path)
    return spec, instances, fewshot_pool(spec, base_dir=tmp_path)


def test_the_field_templates_literal_words_are_scaffold(scaffolded: tuple) -> None:
    _, [inst], _ = scaffolded
    assert input_parts(inst) == (
        ("Story for his sister, Adam (do not skip, don't guess):\n", False),
        (PASSAGE, True),
        ("\nQ: ", False),
        (QUESTION, True),
        ("\nA:", False),
    )


def test_every_perturbation_keeps_the_scaffold_byte_identical(scaffolded: tuple) -> None:
    spec, instances, pool = scaffolded
    assert sorted(EVERY) == sorted(PERTURBATIONS)  # a new perturbation belongs in this test too
    original, *variants = build_requests(spec.adapter, instances, pool, SEED, EVERY)
    # The prompt around the instance's own text, written out in full.
    before = (
        "Answer as his brother would, Adam. Do not guess; don't skip.\n\n"
        "Read with care:\nStory for his sister, Adam (do not skip, don't guess):\nAdam said he would not go.\n"
        "Q: Does he go with his brother?\nA:\n"
        "(A) He does not know\n(B) His sister came with John\n(C) Adam stayed home\nHe says: B\n\n"
        "Read with care:\nStory for his sister, Adam (do not skip, don't guess):\n"
    )
    between = "\nQ: "
    after = "\nA:\n(A) He does not know\n(B) His sister came with John\n(C) Adam stayed home\nHe says:"
    assert original.prompt == before + PASSAGE + between + QUESTION + after
    assert [v.perturbation for v in variants] == EVERY
    for variant in variants:
        name = variant.perturbation
        prompt = variant.prompt
        assert prompt.startswith(before) and prompt.endswith(after), name
        passage, question = prompt[len(before) : len(prompt) - len(after)].split(between)
        assert [passage, question] == perturb_parts(name, [PASSAGE, QUESTION], SEED, "test-0"), name
        assert question != QUESTION, name
        # What is scored is the original's: the same letters, standing for the same options.
        assert (variant.continuations, variant.choices) == (original.continuations, original.choices), name


# -- BIG-bench: only the example's input is the instance's own text ---------------------------------

TASK = {
    "task_prefix": "Pick the film his brother would like.",
    "examples": [
        {
            "input": "Adam does not like films with his sister, but he loves Toy Story and The Matrix.",
            "target_scores": {"Finding Nemo": 0, "The Terminator": 1},
            "target": "The Terminator",
        },
        {
            "input": "He didn't watch it with his brother because he would rather read.",
            "target_scores": {"Finding Nemo": 1, "The Terminator": 0},
            "target": "Finding Nemo",
        },
    ],
}
BIGBENCH = [name for name in spec_names("scenario") if name.startswith("bigbench_")]  # the suite's for_each


@pytest.mark.parametrize("name", BIGBENCH)
def test_a_bigbench_prompt_is_perturbed_only_in_the_examples_input(name: str, tmp_path: Path) -> None:
    write(tmp_path / "task.json", json.dumps(TASK))
    shipped = find_scenario(name)
    spec = ScenarioSpec.model_validate(
        {
            **shipped.model_dump(exclude={"source"}),
            "source": {"split": "default", "offline": {"files": {"default": "task.json"}, "format": "bigbench"}},
        }
    )
    instances, _ = load_instances(spec, base_dir=tmp_path)
    requests = build_requests(spec.adapter, instances, [], SEED, EVERY)
    # The task's prefix and the default example prefix before the input; the listed choices and the
    # default output prefix after it.
    head, tail = "Pick the film his brother would like.\nQ: ", "\n  choice: Finding Nemo\n  choice: The Terminator\nA: "
    if name == "bigbench_repeat_copy_logic":
        tail = tail.rstrip(" ")  # its field template strips the prompt's trailing space
    changed: set[str] = set()
    each = 1 + len(EVERY)  # requests per instance: the original and one per perturbation
    for inst, (original, *variants) in zip(instances, [requests[:each], requests[each:]], strict=True):
        text = TASK["examples"][int(inst.id)]["input"]
        assert input_parts(inst) == ((head, False), (text, True), (tail, False))
        assert original.prompt == head + text + tail
        for variant in variants:
            assert variant.prompt == head + perturb(variant.perturbation, text, SEED, inst.id) + tail
            assert (variant.continuations, variant.choices) == (original.continuations, original.choices)
            changed |= {variant.perturbation} if variant.prompt != original.prompt else set()
    assert changed == set(EVERY)


# -- the parts of a rendered template ---------------------------------------------------------------

ROW = {"question": "Who is he?", "passage": "A text.", "choices": ["x", "y"], "prompt": "Q: in?\nA: ", "input": "in?"}


@pytest.mark.parametrize(
    ("template", "parts"),
    [
        ("Q: {{ question }}\nA:", (("Q: ", False), ("Who is he?", True), ("\nA:", False))),
        ("{{ 'Q: ' }}{{ question }}", (("Q: ", False), ("Who is he?", True))),  # a printed constant is spec text
        (
            "{% macro q(x) %}Q: {{ x }}{% endmacro %}{{ q(question) }}!",
            (("Q: ", False), ("Who is he?", True), ("!", False)),
        ),
        ("{% set q %}Q: {{ question }}{% endset %}{{ q }}", (("Q: ", False), ("Who is he?", True))),
        (
            "{% for c in choices %}- {{ c | scaffold }}\n{% endfor %}{{ question }}",
            (("- x\n- y\n", False), ("Who is he?", True)),
        ),
        ("{{ prompt | scaffold_around(input) }}", (("Q: ", False), ("in?", True), ("\nA: ", False))),
        ("{{ prompt | scaffold_around('absent') }}", (("Q: in?\nA: ", True),)),  # not found: all of it is the row's
        ("{{ prompt | scaffold_around('') }}", (("Q: in?\nA: ", False),)),  # no own text at all
        # Text a template computes is the row's text, template words included: write scaffold outside {{ }}.
        ("{{ 'Q: ' ~ question }}", (("Q: Who is he?", True),)),
        ("{% filter upper %}Q: {{ question }}{% endfilter %}", (("Q: WHO IS HE?", True),)),
    ],
)
def test_a_rendered_template_knows_its_scaffold(template: str, parts: tuple) -> None:
    rendered = value_of(template, ROW, "w")
    assert isinstance(rendered, TemplateText)
    assert (rendered.parts, rendered) == (parts, "".join(text for text, _ in parts))


def test_a_column_is_the_rows_text_whole_and_a_null_cannot_be_scaffold() -> None:
    assert text_parts(value_of("question", ROW, "w")) == (("Who is he?", True),)
    assert text_parts("") == ()
    with pytest.raises(TemplateError, match="a value printed by the template is null"):
        value_of("{{ none | scaffold }}", ROW, "w")


def test_template_text_keeps_its_parts_through_str_copies_and_pickles_and_is_plain_text_otherwise() -> None:
    rendered = value_of("Q: {{ question }}", ROW, "w")
    for kept in (str(rendered), copy.deepcopy(rendered), pickle.loads(pickle.dumps(rendered))):
        assert isinstance(kept, TemplateText) and kept.parts == rendered.parts
    assert rendered == "Q: Who is he?" and hash(rendered) == hash("Q: Who is he?")
    assert type(rendered + "!") is str and type(rendered.strip()) is str and type(rendered[:2]) is str
    # The data's fingerprint is the text's, whatever the parts.
    plain = Instance(id="1", input="Q: Who is he?", split="test")
    assert instances_fingerprint([Instance(id="1", input=rendered, split="test")]) == instances_fingerprint([plain])


# -- perturbing the pieces of an instance's own text -------------------------------------------------


def test_one_piece_is_perturbed_exactly_as_the_whole_text_was() -> None:
    for name in EVERY:
        assert perturb_parts(name, [QUESTION], SEED, "k") == [perturb(name, QUESTION, SEED, "k")], name
    assert perturb_input("typos", Instance(id="k", input=QUESTION, split="test"), SEED) == perturb(
        "typos", QUESTION, SEED, "k"
    )


def test_a_name_gets_one_substitute_across_pieces() -> None:
    passage, question = perturb_parts("race_names", ["Adam met Amanda.", "Where did Adam go?"], 5, "k")
    assert passage.split()[0] == question.split()[2] != "Adam"


def test_text_holding_the_joining_character_is_perturbed_piece_by_piece() -> None:
    pieces = ["He said \ue000 no.", "Did he?"]
    assert perturb_parts("gender", pieces, 0, "k") == ["She said \ue000 no.", "Did she?"]
    assert perturb_parts("typos", pieces, 0, "k") == perturb_parts("typos", pieces, 0, "k")
