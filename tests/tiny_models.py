"""Tiny random models of other architectures, with the embedded model's tokenizer: what the hf backend
must do for models unlike SmolLM2 (sliding windows, a final step on the logits), in a second."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from helmflow.specs.schema import ModelSpec
from helmflow.tasks.models.embedded import converted_dir

# Small enough to build in well under a second; the vocabulary is the tokenizer's.
SHAPE = {
    "vocab_size": 49152,
    "hidden_size": 32,
    "intermediate_size": 64,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
}


def save_tiny(folder: Path, config_class: Any, model_class: Any, nan: bool = False, **config: Any) -> Path:
    """A random `model_class(config_class(**SHAPE, **config))` saved in `folder` with the tokenizer.
    `nan`: one output-head weight is NaN, so every log-prob is (a broken checkpoint, an fp16 overflow)."""
    import torch

    torch.manual_seed(0)
    model = model_class(config_class(**SHAPE, **config))
    if nan:
        with torch.no_grad():
            model.get_output_embeddings().weight[0, 0] = float("nan")
    model.save_pretrained(folder)
    for path in converted_dir()[0].iterdir():
        if path.name.startswith("tokenizer") or path.suffix == ".jinja":
            shutil.copy(path, folder / path.name)
    return folder


def tiny_model(folder: Path, config_class: Any, model_class: Any, **config: Any) -> Any:  # -> HFModel
    """A random `model_class(config_class(**SHAPE, **config))` saved in `folder`, loaded as an hf model."""
    from helmflow.tasks.models.hf import HFModel

    save_tiny(folder, config_class, model_class, **config)
    return HFModel(ModelSpec(name=folder.name, backend="hf", path=str(folder), batch_size=4), fingerprint="test")
