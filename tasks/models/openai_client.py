"""HTTP for the `openai` backend: one pooled client, retries with back-off, fail-fast, a rate limit, the key.

One `httpx.Client` (already installed with Prefect) keeps up to `concurrency` keep-alive connections,
so the threads of OpenAIModel share connections instead of opening one per request.

Transient failures (timeouts, HTTP 408/429/5xx, connection errors once the server has answered)
are retried with exponential back-off (a 429's numeric Retry-After, when longer, is waited instead);
what still fails raises ModelServerError, which the flow's inference task retries in turn.
Everything else raises a plain ModelError, which nothing retries: among them a server that has never
answered in this process and refuses the connection or lets the first request time out (a wrong URL
or a server that is down or stuck: retrying only delays the message by minutes).

The API key (from the environment variable the spec names) lives only in the client's headers; any
text a server sends back is scrubbed of it before it goes into an error message.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Callable
from typing import Any

import httpx

from helmflow.specs.schema import ModelSpec
from helmflow.tasks.models.base import ModelError

TRANSIENT_STATUS = {408, 429, 500, 502, 503, 504}
# How much of a malformed body an error message shows.
BODY_PREVIEW = 200
# The longest Retry-After a 429 may impose on one try (a longer one is the server's quota, not a hiccup).
MAX_RETRY_AFTER_S = 60.0

# Server base URLs that have sent an HTTP response to a POST (any status) in this process. Before the
# first one a refused connection or a timeout means the server is not there (fail at once); after
# it, the same failure is a restart or a hiccup mid-run (back off and retry).
_answered: set[str] = set()


class ModelServerError(ModelError):
    """The server did not answer after the retries (transient: a later try may succeed)."""


class _TryAgain(Exception):
    """One try failed in a way a later try may not; the message says how."""

    def __init__(self, message: str, wait_s: float = 0.0) -> None:
        super().__init__(message)
        self.wait_s = wait_s


class RateLimit:
    """Spaces request starts at least 60/N seconds apart across all threads (N per minute)."""

    def __init__(self, per_minute: float | None, sleep: Callable[[float], None] = time.sleep) -> None:
        self.interval = 60.0 / per_minute if per_minute else 0.0
        self.sleep = sleep
        self._next = 0.0
        self._lock = threading.Lock()

    def wait(self) -> None:
        if not self.interval:
            return
        with self._lock:
            now = time.monotonic()
            slot = max(now, self._next)
            self._next = slot + self.interval
        if slot > now:
            self.sleep(slot - now)


def api_key(spec: ModelSpec) -> str | None:
    """The key from the environment variable the spec names; its value is never put in a message."""
    if not spec.api_key_env:
        return None
    key = os.environ.get(spec.api_key_env)
    if not key:
        raise ModelError(f"model '{spec.name}': api_key_env names {spec.api_key_env}, which is not set or empty")
    return key


class Client:
    def __init__(self, spec: ModelSpec, sleep: Callable[[float], None] = time.sleep) -> None:
        assert spec.path is not None
        self.spec = spec
        self.base = spec.path.rstrip("/")
        self.sleep = sleep
        self.rate = RateLimit(spec.max_requests_per_minute, sleep)
        self._key = api_key(spec)
        headers = {"Content-Type": "application/json"}
        if self._key:
            headers["Authorization"] = f"Bearer {self._key}"
        pool = httpx.Limits(max_connections=spec.concurrency, max_keepalive_connections=spec.concurrency)
        # trust_env=False: no proxy or .netrc from the environment decides where the key goes.
        self.http = httpx.Client(headers=headers, timeout=spec.timeout_s, limits=pool, trust_env=False)
        self.calls = 0
        self.retries = 0  # tries that failed and were tried again (what progress shows as retries)
        self._count = threading.Lock()
        # Set when one request of a concurrent batch has failed: the others stop retrying.
        self.abandon = threading.Event()

    def redact(self, text: str) -> str:
        return text.replace(self._key, "***") if self._key else text

    # -- POST with retries ---------------------------------------------------------------------

    def post(self, url: str, body: dict[str, Any]) -> dict[str, Any]:
        """The server's JSON answer, checked to have at least one choice."""
        data = json.dumps({"model": self.spec.remote_model or self.spec.name, **body}).encode()
        delay = self.spec.retry_backoff_s
        for attempt in range(self.spec.retries + 1):
            with self._count:
                self.calls += 1
            self.rate.wait()
            try:
                return self._parse(url, self._send(url, data))
            except _TryAgain as exc:
                failure, wait_s = str(exc), exc.wait_s
            if attempt < self.spec.retries:
                if self.abandon.is_set():
                    break  # another request of this batch has failed already; its error is the one raised
                with self._count:
                    self.retries += 1
                self.sleep(max(delay, wait_s))
                delay *= 2
        raise ModelServerError(f"{url}: no answer after {attempt + 1} tries ({failure})")

    def _send(self, url: str, data: bytes) -> bytes:
        """One try's response body; raises _TryAgain for a failure worth retrying, ModelError otherwise."""
        try:
            response = self.http.post(url, content=data)
        except httpx.TimeoutException as exc:
            if self.base not in _answered:
                self._raise_unreachable(TimeoutError())
            raise _TryAgain(f"{type(exc).__name__}: timed out after {self.spec.timeout_s:g} s") from None
        except httpx.TransportError as exc:
            if self.base not in _answered:
                self._raise_unreachable(_root_cause(exc))
            raise _TryAgain(f"{type(exc).__name__}: {self.redact(str(exc))}") from None
        _answered.add(self.base)
        if response.status_code in TRANSIENT_STATUS:
            raise _TryAgain(f"HTTP {response.status_code}", _retry_after(response))
        if response.status_code >= 400:
            # The key is hidden before the body is cut: a cut through the key would leave most of it.
            body = self.redact(response.content.decode("utf-8", errors="replace"))
            raise ModelError(f"{url}: HTTP {response.status_code}: {body[:BODY_PREVIEW]!r}")
        return response.content

    def _raise_unreachable(self, reason: BaseException) -> None:
        """Raise a non-retryable ModelError when the very first contact shows no working server."""
        if isinstance(reason, ConnectionRefusedError):
            raise ModelError(f"cannot reach the model server at {self.base}: connection refused; is it running?")
        if isinstance(reason, TimeoutError):
            # Without this a hanging server costs timeout_s x tries x the flow's task retries (~13 min).
            raise ModelError(
                f"the model server at {self.base} did not answer its first request within "
                f"{self.spec.timeout_s:g} s; is it running and not stuck? (a slow server needs a larger timeout_s)"
            )

    def _parse(self, url: str, raw: bytes) -> dict[str, Any]:
        text = self.redact(raw.decode("utf-8", errors="replace"))
        try:
            answer = json.loads(text)
        except ValueError:
            raise ModelError(f"{url} answered with something that is not JSON: {text[:BODY_PREVIEW]!r}") from None
        choices = answer.get("choices") if isinstance(answer, dict) else None
        if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
            raise ModelError(f"{url} answered without 'choices': {text[:BODY_PREVIEW]!r}")
        return answer

    # -- identity ------------------------------------------------------------------------------

    def served_model(self) -> dict[str, Any] | None:
        """The server's entry for our model from GET /models (the only one, or the one whose id matches
        remote_model); None when the server lists none or cannot be asked (the run then says why)."""
        try:
            response = self.http.get(self.base + "/models", timeout=min(self.spec.timeout_s, 10.0))
            listing = response.json().get("data") if response.status_code == 200 else None
        except (httpx.HTTPError, ValueError, AttributeError):
            return None
        entries = [e for e in listing or [] if isinstance(e, dict) and isinstance(e.get("id"), str)]
        wanted = self.spec.remote_model or self.spec.name
        matching = [e for e in entries if e["id"] == wanted]
        return (matching or entries)[0] if len(matching) == 1 or len(entries) == 1 else None

    def close(self) -> None:
        self.http.close()


def _root_cause(exc: BaseException) -> BaseException:
    """The OSError under httpx's and httpcore's wrappers (ConnectionRefusedError for a closed port)."""
    while exc.__cause__ is not None or exc.__context__ is not None:
        exc = exc.__cause__ or exc.__context__  # type: ignore[assignment]
    return exc


def _retry_after(response: httpx.Response) -> float:
    try:
        return min(float(response.headers.get("Retry-After", 0)), MAX_RETRY_AFTER_S)
    except ValueError:  # an HTTP date: the exponential back-off decides
        return 0.0
