import pandas as pd

from helmflow.tasks.validate import validate_instances, validate_predictions, validate_stats


def failed(results):
    return {(r.expectation, tuple(r.unexpected_ids)) for r in results if not r.success}


def test_instances_duplicate_ids_and_gold_out_of_range() -> None:
    frame = pd.DataFrame(
        {
            "instance_id": ["a", "b", "b", "g"],
            "input": ["x", "y", "z", "w"],
            "n_choices": [4, 4, 4, 0],
            "gold_index": pd.array([0, 4, 1, None], dtype="Int64"),
        }
    )
    assert failed(validate_instances(frame)) == {
        ("expect_column_values_to_be_unique", ("b", "b")),
        ("expect_column_pair_values_a_to_be_greater_than_b", ("b",)),
    }


def test_predictions_empty_output_is_allowed_only_with_an_error() -> None:
    frame = pd.DataFrame(
        {
            "request_id": ["a", "b", "c"],
            "produced": [1, 0, 0],
            "confidence": [0.5, 0.2, None],
            "latency_s": [0.1, 0.2, 0.3],
            "error": pd.array([None, None, "timeout"], dtype="string"),
        }
    )
    assert failed(validate_predictions(frame, expected_requests=3)) == {
        ("expect_column_values_to_be_between", ("b",)),
    }
    assert ("expect_table_row_count_to_equal", ()) in failed(validate_predictions(frame, expected_requests=4))


def test_stats_out_of_range_and_worst_case_above_unperturbed() -> None:
    frame = pd.DataFrame(
        {
            "key": ["acc", "ece", "rt", "rob", "fair", "delta"],
            "category": ["accuracy", "calibration", "efficiency", "robustness", "fairness", "robustness"],
            "metric": [
                "exact_match",
                "ece_10_bin",
                "inference_runtime",
                "exact_match",
                "exact_match",
                "exact_match_delta",
            ],
            "perturbation": ["", "", "", "worst_case", "worst_case", "typos"],
            "lower_is_better": [False, True, True, False, False, False],
            "is_delta": [False, False, False, False, False, True],
            "value": [1.5, 0.2, -1.0, 0.6, 0.4, -0.25],  # a negative delta is fine
            "unperturbed_value": [None, None, None, 0.5, 0.5, None],
            "n": [3, 3, 3, 3, 3, 3],
        }
    )
    assert failed(validate_stats(frame)) == {
        ("expect_column_values_to_be_between", ("acc",)),
        ("expect_column_values_to_be_between", ("rt",)),
        ("expect_column_pair_values_a_to_be_greater_than_b", ("rob",)),
    }


def test_predictions_non_finite_log_probs_fail_and_name_the_requests() -> None:
    nan, inf = float("nan"), float("inf")
    frame = pd.DataFrame(
        {
            "request_id": ["ok", "nan-choice", "nan-baseline", "inf-output", "null-inside", "errored"],
            "produced": [1, 1, 1, 2, 1, 0],
            "confidence": [0.7, nan, 0.6, 0.0, 0.5, None],
            "latency_s": [0.1] * 6,
            "error": pd.array([None, None, None, None, None, "timeout"], dtype="string"),
            "choice_logprobs": [[-0.5, -1.5], [nan, -1.0], [-0.5, -1.5], None, [None, -1.0], None],
            "output_logprobs": [None, None, None, [-0.1, -inf], None, None],
            "choice_baseline_logprobs": [None, None, [nan, -1.0], None, None, None],
        }
    )
    assert failed(validate_predictions(frame, expected_requests=6)) == {
        ("expect_column_values_to_be_in_set", ("nan-choice", "nan-baseline", "inf-output", "null-inside")),
        ("expect_column_values_to_be_in_set", ("nan-choice",)),  # confidence_finite
    }


def test_predictions_without_log_prob_columns_skip_the_finiteness_checks() -> None:
    # Callers that hand over only the five base columns still validate (nothing to derive finiteness from).
    frame = pd.DataFrame(
        {
            "request_id": ["a"],
            "produced": [1],
            "confidence": [0.5],
            "latency_s": [0.1],
            "error": pd.array([None], dtype="string"),
        }
    )
    results = validate_predictions(frame, expected_requests=1)
    assert all(r.success for r in results)
    assert "expect_column_values_to_be_in_set" not in {r.expectation for r in results}
