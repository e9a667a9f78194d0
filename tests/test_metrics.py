import math

import numpy as np
import pytest
from calibration import get_ece_em

from helmflow.tasks.adapt import Request
from helmflow.tasks.instances import Instance
from helmflow.tasks.metrics import accuracy, calibration, efficiency, to_prediction
from helmflow.tasks.models.base import Completion


def test_exact_and_quasi_exact_match() -> None:
    assert accuracy.exact_match(" Paris ", "Paris") == 1.0
    assert accuracy.exact_match("paris", "Paris") == 0.0
    # lowercase, punctuation and articles removed, spaces collapsed: "the  Eiffel-Tower!" -> "eiffeltower"
    assert accuracy.normalize_text("The  Eiffel-Tower!") == "eiffeltower"
    assert accuracy.quasi_exact_match("the Eiffel-Tower!", "eiffeltower") == 1.0
    assert accuracy.quasi_exact_match("a tower", "tower of pisa") == 0.0


def test_generation_accuracy_takes_the_best_reference() -> None:
    inst = Instance(id="g", input="?", split="test", references=("New York", "NYC"))
    # "nyc" against "NYC": differs only in case, so every normalised metric is 1 and the exact ones 0.
    assert accuracy.instance_accuracy(inst, None, "nyc") == {
        "exact_match": 0.0,
        "quasi_exact_match": 1.0,
        "prefix_exact_match": 0.0,
        "quasi_prefix_exact_match": 1.0,
        "f1_score": 1.0,
        "rouge_l": 1.0,
    }


def test_f1_prefix_and_rouge_by_hand() -> None:
    # tokens {eiffel, tower, paris} vs {eiffel, tower}: P = 2/3, R = 1, F1 = 2 * (2/3) / (5/3) = 0.8
    assert accuracy.f1_score("The Eiffel Tower, Paris", "eiffel tower") == pytest.approx(0.8)
    assert accuracy.prefix_exact_match("Paris, France", "Paris") == 1.0
    assert accuracy.quasi_prefix_exact_match("the paris!", "Paris") == 1.0
    # LCS of "the cat sat" and "the cat sat down" = 3: P = 3/3, R = 3/4, F = 2 * 0.75 / 1.75 = 0.857
    assert accuracy.rouge_l("the cat sat", "the cat sat down") == pytest.approx(6 / 7)
    assert accuracy.f1_score("", "x") == 0.0


def test_multiple_choice_prediction_is_argmax_with_option_normalised_confidence() -> None:
    request = Request(id="r", instance_id="i", kind="multiple_choice", prompt="p", continuations=(" A", " B", " C"))
    # log-likelihoods ln(0.1), ln(0.3), ln(0.1): softmax over options = 0.2, 0.6, 0.2
    completion = Completion(request_id="r", logprobs=[math.log(0.1), math.log(0.3), math.log(0.1)])
    pred = to_prediction(request, completion)
    assert (pred.predicted_index, pred.predicted_text) == (1, "B")
    assert pred.confidence == pytest.approx(0.6, abs=1e-12)


def test_ties_choose_the_first_option_like_argmax() -> None:
    request = Request(id="r", instance_id="i", kind="multiple_choice", prompt="p", continuations=(" A", " B"))
    pred = to_prediction(request, Completion(request_id="r", logprobs=[-1.0, -1.0]))
    assert (pred.predicted_index, pred.confidence) == (0, 0.5)


def test_ece_10_bin_by_hand() -> None:
    # Fewer points than bins: each point is its own bin, ECE = mean |p - y|
    # = (|0.9-1| + |0.8-0| + |0.3-0| + |0.6-1|) / 4 = (0.1 + 0.8 + 0.3 + 0.4) / 4 = 0.4
    assert calibration.ece([0.9, 0.8, 0.3, 0.6], [1, 0, 0, 1], 10) == pytest.approx(0.4, abs=1e-12)
    # One bin: |mean p - mean y| = |0.65 - 0.5| = 0.15
    assert calibration.ece([0.9, 0.8, 0.3, 0.6], [1, 0, 0, 1], 1) == pytest.approx(0.15, abs=1e-12)
    # All correct with confidence 1: perfectly calibrated
    assert calibration.ece([1.0, 1.0], [1, 1], 10) == 0.0
    assert calibration.ece([], [], 10) is None


def test_calibration_agrees_with_helm_package_on_1000_seeded_pairs() -> None:
    from calibration import get_platt_scaler, get_selective_stats

    rng = np.random.default_rng(7)
    p = rng.uniform(0.25, 1.0, 1000)
    y = (rng.uniform(size=1000) < p**2).astype(int)
    ours = {m.metric: m.value for m in calibration.aggregate(list(p), list(y))}
    area, top10 = get_selective_stats(p, y)
    platt = get_ece_em(get_platt_scaler(p, y)(p), y, num_bins=10)
    expected = {
        "ece_10_bin": get_ece_em(p, y, num_bins=10),
        "ece_1_bin": get_ece_em(p, y, num_bins=1),
        "selective_cov_acc_area": area,
        "selective_acc@10": top10,
        "platt_ece_10_bin": platt,
    }
    for name, value in expected.items():
        assert abs(ours[name] - value) < 1e-9, name


