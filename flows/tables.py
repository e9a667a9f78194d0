"""The warehouse rows of a run, as DataFrames: instances, predictions, stats, metrics, validations."""

from __future__ import annotations

import json

import pandas as pd

from helmflow.tasks.instances import Instance
from helmflow.tasks.metrics import Metric, Prediction, Stat
from helmflow.tasks.validate import ValidationResult


def instances_frame(instances: list[Instance]) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "instance_id": [i.id for i in instances],
            "split": [i.split for i in instances],
            "group_name": [i.group for i in instances],
            "input": [i.input for i in instances],
            "choices": [list(i.choices) or None for i in instances],
            "gold_index": pd.array([i.gold_index for i in instances], dtype="Int64"),
            "reference_texts": [list(i.references) or None for i in instances],
            "extra": [json.dumps(i.extra, sort_keys=True) if i.extra else None for i in instances],
        }
    )


def predictions_frame(predictions: list[Prediction]) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "request_id": [p.request.id for p in predictions],
            "instance_id": [p.request.instance_id for p in predictions],
            "perturbation": [p.request.perturbation for p in predictions],
            "kind": [p.request.kind for p in predictions],
            "prompt": [p.request.prompt for p in predictions],
            "completion": [p.predicted_text for p in predictions],
            "choice_logprobs": [
                p.completion.logprobs if p.request.kind == "multiple_choice" else None for p in predictions
            ],
            "choice_token_counts": [p.completion.continuation_tokens or None for p in predictions],
            "output_logprobs": [p.completion.logprobs if p.request.kind == "generation" else None for p in predictions],
            "choice_baseline_logprobs": [p.completion.baseline_logprobs or None for p in predictions],
            "predicted_index": pd.array([p.predicted_index for p in predictions], dtype="Int64"),
            "confidence": [p.confidence for p in predictions],
            "prompt_tokens": [p.completion.prompt_tokens for p in predictions],
            "output_tokens": [p.completion.output_tokens for p in predictions],
            "latency_s": [p.completion.latency_s for p in predictions],
            "batch_size": [p.completion.batch_size for p in predictions],
            "error": pd.array([p.completion.error for p in predictions], dtype="string"),
        }
    )


def stats_frame(stats: list[Stat], version: int = 1) -> pd.DataFrame:
    return pd.DataFrame(
        [(s.instance_id, s.perturbation, s.category, s.metric, s.value, version) for s in stats],
        columns=["instance_id", "perturbation", "category", "metric", "value", "metrics_version"],
    )


def metrics_frame(metrics: list[Metric], version: int = 1) -> pd.DataFrame:
    return pd.DataFrame(
        [
            (version, m.category, m.metric, m.perturbation, m.group, m.value, m.n, m.lower_is_better, m.headline)
            for m in metrics
        ],
        columns=[
            "metrics_version",
            "category",
            "metric",
            "perturbation",
            "group_name",
            "value",
            "n",
            "lower_is_better",
            "headline",
        ],
    )


def validations_frame(results: list[ValidationResult]) -> pd.DataFrame:
    return pd.DataFrame(
        [
            (r.stage, r.expectation, r.kwargs, r.success, r.element_count, r.unexpected_count, r.unexpected_ids)
            for r in results
        ],
        columns=["stage", "expectation", "kwargs", "success", "element_count", "unexpected_count", "unexpected_ids"],
    )
