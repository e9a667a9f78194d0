"""A scenario's answer_extraction (lm-evaluation-harness's filter steps, tasks/extract.py) through the pipeline:
checked with the spec, applied before scoring, the raw completion stored beside the answer, and a stored run
re-scored from the raw text to the same answer."""

from __future__ import annotations

import pytest

from helmflow.flows.plans import check_plan
from helmflow.flows.stages import predictions_of, stored_predictions
from helmflow.specs.loader import SpecError
from helmflow.specs.schema import ScenarioSpec
from helmflow.tasks.adapt import Request
from helmflow.tasks.instances import Instance
from helmflow.tasks.metrics import score
from helmflow.tasks.models.base import Completion
from helmflow.warehouse.rows import predictions_frame, stored_answer_of

# lm-eval's gsm8k-cot "strict-match" filter, written with its own keys.
GSM8K_STRICT = [{"function": "regex", "regex_pattern": r"The answer is (\-?[0-9\.\,]+)."}, {"function": "take_first"}]


def _spec(steps: list, method: str = "generation") -> ScenarioSpec:
    return ScenarioSpec.model_validate(
        {
            "name": "cot",
            "source": {"hub": {"path": "x/y"}},
            "fields": {"input": "q", "choices": "c"},
            "adapter": {"method": method},
            "metrics": ["exact_match"],
            "answer_extraction": steps,
        }
    )


def test_steps_are_checked_with_the_spec_naming_the_step_and_field() -> None:
    check_plan(_spec(GSM8K_STRICT), "cot.yaml")
    with pytest.raises(SpecError, match=r"cot\.yaml: answer_extraction\[1\]: unknown function 'regx'"):
        check_plan(_spec([GSM8K_STRICT[0], {"function": "regx"}]), "cot.yaml")
    with pytest.raises(
        SpecError, match=r"answer_extraction reads generated text; adapter\.method multiple_choice_joint"
    ):
        check_plan(_spec(GSM8K_STRICT, "multiple_choice_joint"), "cot.yaml")


def test_the_answer_read_out_of_a_chain_of_thought_is_what_is_scored_and_stored_beside_the_raw_text() -> None:
    spec = _spec(GSM8K_STRICT)
    instances = [Instance(f"i{k}", "?", "test", references=("18",)) for k in range(3)]
    requests = [Request(f"i{k}", f"i{k}", "generation", "?") for k in range(3)]
    texts = ["9 * 2 = 18. The answer is 18.", "She has 20. The answer is 20.", "I think it is 18"]
    completions = {f"i{k}": Completion(f"i{k}", text=t) for k, t in enumerate(texts)}
    predictions = predictions_of(requests, {}, completions, spec)
    assert [p.predicted_text for p in predictions] == ["18", "20", "[invalid]"]  # lm-eval's fallback
    _, metrics = score(spec, instances, predictions)
    assert [m.value for m in metrics if m.metric == "exact_match" and not m.group] == [pytest.approx(1 / 3)]

    frame = predictions_frame(predictions)
    assert frame.completion.tolist() == ["18", "20", "[invalid]"]
    assert frame.raw_completion.tolist() == texts
    # Re-scoring a stored run reads the raw text and extracts again: the same answers, not "[invalid]" of "18".
    rows = [{**row, "choice_logprobs": None, "choice_token_counts": None, "choice_baseline_logprobs": None,
             "output_logprobs": None} for row in frame.to_dict("records")]  # fmt: skip
    again = stored_predictions(spec, instances, [stored_answer_of(row) for row in rows])
    assert [p.predicted_text for p in again] == ["18", "20", "[invalid]"]


def test_without_steps_nothing_changes_and_no_raw_text_is_stored() -> None:
    spec = _spec([])
    requests = [Request("i0", "i0", "generation", "?")]
    predictions = predictions_of(requests, {}, {"i0": Completion("i0", text="The answer is 18.")}, spec)
    assert predictions[0].predicted_text == "The answer is 18."
    assert predictions_frame(predictions).raw_completion.isna().all()
    assert "answer_extraction" not in spec.model_dump()  # specs written before it keep their hash
