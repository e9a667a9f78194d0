"""Language modelling (adapter method `language_modeling`, lm-eval's loglikelihood_rolling): texts scored whole in
lm-eval's rolling windows, bits per byte and perplexities as ratios of sums, and the checks on such specs."""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest
from pydantic import ValidationError

from helmflow.specs.schema import ScenarioSpec
from helmflow.tasks.adapt import build_requests
from helmflow.tasks.metrics import score, to_prediction
from helmflow.tasks.metrics.language_modeling import count_words
from helmflow.tasks.models.hf_tokens import rolling_sequences
from helmflow.tasks.records import Completion, Instance

SOURCE = {"offline": {"files": {"test": "texts.jsonl"}}}


def lm_spec(**changes: object) -> ScenarioSpec:
    raw = {
        "name": "texts",
        "source": SOURCE,
        "adapter": {"method": "language_modeling"},
        "main_metric": "bits_per_byte",
        "metrics": ["accuracy", "efficiency"],
    }
    return ScenarioSpec.model_validate({**raw, **changes})


# -- the windows ---------------------------------------------------------------------------------------------


def test_rolling_windows_are_lm_evals_for_every_length_and_window() -> None:
    """Each window's input and scored tokens equal what lm-eval's get_rolling_token_windows (context_len 1), then
    make_disjoint_window, then _loglikelihood_tokens' cut give, whatever the text's length against the window."""
    utils = pytest.importorskip("lm_eval.utils", reason="lm-evaluation-harness is not installed")
    tokenizer = SimpleNamespace(bos_token_id=None, eos_token_id=0)  # no BOS: the prefix token is EOS, as lm-eval's
    for limit in (1, 2, 3, 5, 16):
        model = SimpleNamespace(spec=SimpleNamespace(max_length=limit), tokenizer=tokenizer)
        for length in (1, 2, 3, 5, 16, 17, 33, 40):
            tokens = list(range(100, 100 + length))
            ours = [(s.input_ids, s.targets[0][1], s.targets[0][2]) for s in rolling_sequences(model, 7, 0, tokens)]
            theirs = []
            windows = utils.get_rolling_token_windows(
                token_list=tokens, prefix_token=0, max_seq_len=limit, context_len=1
            )
            for context, continuation in map(utils.make_disjoint_window, windows):
                row = (context + continuation)[-(limit + 1) :][:-1]
                theirs.append((row, len(row) - len(continuation), continuation))
            assert ours == theirs, (limit, length)
            assert [t for _, _, window in ours for t in window] == tokens  # every token scored once


def test_a_window_of_three_by_hand() -> None:
    model = SimpleNamespace(spec=SimpleNamespace(max_length=3), tokenizer=SimpleNamespace(bos_token_id=1))
    rows = rolling_sequences(model, 0, 0, [10, 11, 12, 13, 14, 15, 16])
    assert [(r.input_ids, r.targets) for r in rows] == [
        ([1, 10, 11], [(0, 0, [10, 11, 12])]),  # BOS, then the first three tokens predicted
        ([12, 13, 14], [(0, 0, [13, 14, 15])]),  # one token of context (12) before the next three
        ([13, 14, 15], [(0, 2, [16])]),  # the last: the window's three tokens before 16, only 16 scored
    ]


# -- the metrics ---------------------------------------------------------------------------------------------


def scored(spec: ScenarioSpec, texts: dict[str, tuple[str, float, int]], extra: dict[str, dict[str, str]]):
    """score() of texts id -> (text, log-likelihood, tokens), each instance in its own group 'g<id>'."""
    instances = [Instance(i, text, "test", group=f"g{i}", extra=extra.get(i, {})) for i, (text, _, _) in texts.items()]
    requests = build_requests(spec.adapter, instances, [], seed=0)
    predictions = []
    for request in requests:
        _, logprob, tokens = texts[request.instance_id]
        completion = Completion(request.id, logprobs=[logprob], continuation_tokens=[tokens], latency_s=0.5)
        predictions.append(to_prediction(request, completion))
    return score(spec, instances, predictions)


