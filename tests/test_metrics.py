import math

import numpy as np
import pytest
from calibration import get_ece_em

from tasks.adapt import Request
from tasks.instances import Instance
from tasks.metrics import accuracy, calibration, efficiency, to_prediction
from tasks.models.base import Completion


def test_exact_and_quasi_exact_match() -> None:
    assert accuracy.exact_match(" Paris ", "Paris") == 1.0
    assert accuracy.exact_match("paris", "Paris") == 0.0
    # lowercase, punctuation and articles removed, spaces collapsed: "the  Eiffel-Tower!" -> "eiffeltower"
    assert accuracy.normalize_text("The  Eiffel-Tower!") == "eiffeltower"
    assert accuracy.quasi_exact_match("the Eiffel-Tower!", "eiffeltower") == 1.0
    assert accuracy.quasi_exact_match("a tower", "tower of pisa") == 0.0


def test_generation_accuracy_takes_the_best_reference() -> None:
    inst = Instance(id="g", input="?", split="test", references=("New York", "NYC"))
    assert accuracy.instance_accuracy(inst, None, "nyc") == {"exact_match": 0.0, "quasi_exact_match": 1.0}


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


def test_ece_agrees_with_helm_package_on_random_pairs() -> None:
    rng = np.random.default_rng(7)
    p = rng.uniform(0.25, 1.0, 1000)
    y = (rng.uniform(size=1000) < p).astype(int)
    assert abs(calibration.ece(list(p), list(y), 10) - get_ece_em(p, y, num_bins=10)) < 1e-9


def test_efficiency_aggregates_by_hand() -> None:
    metrics = {m.metric: m for m in efficiency.aggregate([1.0, 2.0, 3.0, 10.0], [10, 20, 30, 40], [0, 0, 0, 4])}
    assert metrics["inference_runtime"].value == 4.0  # (1+2+3+10)/4
    assert metrics["inference_runtime_p50"].value == 2.5
    assert metrics["inference_runtime_p95"].value == pytest.approx(8.95)  # 3 + (10-3)*0.85
    assert metrics["tokens_per_second"].value == 104 / 16
    assert metrics["instances_per_second"].value == 4 / 16
    assert metrics["inference_runtime"].lower_is_better and metrics["inference_runtime"].headline
