"""Whether the Hugging Face Hub can be reached, asked once per process before a scenario loads from it.

`datasets.load_dataset` retries an unreachable Hub five times with back-off (about 25 s here) before it
gives up with a ConnectionError, so a suite of scenarios that need the Hub on a machine without it would
spend minutes failing. One TCP connection to the Hub's endpoint (HF_ENDPOINT, as huggingface_hub reads it),
with a short timeout, says the same in a second; a run that needs the Hub then fails at once with one line
naming the dataset. Offline mode (HF_HUB_OFFLINE or HF_DATASETS_OFFLINE) skips the check: `datasets` then
reads its local cache, which may hold the dataset.
"""

from __future__ import annotations

import os
import socket
from functools import cache
from pathlib import Path
from urllib.parse import urlsplit

DEFAULT_ENDPOINT = "https://huggingface.co"
CONNECT_TIMEOUT_S = 3.0
_TRUE = {"1", "on", "yes", "true"}


def offline_mode() -> bool:
    return any(os.environ.get(name, "").strip().lower() in _TRUE for name in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE"))


@cache
def _unreachable(endpoint: str) -> str | None:
    parts = urlsplit(endpoint)
    host = parts.hostname or ""
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        with socket.create_connection((host, port), timeout=CONNECT_TIMEOUT_S):
            return None
    except OSError as exc:
        reason = "timed out" if isinstance(exc, TimeoutError) else exc.strerror or type(exc).__name__
        return f"{host}:{port}: {reason}"


def hub_unreachable(dataset_path: str) -> str | None:
    """Why the Hub cannot be reached for `dataset_path` (host, port and the socket's reason), or None when it
    can, when offline mode reads the cache instead, or when the path is a local folder (not the Hub)."""
    if Path(dataset_path).is_dir() or offline_mode():
        return None
    return _unreachable(os.environ.get("HF_ENDPOINT", DEFAULT_ENDPOINT))
