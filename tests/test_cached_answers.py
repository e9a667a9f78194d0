"""flows/inference.CachedAnswers: the first chunk's answers are written at once, later ones once the time since the
last write is WRITE_RATIO times that write's duration, and whatever is pending when inference ends or fails."""

from __future__ import annotations

import pytest

from helmflow.flows import inference
from helmflow.flows.inference import CachedAnswers
from helmflow.tasks.records import Completion


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class Writes:
    """A warehouse whose cache write takes `cost` seconds of the clock and is recorded."""

    def __init__(self, clock: Clock, cost: float) -> None:
        self.clock, self.cost, self.batches = clock, cost, []

    def cache_answers(self, fingerprint: str, answers: dict, run_id: str) -> None:
        self.batches.append(sorted(answers))
        self.clock.now += self.cost


def chunk(*keys: str) -> dict[str, tuple[str, Completion]]:
    return {k: ("multiple_choice", Completion(k)) for k in keys}


def test_writes_are_gathered_while_a_write_is_costly_against_a_chunk(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = Clock()
    monkeypatch.setattr(inference.time, "monotonic", clock)
    warehouse = Writes(clock, cost=0.1)  # a 0.1 s write: the next is due 50 x 0.1 = 5 s after it ended
    cache = CachedAnswers(warehouse, "fp", "run")  # type: ignore[arg-type]
    cache.add(chunk("a"))  # the first chunk: at once
    for key in "bcd":  # chunks of 2 s each: b at 2 s, c at 4 s (pending), d at 6 s (due)
        clock.now += 2.0
        cache.add(chunk(key))
    clock.now += 2.0
    cache.add(chunk("e"))
    cache.write()  # the end of inference: what is pending
    cache.write()  # nothing pending: no write
    assert warehouse.batches == [["a"], ["b", "c", "d"], ["e"]]


def test_a_cheap_write_against_a_slow_chunk_writes_every_chunk(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = Clock()
    monkeypatch.setattr(inference.time, "monotonic", clock)
    warehouse = Writes(clock, cost=0.02)  # next due 1 s after; the embedded model's chunks take seconds
    cache = CachedAnswers(warehouse, "fp", "run")  # type: ignore[arg-type]
    for key in "abc":
        cache.add(chunk(key))
        clock.now += 3.0
    assert warehouse.batches == [["a"], ["b"], ["c"]]


def test_answers_computed_before_a_failing_chunk_are_written(monkeypatch: pytest.MonkeyPatch) -> None:
    """`answer` writes what is pending in its finally: a chunk gathered but not yet written survives a failure."""
    from helmflow.flows.inference import InferencePlan, ModelIdentity, answer
    from helmflow.tasks.records import Request

    clock = Clock()
    monkeypatch.setattr(inference.time, "monotonic", clock)
    warehouse = Writes(clock, cost=1.0)  # costly writes: the second chunk waits to be gathered

    class Model:
        def __init__(self) -> None:
            self.calls = 0

        def loglikelihood(self, requests: list[Request], progress: object = None) -> list[Completion]:
            self.calls += 1
            if self.calls == 3:
                raise RuntimeError("the server went away")
            return [Completion(r.id, logprobs=[-1.0]) for r in requests]

        generate = loglikelihood  # no generation request here

    requests = [Request(f"r{i}", f"r{i}", "multiple_choice", f"p{i}", (" A",)) for i in range(3)]
    keys = {r.id: f"k{r.id}" for r in requests}
    distinct = {keys[r.id]: r for r in requests}
    chunks = [[keys[r.id]] for r in requests]
    plan = InferencePlan(ModelIdentity("fp", "float32", None, 1), requests, keys, distinct, {}, chunks, answers={})
    with pytest.raises(RuntimeError, match="went away"):
        answer(Model(), plan, warehouse, "run")  # type: ignore[arg-type]
    assert warehouse.batches == [["kr0"], ["kr1"]]  # r1 was pending when r2's chunk failed
