"""Re-score a stored run with the current metric code: no inference, no prediction row touched.

The run's instances and predictions are read back (in the order they were written), turned into
the same objects the flow scored, scored again, and stored as the run's next metrics version.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import duckdb

from helmflow.specs.schema import ScenarioSpec
from helmflow.tasks.adapt import Request
from helmflow.tasks.instances import LETTERS, Instance
from helmflow.tasks.metrics import score, to_prediction
from helmflow.tasks.metrics.toxicity import classifier as toxicity_classifier
from helmflow.tasks.models.base import Completion
from helmflow.warehouse import writer
from helmflow.warehouse.db import connect

Row = dict[str, Any]


def _rows(con: duckdb.DuckDBPyConnection, sql: str, params: list) -> list[Row]:
    cursor = con.execute(sql, params)
    names = [d[0] for d in cursor.description]
    return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]


def _instances(rows: list[Row]) -> list[Instance]:
    return [
        Instance(
            id=r["instance_id"],
            input=r["input"],
            split=r["split"],
            choices=tuple(r["choices"] or ()),
            gold_index=r["gold_index"],
            references=tuple(r["reference_texts"] or ()),
            group=r["group_name"],
            extra=json.loads(r["extra"]) if r["extra"] else {},
        )
        for r in rows
    ]


def _predictions(rows: list[Row], spec: ScenarioSpec, instances: dict[str, Instance]) -> list:
    method = spec.adapter.method
    out = []
    for r in rows:
        kind = r["kind"]
        choices: tuple[str, ...] = ()
        if kind == "multiple_choice":
            options = instances[r["instance_id"]].choices
            choices = tuple(LETTERS[: len(options)]) if method == "multiple_choice_joint" else options
        request = Request(
            r["request_id"], r["instance_id"], kind, r["prompt"], choices=choices, perturbation=r["perturbation"]
        )
        logprobs = r["choice_logprobs"] if kind == "multiple_choice" else r["output_logprobs"]
        completion = Completion(
            request_id=r["request_id"],
            logprobs=list(logprobs or []),
            text=(r["completion"] or "") if kind == "generation" else "",
            continuation_tokens=list(r["choice_token_counts"] or []),
            baseline_logprobs=list(r["choice_baseline_logprobs"] or []),
            prompt_tokens=r["prompt_tokens"],
            output_tokens=r["output_tokens"],
            latency_s=r["latency_s"],
            batch_size=r["batch_size"],
            error=r["error"],
        )
        out.append(to_prediction(request, completion))
    return out


def rescore(db: str | Path | None, run_id: str) -> int:
    """Score a run again and store the result as its next metrics version; returns that version."""
    from helmflow.flows.tables import metrics_frame, stats_frame

    with connect(db, read_only=True) as con:
        run = con.execute("select spec_json, num_parameters, status from runs where run_id = ?", [run_id]).fetchone()
        if run is None:
            raise LookupError(f"no run '{run_id}' in the warehouse")
        instance_rows = _rows(con, "select * from instances where run_id = ? order by rowid", [run_id])
        prediction_rows = _rows(con, "select * from predictions where run_id = ? order by rowid", [run_id])
        version = con.execute(
            "select coalesce(max(metrics_version), 0) + 1 from metrics where run_id = ?", [run_id]
        ).fetchone()[0]
    spec = ScenarioSpec.model_validate_json(run[0])
    instances = _instances(instance_rows)
    predictions = _predictions(prediction_rows, spec, {i.id: i for i in instances})
    classifier = toxicity_classifier(spec.toxicity_classifier) if "toxicity" in spec.metrics else None
    stats, metrics = score(spec, instances, predictions, run[1], classifier)
    writer.add_rows(
        db, run_id, {"instance_stats": stats_frame(stats, version), "metrics": metrics_frame(metrics, version)}
    )
    return int(version)
