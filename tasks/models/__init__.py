"""Model backends, one module each, found through the registry in specs/registry.py.

Backend `x` is the module `helmflow.tasks.models.x`, which defines `BACKEND` (a `Backend`). Modules
are imported only when used, so an `openai` run never imports torch.
"""

from __future__ import annotations

import importlib

from helmflow.specs import registry
from helmflow.specs.schema import ModelSpec
from helmflow.tasks.models.base import Backend, ModelBackend, ModelError, ModelInfo
from helmflow.tasks.records import Completion


def backend(name: str) -> Backend:
    if name not in registry.BACKENDS:
        raise ModelError(f"unknown model backend '{name}' (known: {', '.join(registry.BACKENDS)})")
    return importlib.import_module(f"{__name__}.{name}").BACKEND


def load_model(spec: ModelSpec) -> ModelBackend:
    return backend(spec.backend).load(spec)


def fingerprint_of(spec: ModelSpec) -> str:
    """The model's fingerprint without loading its weights (what a refresh compares with past runs)."""
    return backend(spec.backend).fingerprint(spec)


__all__ = [
    "Backend",
    "Completion",
    "ModelBackend",
    "ModelError",
    "ModelInfo",
    "backend",
    "fingerprint_of",
    "load_model",
]
