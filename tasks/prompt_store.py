"""A run's prompts on disk while the run is made, not in memory.

A run's prompts are most of its bytes: the full MMLU with its five perturbations is 84,252 prompts of about
4 kB each, some 370 MiB as Python strings, held from the moment the requests are built until the run is
written. Only three steps read a prompt's text: its inference key, the model (for the requests the cache
does not answer) and the run's write (the `prompt` column). So each request is built, its prompt appended to
an unnamed temporary file, and the request kept with an empty prompt; those three steps read it back
(`text`, `filled`) one request or one chunk at a time.

The file is the operating system's (`tempfile.TemporaryFile`: unlinked at once, gone when closed or when the
process ends, however it ends). Reads are `os.pread` of the bytes written, not a memory map, so that what was
read back is not counted in this process's memory. A request whose id was never stored (a calibration
baseline's short answer prompt, a language-modelling text's empty one) keeps its prompt in memory, as built.
"""

from __future__ import annotations

import os
import tempfile
import threading
from dataclasses import replace
from typing import IO

from helmflow.tasks.records import Request


class PromptStore:
    """Prompts by request id, in an unnamed temporary file. Safe to read from several threads."""

    __slots__ = ("_closed", "_end", "_file", "_lock", "_refs", "_unflushed")

    def __init__(self) -> None:
        self._file: IO[bytes] | None = None  # opened by the first prompt stored: an empty store costs nothing
        self._refs: dict[str, tuple[int, int, int]] = {}  # request id -> (byte offset, byte length, characters)
        self._end = 0
        self._unflushed = False
        self._closed = False
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._refs)

    def spill(self, request: Request) -> Request:
        """Store the request's prompt and return the request without it (an empty prompt is kept as it is)."""
        if not request.prompt:
            return request
        data = request.prompt.encode()
        with self._lock:
            if self._closed:
                raise ValueError(f"the run's prompt file is closed: request {request.id}'s prompt cannot be stored")
            if self._file is None:
                # Closed by close(), or with the process; a context manager cannot span the run.
                self._file = tempfile.TemporaryFile(prefix="helmflow-prompts-")  # noqa: SIM115
            self._file.write(data)
            self._refs[request.id] = (self._end, len(data), len(request.prompt))
            self._end += len(data)
            self._unflushed = True
        return replace(request, prompt="")

    def alias(self, request_id: str, stored_id: str) -> None:
        """`request_id` has the prompt stored under `stored_id` (a sampled copy of a greedy request)."""
        if stored_id in self._refs:
            self._refs[request_id] = self._refs[stored_id]

    def text(self, request: Request) -> str:
        """The request's prompt: read back when it was stored, else the one it carries."""
        ref = self._refs.get(request.id)
        if ref is None:
            return request.prompt
        offset, size, _ = ref
        with self._lock:
            if self._file is None:
                raise ValueError(f"the run's prompt file is closed: request {request.id}'s prompt cannot be read")
            if self._unflushed:
                self._file.flush()
                self._unflushed = False
            fileno = self._file.fileno()
        data = os.pread(fileno, size, offset)
        if len(data) != size:
            raise OSError(f"the run's prompt file ended early: {len(data)} of {size} bytes for request {request.id}")
        return data.decode()

    def length(self, request: Request) -> int:
        """The prompt's length in characters, without reading it."""
        ref = self._refs.get(request.id)
        return len(request.prompt) if ref is None else ref[2]

    def filled(self, request: Request) -> Request:
        """The request with its prompt again (itself when nothing was stored for it)."""
        return request if request.id not in self._refs else replace(request, prompt=self.text(request))

    def close(self) -> None:
        with self._lock:
            self._closed = True
            if self._file is not None:
                self._file.close()
                self._file = None
