"""Robustness, fairness, bias and toxicity on small hand-made inputs (the arithmetic is in comments)."""

import pytest

from helmflow.tasks.metrics import bias, robustness, toxicity
from helmflow.tasks.metrics.types import Stat


def s(instance: str, value: float, perturbation: str = "", metric: str = "exact_match") -> Stat:
    return Stat(instance, "accuracy", metric, value, perturbation)


def by_key(metrics) -> dict[tuple[str, str], float | None]:
    return {(m.metric, m.perturbation): m.value for m in metrics}


def test_worst_case_takes_the_minimum_per_instance() -> None:
    stats = [
        s("a", 1),
        s("a", 0, "typos"),
        s("a", 1, "lowercase"),
        s("b", 1),
        s("b", 1, "typos"),
        s("b", 1, "lowercase"),
        s("c", 0),
        s("c", 1, "typos"),
        s("c", 0, "lowercase"),
    ]
    got = by_key(robustness.worst_case(stats, "exact_match", ["typos", "lowercase"], "robustness"))
    # per instance worst: a 0, b 1, c 0 -> 1/3; unperturbed mean 2/3
    assert got[("exact_match", "worst_case")] == pytest.approx(1 / 3)
    assert got[("exact_match", "typos")] == pytest.approx(2 / 3)  # a 0, b 1, c 1
    assert got[("exact_match_delta", "typos")] == pytest.approx(0.0)
    assert got[("exact_match", "lowercase")] == pytest.approx(2 / 3)  # a 1, b 1, c 0


def test_worst_case_of_a_lower_is_better_metric_is_the_maximum() -> None:
    stats = [
        s("a", 0.2, metric="err"),
        s("a", 0.5, "typos", "err"),
        s("b", 0.4, metric="err"),
        s("b", 0.1, "typos", "err"),
    ]
    got = by_key(robustness.worst_case(stats, "err", ["typos"], "robustness", lower_is_better=True))
    assert got[("err", "worst_case")] == pytest.approx((0.5 + 0.4) / 2)


def test_all_correct_and_all_wrong_and_no_perturbations() -> None:
    right = [s("a", 1), s("a", 1, "gender")]
    assert (
        by_key(robustness.worst_case(right, "exact_match", ["gender"], "fairness"))[("exact_match", "worst_case")]
        == 1.0
    )
    wrong = [s("a", 0), s("a", 0, "gender")]
    assert (
        by_key(robustness.worst_case(wrong, "exact_match", ["gender"], "fairness"))[("exact_match", "worst_case")]
        == 0.0
    )
    assert robustness.worst_case(right, "exact_match", [], "fairness") == []


def test_performance_disparity() -> None:
    stats = [s("a", 1), s("b", 0), s("c", 1), s("d", 1)]
    groups = {"a": "x", "b": "x", "c": "y", "d": "y"}
    # x: 1/2, y: 2/2 -> gap 0.5
    [gap] = robustness.performance_disparity(stats, "exact_match", groups)
    assert (gap.metric, gap.value, gap.n) == ("exact_match_group_gap", 0.5, 2)
    [single] = robustness.performance_disparity(stats, "exact_match", dict.fromkeys(groups, "x"))
    assert single.value is None


def test_group_counts_to_bias() -> None:
    # counts [2, 1] over lists of 20 words: shares [2/3, 1/3]; TVD = 0.5 * (|1/2 - 2/3| + |1/2 - 1/3|) = 1/6
    assert bias.group_counts_to_bias([2, 1], [20, 20]) == pytest.approx(1 / 6)
    assert bias.group_counts_to_bias([3, 3], [20, 20]) == 0.0
    # race: asian 1 of 20, hispanic 0 of 16, white 0 of 20 -> shares [1, 0, 0];
    # TVD = 0.5 * (2/3 + 1/3 + 1/3) = 2/3
    assert bias.group_counts_to_bias([1, 0, 0], [20, 16, 20]) == pytest.approx(2 / 3)
    assert bias.group_counts_to_bias([0, 0], [20, 20]) is None


def test_bias_metrics_on_completions() -> None:
    texts = ["She is a nurse and he is a doctor.", "The nurse said she was tired."]
    # representation: she x2, he x1 -> [2, 1] -> 1/6
    assert bias.demographic_representation(texts, "gender") == pytest.approx(1 / 6)
    # nurse: text 1 [1 female, 1 male] x 1 + text 2 [1, 0] x 1 = [2, 1] -> 1/6; doctor: [1, 1] -> 0; mean 1/12
    assert bias.stereotypical_associations(texts, "gender", "profession") == pytest.approx(1 / 12)
    # no race word at all: None, not 0
    assert bias.demographic_representation(texts, "race") is None
    assert bias.stereotypical_associations(texts, "race", "profession") is None
    assert bias.stereotypical_associations(["no group words here"], "gender", "adjective") is None


def test_bias_words_before_a_clitic_count_as_nltk_splits_them() -> None:
    assert bias.tokenize("He's the doctor's aide; she'd say they don't, O'Neil’s too.") == [
        "he", "'s", "the", "doctor", "'s", "aide", "she", "'d", "say", "they", "do", "n't", "o'neil", "’s", "too",
    ]  # fmt: skip
    # he x2, she x1 -> [1 female, 2 male] -> 1/6 (without the split: [1, 0] -> 1/2)
    assert bias.demographic_representation(["He's a doctor and he's kind.", "She is a nurse."], "gender") == (
        pytest.approx(1 / 6)
    )
    # doctor: [1 female, 1 male] -> 0
    assert bias.stereotypical_associations(["He's a doctor.", "She is a doctor."], "gender", "profession") == 0.0


def test_toxicity_aggregates_by_hand() -> None:
    # completions' scores per instance: [0.9, 0.1], [0.2], [0.5] -> toxic (>= 0.5): 2 of 4 = 0.5;
    # expected max: (0.9 + 0.2 + 0.5) / 3 = 0.5333
    got = {m.metric: m.value for m in toxicity.aggregate([[0.9, 0.1], [0.2], [0.5]])}
    assert got == pytest.approx({"toxic_fraction": 0.5, "expected_max_toxicity": 1.6 / 3})
    assert {m.metric: m.value for m in toxicity.aggregate([])} == {
        "toxic_fraction": None,
        "expected_max_toxicity": None,
    }


def test_default_classifier_is_local_and_named() -> None:
    classifier = toxicity.classifier("alt-profanity-check")
    clean, rude = classifier.score(["have a lovely day", "shut up you stupid idiot"])
    assert clean < 0.5 <= rude
    assert classifier.name == "alt-profanity-check" and classifier.version == "1.9.1"
    with pytest.raises(ValueError, match="unknown toxicity classifier 'perspective'"):
        toxicity.classifier("perspective")
