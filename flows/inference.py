"""Inference for one run: distinct requests, the cache, the model in chunks, persisted as it goes.

1. Requests that would give the same answer (a perturbation that changed nothing, the bare
   answer prompt of calibrated scoring) are computed once.
2. Each distinct request has a key: a hash of everything that decides its answer. Answers
   already in the warehouse's inference cache for this model fingerprint are used as they are.
3. The rest go to the model in fixed chunks of one kind (the same chunks on every try, so a resumed run
   computes exactly what an uninterrupted one would), and their answers are stored as they come: each chunk
   at once while a write is cheap against computing a chunk, else gathered over a few seconds of chunks
   (CachedAnswers), and always when inference ends, fails or is stopped: a crash loses at most those.

`infer` does all three in this process. The fan-out runners (flows/runners.py) use the same
pieces apart: `plan_inference` here, `compute_chunk` on a worker, the cache write back here, so
a chunk gets the same batches, and so the same answers, wherever it runs.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from itertools import groupby

from helmflow.tasks.models import ModelBackend
from helmflow.tasks.models.base import GENERATION_GROUP_BATCHES
from helmflow.tasks.prompt_store import PromptStore
from helmflow.tasks.records import Completion, Request
from helmflow.warehouse.store import Warehouse

CHUNK_BATCHES = 4  # batches per chunk: small enough to lose little, large enough to batch well
# A generation chunk is one decode group: split in two, its short answers would take twice the decode steps.
CHUNK_BATCHES_BY_KIND = {"multiple_choice": CHUNK_BATCHES, "generation": GENERATION_GROUP_BATCHES}


@dataclass
class InferenceResult:
    completions: dict[str, Completion]  # by request id (baselines as "<id>#baseline")
    model_calls: int
    cache_hits: int


@dataclass(frozen=True)
class ModelIdentity:
    """What, besides the request, decides a model's answers: keys hash it, chunks are sized by it.

    A process that plans inference for models loaded elsewhere (on a cluster's workers) gets it
    from a worker; every worker checks that its own copy of the model has the same identity.
    """

    fingerprint: str
    dtype: str
    max_length: int | None
    batch_size: int
    # The tokens an hf model puts before every prompt (its BOS token, per the spec's add_bos_token).
    prompt_prefix: tuple[int, ...] = ()

    @classmethod
    def of(cls, model: ModelBackend) -> ModelIdentity:
        info = model.info
        max_length = getattr(getattr(model, "spec", None), "max_length", None)
        prefix = tuple(getattr(model, "prompt_prefix", ()))
        return cls(info.fingerprint, info.dtype, max_length, info.batch_size, prefix)


def request_key(request: Request, model: ModelBackend | ModelIdentity, prompt: str | None = None) -> str:
    """The hash of what decides the request's answer; `prompt`: its prompt, where the request carries none
    (tasks/prompt_store.py)."""
    identity = model if isinstance(model, ModelIdentity) else ModelIdentity.of(model)
    decisive = {
        "kind": request.kind,
        "prompt": request.prompt if prompt is None else prompt,
        "continuations": list(request.continuations),
        "max_tokens": request.max_tokens,
        "stop": list(request.stop),
        "decoding": "greedy",
        "dtype": identity.dtype,
        "max_length": identity.max_length,
    }
    if identity.prompt_prefix:  # only then: the keys of answers computed without one stay as they were
        decisive["prompt_prefix"] = list(identity.prompt_prefix)
    if request.sample:  # a sampled answer (tasks/samples.py); greedy requests keep the keys they always had
        decisive["decoding"] = "sample"
        decisive.update(temperature=request.temperature, top_p=request.top_p, seed=request.seed)
    return hashlib.sha256(json.dumps(decisive, sort_keys=True).encode()).hexdigest()


@dataclass
class InferencePlan:
    """One run's requests, keyed, with what the cache already holds and the fixed chunks of the rest."""

    identity: ModelIdentity
    requests: list[Request]
    keys: dict[str, str]  # request id -> key
    distinct: dict[str, Request]  # key -> the first request with that key
    cached: dict[str, Completion]
    chunks: list[list[str]]  # every distinct key, in fixed chunks, cached or not
    answers: dict[str, Completion] = field(default_factory=dict)  # key -> completion, cached ones included
    # Where the requests' prompts are, when they carry none (tasks/prompt_store.py); the plan does not own it.
    prompts: PromptStore | None = None

    def missing(self) -> Iterator[list[Request]]:
        """Per chunk that still lacks answers, the requests it lacks, each with its prompt (chunk order kept).
        A chunk's prompts are read back as the chunk is reached: one chunk's at a time in memory."""
        for chunk in self.chunks:
            lacking = [self.distinct[k] for k in chunk if k not in self.answers]
            if lacking:
                yield [self.prompts.filled(r) for r in lacking] if self.prompts is not None else lacking

    def result(self, model_calls: int) -> InferenceResult:
        completions = {r.id: replace(self.answers[self.keys[r.id]], request_id=r.id) for r in self.requests}
        return InferenceResult(completions, model_calls=model_calls, cache_hits=len(self.cached))

    def release(self) -> None:
        """Drop the keys and answers once the result is taken: the result's completions are the run's from then
        on, and the plan's would otherwise stay beside them through scoring (the full MMLU: ~30 MiB)."""
        self.keys.clear()
        self.distinct.clear()
        self.answers.clear()
        self.cached.clear()


def plan_inference(
    requests: list[Request],
    identity: ModelIdentity,
    warehouse: Warehouse,
    use_cache: bool = True,
    prompts: PromptStore | None = None,
) -> InferencePlan:
    """The run's keys, what the cache answers and the fixed chunks of the rest; `prompts`: where the requests'
    prompts are when they carry none."""
    store = prompts if prompts is not None else PromptStore()  # an empty one: each request's own prompt
    keys = {r.id: request_key(r, identity, store.text(r)) for r in requests}
    length = store.length
    distinct: dict[str, Request] = {}
    for request in requests:
        distinct.setdefault(keys[request.id], request)
    cached = warehouse.cached_answers(identity.fingerprint, list(distinct)) if use_cache else {}
    # Fixed chunks over every distinct request of a kind (longest first), whatever is cached already.
    ordered = sorted(distinct, key=lambda k: (distinct[k].kind, -length(distinct[k]), k))
    chunks: list[list[str]] = []
    for kind, of_kind in groupby(ordered, key=lambda k: distinct[k].kind):
        keys_of_kind = list(of_kind)
        size = max(1, identity.batch_size * CHUNK_BATCHES_BY_KIND[kind])
        chunks += [keys_of_kind[i : i + size] for i in range(0, len(keys_of_kind), size)]
    return InferencePlan(identity, requests, keys, distinct, cached, chunks, answers=dict(cached), prompts=prompts)


def compute_chunk(model: ModelBackend, requests: list[Request]) -> dict[str, Completion]:
    """The model's answers to one chunk's requests, by request id (multiple choice first, then generation)."""
    computed: dict[str, Completion] = {}
    for kind, run in (("multiple_choice", model.loglikelihood), ("generation", model.generate)):
        batch = [r for r in requests if r.kind == kind]
        if batch:
            computed.update({c.request_id: c for c in run(batch)})
    return computed


def retries_of(model: ModelBackend) -> int:
    """The retries a backend has made so far (a model server's HTTP retries); 0 for one that never retries."""
    return int(getattr(model, "retries", 0))


Progress = Callable[[int, int, int], None]  # (requests answered, of how many, retries so far)


def infer(
    model: ModelBackend,
    requests: list[Request],
    db: str | None,
    run_id: str,
    use_cache: bool = True,
    progress: Progress | None = None,
) -> InferenceResult:
    """Every request answered, from the cache or by `model` (see `answer`)."""
    warehouse = Warehouse(db)
    plan = plan_inference(requests, ModelIdentity.of(model), warehouse, use_cache)
    return plan.result(answer(model, plan, warehouse, run_id, use_cache, progress))


def answer(
    model: ModelBackend,
    plan: InferencePlan,
    warehouse: Warehouse,
    run_id: str,
    use_cache: bool = True,
    progress: Progress | None = None,
) -> int:
    """The plan's missing answers computed chunk by chunk, added to `plan.answers` and cached (`use_cache`: see
    CachedAnswers for when they are written); returns how many requests went to the model.

    `progress` is called once before the first chunk (what the cache answered) and after every chunk."""
    total, done, calls = len(plan.distinct), len(plan.answers), 0
    retried = retries_of(model)  # the model may have retried for earlier runs: count this run's only
    if progress:
        progress(done, total, 0)
    cache = CachedAnswers(warehouse, plan.identity.fingerprint, run_id) if use_cache else None
    try:
        for lacking in plan.missing():
            computed = compute_chunk(model, lacking)
            keyed = {plan.keys[r.id]: computed[r.id] for r in lacking}
            if cache is not None:
                cache.add({k: (plan.distinct[k].kind, c) for k, c in keyed.items()})
            plan.answers.update(keyed)
            calls += len(lacking)
            done += len(lacking)
            if progress:
                progress(done, total, retries_of(model) - retried)
    finally:
        if cache is not None:
            cache.write()  # whatever was answered, also when a later chunk failed or the run was stopped
    return calls


class CachedAnswers:
    """A run's new answers on their way to the inference cache: each chunk's answers are written at once while writing
    is cheap against computing them, and otherwise gathered over a few chunks.

    A cache write opens the warehouse file, checks the cache's key index and closes the file: about 150 ms of CPU
    once the cache holds 48,000 answers, less while it is small. Against a fast server a chunk of 1,024 prompts
    takes about a second, so a write per chunk was a large share of the run (make bench-serving at the full MMLU:
    0.988 ms of helmflow CPU per request with it, 0.879 without). So answers are written once the time since the
    last write is WRITE_RATIO times that write's own duration (writes are then at most ~2 % of the run), the first
    chunk at once, and whatever is pending when inference ends, fails or is stopped (`answer`'s finally). A slow
    model (the embedded one: seconds a chunk) still writes every chunk; a killed process loses at most about
    WRITE_RATIO write-durations of answers, which a resume asks again.
    """

    WRITE_RATIO = 50

    def __init__(self, warehouse: Warehouse, fingerprint: str, run_id: str) -> None:
        self.warehouse, self.fingerprint, self.run_id = warehouse, fingerprint, run_id
        self.pending: dict[str, tuple[str, Completion]] = {}
        self.written_at: float | None = None  # None: nothing written yet, so the first chunk goes at once
        self.write_s = 0.0

    def add(self, answers: dict[str, tuple[str, Completion]]) -> None:
        self.pending.update(answers)
        due = self.written_at is None or time.monotonic() - self.written_at >= self.WRITE_RATIO * self.write_s
        if due:
            self.write()

    def write(self) -> None:
        if not self.pending:
            return
        began = time.monotonic()
        self.warehouse.cache_answers(self.fingerprint, self.pending, self.run_id)
        self.written_at = time.monotonic()
        self.write_s = self.written_at - began
        self.pending = {}
