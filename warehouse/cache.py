"""The inference cache: model answers keyed by model fingerprint and request key.

What a key means is the caller's (flows/inference.py hashes everything that decides an answer);
the cache stores and returns Completions.
"""

from __future__ import annotations

import pandas as pd

from helmflow.tasks.records import Completion
from helmflow.warehouse.db import Connected
from helmflow.warehouse.rows import CACHE_COLUMNS, cache_row_of, completion_of_cache_row
from helmflow.warehouse.runs import now


class InferenceCache(Connected):
    """Mixin of Warehouse."""

    def cached_answers(self, model_fingerprint: str, keys: list[str]) -> dict[str, Completion]:
        """The cached completion of every key that has one (request_id left empty for the caller)."""
        if not keys:
            return {}
        with self.connect() as con:  # writable: a new warehouse gets its tables first
            cursor = con.execute(
                f"select request_key, {', '.join(CACHE_COLUMNS)} from inference_cache "
                "where model_fingerprint = ? and request_key in (select unnest(?))",
                [model_fingerprint, keys],
            )
            rows = cursor.fetchall()
        return {row[0]: completion_of_cache_row(dict(zip(CACHE_COLUMNS, row[1:], strict=True))) for row in rows}

    def cache_answers(self, model_fingerprint: str, answers: dict[str, tuple[str, Completion]], run_id: str) -> None:
        """Store answers (key -> (request kind, completion)) in one transaction; a cached key is left as it is."""
        if not answers:
            return
        frame = pd.DataFrame(
            [
                {
                    "model_fingerprint": model_fingerprint,
                    "request_key": key,
                    **cache_row_of(completion, kind),
                    "run_id": run_id,
                    "created_at": now(),
                }
                for key, (kind, completion) in answers.items()
            ]
        )
        with self.connect() as con:
            con.register("incoming", frame)
            con.execute("insert or ignore into inference_cache by name select * from incoming")
            con.unregister("incoming")
