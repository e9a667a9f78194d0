"""Model backends, one module each. `load_model` picks one by the spec's `backend`."""

from __future__ import annotations

from specs.schema import ModelSpec
from tasks.models.base import Completion, ModelBackend, ModelError, ModelInfo


def load_model(spec: ModelSpec) -> ModelBackend:
    if spec.backend == "embedded":
        from tasks.models.embedded import load_embedded

        return load_embedded(spec)
    from tasks.models.hf import HFModel

    return HFModel(spec)


__all__ = ["Completion", "ModelBackend", "ModelError", "ModelInfo", "load_model"]