def test_bits_per_byte_and_perplexities_are_ratios_of_sums_by_hand() -> None:
    # "ab cd": 5 bytes, 2 words, log-likelihood -10 over 4 tokens; "é": 2 bytes (UTF-8), 1 word, -2 over 1 token.
    # Σll = -12, Σbytes = 7, Σwords = 3, Σtokens = 5.
    stats, metrics = scored(lm_spec(), {"a": ("ab cd", -10.0, 4), "b": ("é", -2.0, 1)}, {})
    run = {m.metric: m for m in metrics if m.category == "accuracy" and not m.group}
    assert run["bits_per_byte"].value == pytest.approx(12 / 7 / math.log(2))  # 2.4731...
    assert run["byte_perplexity"].value == pytest.approx(math.exp(12 / 7))
    assert run["word_perplexity"].value == pytest.approx(math.exp(4.0))
    assert run["perplexity"].value == pytest.approx(math.exp(12 / 5))
    assert run["logprob"].value == pytest.approx(-6.0)  # the mean of -10 and -2
    assert run["bits_per_byte"].headline and run["bits_per_byte"].lower_is_better
    assert not run["logprob"].lower_is_better and run["bits_per_byte"].n == 2
    # Not the mean of each text's value: "ab cd" alone is 10/5/ln 2 = 2.885, "é" alone 2/2/ln 2 = 1.443.
    per_text = {(s.instance_id, s.metric): s.value for s in stats if s.category == "accuracy"}
    assert per_text["a", "bits_per_byte"] == pytest.approx(2 / math.log(2))
    assert per_text["b", "bits_per_byte"] == pytest.approx(1 / math.log(2))
    assert per_text["b", "word_perplexity"] == pytest.approx(math.exp(2.0))
    groups = {m.group: m.value for m in metrics if m.metric == "bits_per_byte" and m.group}
    assert groups == {"ga": pytest.approx(2 / math.log(2)), "gb": pytest.approx(1 / math.log(2))}
    # The interval: the ratio recomputed on resampled texts, within the extremes of the texts' own values.
    low, high = run["bits_per_byte"].ci_low, run["bits_per_byte"].ci_high
    assert 1 / math.log(2) - 1e-9 <= low <= run["bits_per_byte"].value <= high <= 2 / math.log(2) + 1e-9
    assert {m.category for m in metrics} == {"accuracy", "efficiency"}


def test_counts_given_by_the_task_replace_the_texts_own() -> None:
    # lm-eval's wikitext counts words on the page before detokenising: the instance's extras carry its counts.
    _, metrics = scored(lm_spec(), {"a": ("ab cd", -12.0, 4)}, {"a": {"words": "6", "bytes": "24"}})
    run = {m.metric: m.value for m in metrics if m.category == "accuracy"}
    assert run["word_perplexity"] == pytest.approx(math.exp(2.0))  # 12 / 6
    assert run["bits_per_byte"] == pytest.approx(0.5 / math.log(2))  # 12 / 24


def test_words_are_counted_as_lm_eval_counts_them() -> None:
    assert count_words("a b\n\nc") == 3
    assert count_words(" leading space") == 3  # re.split gives an empty first piece, and lm-eval counts it
    assert count_words("") == 1


# -- the spec --------------------------------------------------------------------------------------------------


def test_a_language_modelling_spec_takes_no_exemplars_perturbations_or_question_metrics() -> None:
    assert lm_spec().adapter.method == "language_modeling"
    cases = [
        ({"adapter": {"method": "language_modeling", "num_train": 2, "fewshot_split": "train"}}, "no exemplars"),
        ({"main_metric": "exact_match"}, "main_metric: metric 'exact_match' does not apply"),
        ({"perturbations": {"robustness": ["typos"]}}, "no perturbations"),
        ({"metrics": ["accuracy", "ece_10_bin"]}, "'ece_10_bin' does not apply"),
    ]
    for changes, message in cases:
        with pytest.raises(ValidationError, match=message):
            lm_spec(**changes)
    with pytest.raises(ValidationError, match="'bits_per_byte' does not apply to adapter method generation"):
        lm_spec(adapter={"method": "generation"})


