"""The hf backend's token ids (tasks/models/hf_tokens.py) on the embedded model's tokenizer, against
lm-evaluation-harness's rules, with the ids written out; and models whose forward does more to the
logits than the output head."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from helmflow.specs.schema import ModelSpec
from helmflow.tasks.models.base import ModelError
from helmflow.tasks.models.embedded import converted_dir
from helmflow.tasks.models.hf_tokens import Sequence, choice_sequences, generation_prompt
from helmflow.tasks.records import Request

# SmolLM2's tokenizer: "x" 104, " =" 446, " ==" 1758, " y" 329, " z" 1892, " w" 267, " yes" 9805, " no" 787,
# "<|im_start|>" 1 (its BOS token, which it does not add by itself).


@pytest.fixture(scope="module")
def tokens():  # a stand-in for HFModel: what tokenising reads of it
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(converted_dir()[0]))
    return SimpleNamespace(tokenizer=tokenizer, prompt_prefix=[], spec=ModelSpec(name="m", backend="embedded"))


def choices(model, prompt: str, *continuations: str) -> list[Sequence]:
    return choice_sequences(model, 0, Request("r", "i", "multiple_choice", prompt, continuations))


@pytest.mark.model
def test_the_model_reads_the_contexts_own_tokens_then_the_continuations(tokens) -> None:
    # "x =" + "= y" is "x == y" whole ([104, 1758, 329]): the continuation is what follows the context's
    # two tokens, " y", and the model reads it after the context's own tokens, x and " =" (as lm-eval does).
    assert choices(tokens, "x =", "= y", " z") == [Sequence(0, [104, 446], [(0, 1, [329]), (1, 1, [1892])])]
    assert choices(tokens, "x =", "= y", " z w") == [
        Sequence(0, [104, 446], [(0, 1, [329])]),
        Sequence(0, [104, 446, 1892], [(1, 1, [1892, 267])]),
    ]


@pytest.mark.model
def test_an_empty_prompt_is_read_as_the_bos_token(tokens) -> None:
    assert choices(tokens, "", " yes", " no") == [Sequence(0, [1], [(0, 0, [9805]), (1, 0, [787])])]
    assert generation_prompt(tokens, Request("g", "g", "generation", "", max_tokens=3)) == [1]


@pytest.mark.model
def test_a_choice_with_nothing_to_score_is_an_error(tokens) -> None:
    with pytest.raises(ModelError, match=r"request 'r': the choice '!' adds no token after the prompt"):
        choices(tokens, "Hello!", "!", " x")  # "Hello!!" has as many tokens as "Hello!"
    short = SimpleNamespace(**{**vars(tokens), "spec": ModelSpec(name="m", backend="embedded", max_length=16)})
    long_choice = " and" * 20
    with pytest.raises(ModelError, match=r"the choice ' and and.*' is 20 tokens, more than the model's max_length 16"):
        choices(short, "Q:", long_choice, " no")


@pytest.mark.model
def test_a_model_that_scales_its_logits_runs_whole(tmp_path) -> None:
    """Granite divides its logits by logits_scaling after the output head: calling the decoder and the head
    apart would skip that, so the model runs whole, and the log-probs are those of its own logits."""
    import torch
    from transformers import GraniteConfig, GraniteForCausalLM

    from tests.tiny_models import tiny_model

    model = tiny_model(tmp_path / "granite", GraniteConfig, GraniteForCausalLM, logits_scaling=8.0)
    assert model.parts is None and not model._can_share_prefixes()
    request = Request("r", "i", "multiple_choice", "x =", ("= y", " z w"))
    [scored] = model.loglikelihood([request])
    with torch.inference_mode():
        logprobs = torch.log_softmax(model.model(input_ids=torch.tensor([[104, 446, 1892]])).logits[0].float(), -1)
    assert scored.logprobs == pytest.approx(
        [logprobs[1, 329].item(), logprobs[1, 1892].item() + logprobs[2, 267].item()], abs=1e-5
    )
    plain = tiny_model(tmp_path / "plain", GraniteConfig, GraniteForCausalLM, logits_scaling=1.0)
    assert plain.parts is not None
