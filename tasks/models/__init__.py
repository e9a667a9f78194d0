"""Model backends, one module each. `load_model` picks one by the spec's `backend`."""

from __future__ import annotations

from helmflow.specs.schema import ModelSpec
from helmflow.tasks.models.base import Completion, ModelBackend, ModelError, ModelInfo


def load_model(spec: ModelSpec) -> ModelBackend:
    if spec.backend == "embedded":
        from helmflow.tasks.models.embedded import load_embedded

        return load_embedded(spec)
    if spec.backend == "openai":
        from helmflow.tasks.models.openai import OpenAIModel

        return OpenAIModel(spec)
    from helmflow.tasks.models.hf import HFModel

    return HFModel(spec)


def fingerprint_of(spec: ModelSpec) -> str:
    """The model's fingerprint without loading its weights (what a refresh compares with past runs)."""
    if spec.backend == "embedded":
        from helmflow.tasks.models.embedded import converted_dir

        return converted_dir()[1]
    if spec.backend == "openai":
        return f"{spec.path}#{spec.remote_model or ''}@{spec.revision or 'unversioned'}"
    from pathlib import Path

    from helmflow.tasks.models.hf import local_fingerprint

    assert spec.path is not None
    if Path(spec.path).is_dir():
        return local_fingerprint(Path(spec.path))
    try:  # a hub id: its current revision names the weights
        from huggingface_hub import model_info

        return f"{spec.path}@{model_info(spec.path, revision=spec.revision).sha}"
    except Exception:
        return f"{spec.path}@unknown"


__all__ = ["Completion", "ModelBackend", "ModelError", "ModelInfo", "fingerprint_of", "load_model"]