def test_a_text_is_one_continuation_after_an_empty_prompt_outside_any_template() -> None:
    [request] = build_requests(lm_spec().adapter, [Instance("a", "Some text.\n", "test")], [], seed=0)
    assert (request.kind, request.prompt, request.continuations) == ("multiple_choice", "", ("Some text.\n",))


# -- on the model ----------------------------------------------------------------------------------------------


@pytest.mark.model
@pytest.mark.slow  # make test-slow: both tools load the model
def test_rolling_log_likelihoods_equal_lm_evals_on_the_model() -> None:
    """Texts longer than a 16-token window, scored by the hf backend and by lm-eval's HFLM.loglikelihood_rolling."""
    pytest.importorskip("lm_eval.models.huggingface", reason="lm-evaluation-harness is not installed")
    from lm_eval.api.instance import Instance as LmevalInstance
    from lm_eval.models.huggingface import HFLM

    from helmflow.specs.schema import ModelSpec
    from helmflow.tasks.models.embedded import converted_dir
    from helmflow.tasks.models.hf import HFModel

    texts = ["The quick brown fox jumps over the lazy dog. " * 6, "Short one.", "Senjō no Valkyria 3 is a game."]
    path = str(converted_dir()[0])
    ours = HFModel(ModelSpec(name="m", backend="hf", path=path, batch_size=4, max_length=16), fingerprint="t")
    [request] = build_requests(lm_spec().adapter, [Instance("x", texts[0], "test")], [], seed=0)
    requests = [request.__class__(f"r{i}", f"r{i}", "multiple_choice", "", (t,), (t,)) for i, t in enumerate(texts)]
    completions = ours.loglikelihood(requests)
    lm = HFLM(pretrained=path, max_length=16, batch_size=4, device="cpu", dtype="float32")
    theirs = lm.loglikelihood_rolling(
        [LmevalInstance("loglikelihood_rolling", {}, (t,), i) for i, t in enumerate(texts)]
    )
    for completion, their in zip(completions, theirs, strict=True):
        assert abs(completion.logprobs[0] - their) <= 1e-4
    assert completions[0].continuation_tokens[0] > 16  # scored in several windows


# -- a task's own counts (lm-eval's process_results of a loglikelihood_rolling task) ---------------------------


def test_a_counts_hook_is_read_once_per_row_and_one_that_scores_is_refused(
    tmp_path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from helmflow.specs.schema import DocHooks
    from helmflow.tasks.data import DataError
    from helmflow.tasks.lmeval_hooks import apply_hooks

    hooks = tmp_path / "hooks.py"
    hooks.write_text(
        "def counts(doc, results):\n"
        "    (ll,) = results\n"
        "    return {'word_perplexity': (ll, len(doc['page'].split())), 'bits_per_byte': (ll, len(doc['page']))}\n"
        "def scores(doc, results):\n"
        "    (ll,) = results\n"
        "    return {'word_perplexity': (ll * 2, 3)}\n"
    )
    monkeypatch.setenv("HELMFLOW_TRUST_TASK_CODE", "1")  # a user's folder: code that runs only when trusted
    rows = [("test row 1", {"page": "a b c"})]
    [(_, row)] = apply_hooks(rows, DocHooks(counts=f"{hooks}:counts"))
    assert (row["lmeval_words"], row["lmeval_bytes"]) == (3, 5)
    said = r"test row 1: process_results hook .*:scores gave word_perplexity: \(-2.0, 3\)"
    with pytest.raises(DataError, match=said):
        apply_hooks(rows, DocHooks(counts=f"{hooks}:scores"))
