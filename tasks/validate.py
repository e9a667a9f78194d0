"""Great Expectations suites for the three stages: instances, predictions and stats.

Each stage's table is a pandas DataFrame validated in an ephemeral GX context. The results are
returned as plain records (stage, expectation, success, the ids of the failing rows) so that the
warehouse stores every one of them and the CLI can say which expectation failed on which rows.
"""

from __future__ import annotations

import json
import math
import numbers
from functools import cache
from typing import Any

import pandas as pd

from helmflow.tasks.records import ValidationResult

# Expected ranges per metric family; a stat outside its range fails validation.
UNIT_INTERVAL_CATEGORIES = ("accuracy", "calibration", "robustness", "fairness", "toxicity")
# The accuracy metrics of language modelling, each with its bounds (None: unbounded on that side).
LANGUAGE_MODELING_BOUNDS: dict[str, tuple[float | None, float | None]] = {
    "bits_per_byte": (0.0, None),
    "byte_perplexity": (1.0, None),
    "word_perplexity": (1.0, None),
    "perplexity": (1.0, None),
    "logprob": (None, 0.0),
}
# The predictions frame's list-valued columns (each row: a list of numbers, or None).
LOGPROB_COLUMNS = ("choice_logprobs", "output_logprobs", "choice_baseline_logprobs")


class ValidationFailed(ValueError):
    def __init__(self, results: list[ValidationResult], where: dict[str, str] | None = None) -> None:
        self.results = results
        failed = [r.describe(where) for r in results if not r.success]
        super().__init__("validation failed:\n  " + "\n  ".join(failed))


@cache
def _context() -> Any:
    import logging

    import great_expectations as gx
    from great_expectations.data_context.types.base import ProgressBarsConfig

    # GX logs at INFO that it made a temporary docs folder; that is noise next to the run's own output.
    for name in ("great_expectations", "great_expectations.data_context.types.base"):
        logging.getLogger(name).setLevel(logging.WARNING)
    context = gx.get_context(mode="ephemeral")
    context.variables.progress_bars = ProgressBarsConfig(globally=False)
    return context.data_sources.add_pandas("helmflow")


def warm() -> None:
    """Import Great Expectations and make its context now, not at the first check."""
    _context()


def _run(stage: str, frame: pd.DataFrame, id_column: str, expectations: list[Any]) -> list[ValidationResult]:
    import great_expectations as gx

    source = _context()
    try:
        asset = source.get_asset(stage)
    except LookupError:
        asset = source.add_dataframe_asset(stage)
    try:
        definition = asset.get_batch_definition("all")
    except KeyError:
        definition = asset.add_batch_definition_whole_dataframe("all")
    batch = definition.get_batch(batch_parameters={"dataframe": frame.reset_index(drop=True)})
    suite = gx.ExpectationSuite(name=stage, expectations=expectations)
    outcome = batch.validate(
        suite, result_format={"result_format": "COMPLETE", "unexpected_index_column_names": [id_column]}
    )
    results = []
    for item in outcome.results:
        config = item.expectation_config
        kwargs = {k: v for k, v in config.kwargs.items() if k != "batch_id"}
        condition = kwargs.get("row_condition")
        if isinstance(condition, dict) and "pass_through_filter" in condition:
            # GX sometimes hands back the pandas condition wrapped; store the condition as written.
            kwargs["row_condition"] = condition["pass_through_filter"]
        unexpected = item.result.get("unexpected_index_list") or []
        ids = [str(u.get(id_column)) if isinstance(u, dict) else str(u) for u in unexpected]
        results.append(
            ValidationResult(
                stage=stage,
                expectation=config.type,
                kwargs=json.dumps(kwargs, sort_keys=True, default=str),
                success=bool(item.success),
                element_count=int(item.result.get("element_count") or len(frame)),
                unexpected_count=int(item.result.get("unexpected_count") or 0),
                unexpected_ids=ids,
            )
        )
    return results


def validate_instances(frame: pd.DataFrame) -> list[ValidationResult]:
    """Columns: instance_id, input, n_choices, gold_index (multiple choice rows have n_choices > 0)."""
    import great_expectations as gx

    e = gx.expectations
    mc = "n_choices > 0"
    return _run(
        "instances",
        frame,
        "instance_id",
        [
            e.ExpectColumnValuesToBeUnique(column="instance_id"),
            e.ExpectColumnValuesToNotBeNull(column="input"),
            e.ExpectColumnValueLengthsToBeBetween(column="input", min_value=1),
            # A multiple-choice row without a gold option cannot be scored (a spec without fields.answer).
            e.ExpectColumnValuesToNotBeNull(column="gold_index", row_condition=mc, condition_parser="pandas"),
            e.ExpectColumnValuesToBeBetween(
                column="gold_index", min_value=0, row_condition=mc, condition_parser="pandas"
            ),
            e.ExpectColumnPairValuesAToBeGreaterThanB(
                column_A="n_choices",
                column_B="gold_index",
                row_condition=mc,
                condition_parser="pandas",
                ignore_row_if="either_value_is_missing",  # the null check above names those rows
            ),
        ],
    )


