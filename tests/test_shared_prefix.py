"""Shared prefixes: which sequences are grouped (by hand), and on the real model the log-probs equal
the unshared computation's to 1e-4 for few-shot prompts, separate choices and a mix of both."""

from __future__ import annotations

import pytest

from helmflow.specs.schema import ModelSpec
from helmflow.tasks.models.embedded import converted_dir
from helmflow.tasks.models.hf import PACKED_ROW_TOKENS
from helmflow.tasks.models.hf_prefix import shareable_length
from helmflow.tasks.models.shared_prefix import PrefixGroup, prefix_groups
from helmflow.tasks.records import Request

HEADER = list(range(100, 120))  # 20 shared tokens


def test_a_shared_header_is_one_group_and_a_sequence_without_it_stays_alone() -> None:
    sequences = [[*HEADER, 1, 2], [*HEADER, 1, 3], [*HEADER, 4], [7, 7, 7]]
    # Sorted: [7,7,7] < HEADER…; the three HEADER rows share 20 tokens: saved (3 - 1) × 20 - 4 = 36.
    # Their children ({1,2},{1,3} share 21: 21 - 4 = 17; {4} alone) save less, so the node is taken whole.
    assert prefix_groups(sequences, [len(s) - 1 for s in sequences]) == [PrefixGroup(20, (0, 1, 2))]


def test_subgroups_with_longer_prefixes_win_when_they_save_more() -> None:
    a = [HEADER + [1] * 30 + [k] for k in range(3)]  # share 50 tokens
    b = [HEADER + [2] * 30 + [k] for k in range(3)]  # share 50 tokens
    sequences = a + b
    # Whole: 5 × 20 - 4 = 96. Children: 2 × (2 × 50 - 4) = 192.
    groups = prefix_groups(sequences, [len(s) - 1 for s in sequences])
    assert sorted(groups, key=lambda g: g.members) == [PrefixGroup(50, (0, 1, 2)), PrefixGroup(50, (3, 4, 5))]


def test_a_prefix_never_reaches_a_scored_position() -> None:
    sequences = [[*HEADER, 1], [*HEADER, 2]]
    # The first scored positions are 12 and 15: the shared 20 tokens are cut to 12.
    assert prefix_groups(sequences, [12, 15]) == [PrefixGroup(12, (0, 1))]
    # Below MIN_SHARED_TOKENS (8) nothing is shared.
    assert prefix_groups(sequences, [5, 15]) == []


def test_identical_sequences_and_short_prefixes() -> None:
    assert prefix_groups([[1, 2, 3]] * 3, [2, 2, 2]) == []  # 2 < 8 tokens
    assert prefix_groups([], []) == []
    assert prefix_groups([HEADER], [19]) == []


# -- the real model -------------------------------------------------------------------------------

EXEMPLARS = "".join(
    f"Question: what is {a} plus {b}?\nA. {a + b}\nB. {a + b + 1}\nC. {a * b}\nD. 0\nAnswer: A\n\n"
    for a, b in [(2, 3), (4, 1), (7, 5), (6, 6), (9, 2)]
)
FEWSHOT = [
    Request(
        f"f{i}",
        f"f{i}",
        "multiple_choice",
        "The following are questions about arithmetic.\n\n" + EXEMPLARS + f"Question: what is {i} plus {i}?\n"
        f"A. {2 * i}\nB. {i}\nC. {i + 3}\nD. 1\nAnswer:",
        (" A", " B", " C", " D"),
    )
    for i in range(10)
]
SEPARATE = [
    Request(
        f"s{i}",
        f"s{i}",
        "multiple_choice",
        f"Question: Which of these would a person most likely use to measure {thing}?\nAnswer:",
        (" a ruler made of wood", " a thermometer", " a kitchen scale for baking", " a stopwatch"),
    )
    for i, thing in enumerate(["the length of a table", "the temperature of water", "flour", "a race", "rain"])
]


@pytest.fixture(scope="module")
def local_model():  # -> HFModel
    from helmflow.tasks.models.hf import HFModel

    spec = ModelSpec(name="local", backend="hf", path=str(converted_dir()[0]), batch_size=4)
    return HFModel(spec, fingerprint="test")


def logprobs(model, requests: list[Request], share: bool) -> list[list[float]]:  # model: HFModel
    model.spec = model.spec.model_copy(update={"share_prefixes": share})
    return [c.logprobs for c in model.loglikelihood(requests)]


