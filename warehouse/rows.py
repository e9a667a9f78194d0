"""Records ↔ warehouse rows: the one place where a record becomes a row and a row a record.

Frames go in (pandas, registered with DuckDB and inserted by name); rows come out as the records
of tasks/records.py. Nothing else in helmflow knows a column name of the result tables.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pandas as pd

from helmflow.tasks.records import Completion, Instance, Metric, Prediction, Request, Stat, ValidationResult

Row = dict[str, Any]
SLICE_ROWS = 4096  # rows of a large table converted and inserted at a time


@dataclass(frozen=True)
class Sliced:
    """A table made into frames `SLICE_ROWS` rows at a time, as it is inserted: a run's predictions, whose
    prompts (a few kB each) would otherwise be copied whole into one frame's Arrow strings at once."""

    total: int
    frame_of: Callable[[int, int], pd.DataFrame]  # (start, stop) -> those rows' frame

    def frames(self) -> Iterator[pd.DataFrame]:
        for start in range(0, self.total, SLICE_ROWS):
            yield self.frame_of(start, min(start + SLICE_ROWS, self.total))


Table = pd.DataFrame | Sliced


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


def predictions_frame(predictions: list[Prediction], prompt_of: Callable[[Request], str] | None = None) -> pd.DataFrame:
    """`prompt_of`: each request's prompt, where the requests carry none (read back from the run's prompt file)."""
    return pd.DataFrame(
        {
            "request_id": [p.request.id for p in predictions],
            "instance_id": [p.request.instance_id for p in predictions],
            "perturbation": [p.request.perturbation for p in predictions],
            "kind": [p.request.kind for p in predictions],
            "prompt": _texts([prompt_of(p.request) if prompt_of else p.request.prompt for p in predictions]),
            "num_train_instances": pd.array([p.request.num_train_instances for p in predictions], dtype="Int64"),
            # Known only with num_train_instances (a fitted prompt): null where the window was not known.
            "prompt_truncated": pd.array(
                [
                    p.request.prompt_truncated if p.request.num_train_instances is not None else None
                    for p in predictions
                ],
                dtype="boolean",
            ),
            "completion": _texts([p.predicted_text for p in predictions]),
            # The generated text as it came, where answer extraction read `completion` out of it (else null).
            "raw_completion": pd.array([_raw_text(p) for p in predictions], dtype="string"),
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
            "prompt_tokens_requested": [p.completion.prompt_tokens_requested for p in predictions],
            "prompt_tokens_computed": [p.completion.prompt_tokens_computed for p in predictions],
            "latency_s": [p.completion.latency_s for p in predictions],
            "batch_size": [p.completion.batch_size for p in predictions],
            "error": pd.array([p.completion.error for p in predictions], dtype="string"),
        }
    )


def _texts(values: list[str]) -> pd.Series:
    """A column of long texts as the Python strings they are. pandas 3 would copy them into an Arrow string
    array, whose allocator keeps the freed bytes: the full MMLU's prompts grew the write by ~150 MiB that way,
    and DuckDB reads the strings as well from either."""
    return pd.Series(values, dtype=object)


def _raw_text(p: Prediction) -> str | None:
    return p.completion.text if p.extracted else None


def _stored_text(row: dict[str, Any]) -> str:
    """The generated text as it came: raw_completion where answer extraction stored its answer apart (an empty
    raw text included, whose answer is the extraction's fallback), else the completion."""
    raw = row.get("raw_completion")
    return raw if isinstance(raw, str) else (row["completion"] or "")


def samples_frame(samples: list[Prediction]) -> pd.DataFrame:
    """Sampled predictions (request.sample > 0: tasks/samples.py) as rows of `samples`: the answer and how it was
    drawn, without the prompt (their instance's unperturbed prediction has it)."""
    return pd.DataFrame(
        {
            "request_id": [p.request.id for p in samples],
            "instance_id": [p.request.instance_id for p in samples],
            "sample": [p.request.sample for p in samples],
            "seed": pd.array([p.request.seed for p in samples], dtype="Int64"),
            "temperature": [p.request.temperature for p in samples],
            "top_p": [p.request.top_p for p in samples],
            "completion": [p.predicted_text for p in samples],
            "raw_completion": pd.array([_raw_text(p) for p in samples], dtype="string"),
            "output_logprobs": [p.completion.logprobs for p in samples],
            "confidence": [p.confidence for p in samples],
            "prompt_tokens": [p.completion.prompt_tokens for p in samples],
            "output_tokens": [p.completion.output_tokens for p in samples],
            "generated_tokens": [p.completion.generated_tokens for p in samples],
            "latency_s": [p.completion.latency_s for p in samples],
            "batch_size": [p.completion.batch_size for p in samples],
            "error": pd.array([p.completion.error for p in samples], dtype="string"),
        }
    )


