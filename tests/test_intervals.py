"""95% intervals: Wilson and the seeded bootstrap against hand-computed values, and score() attaching them."""

from __future__ import annotations

import math

import numpy as np
import pytest

from helmflow.specs.schema import ScenarioSpec
from helmflow.tasks.metrics import score
from helmflow.tasks.metrics.calibration import ece
from helmflow.tasks.metrics.intervals import IntervalMetric, bootstrap, bootstrap_mean, ece_of_counts, wilson
from helmflow.tasks.records import Completion, Instance, Prediction, Request
from helmflow.warehouse.rows import metrics_frame


def test_wilson_matches_the_formula_worked_by_hand() -> None:
    # 8 of 10, z = 1.959964: z² = 3.841459; denominator 1 + z²/n = 1.3841459;
    # centre (0.8 + z²/20) / 1.3841459 = 0.9920729 / 1.3841459 = 0.7167402;
    # half z·sqrt(0.8·0.2/10 + z²/400) / 1.3841459 = 1.959964 · sqrt(0.02560365) / 1.3841459 = 0.2265777.
    low, high = wilson(8, 10)  # type: ignore[misc]
    assert low == pytest.approx(0.4901625, abs=1e-6)
    assert high == pytest.approx(0.9433178, abs=1e-6)


def test_wilson_at_the_edges_stays_inside_zero_and_one() -> None:
    # 0 of 5: the interval starts at 0 and ends at z²/(n + z²) = 3.841459 / 8.841459 = 0.4344825.
    low, high = wilson(0, 5)  # type: ignore[misc]
    assert low == 0.0
    assert high == pytest.approx(0.4344825, abs=1e-6)
    assert wilson(0, 0) is None


def test_bootstrap_of_a_mean_matches_the_exact_resampling_distribution() -> None:
    # Values 0, 1, 2, 3: a resample's sum S of 4 draws has P(S ≤ 1) = 5/256 = 1.95% and
    # P(S ≤ 2) = 15/256 = 5.9%, so the 2.5% quantile of the mean is 2/4 = 0.5 and, by symmetry,
    # the 97.5% quantile is 10/4 = 2.5. 1,000 seeded resamples land there.
    assert bootstrap_mean([0.0, 1.0, 2.0, 3.0]) == (0.5, 2.5)
    # A constant has no spread; no instance, no interval.
    assert bootstrap_mean([0.25] * 7) == (0.25, 0.25)
    assert bootstrap_mean([]) is None


def test_bootstrap_is_seeded_and_takes_any_statistic() -> None:
    data = [0.1, 0.9, 0.4, 0.7, 0.3]
    first = bootstrap(lambda idx: max(data[i] for i in idx), len(data))
    assert first == bootstrap(lambda idx: max(data[i] for i in idx), len(data))
    # The maximum of a resample is one of the values; the 97.5% one is the largest.
    assert first is not None and first[1] == 0.9 and first[0] in data


def test_resampled_ece_is_calibration_s_ece() -> None:
    # The O(n) ECE of a resample (counts over sorted instances) equals calibration.ece of the
    # resample written out, ties and repeated values included.
    rng = np.random.default_rng(1)
    confidence = np.sort(np.round(rng.random(200), 2))  # rounded: many ties
    correct = (rng.random(200) < confidence).astype(float)
    for size in (200, 7, 1):
        counts = np.bincount(rng.integers(0, 200, size=size), minlength=200)
        written_out = np.repeat(np.arange(200), counts)
        expected = ece(confidence[written_out], correct[written_out], 10)
        assert ece_of_counts(confidence, correct, counts, 10) == pytest.approx(expected, abs=1e-12)


def _spec(metrics: list[str]) -> ScenarioSpec:
    return ScenarioSpec.model_validate(
        {
            "name": "t",
            "source": {"offline": {"files": {"test": "d.jsonl"}}},
            "fields": {"input": "q", "choices": "opts", "answer": "gold"},
            "metrics": metrics,
        }
    )