def test_calibration_edges_by_hand() -> None:
    # All correct, all confident: ECE 0; selective accuracy 1 everywhere; Platt has nothing to fit -> 0.
    right = {m.metric: m.value for m in calibration.aggregate([1.0, 1.0, 1.0], [1, 1, 1])}
    assert right == {
        "ece_10_bin": 0.0,
        "ece_1_bin": 0.0,
        "selective_cov_acc_area": 1.0,
        "selective_acc@10": 1.0,
        "platt_ece_10_bin": 0.0,
    }
    # All wrong at 0.7: every bin is off by 0.7.
    wrong = {m.metric: m.value for m in calibration.aggregate([0.7, 0.7], [0, 0])}
    assert wrong["ece_10_bin"] == pytest.approx(0.7) and wrong["selective_cov_acc_area"] == 0.0
    # Ties keep input order: sorted confidences [0.9, 0.5, 0.5, 0.5] with hits [1, 0, 1, 1]
    # accuracy of the top k: 1, 1/2, 2/3, 3/4 -> area = (1 + 0.5 + 0.6667 + 0.75) / 4 = 0.72917
    area, top10 = calibration.selective_stats([0.5, 0.9, 0.5, 0.5], [0, 1, 1, 1])
    assert area == pytest.approx((1 + 1 / 2 + 2 / 3 + 3 / 4) / 4) and top10 == 1.0
    assert {m.metric: m.value for m in calibration.aggregate([], [])}["ece_10_bin"] is None


def test_denoised_runtime_ignores_a_stall() -> None:
    # runtime = 0.01 * prompt tokens exactly, except one request that stalled for 5 s
    runtimes = [0.1, 0.2, 0.3, 5.0, 0.5]
    fitted = efficiency.denoised_runtimes(runtimes, [10, 20, 30, 40, 50], [0] * 5)
    assert fitted == pytest.approx([0.1, 0.2, 0.3, 0.4, 0.5], abs=1e-6)


def test_idealized_flops() -> None:
    # 2 * 1000 parameters * (10 + 2) tokens = 24000 per instance; 48000 FLOP over 2 s of runtime
    metrics = {m.metric: m.value for m in efficiency.aggregate([1.0, 1.0], [10, 10], [2, 2], num_parameters=1000)}
    assert metrics["idealized_flops"] == 24000 and metrics["achieved_flop_per_second"] == 24000


def test_prefix_reuse_is_reported_as_tokens_requested_and_computed() -> None:
    # Two requests of 4 choices × 50 tokens, sharing a 40-token context each: 200 requested; computed
    # 40 once + 4 × 10 own = 80 per request. A backend that does not say (zeros) reports nothing.
    metrics = {m.metric: m for m in efficiency.aggregate([1.0, 1.0], [40, 40], [0, 0], None, [200, 200], [80.0, 80.0])}
    assert metrics["prompt_tokens_requested"].value == 200 and metrics["prompt_tokens_computed"].value == 80
    assert metrics["prompt_tokens_computed"].lower_is_better
    silent = {m.metric for m in efficiency.aggregate([1.0], [40], [0], None, [0], [0.0])}
    assert "prompt_tokens_computed" not in silent and "prompt_tokens_requested" not in silent


def test_efficiency_aggregates_by_hand() -> None:
    metrics = {m.metric: m for m in efficiency.aggregate([1.0, 2.0, 3.0, 10.0], [10, 20, 30, 40], [0, 0, 0, 4])}
    assert metrics["inference_runtime"].value == 4.0  # (1+2+3+10)/4
    assert metrics["inference_runtime_p50"].value == 2.5
    assert metrics["inference_runtime_p95"].value == pytest.approx(8.95)  # 3 + (10-3)*0.85
    assert metrics["tokens_per_second"].value == 104 / 16
    assert metrics["instances_per_second"].value == 4 / 16
    assert metrics["inference_runtime"].lower_is_better and metrics["inference_runtime"].headline


def test_an_empty_answer_is_certain_and_an_answer_without_log_probs_has_no_confidence() -> None:
    """HELM's max_prob: exp of the kept tokens' log-prob, 1 when the stop sequence came first."""
    request = Request(id="g", instance_id="i", kind="generation", prompt="p", max_tokens=5, stop=("\n",))
    cut_at_once = to_prediction(request, Completion(request_id="g", text="", generated_tokens=1))
    assert (cut_at_once.predicted_text, cut_at_once.confidence) == ("", 1.0)
    no_logprobs = to_prediction(request, Completion(request_id="g", text="Paris"))  # a chat server without them
    assert no_logprobs.confidence is None
    answered = to_prediction(request, Completion(request_id="g", text="Paris", logprobs=[math.log(0.5)] * 2))
    assert answered.confidence == pytest.approx(0.25)
