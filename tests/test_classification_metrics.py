"""HELM's classification metric (tasks/metrics/classification.py): macro- and micro-F1 of generated labels.

The cases check what is easy to get wrong: how a generated text becomes a class (HELM's normalisation, articles
kept), and that a text that is no known class predicts nothing, so micro-F1 then differs from accuracy. Every
expected value is counted by hand in the comment beside it.
"""

import pytest

from helmflow.tasks.metrics.classification import classification_f1, macro_f1, micro_f1, normalize_label


def test_labels_are_normalised_as_helm_does() -> None:
    # Lower-case, ASCII punctuation removed, whitespace collapsed; unlike quasi-exact match, articles stay.
    assert normalize_label("  The Positive. ") == "the positive"
    assert normalize_label("ADE-related") == "aderelated"
    assert normalize_label("Not\n ADE-related!") == "not aderelated"


def test_an_unknown_prediction_predicts_no_class() -> None:
    # Classes {no, yes} (from the golds). Per instance:
    #   1 gold yes, "Yes"   -> yes: TP for yes
    #   2 gold yes, "maybe" -> no class: FN for yes
    #   3 gold no,  "No."   -> no: TP for no
    #   4 gold no,  "yes"   -> yes: FN for no, FP for yes
    # yes: TP 1, FP 1, FN 1 -> P = 1/2, R = 1/2, F1 = 1/2. no: TP 1, FP 0, FN 1 -> P = 1, R = 1/2, F1 = 2/3.
    # macro = (1/2 + 2/3) / 2 = 7/12. micro: TP 2, FP 1, FN 2 -> P = 2/3, R = 1/2, F1 = (2/3) / (7/6) = 4/7,
    # not the accuracy 2/4: the unknown "maybe" is a false negative but no false positive.
    predictions, golds = ["Yes", "maybe", "No.", "yes"], ["yes", "yes", "no", "no"]
    assert classification_f1(predictions, golds) == {
        "classification_macro_f1": pytest.approx(7 / 12),
        "classification_micro_f1": pytest.approx(4 / 7),
    }
    assert macro_f1(predictions, golds) == pytest.approx(7 / 12)
    assert micro_f1(predictions, golds) == pytest.approx(4 / 7)


def test_micro_f1_is_accuracy_when_every_prediction_is_a_class() -> None:
    # golds [pos, neg, neg, neg], predictions [pos, pos, neg, neg]: 3 of 4 right, micro-F1 = 3/4.
    # positive: TP 1, FP 1, FN 0 -> F1 = 2TP / (2TP + FP + FN) = 2/3. negative: TP 2, FP 0, FN 1 -> 4/5.
    # macro = (2/3 + 4/5) / 2 = 11/15.
    scores = classification_f1(
        ["Positive", "positive", "Negative", " negative\n"], ["Positive", "Negative", "Negative", "Negative"]
    )
    assert scores["classification_micro_f1"] == pytest.approx(3 / 4)
    assert scores["classification_macro_f1"] == pytest.approx(11 / 15)


def test_a_gold_class_never_predicted_scores_zero() -> None:
    # golds [a, b], predictions [a, a]. a: TP 1, FP 1, FN 0 -> 2/3; b: TP 0, FP 0, FN 1 -> 0. macro = 1/3.
    # micro: TP 1, FP 1, FN 1 -> 1/2.
    assert classification_f1(["a", "a"], ["a", "b"]) == {
        "classification_macro_f1": pytest.approx(1 / 3),
        "classification_micro_f1": pytest.approx(1 / 2),
    }


def test_a_whole_sentence_is_not_its_first_word() -> None:
    # No prefix matching: "Yes, it is." normalises to "yes it is", no class; "" predicts nothing either.
    # yes: TP 0, FN 2 -> 0; macro = 0 and micro = 0.
    assert classification_f1(["Yes, it is.", ""], ["Yes", "Yes"]) == {
        "classification_macro_f1": 0.0,
        "classification_micro_f1": 0.0,
    }


def test_given_labels_add_classes_and_are_normalised() -> None:
    # Classes A, B, C given ("A" normalises to "a"); golds and predictions [a, b] are both right.
    # a and b: F1 1; c: no true or predicted positive -> F1 0 (zero_division). macro = 2/3; micro = 2/2 = 1.
    assert classification_f1(["a", "b"], ["a", "b"], labels=["A", "B", "C"]) == {
        "classification_macro_f1": pytest.approx(2 / 3),
        "classification_micro_f1": 1.0,
    }


def test_no_instances_give_none_and_lengths_must_agree() -> None:
    assert classification_f1([], []) == {"classification_macro_f1": None, "classification_micro_f1": None}
    with pytest.raises(ValueError, match="2 predictions for 1 gold"):
        classification_f1(["a", "b"], ["a"])
