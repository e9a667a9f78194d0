"""The inference cache: model answers keyed by model fingerprint and request key.

Plain rows in, plain rows out; what a key means and how answers are used is the caller's.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

from helmflow.warehouse.db import connect
from helmflow.warehouse.writer import now

COLUMNS = (
    "kind",
    "logprobs",
    "continuation_tokens",
    "text",
    "prompt_tokens",
    "output_tokens",
    "generated_tokens",
    "latency_s",
    "batch_size",
)


def lookup(db: str | Path | None, model_fingerprint: str, keys: list[str]) -> dict[str, dict[str, Any]]:
    if not keys:
        return {}
    with connect(db) as con:  # writable: a new warehouse gets its tables first
        cursor = con.execute(
            f"select request_key, {', '.join(COLUMNS)} from inference_cache "
            "where model_fingerprint = ? and request_key in (select unnest(?))",
            [model_fingerprint, keys],
        )
        return {row[0]: dict(zip(COLUMNS, row[1:], strict=True)) for row in cursor.fetchall()}


def store(db: str | Path | None, model_fingerprint: str, entries: dict[str, dict[str, Any]], run_id: str) -> None:
    """Write answers in one transaction; an answer already cached is left as it is."""
    if not entries:
        return
    frame = pd.DataFrame(
        [
            {
                "model_fingerprint": model_fingerprint,
                "request_key": key,
                **values,
                "run_id": run_id,
                "created_at": now(),
            }
            for key, values in entries.items()
        ]
    )
    with connect(db) as con:
        con.register("incoming", frame)
        con.execute("insert or ignore into inference_cache by name select * from incoming")
        con.unregister("incoming")
