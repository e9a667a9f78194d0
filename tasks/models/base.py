"""What every model backend returns, and the interface it implements."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from helmflow.specs.schema import ModelSpec
from helmflow.tasks.records import Completion, Request

# Generation decodes this many batches' rows together (the hf backend's decode group). Inference hands
# generation requests to a backend in chunks of the same size, so a chunk never splits a group.
GENERATION_GROUP_BATCHES = 8


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


@dataclass(frozen=True)
class Backend:
    """A registry entry (specs/registry.py): how to load a model spec, and how to fingerprint it cheaply."""

    load: Callable[[ModelSpec], ModelBackend]
    # Without loading weights: what a refresh compares with past runs' model_fingerprint.
    fingerprint: Callable[[ModelSpec], str]
