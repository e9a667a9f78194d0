"""hf generation's own decode loop (tasks/models/hf_generate.py): on the real model it gives the text
that transformers' `generate` gives, with a shared prefix computed once and rows that stop at
different steps; and it steps aside for what it does not do."""

from __future__ import annotations

import pytest

from helmflow.specs.schema import ModelSpec
from helmflow.tasks.models.embedded import converted_dir
from helmflow.tasks.models.hf_generate import (
    _Row,
    _shared_length,
    greedy_generate,
    own_loop_applies,
    transformers_generate,
)
from helmflow.tasks.models.shared_prefix import common_prefix_length
from helmflow.tasks.records import Request

HEADER = "Answer with a number.\n\nQ: 2 plus 3?\nA: 5\n\nQ: 10 minus 4?\nA: 6\n\n"
QUESTIONS = ["7 plus 1?", "3 times 3?", "How many legs does a spider have?", "12 minus 5?", "Half of 20?", "1 plus 1?"]
FEWSHOT = [
    Request(f"f{i}", f"f{i}", "generation", f"{HEADER}Q: {q}\nA:", max_tokens=6, stop=("\n",))
    for i, q in enumerate(QUESTIONS)
]
# Different stops and lengths in one group: one row runs to max_tokens, others stop early.
MIXED = [
    *FEWSHOT[:3],
    Request("m0", "m0", "generation", "Write a short poem about the sea:", max_tokens=10, stop=()),
    Request("m1", "m1", "generation", "The capital of France is", max_tokens=8, stop=(".",)),
    Request("m2", "m2", "generation", "List three colours:", max_tokens=12, stop=("\n\n",)),
]


def test_the_shared_length_keeps_every_prompts_last_token() -> None:
    def rows(*prompts: list[int]) -> list[_Row]:
        return [_Row(Request("r", "r", "generation", "x"), p) for p in prompts]

    assert _shared_length(rows([1, 2, 3, 4], [1, 2, 3, 5], [1, 2, 9])) == 2
    assert _shared_length(rows([1, 2, 3], [1, 2, 3])) == 2  # identical prompts: the last token is each row's own
    assert _shared_length(rows([1, 2, 3])) == 0  # alone: nothing to share
    assert _shared_length(rows([5, 2], [6, 2])) == 0


@pytest.fixture(scope="module")
def local_model():  # -> HFModel
    from helmflow.tasks.models.hf import HFModel

    # batch_size 2: each group's prompts are prefilled in several batches, then decoded together.
    spec = ModelSpec(name="local", backend="hf", path=str(converted_dir()[0]), batch_size=2)
    return HFModel(spec, fingerprint="test")


@pytest.mark.model
@pytest.mark.parametrize("requests", [FEWSHOT, MIXED], ids=["fewshot", "mixed"])
def test_the_loop_generates_what_transformers_generates(local_model, requests: list[Request]) -> None:
    ours = greedy_generate(local_model, requests)
    theirs = transformers_generate(local_model, requests)
    assert [o[0] for o in ours] == [t[0] for t in theirs]
    for (_, our_logprobs, our_prompt, _, _), (_, their_logprobs, their_prompt, _, _) in zip(ours, theirs, strict=True):
        assert our_prompt == their_prompt
        assert our_logprobs == pytest.approx(their_logprobs, abs=1e-3)
    produced = [o[3] for o in ours]
    assert len(set(produced)) > 1  # rows stopped at different steps
    assert all(p <= r.max_tokens for p, r in zip(produced, requests, strict=True))
    assert any(o[0] for o in ours)  # not all empty


@pytest.mark.model
def test_the_shared_prefix_is_computed_once_and_counted(local_model) -> None:
    encoded = sorted(local_model._encode(r.prompt) for r in FEWSHOT)
    shared = common_prefix_length(encoded[0], encoded[-1])
    assert shared > 20  # the header and both exemplars
    out = local_model.generate(FEWSHOT)
    requested = sum(len(e) for e in encoded)
    assert sum(c.prompt_tokens_requested for c in out) == requested
    assert sum(c.prompt_tokens_computed for c in out) == pytest.approx(requested - (len(FEWSHOT) - 1) * shared)
    assert [c.text for c in out] == [t[0] for t in transformers_generate(local_model, FEWSHOT)]
    # Prompts of 6 to 40 tokens are still one group: its decode steps are paid once.
    assert {c.batch_size for c in local_model.generate(MIXED)} == {len(MIXED)}


@pytest.mark.model
def test_a_logits_processor_in_the_generation_config_goes_through_generate(local_model) -> None:
    assert own_loop_applies(local_model, FEWSHOT)
    config = local_model.model.generation_config
    config.repetition_penalty = 1.3
    try:
        assert not own_loop_applies(local_model, FEWSHOT)
    finally:
        config.repetition_penalty = 1.0
    empty = Request("e", "e", "generation", "", max_tokens=2)
    assert not own_loop_applies(local_model, [*FEWSHOT, empty])  # an empty prompt has no last token