def validate_predictions(frame: pd.DataFrame, expected_requests: int) -> list[ValidationResult]:
    """Columns: request_id, produced (what the model gave: the choice's length, or the tokens it
    generated before a stop sequence cut them), confidence, latency_s, error; and, when the frame
    carries them, the log-prob lists choice_logprobs, output_logprobs, choice_baseline_logprobs."""
    import great_expectations as gx

    e = gx.expectations
    checked, finiteness = _with_finiteness(frame)
    return _run(
        "predictions",
        checked,
        "request_id",
        [
            e.ExpectTableRowCountToEqual(value=expected_requests),
            e.ExpectColumnValuesToBeUnique(column="request_id"),
            # GX skips NaN here as missing (a float column cannot tell NaN from None); ±inf fails.
            e.ExpectColumnValuesToBeBetween(column="confidence", min_value=0.0, max_value=1.0),
            e.ExpectColumnValuesToBeBetween(column="latency_s", min_value=0.0, strict_min=True),
            e.ExpectColumnValuesToBeBetween(
                column="produced", min_value=1, row_condition="error.isnull()", condition_parser="pandas"
            ),
            *[e.ExpectColumnValuesToBeInSet(column=column, value_set=[True]) for column in finiteness],
        ],
    )


def _with_finiteness(frame: pd.DataFrame) -> tuple[pd.DataFrame, list[str]]:
    """The frame without its list columns but with a True/False column per finiteness check, and
    those columns' names.

    A NaN log-prob makes a NaN score that still has an argmax, so a broken model can score as
    correct; GX cannot look inside lists, hence these derived columns. Without the log-prob
    columns (an older caller) there is nothing to derive them from, and no check is added.
    """
    present = [c for c in LOGPROB_COLUMNS if c in frame.columns]
    if not present:
        return frame, []
    per_row = [[x for cell in cells for x in _cell(cell)] for cells in zip(*(frame[c] for c in present), strict=True)]
    out = frame.drop(columns=present)
    out["logprobs_finite"] = [all(_finite(x) for x in logprobs) for logprobs in per_row]
    # A confidence may be missing only where there was nothing to compute it from: an error, or a
    # generation without output log-probs. Anywhere else a missing one is a NaN in disguise.
    out["confidence_finite"] = [
        _finite(confidence) if not pd.isna(confidence) else (not pd.isna(error) or not logprobs)
        for confidence, error, logprobs in zip(frame["confidence"], frame["error"], per_row, strict=True)
    ]
    return out, ["logprobs_finite", "confidence_finite"]


def _cell(value: object) -> list[object]:
    """A list column's cell as a list: None / NaN / NA mean no log-probs."""
    if value is None or (pd.api.types.is_scalar(value) and pd.isna(value)):
        return []
    return list(value)  # type: ignore[call-overload]


def _finite(value: object) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value)


def validate_stats(frame: pd.DataFrame) -> list[ValidationResult]:
    """Columns: key (category/metric/perturbation/group), category, metric, perturbation, lower_is_better,
    is_delta, value, unperturbed_value (set on worst-case rows), n."""
    import great_expectations as gx

    e = gx.expectations
    # A perturbation's delta from the unperturbed mean is a difference of two values in [0, 1].
    unit = "(" + " or ".join(f'category == "{c}"' for c in UNIT_INTERVAL_CATEGORIES) + ") and is_delta == False"
    # Language modelling's accuracy metrics are not proportions: bits per byte >= 0, perplexities >= 1, and a
    # text's log-likelihood <= 0 (tasks/metrics/language_modeling.py).
    stored = set(frame["metric"])
    present = [name for name in LANGUAGE_MODELING_BOUNDS if name in stored]
    if present:
        unit += f" and metric not in {present}"
    bounded = [
        e.ExpectColumnValuesToBeBetween(
            column="value",
            min_value=LANGUAGE_MODELING_BOUNDS[name][0],
            max_value=LANGUAGE_MODELING_BOUNDS[name][1],
            row_condition=f'metric == "{name}" and is_delta == False',
            condition_parser="pandas",
        )
        for name in present
    ]
    return _run(
        "stats",
        frame,
        "key",
        [
            e.ExpectColumnValuesToBeBetween(
                column="value", min_value=0.0, max_value=1.0, row_condition=unit, condition_parser="pandas"
            ),
            e.ExpectColumnValuesToBeBetween(
                column="value", min_value=0.0, row_condition='category == "efficiency"', condition_parser="pandas"
            ),
            e.ExpectColumnValuesToBeBetween(
                column="value",
                min_value=-1.0,
                max_value=1.0,
                row_condition="is_delta == True",
                condition_parser="pandas",
            ),
            # Word-list bias is a distance in [0, 1]; BBQ's bias scores lie in [-1, 1].
            e.ExpectColumnValuesToBeBetween(
                column="value",
                min_value=-1.0,
                max_value=1.0,
                row_condition='category == "bias"',
                condition_parser="pandas",
            ),
            *bounded,
            e.ExpectColumnValuesToBeBetween(column="n", min_value=0),
            # Robustness and fairness worst case <= unperturbed (>= when lower is better; none yet).
            e.ExpectColumnPairValuesAToBeGreaterThanB(
                column_A="unperturbed_value",
                column_B="value",
                or_equal=True,
                ignore_row_if="either_value_is_missing",
                row_condition='perturbation == "worst_case" and lower_is_better == False',
                condition_parser="pandas",
            ),
        ],
    )
