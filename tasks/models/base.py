"""What every model backend returns, and the interface it implements."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from helmflow.tasks.records import Completion, Request


class ModelError(RuntimeError):
    """A model that cannot be loaded or used; the message says what to do."""


@dataclass(frozen=True)
class ModelInfo:
    name: str
    backend: str
    fingerprint: str
    device: str
    dtype: str
    batch_size: int
    num_threads: int
    num_parameters: int | None


class ModelBackend(Protocol):
    info: ModelInfo

    def loglikelihood(
        self, requests: list[Request], progress: Callable[[int, int], None] | None = None
    ) -> list[Completion]: ...

    def generate(
        self, requests: list[Request], progress: Callable[[int, int], None] | None = None
    ) -> list[Completion]: ...