def stats_frame(stats: list[Stat], version: int = 1) -> pd.DataFrame:
    return pd.DataFrame(
        [(s.instance_id, s.perturbation, s.category, s.metric, s.value, version) for s in stats],
        columns=["instance_id", "perturbation", "category", "metric", "value", "metrics_version"],
    )


def metrics_frame(metrics: list[Metric], version: int = 1) -> pd.DataFrame:
    """Metrics as rows; a headline metric scored with an interval (tasks/metrics/intervals.py's
    IntervalMetric, a Metric with ci_low, ci_high and ci_method) keeps it, others store nulls."""
    return pd.DataFrame(
        [
            (
                version,
                m.category,
                m.metric,
                m.perturbation,
                m.group,
                m.value,
                m.n,
                m.lower_is_better,
                m.headline,
                getattr(m, "ci_low", None),
                getattr(m, "ci_high", None),
                getattr(m, "ci_method", None) or None,
            )
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
            "ci_low",
            "ci_high",
            "ci_method",
        ],
    ).astype({"ci_low": "float64", "ci_high": "float64", "ci_method": "string"})


def validations_frame(results: list[ValidationResult]) -> pd.DataFrame:
    return pd.DataFrame(
        [
            (r.stage, r.expectation, r.kwargs, r.success, r.element_count, r.unexpected_count, r.unexpected_ids)
            for r in results
        ],
        columns=["stage", "expectation", "kwargs", "success", "element_count", "unexpected_count", "unexpected_ids"],
    )


def checked_predictions_frame(predictions: list[Prediction]) -> pd.DataFrame:
    """The columns the prediction checks read (tasks/validate.py), without the prompts and answers' texts:
    the frame goes to the validation worker whole, and a run's prompts are most of its bytes."""
    multiple_choice = [p.request.kind == "multiple_choice" for p in predictions]
    return pd.DataFrame(
        {
            "request_id": [p.request.id for p in predictions],
            "produced": [
                len(p.predicted_text) if mc else p.completion.generated_tokens
                for p, mc in zip(predictions, multiple_choice, strict=True)
            ],
            "confidence": [p.confidence for p in predictions],
            "latency_s": [p.completion.latency_s for p in predictions],
            "error": pd.array([p.completion.error for p in predictions], dtype="string"),
            # Each must be finite.
            "choice_logprobs": [
                p.completion.logprobs if mc else None for p, mc in zip(predictions, multiple_choice, strict=True)
            ],
            "output_logprobs": [
                None if mc else p.completion.logprobs for p, mc in zip(predictions, multiple_choice, strict=True)
            ],
            "choice_baseline_logprobs": [p.completion.baseline_logprobs or None for p in predictions],
        }
    )


def result_frames(
    instances: list[Instance],
    predictions: list[Prediction],
    stats: list[Stat],
    metrics: list[Metric],
    validations: list[ValidationResult],
    prompt_of: Callable[[Request], str] | None = None,
) -> dict[str, Table]:
    """A run's result tables, by table name (the predictions made into frames slice by slice as written, each
    slice's prompts read through `prompt_of` where the requests carry none). Sampled predictions go to `samples`,
    the greedy ones to `predictions`."""
    samples = [p for p in predictions if p.request.sample]
    if samples:
        predictions = [p for p in predictions if not p.request.sample]
    return {
        "instances": instances_frame(instances),
        "predictions": Sliced(
            len(predictions), lambda start, stop: predictions_frame(predictions[start:stop], prompt_of)
        ),
        "samples": Sliced(len(samples), lambda start, stop: samples_frame(samples[start:stop])),
        "instance_stats": stats_frame(stats),
        "metrics": metrics_frame(metrics),
        "validations": validations_frame(validations),
    }


