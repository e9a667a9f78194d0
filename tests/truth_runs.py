"""Warehouses for the "what a user reads must be true" tests, written row by row as the flow writes them
(the warehouse's own start_run / finish_run, no model): multiple-choice runs with four options, a gold
answer and a predicted option per instance, groups, a perturbed variant, and headline metrics with
their intervals in every category. Fast: no model is loaded.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from helmflow.tasks.metrics.intervals import IntervalMetric, wilson
from helmflow.tasks.records import LETTERS, Completion, Instance, Metric, Prediction, Request, Stat, ValidationResult
from helmflow.warehouse.rows import result_frames
from helmflow.warehouse.store import Warehouse

OPTIONS = ("first option", "second option", "third option", "fourth option")
BIAS_METRIC = "stereotypical_associations_gender_profession"


@dataclass
class McRun:
    """One multiple-choice run: instance k has gold option golds[k] and the model chose predicted[k]."""

    run_id: str
    model: str
    scenario: str
    golds: list[int]
    predicted: Sequence[int | None]
    started_at: datetime
    groups: list[str] = field(default_factory=list)  # instance k's group (MMLU's subject); empty: no groups
    perturbed: bool = True  # each instance also has a 'typos' variant, which the model answers "B"
    # Whole-run headline value and interval per (category, metric); accuracy is always computed.
    extra: dict[tuple[str, str], tuple[float, float, float]] = field(default_factory=dict)

    def question(self, k: int) -> str:
        return f"Question {k} of {self.run_id}: which option is number {self.golds[k] + 1}?"


def prompt_of(run: McRun, k: int) -> str:
    """An MMLU-like prompt: instructions and an exemplar first, the question last, the options after it."""
    header = "The following are multiple choice questions (with answers) about testing.\n\n"
    exemplar = "An exemplar question that is long, " * 6 + "\nA. a\nB. b\nC. c\nD. d\nAnswer: A\n\n"
    options = "".join(f"{LETTERS[j]}. {text}\n" for j, text in enumerate(OPTIONS))
    return f"{header}{exemplar}{run.question(k)}\n{options}Answer:"


def _prediction(run: McRun, k: int, instance: Instance, choice: int | None, perturbation: str) -> Prediction:
    prompt = prompt_of(run, k) if not perturbation else prompt_of(run, k).replace("Question", "Qeustion")
    letters = tuple(f" {LETTERS[j]}" for j in range(len(OPTIONS)))
    request = Request(
        f"{instance.id}:{perturbation}", instance.id, "multiple_choice", prompt, letters, perturbation=perturbation
    )
    if choice is None:  # a chat model's answer with no option letter in it
        completion = Completion(request.id, [], [], prompt_tokens=40, latency_s=0.02, batch_size=4, error="no letter")
        return Prediction(request, completion, None, "", None)
    logprobs = [-0.2 if j == choice else -2.5 for j in range(len(OPTIONS))]
    completion = Completion(request.id, logprobs, [1] * len(OPTIONS), prompt_tokens=40, latency_s=0.02, batch_size=4)
    return Prediction(request, completion, choice, LETTERS[choice], 0.7)


def _metrics(run: McRun, right: int, n: int) -> list[Metric]:
    low, high = wilson(right, n)  # type: ignore[misc]
    metrics: list[Metric] = [
        IntervalMetric(
            "accuracy", "exact_match", right / n, n, headline=True, ci_low=low, ci_high=high, ci_method="wilson"
        )
    ]
    for (category, metric), (value, lo, hi) in run.extra.items():
        lower = category in ("calibration", "bias", "toxicity", "efficiency")
        metrics.append(
            IntervalMetric(
                category, metric, value, n, lower_is_better=lower, headline=True, ci_low=lo, ci_high=hi,
                ci_method="bootstrap",
            )
        )  # fmt: skip
    for group in sorted(set(run.groups)):
        members = [k for k, g in enumerate(run.groups) if g == group]
        correct = sum(run.predicted[k] == run.golds[k] for k in members)
        low, high = wilson(correct, len(members))  # type: ignore[misc]
        metrics.append(
            IntervalMetric(
                "accuracy", "exact_match", correct / len(members), len(members), group=group, ci_low=low,
                ci_high=high, ci_method="wilson",
            )
        )  # fmt: skip
    return metrics


def record_mc_run(db: Path, run: McRun) -> None:
    """The run's row, then every result table in one transaction, as `helmflow run` writes them."""
    warehouse = Warehouse(db)
    warehouse.start_run(
        {
            "run_id": run.run_id,
            "suite": None,
            "scenario": run.scenario,
            "spec_hash": f"spec-{run.scenario}",
            "spec_json": json.dumps({"main_metric": "exact_match"}),
            "model": run.model,
            "model_fingerprint": f"fp-{run.model}",
            "model_json": json.dumps({"name": run.model, "backend": "hf"}),
            "seed": 0,
            "adapter_json": "{}",
            "num_instances": len(run.golds),
            "device": "cpu",
            "dtype": "float32",
            "batch_size": 4,
            "num_threads": 1,
            "package_versions": json.dumps({"helmflow": "0.0"}),
        }
    )
    instances, predictions, stats = [], [], []
    for k, gold in enumerate(run.golds):
        group = run.groups[k] if run.groups else None
        instance = Instance(f"q{k:03d}", run.question(k), "test", OPTIONS, gold, group=group)
        instances.append(instance)
        variants = [("", run.predicted[k])] + ([("typos", 1)] if run.perturbed else [])
        for perturbation, choice in variants:
            predictions.append(_prediction(run, k, instance, choice, perturbation))
            value = float(choice == gold)
            stats.append(Stat(instance.id, "accuracy", "exact_match", value, perturbation))
    right = sum(p == g for p, g in zip(run.predicted, run.golds, strict=True))
    checks = [ValidationResult("predictions", "expect_column_values_to_not_be_null", "{}", True, len(instances), 0, [])]
    tables = result_frames(instances, predictions, stats, _metrics(run, right, len(instances)), checks)
    updates = {
        "wall_seconds": 2.0,
        "model_calls": len(predictions),
        "cache_hits": 0,
        "metrics_code_version": "1",
        "num_parameters": 134_515_008,
        "started_at": run.started_at,  # fixed, so that tests can name each run's time
    }
    warehouse.finish_run(run.run_id, "succeeded", tables, updates)
