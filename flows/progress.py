"""Progress reporting from inside the flow to whoever started it (the CLI's display).

The flow runs in the CLI's process; the reporter reaches it in the flow's RunContext
(flows/pipeline.py), which Prefect records by its type name only.

Inference reports after every chunk: requests answered so far of the run's total (answers from the
cache count as answered from the start), and the retries so far (HTTP retries of a model server, a
re-run of the inference task or of a cluster shard). `Meter` turns those into what a person reads:
the rate counts only the requests computed since inference started, not the cached ones.

A flow run that Prefect's runner started in a process of its own (`helmflow serve`, a work pool's
worker) has no CLI display: its reporter writes plain lines to stderr, which the runner forwards.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from dataclasses import dataclass
from typing import Protocol, TextIO

# What the rate is measured with; tests replace it with a clock of their own.
clock = time.monotonic


class Reporter(Protocol):
    def stage(self, label: str, message: str) -> None: ...

    def start_inference(self, label: str, total: int, done: int = 0, retries: int = 0) -> None: ...

    def advance(self, done: int, retries: int = 0) -> None: ...

    def end_inference(self) -> None: ...


class Silent:
    def stage(self, label: str, message: str) -> None:
        pass

    def start_inference(self, label: str, total: int, done: int = 0, retries: int = 0) -> None:
        pass

    def advance(self, done: int, retries: int = 0) -> None:
        pass

    def end_inference(self) -> None:
        pass


def plural(count: int, one: str, many: str) -> str:
    return f"{count} {one if count == 1 else many}"


@dataclass
class Meter:
    """One inference's progress: requests answered of `total`, the rate since it started, retries so far."""

    label: str
    total: int
    began: float
    done_at_start: int  # answered before any was computed here: the cache's
    done: int
    retries: int

    @classmethod
    def start(cls, label: str, total: int, done: int = 0, retries: int = 0) -> Meter:
        return cls(label, total, clock(), done, done, retries)

    def update(self, done: int, retries: int) -> None:
        self.done, self.retries = done, retries

    @property
    def rate(self) -> float:
        """Requests computed per second since inference started (0 before the first second has a count)."""
        elapsed = clock() - self.began
        return (self.done - self.done_at_start) / elapsed if elapsed > 0 else 0.0

    @property
    def percent(self) -> int:
        """Whole percent answered, rounded down: 100 only once every request is."""
        return 100 * self.done // self.total if self.total else 100

    def opening(self) -> str:
        """The line said when inference starts."""
        cached = f", {self.done_at_start} from the cache" if self.done_at_start else ""
        return f"{self.label}: {plural(self.total, 'request', 'requests')}{cached}"

    def line(self) -> str:
        """`mmlu × smollm2-135m-instruct: 512/2048 requests (25%), 41.2 req/s, 0 retries`"""
        return (
            f"{self.label}: {self.done}/{self.total} requests ({self.percent}%), {self.rate:.1f} req/s, "
            f"{plural(self.retries, 'retry', 'retries')}"
        )


class Lines:
    """Plain lines for logs: one per stage, one when inference starts and one per chunk answered."""

    def __init__(self, stream: TextIO | None = None) -> None:
        self._stream = stream
        self._meter: Meter | None = None
        self._lock = threading.Lock()  # a cluster runner reports from its client's thread too

    def _say(self, text: str) -> None:
        stream = self._stream or sys.stderr  # looked up at each line: whatever stderr is now (a test's capture)
        stream.write(text + "\n")
        stream.flush()

    def stage(self, label: str, message: str) -> None:
        with self._lock:
            self._say(f"{label}: {message}")

    def start_inference(self, label: str, total: int, done: int = 0, retries: int = 0) -> None:
        with self._lock:
            self._meter = Meter.start(label, total, done, retries)
            self._say(self._meter.opening())

    def advance(self, done: int, retries: int = 0) -> None:
        with self._lock:
            if self._meter is not None:
                self._meter.update(done, retries)
                self._say(self._meter.line())

    def end_inference(self) -> None:
        with self._lock:
            self._meter = None


class InferenceProgress:
    """The callback inference is given (done, total, retries): its first call starts the reporter's meter,
    with what the cache answered, and every later one (after each chunk) advances it. `retried`: the
    retries before this call began (a Prefect retry of the inference task), added to the model's own."""

    def __init__(self, reporter: Reporter, label: str, retried: int = 0) -> None:
        self.reporter = reporter
        self.label = label
        self.retried = retried
        self.started = False

    def __call__(self, done: int, total: int, retries: int) -> None:
        if not self.started:
            self.started = True
            self.reporter.start_inference(self.label, total, done, self.retried + retries)
        else:
            self.reporter.advance(done, self.retried + retries)


def task_retries() -> int:
    """How many times Prefect has retried the task run this is called in (0 on its first try, or outside one)."""
    from prefect.runtime import task_run

    return max(0, int(task_run.run_count) - 1)


def default_reporter() -> Reporter:
    """Where progress goes when the caller named nowhere: nowhere, except in a flow run that Prefect's
    runner started in a process of its own (it sets PREFECT__FLOW_RUN_ID there), whose stderr the runner
    forwards."""
    return Lines() if os.environ.get("PREFECT__FLOW_RUN_ID") else Silent()