def instance_of(row: Row) -> Instance:
    return Instance(
        id=row["instance_id"],
        input=row["input"],
        split=row["split"],
        choices=tuple(row["choices"] or ()),
        gold_index=row["gold_index"],
        references=tuple(row["reference_texts"] or ()),
        group=row["group_name"],
        extra=json.loads(row["extra"]) if row["extra"] else {},
    )


def stored_answer_of(row: Row) -> tuple[Request, Completion]:
    """A stored prediction's request (without its choices, which the adapter knows) and completion."""
    kind = row["kind"]
    request = Request(row["request_id"], row["instance_id"], kind, row["prompt"], perturbation=row["perturbation"])
    logprobs = row["choice_logprobs"] if kind == "multiple_choice" else row["output_logprobs"]
    completion = Completion(
        request_id=row["request_id"],
        logprobs=list(logprobs or []),
        # The raw text where answer extraction stored its answer apart: re-scoring extracts it again.
        text=_stored_text(row) if kind == "generation" else "",
        continuation_tokens=list(row["choice_token_counts"] or []),
        baseline_logprobs=list(row["choice_baseline_logprobs"] or []),
        prompt_tokens=row["prompt_tokens"],
        output_tokens=row["output_tokens"],
        prompt_tokens_requested=row.get("prompt_tokens_requested") or 0,
        prompt_tokens_computed=row.get("prompt_tokens_computed") or 0.0,
        latency_s=row["latency_s"],
        batch_size=row["batch_size"],
        error=row["error"],
    )
    return request, completion


def stored_sample_of(row: Row) -> tuple[Request, Completion]:
    """A stored sample's request (its prompt joined from its instance's prediction, where the reader has it) and
    completion, as stored_answer_of gives a prediction's."""
    request = Request(
        row["request_id"],
        row["instance_id"],
        "generation",
        row.get("prompt") or "",
        sample=row["sample"],
        temperature=row["temperature"],
        top_p=row["top_p"],
        seed=row["seed"],
    )
    completion = Completion(
        request_id=row["request_id"],
        logprobs=list(row["output_logprobs"] or []),
        text=_stored_text(row),
        generated_tokens=row["generated_tokens"] or 0,
        prompt_tokens=row["prompt_tokens"],
        output_tokens=row["output_tokens"],
        latency_s=row["latency_s"],
        batch_size=row["batch_size"],
        error=row["error"],
    )
    return request, completion


CACHE_COLUMNS = (
    "kind",
    "logprobs",
    "continuation_tokens",
    "text",
    "prompt_tokens",
    "output_tokens",
    "generated_tokens",
    "prompt_tokens_requested",
    "prompt_tokens_computed",
    "latency_s",
    "batch_size",
    "error",
)


def completion_of_cache_row(row: Row) -> Completion:
    return Completion(
        request_id="",
        logprobs=list(row["logprobs"] or []),
        continuation_tokens=list(row["continuation_tokens"] or []),
        text=row["text"] or "",
        prompt_tokens=row["prompt_tokens"],
        output_tokens=row["output_tokens"],
        generated_tokens=row["generated_tokens"] or 0,
        prompt_tokens_requested=row["prompt_tokens_requested"] or 0,
        prompt_tokens_computed=row["prompt_tokens_computed"] or 0.0,
        latency_s=row["latency_s"],
        batch_size=row["batch_size"],
        error=row["error"],
    )


def cache_row_of(completion: Completion, kind: str) -> Row:
    return {
        "kind": kind,
        "logprobs": completion.logprobs,
        "continuation_tokens": completion.continuation_tokens,
        "text": completion.text,
        "prompt_tokens": completion.prompt_tokens,
        "output_tokens": completion.output_tokens,
        "generated_tokens": completion.generated_tokens,
        "prompt_tokens_requested": completion.prompt_tokens_requested,
        "prompt_tokens_computed": completion.prompt_tokens_computed,
        "latency_s": completion.latency_s,
        "batch_size": completion.batch_size,
        "error": completion.error,
    }
