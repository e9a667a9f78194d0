"""Inference for one run: distinct requests, the cache, the model in chunks, persisted as it goes.

1. Requests that would give the same answer (a perturbation that changed nothing, the bare
   answer prompt of calibrated scoring) are computed once.
2. Each distinct request has a key: a hash of everything that decides its answer. Answers
   already in the warehouse's inference cache for this model fingerprint are used as they are.
3. The rest go to the model in fixed chunks (the same chunks on every try, so a resumed run
   computes exactly what an uninterrupted one would), and each chunk's answers are stored
   before the next starts: a crash loses at most one chunk.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass, replace

from helmflow.tasks.models import ModelBackend
from helmflow.tasks.records import Completion, Request
from helmflow.warehouse.store import Warehouse

CHUNK_BATCHES = 4  # batches per chunk: small enough to lose little, large enough to batch well


@dataclass
class InferenceResult:
    completions: dict[str, Completion]  # by request id (baselines as "<id>#baseline")
    model_calls: int
    cache_hits: int


def request_key(request: Request, model: ModelBackend) -> str:
    info = model.info
    decisive = {
        "kind": request.kind,
        "prompt": request.prompt,
        "continuations": list(request.continuations),
        "max_tokens": request.max_tokens,
        "stop": list(request.stop),
        "decoding": "greedy",
        "dtype": info.dtype,
        "max_length": getattr(getattr(model, "spec", None), "max_length", None),
    }
    return hashlib.sha256(json.dumps(decisive, sort_keys=True).encode()).hexdigest()


def infer(
    model: ModelBackend,
    requests: list[Request],
    db: str | None,
    run_id: str,
    use_cache: bool = True,
    progress: Callable[[int, int], None] | None = None,
) -> InferenceResult:
    keys = {r.id: request_key(r, model) for r in requests}
    distinct: dict[str, Request] = {}
    for request in requests:
        distinct.setdefault(keys[request.id], request)
    fingerprint = model.info.fingerprint
    warehouse = Warehouse(db)
    cached = warehouse.cached_answers(fingerprint, list(distinct)) if use_cache else {}
    answers = dict(cached)
    # Fixed chunks over every distinct request (longest first), whatever is cached already.
    ordered = sorted(distinct, key=lambda k: (distinct[k].kind, -len(distinct[k].prompt), k))
    size = max(1, model.info.batch_size * CHUNK_BATCHES)
    chunks = [ordered[i : i + size] for i in range(0, len(ordered), size)]
    total, done, calls = len(ordered), len(answers), 0
    for chunk in chunks:
        missing = [k for k in chunk if k not in answers]
        if not missing:
            continue
        computed: dict[str, Completion] = {}
        for kind, run in (("multiple_choice", model.loglikelihood), ("generation", model.generate)):
            batch = [distinct[k] for k in missing if distinct[k].kind == kind]
            if batch:
                computed.update({c.request_id: c for c in run(batch)})
        fresh = {k: computed[distinct[k].id] for k in missing}
        if use_cache:
            warehouse.cache_answers(fingerprint, {k: (distinct[k].kind, c) for k, c in fresh.items()}, run_id)
        answers.update(fresh)
        calls += len(missing)
        done += len(missing)
        if progress:
            progress(done, total)
    completions = {r.id: replace(answers[keys[r.id]], request_id=r.id) for r in requests}
    return InferenceResult(completions, model_calls=calls, cache_hits=len(cached))
