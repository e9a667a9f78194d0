"""Failures of the machine rather than of the input: a full disk, a file system gone read-only, DuckDB unable
to write its files, a Prefect API that does not answer. The CLI says them in one line (exit 1), and a run
that cannot be written stops the command: every later write of the same command would fail the same way."""

from __future__ import annotations

import errno
import os
import re
import sys

START_A_SERVER = "prefect server start --host 127.0.0.1"

# What DuckDB says when the operating system refused a write; the exception's class varies with the moment:
# IOException, TransactionException ("Failed to commit: Could not write file ...wal": a commit on a full
# disk), OutOfMemoryException (spilling to a full temporary directory).
_DUCKDB_CANNOT_WRITE = re.compile(r"could not write|no space left on device|disk quota exceeded", re.IGNORECASE)
# The operating system's "nothing more can be written here": full, over quota, read-only, failing, too big.
_CANNOT_WRITE_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EIO, errno.EFBIG}


def cannot_write(exc: BaseException) -> bool:
    """Whether `exc` says that files cannot be written here now, so that the next write would fail too
    (not, say, a model server that reset one connection)."""
    if isinstance(exc, OSError):
        return exc.errno in _CANNOT_WRITE_ERRNOS
    duckdb = sys.modules.get("duckdb")  # not imported: no DuckDB error can have happened
    return duckdb is not None and isinstance(exc, duckdb.Error) and bool(_DUCKDB_CANNOT_WRITE.search(str(exc)))


def environment_failure(exc: BaseException) -> str | None:
    """One line naming the file (or the URL) and the reason when `exc` is a failure of the machine: any
    OSError, DuckDB's I/O errors, a Prefect API that did not answer; else None."""
    if isinstance(exc, BrokenPipeError):  # the reader went away (helmflow runs | head): nothing to say
        return None
    unreachable = _prefect_unreachable(exc)
    if unreachable:
        return unreachable
    if isinstance(exc, OSError):
        reason = exc.strerror or str(exc) or type(exc).__name__
        return f"{exc.filename}: {reason}" if exc.filename else reason
    duckdb = sys.modules.get("duckdb")
    if cannot_write(exc) or (duckdb is not None and isinstance(exc, duckdb.IOException)):
        return str(exc)  # DuckDB's message names the file: 'Could not write file "...": No space left ...'
    return None


def _prefect_unreachable(exc: BaseException) -> str | None:
    """The Prefect API's URL and why it did not answer, when a connection to it failed in `exc` or in what
    caused it (Prefect's flow engine says "Failed to reach API at ...", from httpx's ConnectError)."""
    httpx = sys.modules.get("httpx")  # not imported: nothing was asked of any server
    url = _prefect_api_url()
    cause: BaseException | None = exc
    while httpx is not None and url and cause is not None:
        if isinstance(cause, httpx.TransportError) and _request_url(cause).startswith(url.rstrip("/")):
            return (
                f"the Prefect API at {url} (PREFECT_API_URL) could not be reached "
                f"({str(cause) or type(cause).__name__}): start a server ({START_A_SERVER}) "
                "or point PREFECT_API_URL at a running one"
            )
        cause = cause.__cause__ or cause.__context__
    return None


def _prefect_api_url() -> str:
    """The API this process talks to: PREFECT_API_URL, or a Prefect profile's."""
    if os.environ.get("PREFECT_API_URL"):
        return os.environ["PREFECT_API_URL"]
    settings = sys.modules.get("prefect.settings")
    return (settings.get_current_settings().api.url or "") if settings is not None else ""


def _request_url(exc: BaseException) -> str:
    try:
        return str(exc.request.url)  # type: ignore[attr-defined]
    except RuntimeError:  # an httpx error raised without its request
        return ""


def with_notes(line: str, exc: BaseException) -> str:
    """The line with what was added on the way up (which run was lost, and how), still one line."""
    return "; ".join([line, *getattr(exc, "__notes__", [])])