def test_score_attaches_intervals_to_headline_metrics_and_the_warehouse_row_keeps_them() -> None:
    # 10 two-choice instances, 7 answered right: exact_match 0.7 with the Wilson interval of 7/10;
    # runtime 0.1..1.0 s: its bootstrap interval lies inside the observed range around the mean 0.55.
    instances = [Instance(f"i{k}", f"q{k}", "test", ("a", "b"), 0, group="g" if k % 2 else "h") for k in range(10)]
    predictions = []
    for k, inst in enumerate(instances):
        request = Request(f"r{k}", inst.id, "multiple_choice", inst.input, (" A", " B"), ("A", "B"))
        completion = Completion(f"r{k}", [-0.1, -2.0] if k < 7 else [-2.0, -0.1], latency_s=(k + 1) / 10)
        predictions.append(Prediction(request, completion, 0 if k < 7 else 1, "A", 0.8))
    _, metrics = score(_spec(["accuracy", "calibration", "efficiency"]), instances, predictions)
    by_name = {m.metric: m for m in metrics if not m.group and not m.perturbation}
    accuracy = by_name["exact_match"]
    assert isinstance(accuracy, IntervalMetric) and accuracy.ci_method == "wilson"
    assert (accuracy.ci_low, accuracy.ci_high) == pytest.approx(wilson(7, 10))
    runtime = by_name["inference_runtime"]
    assert isinstance(runtime, IntervalMetric) and runtime.ci_method == "bootstrap"
    assert 0.1 < runtime.ci_low < 0.55 < runtime.ci_high < 1.0  # type: ignore[operator]
    ece = by_name["ece_10_bin"]
    assert isinstance(ece, IntervalMetric) and ece.ci_low <= ece.value <= ece.ci_high  # type: ignore[operator]
    assert not isinstance(by_name["quasi_exact_match"], IntervalMetric)  # not a headline
    # Per group, accuracy too: odd instances (g) 1, 3, 5 of 5 right; even ones (h) 0, 2, 4, 6 of 5.
    groups = {m.group: m for m in metrics if m.group and m.metric == "exact_match"}
    assert (groups["g"].value, groups["h"].value) == (0.6, 0.8)
    assert (groups["g"].ci_low, groups["g"].ci_high) == pytest.approx(wilson(3, 5))  # type: ignore[attr-defined]
    assert (groups["h"].ci_low, groups["h"].ci_high) == pytest.approx(wilson(4, 5))  # type: ignore[attr-defined]
    frame = metrics_frame(metrics)
    frame = frame[frame.group_name == ""].set_index("metric")
    assert frame.loc["exact_match", "ci_method"] == "wilson"
    assert frame.loc["exact_match", "ci_low"] == pytest.approx(wilson(7, 10)[0])  # type: ignore[index]
    assert math.isnan(frame.loc["quasi_exact_match", "ci_low"])


def test_the_ece_interval_counts_correct_answers_as_the_ece_does() -> None:
    """With f1_score as the main metric, an answer of f1 2/3 is not correct for calibration (int(2/3) = 0):
    20 such answers at confidence 0.5 have ECE |0.5 - 0| = 0.5, and so does every resample."""
    spec = ScenarioSpec.model_validate(
        {
            "name": "t",
            "source": {"offline": {"files": {"test": "d.jsonl"}}},
            "fields": {"input": "q", "answer": "a", "answer_type": "text"},
            "adapter": {"method": "generation"},
            "metrics": ["accuracy", "calibration"],
            "main_metric": "f1_score",
        }
    )
    instances = [Instance(f"i{k}", f"q{k}", "test", references=("red green blue pink",)) for k in range(20)]
    predictions = [
        Prediction(
            Request(f"r{k}", f"i{k}", "generation", f"q{k}"),
            Completion(f"r{k}", text="red green"),
            None,
            "red green",
            0.5,
        )
        for k in range(20)
    ]
    _, metrics = score(spec, instances, predictions)
    by_name = {m.metric: m for m in metrics if not m.group and not m.perturbation}
    assert by_name["f1_score"].value == pytest.approx(2 / 3)
    ece_10 = by_name["ece_10_bin"]
    assert isinstance(ece_10, IntervalMetric)
    assert (ece_10.value, ece_10.ci_low, ece_10.ci_high) == pytest.approx((0.5, 0.5, 0.5))
