"""How inference plans its chunks, and how the embedded model's file digest is remembered (no model loaded)."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from helmflow.flows.inference import ModelIdentity, plan_inference
from helmflow.tasks.models import embedded
from helmflow.tasks.records import Request, RequestKind
from helmflow.warehouse.store import Warehouse


def _requests(kind: RequestKind, n: int) -> list[Request]:
    continuations = (" A", " B") if kind == "multiple_choice" else ()
    # Prompts of distinct lengths, so the longest-first order is known: q{n-1} is longest.
    return [Request(f"{kind}{i}", f"i{kind}{i}", kind, "x" * (i + 1), continuations) for i in range(n)]


def test_chunks_hold_one_kind_and_a_generation_chunk_is_a_decode_group(tmp_path: Path) -> None:
    identity = ModelIdentity(fingerprint="f", dtype="float32", max_length=None, batch_size=2)
    requests = _requests("multiple_choice", 11) + _requests("generation", 21)
    plan = plan_inference(requests, identity, Warehouse(str(tmp_path / "w.duckdb")))
    kinds = [{plan.distinct[k].kind for k in chunk} for chunk in plan.chunks]
    sizes = [len(chunk) for chunk in plan.chunks]
    # Generation (its kind sorts first): 8 batches of 2, one decode group, per chunk. Multiple choice: 4 batches.
    assert sizes == [16, 5, 8, 3]
    assert kinds == [{"generation"}] * 2 + [{"multiple_choice"}] * 2
    first = [plan.distinct[k].id for k in plan.chunks[0][:2]]
    assert first == ["generation20", "generation19"]  # longest prompt first


def test_the_gguf_digest_is_hashed_once_per_version_of_the_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HELMFLOW_CACHE", str(tmp_path / "cache"))
    weights = tmp_path / "model.gguf"
    weights.write_bytes(b"first")
    assert embedded.known_sha256(weights) == hashlib.sha256(b"first").hexdigest()

    hashed: list[Path] = []
    monkeypatch.setattr(embedded, "file_sha256", lambda path: hashed.append(path) or "recomputed")
    assert embedded.known_sha256(weights) == hashlib.sha256(b"first").hexdigest()  # remembered
    assert hashed == []

    weights.write_bytes(b"second!")  # another size: another version of the file
    assert embedded.known_sha256(weights) == "recomputed"
    os.utime(weights, ns=(1, 1))  # same size, another modification time
    assert embedded.known_sha256(weights) == "recomputed"
    assert hashed == [weights, weights]

    (tmp_path / "cache" / "models" / "sha256.json").write_text("{not json")
    assert embedded.known_sha256(weights) == "recomputed"  # an unreadable memo is rebuilt, not trusted
    assert len(hashed) == 3


def test_a_cache_folder_that_cannot_be_written_still_gives_the_digest(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    not_a_folder = tmp_path / "cache"
    not_a_folder.write_text("a file where the cache folder should be")
    monkeypatch.setenv("HELMFLOW_CACHE", str(not_a_folder))
    weights = tmp_path / "model.gguf"
    weights.write_bytes(b"weights")
    assert embedded.known_sha256(weights) == hashlib.sha256(b"weights").hexdigest()
