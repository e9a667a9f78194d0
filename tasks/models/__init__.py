"""Model backends, one module each, found through the `helmflow.backends` entry points (specs/registry.py).

helmflow's own backend `x` is the module `helmflow.tasks.models.x`'s `BACKEND` (a `Backend`), named as
a plugin's is (pyproject.toml). An entry point is loaded only when its backend is used, so an `openai`
run never imports torch.
"""

from __future__ import annotations

from helmflow.specs import registry
from helmflow.specs.schema import ModelSpec
from helmflow.tasks.models.base import Backend, ModelBackend, ModelError, ModelInfo
from helmflow.tasks.records import Completion


def backend(name: str) -> Backend:
    if name not in registry.backend_names():
        raise ModelError(f"unknown model backend '{name}' (known: {', '.join(registry.backend_names())})")
    plugin = registry.backend(name)
    found = plugin.load()
    if not isinstance(found, Backend):
        raise registry.PluginError(f"{plugin.describe()} gives {type(found).__name__}, not a helmflow Backend")
    return found


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
