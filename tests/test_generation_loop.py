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
from helmflow.tasks.models.hf_tokens import generation_prompt
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
@pytest.mark.slow  # make test-slow: two of transformers' generate runs, about 30 s on 2 cores
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
@pytest.mark.slow  # make test-slow: generation twice on the model
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


@pytest.mark.model
def test_the_tokenizer_decides_whether_prompts_start_with_bos_unless_the_spec_says() -> None:
    from types import SimpleNamespace

    from transformers import AutoTokenizer

    from helmflow.tasks.models.base import ModelError
    from helmflow.tasks.models.hf_tokens import prompt_prefix

    plain = AutoTokenizer.from_pretrained(str(converted_dir()[0]))  # SmolLM2's adds no BOS by itself
    adds = AutoTokenizer.from_pretrained(str(converted_dir()[0]), add_bos_token=True)  # as Llama 3's, Gemma's
    assert (plain.bos_token, plain.bos_token_id) == ("<|im_start|>", 1)
    assert [prompt_prefix(plain, None, "m"), prompt_prefix(adds, None, "m")] == [[], [1]]
    assert [prompt_prefix(plain, True, "m"), prompt_prefix(adds, False, "m")] == [[1], []]
    with pytest.raises(ModelError, match="model 'm': add_bos_token is true, but its tokenizer has no BOS token"):
        prompt_prefix(SimpleNamespace(bos_token_id=None), True, "m")


@pytest.mark.model
def test_a_bos_prefix_reaches_every_path_and_the_cache_key(local_model, monkeypatch: pytest.MonkeyPatch) -> None:
    import hashlib
    import json

    from helmflow.flows.inference import request_key

    question = Request("q", "q", "multiple_choice", f"{HEADER}Q: 7 plus 1?\nA:", (" 8", " 9"))
    text = local_model.tokenizer(HEADER, add_special_tokens=False).input_ids
    without = local_model.loglikelihood([question])[0]
    key_without = request_key(FEWSHOT[0], local_model)
    monkeypatch.setattr(local_model, "prompt_prefix", [1])
    assert local_model._encode(HEADER) == [1, *text]
    assert local_model._encode("<|im_start|>" + HEADER) == [1, *text]  # one BOS, not two
    ours, theirs = greedy_generate(local_model, FEWSHOT), transformers_generate(local_model, FEWSHOT)
    assert [o[0] for o in ours] == [t[0] for t in theirs]
    assert [o[2] for o in ours] == [t[2] for t in theirs] == [len(local_model._encode(r.prompt)) for r in FEWSHOT]
    with_bos = local_model.loglikelihood([question])[0]
    assert with_bos.continuation_tokens == without.continuation_tokens
    assert with_bos.prompt_tokens == without.prompt_tokens + 1
    assert with_bos.logprobs != pytest.approx(without.logprobs, abs=1e-3)  # the model reads the BOS
    # Answers computed with a prefix are cached apart; without one, keys are those of earlier helmflows.
    assert request_key(FEWSHOT[0], local_model) != key_without
    r = FEWSHOT[0]
    earlier = {
        "kind": r.kind, "prompt": r.prompt, "continuations": [], "max_tokens": r.max_tokens, "stop": list(r.stop),
        "decoding": "greedy", "dtype": "float32", "max_length": 2048,
    }  # fmt: skip
    assert key_without == hashlib.sha256(json.dumps(earlier, sort_keys=True).encode()).hexdigest()


@pytest.mark.model
def test_a_long_generation_prompt_loses_its_beginning_not_the_room_to_answer(
    local_model, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(local_model, "spec", local_model.spec.model_copy(update={"max_length": 16}))
    request = FEWSHOT[0]  # max_tokens 6: the prompt keeps its last 10 tokens
    whole = local_model._encode(request.prompt)
    assert len(whole) > 30
    assert generation_prompt(local_model, request) == whole[-10:]
    [completion] = local_model.generate([request])
    assert completion.prompt_tokens == 10
    [ours], [theirs] = greedy_generate(local_model, [request]), transformers_generate(local_model, [request])
    assert ours[0] == theirs[0] == completion.text
