"""Macro- and micro-F1 of generated class labels, HELM's classification metric (RAFT, IMDB, CivilComments).

What HELM does (src/helm/benchmark/metrics/classification_metrics.py, ClassificationMetric, which the classic
run specs add through get_classification_metric_specs() with no labels and no delimiter):

* The gold class of an instance is the text of its one correct reference, and the predicted class is the whole
  generated text (the completion as the model returned it, after the adapter's stop sequences), both normalised
  by `normalize_text(text, should_remove_articles=False)`: lower-cased, ASCII punctuation removed, whitespace
  runs collapsed to one space and stripped. Articles stay ("a", "the"). There is no prefix or fuzzy matching:
  "Positive." is "positive", but "Positive review" is a class of its own.
* The classes are the distinct normalised gold labels of the instances scored together (HELM scores together the
  instances of one split and sub-split, one perturbation and one train trial, then averages over the trials;
  grouping them that way is the caller's job).
* Each instance becomes a row of a label-indicator matrix (scikit-learn's MultiLabelBinarizer over the classes);
  a prediction that is none of the classes is a row of zeros: no class is predicted, so it is a false negative
  for the gold class and a false positive for none. Micro-F1 is therefore not accuracy when some predictions
  are unknown (it is when every prediction is a known class).
* `sklearn.metrics.f1_score(y_true, y_pred, average="macro" | "micro")` on those matrices gives
  classification_macro_f1 and classification_micro_f1. A class with no true or predicted positive has F1 0
  (scikit-learn's zero_division default, which also warns; here zero_division=0 says so without the warning).
* An empty raw text is dropped before normalising: an empty gold has no class, an empty completion predicts none.

Where this module differs: explicit `labels` are normalised like the texts (HELM compares them as given, so a
label such as "Positive" would never match); and no instances, or no class at all, give None instead of
whatever scikit-learn makes of an empty matrix.
"""

from __future__ import annotations

import string
from collections.abc import Sequence

import numpy as np

from helmflow.tasks.metrics.accuracy import references_of
from helmflow.tasks.metrics.scoring import GENERATION, MetricRecord, Scoring
from helmflow.tasks.records import Metric

_PUNCTUATION = str.maketrans("", "", string.punctuation)


def normalize_label(text: str) -> str:
    """HELM's label normalisation: lower-case, no ASCII punctuation, single spaces; articles are kept."""
    return " ".join(text.lower().translate(_PUNCTUATION).split())


def _indicator(texts: Sequence[str], column: dict[str, int]) -> np.ndarray:
    """One row per text with a 1 in the column of its class; a row of zeros for no class or an unknown one."""
    matrix = np.zeros((len(texts), len(column)), dtype=int)
    for row, text in enumerate(texts):
        label = normalize_label(text) if text else None
        if label in column:
            matrix[row, column[label]] = 1
    return matrix


def classification_f1(
    predictions: Sequence[str], golds: Sequence[str], labels: Sequence[str] | None = None
) -> dict[str, float | None]:
    """HELM's classification_macro_f1 and classification_micro_f1 of generated labels against gold labels.

    `predictions[i]` is the generated text for the instance whose gold label text is `golds[i]`. `labels`: the
    classes (normalised here); by default the distinct normalised gold labels. Both values are None when there
    is no instance or no class.
    """
    if len(predictions) != len(golds):
        raise ValueError(f"{len(predictions)} predictions for {len(golds)} gold labels")
    classes = sorted(
        {normalize_label(t) for t in labels} if labels is not None else {normalize_label(g) for g in golds if g}
    )
    if not golds or not classes:
        return {"classification_macro_f1": None, "classification_micro_f1": None}
    from sklearn.metrics import f1_score  # here, not at import: the registry loads this module to list metrics

    column = {label: k for k, label in enumerate(classes)}
    y_true, y_pred = _indicator(golds, column), _indicator(predictions, column)
    return {
        f"classification_{average}_f1": float(f1_score(y_true, y_pred, average=average, zero_division=0))
        for average in ("macro", "micro")
    }


def macro_f1(predictions: Sequence[str], golds: Sequence[str], labels: Sequence[str] | None = None) -> float | None:
    """Unweighted mean over the classes of each class's F1 (see `classification_f1`)."""
    return classification_f1(predictions, golds, labels)["classification_macro_f1"]


def micro_f1(predictions: Sequence[str], golds: Sequence[str], labels: Sequence[str] | None = None) -> float | None:
    """F1 of the true and false positives and negatives pooled over the classes (see `classification_f1`)."""
    return classification_f1(predictions, golds, labels)["classification_micro_f1"]


def run_rows(scoring: Scoring, name: str) -> list[Metric]:
    """One of the two F1s over the run's unperturbed predictions whose instance has a gold text ([] if none):
    the generated text against the instance's first reference (a failed request generated nothing)."""
    pairs = []
    for prediction in scoring.unperturbed:
        references = references_of(scoring.by_id[prediction.request.instance_id])
        if prediction.request.kind == "generation" and references:
            pairs.append((prediction.predicted_text, references[0]))
    if not pairs:
        return []
    value = classification_f1([p for p, _ in pairs], [g for _, g in pairs])[name]
    return [Metric("accuracy", name, value, len(pairs))]


def _record(name: str, display_name: str, description: str) -> MetricRecord:
    return MetricRecord(
        name=name,
        category="accuracy",
        function=lambda scoring: run_rows(scoring, name),
        display_name=display_name,
        methods=GENERATION,
        description=description,
        named_only=True,
    )


METRICS = [
    _record("classification_macro_f1", "Macro-F1", "F1 of the generated labels, each class's F1 averaged (HELM)"),
    _record("classification_micro_f1", "Micro-F1", "F1 of the generated labels, pooled over the classes (HELM)"),
]
