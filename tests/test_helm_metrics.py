"""HELM's summarisation and classification metrics as helmflow scores them in a run: ROUGE-2, the extractiveness
statistics and the classification F1s through `score`, by hand on tiny inputs; and which of them a category
stands for (named_only metrics only where a spec names them)."""

from __future__ import annotations

import pytest

from helmflow.specs import registry
from helmflow.specs.schema import ScenarioSpec
from helmflow.tasks.adapt import Request
from helmflow.tasks.instances import Instance
from helmflow.tasks.metrics import score, to_prediction
from helmflow.tasks.models.base import Completion


def _spec(metrics: list[str], main_metric: str = "quasi_exact_match") -> ScenarioSpec:
    return ScenarioSpec.model_validate(
        {
            "name": "s",
            "source": {"hub": {"path": "x/y"}},
            "adapter": {"method": "generation"},
            "metrics": metrics,
            "main_metric": main_metric,
        }
    )


def _run(spec: ScenarioSpec, rows: list[tuple[str, str, str]]) -> dict[str, float | None]:
    """rows: (input, reference, generated text) -> the run's whole-run metric values by name."""
    instances = [
        Instance(id=f"i{k}", input=text, split="test", references=(ref,)) for k, (text, ref, _) in enumerate(rows)
    ]
    predictions = [
        to_prediction(Request(f"i{k}", f"i{k}", "generation", text), Completion(request_id=f"i{k}", text=answer))
        for k, (text, _, answer) in enumerate(rows)
    ]
    _, metrics = score(spec, instances, predictions)
    return {m.metric: m.value for m in metrics if not m.group and not m.perturbation}


def test_rouge_2_and_the_extractiveness_statistics_of_two_summaries() -> None:
    values = _run(
        _spec(["rouge_2", "summarization"], main_metric="rouge_2"),
        [
            # article tokens: the mayor opens the new bridge today (7); summary: mayor opens new bridge (4).
            # Fragments "mayor opens" (2) and "new bridge" (2): coverage 4/4 = 1, density (4 + 4)/4 = 2,
            # compression 7/4. ROUGE-2 against the same text as reference: 1.
            ("the mayor opens the new bridge today", "mayor opens new bridge", "mayor opens new bridge"),
            # "x" is nowhere in "a b c": coverage 0, density 0, compression 3/1; no bigram in "x": ROUGE-2 0.
            ("a b c", "x y", "x"),
        ],
    )
    assert values["rouge_2"] == pytest.approx(0.5)
    assert values["summarization_coverage"] == pytest.approx(0.5)
    assert values["summarization_density"] == pytest.approx(1.0)
    assert values["summarization_compression"] == pytest.approx((1.75 + 3) / 2)


def test_rouge_2_by_hand() -> None:
    # Reference bigrams: the cat, cat sat, sat on, on the, the mat (5); the answer's: the cat, cat sat (2), both
    # in the reference: P = 2/2, R = 2/5, F = 2 * 1 * 0.4 / 1.4 = 4/7.
    values = _run(_spec(["rouge_2"], main_metric="rouge_2"), [("?", "the cat sat on the mat", "the cat sat")])
    assert values["rouge_2"] == pytest.approx(4 / 7)


def test_classification_f1_of_generated_labels() -> None:
    values = _run(
        _spec(["classification_macro_f1", "classification_micro_f1"]),
        [("a", "Positive", "Positive"), ("b", "Negative", "positive."), ("c", "Positive", "Neutral")],
    )
    # Classes negative, positive. positive: TP 1 (a), FP 1 (b), FN 1 (c) -> F1 0.5; negative: FN 1 (b) -> 0.
    # Macro (0.5 + 0) / 2 = 0.25. Micro: TP 1, FP 1, FN 2 (b, and c's "neutral" predicts no class) -> P 1/2,
    # R 1/3, F1 = 2 * (1/6) / (5/6) = 0.4. Quasi-exact match: a only -> 1/3.
    assert values["classification_macro_f1"] == pytest.approx(0.25)
    assert values["classification_micro_f1"] == pytest.approx(0.4)
    assert values["quasi_exact_match"] == pytest.approx(1 / 3)


def test_a_category_does_not_stand_for_the_metrics_computed_only_where_named() -> None:
    chosen = {i.name for i in registry.selected(["accuracy"], "quasi_exact_match", "generation")}
    assert {"f1_score", "rouge_l", "quasi_exact_match"} <= chosen
    assert not chosen & {"rouge_1", "rouge_2", "classification_macro_f1", "classification_micro_f1"}
    named = {i.name for i in registry.selected(["accuracy", "rouge_2"], "quasi_exact_match", "generation")}
    assert "rouge_2" in named and "rouge_1" not in named
    # Only categories named: accuracy comes too (as it always has), and the main metric.
    summaries = {i.name for i in registry.selected(["summarization"], "rouge_2", "generation")}
    assert {"rouge_2", "summarization_coverage", "summarization_density", "summarization_compression"} <= summaries
    assert "rouge_1" not in summaries and "classification_micro_f1" not in summaries