@pytest.mark.model
@pytest.mark.slow  # six full scorings of the real model (about 3 minutes on 2 cores): make test-slow
@pytest.mark.parametrize(
    "requests", [FEWSHOT, SEPARATE, FEWSHOT[:3] + SEPARATE + FEWSHOT[3:]], ids=["fewshot", "separate", "mixed"]
)
# Every group packed into one row (the default's choice for all of these), or every group cached.
@pytest.mark.parametrize("packed_row_tokens", [PACKED_ROW_TOKENS, 0], ids=["packed", "cached"])
def test_shared_prefix_logprobs_equal_the_whole_computation(
    local_model, requests: list[Request], packed_row_tokens: int
) -> None:
    sequences = [s for i, r in enumerate(requests) for s in local_model._sequences(i, r)]
    groups = prefix_groups([s.input_ids for s in sequences], [shareable_length(s) for s in sequences])
    assert groups, "these requests share prefixes"
    if packed_row_tokens:
        lengths = [g.length + sum(len(sequences[m].input_ids) - g.length for m in g.members) for g in groups]
        assert max(lengths) <= packed_row_tokens
    local_model.packed_row_tokens = packed_row_tokens
    shared, whole = logprobs(local_model, requests, True), logprobs(local_model, requests, False)
    differences = [abs(a - b) for s, w in zip(shared, whole, strict=True) for a, b in zip(s, w, strict=True)]
    assert max(differences) <= 1e-4, max(differences)
    # Not trivially equal: every request has its own, different, log-probs.
    assert len({tuple(round(v, 3) for v in w) for w in whole}) == len(requests)


@pytest.mark.model
@pytest.mark.slow  # two scorings of the real model (about 15 s): make test-slow
def test_the_tokens_saved_are_counted(local_model) -> None:
    """Requested: every sequence whole. Computed: each group's prefix once, shared by its members."""
    requests = FEWSHOT[:3] + SEPARATE
    sequences = [s for i, r in enumerate(requests) for s in local_model._sequences(i, r)]
    groups = prefix_groups([s.input_ids for s in sequences], [shareable_length(s) for s in sequences])
    requested = sum(len(s.input_ids) for s in sequences)
    saved = sum((len(g.members) - 1) * g.length for g in groups)
    for share, computed in ((True, requested - saved), (False, requested)):
        local_model.spec = local_model.spec.model_copy(update={"share_prefixes": share})
        out = local_model.loglikelihood(requests)
        assert sum(c.prompt_tokens_requested for c in out) == requested
        assert sum(c.prompt_tokens_computed for c in out) == pytest.approx(computed)
    assert saved > requested / 3  # five exemplars and each question's context, computed once


def test_only_models_whose_every_layer_sees_everything_share_prefixes() -> None:
    from transformers import Gemma2Config, Gemma3Config, LlamaConfig, MistralConfig

    from helmflow.tasks.models.hf_generate import full_attention

    assert full_attention(LlamaConfig())
    assert full_attention(MistralConfig(sliding_window=None))
    assert not full_attention(MistralConfig(sliding_window=4096))
    assert not full_attention(Gemma2Config())  # sliding and full layers alternate
    assert not full_attention(Gemma3Config())  # the same, in its text model's config


@pytest.fixture(scope="module")
def sliding_model(tmp_path_factory: pytest.TempPathFactory):  # -> HFModel
    """A tiny random Mistral whose layers see 16 tokens back."""
    from transformers import MistralConfig, MistralForCausalLM

    from tests.tiny_models import tiny_model

    return tiny_model(tmp_path_factory.mktemp("sliding"), MistralConfig, MistralForCausalLM, sliding_window=16)


@pytest.mark.model
def test_a_sliding_window_model_computes_every_sequence_whole(sliding_model, monkeypatch) -> None:
    assert not sliding_model._can_share_prefixes()
    sliding_model.packed_row_tokens = PACKED_ROW_TOKENS
    whole = logprobs(sliding_model, FEWSHOT, False)
    assert logprobs(sliding_model, FEWSHOT, True) == whole
    # Why: the packed rows' own mask lets every token see the whole prefix, past the 16-token window.
    monkeypatch.setattr(sliding_model, "_can_share_prefixes", lambda: True)
    packed = logprobs(sliding_model, FEWSHOT, True)
    assert max(abs(a - b) for p, w in zip(packed, whole, strict=True) for a, b in zip(p, w, strict=True)) > 1e-3
