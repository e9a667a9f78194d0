"""An asyncio transport for the `openai` backend: the same meaning as openai_client.Client, less CPU per request.

openai_client.Client sends each request from its own thread through httpx: every request pays for a
thread hand-off, httpx's pure-Python HTTP machinery and `json.loads` of a redacted copy of the body
(about 3.4 ms of client CPU a request at concurrency 64). Here one event-loop thread (uvloop's where it
is installed), owned by the client, runs every request on one aiohttp session (C HTTP parser, keep-alive
pool of `concurrency` connections), bodies are encoded and decoded with orjson, and `post_many` sends a whole list of
bodies concurrently and returns the answers in order: no thread per request.

What a try means is unchanged, and shared with openai_client where it can be imported: the same
transient statuses, exponential back-off, a 429's Retry-After (capped at MAX_RETRY_AFTER_S), the same
fail-fast on a server that has never answered in this process (the `_answered` set is the same
object), the same rate limit (RateLimit's slots), the same error messages, and the API key only in
the session's headers and scrubbed from anything quoted back. An answer that contains the key is
redacted before it is parsed, as before; checking for the key is a byte search, so answers without
it (all of them, in practice) are parsed straight from the bytes.

orjson rejects NaN and Infinity, which Python servers write and json.loads reads: a body orjson
refuses is parsed again by the old path (json.loads of the decoded text), so a NaN log-prob still
reaches OpenAIModel's check and fails there with its own message, and a body that is not JSON gets
the old message.

A caller that knows the shape it reads may pass `decode` (tasks/models/echo_answer.py for echoed
log-probs): it turns the bytes into only what is read, or gives None and the body is parsed as above.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import gc
import json
import os
import selectors
import threading
import time
import weakref
from collections.abc import Callable, Coroutine, Iterator, Sequence
from typing import Any, TypeVar

import aiohttp
import orjson
import yarl

from helmflow.specs.schema import ModelSpec
from helmflow.tasks.models.base import ModelError
from helmflow.tasks.models.openai_client import (
    BODY_PREVIEW,
    TRANSIENT_STATUS,
    Client,
    ModelServerError,
    RateLimit,
    _answered,
    _retry_after,
    _root_cause,
    _TryAgain,
    api_key,
)

__all__ = ["AsyncClient", "ModelServerError"]

T = TypeVar("T")
# Bytes to the parts of an answer a caller reads, or None to parse them as any answer.
Decode = Callable[[bytes], "dict[str, Any] | None"]
# How often a waiting post_many reports progress: the caller's thread wakes this often, not per answer.
PROGRESS_EVERY_S = 0.25


class _Slots(RateLimit):
    """RateLimit's spacing, with the wait handed back instead of slept, so the event loop is not blocked."""

    def reserve(self) -> float:
        """Takes the next start slot, as RateLimit.wait does, and returns the seconds until it."""
        if not self.interval:
            return 0.0
        with self._lock:
            now = time.monotonic()
            slot = max(now, self._next)
            self._next = slot + self.interval
        return slot - now


class AsyncClient:
    """openai_client.Client's surface (post, served_model, close, redact, calls, retries, abandon) plus
    post_many / post_many_timed, all run on one background event loop."""

    # Pause Python's cyclic garbage collector while a post_many call is in flight (see _gc_paused).
    pause_gc = True

    def __init__(self, spec: ModelSpec, sleep: Callable[[float], None] = time.sleep) -> None:
        assert spec.path is not None
        self.spec = spec
        self.base = spec.path.rstrip("/")
        self.sleep = sleep
        self.rate = _Slots(spec.max_requests_per_minute, sleep)
        self._key = api_key(spec)
        self._key_bytes = self._key.encode() if self._key else b""
        self.calls = 0  # only the loop thread changes these two: no lock needed
        self.retries = 0
        # Kept for OpenAIModel's _in_order; post_many clears and sets it itself.
        self.abandon = threading.Event()
        self._model = spec.remote_model or spec.name
        self._urls: dict[str, yarl.URL] = {}
        self._start()

    def _start(self) -> None:
        """The event loop, its thread and the session on it (again in a forked child, which has no such thread)."""
        self._pid = os.getpid()
        _clients.add(self)
        self._loop = _new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="helmflow-openai-loop", daemon=True)
        self._thread.start()
        self._session: aiohttp.ClientSession = self._run(self._open())
        # OpenAIModel never closes its client: stop the loop and its connections when the client is collected.
        self._finalizer = weakref.finalize(self, _shut_down, self._loop, self._thread, self._session)

    def _in_this_process(self) -> None:
        if self._pid != os.getpid():
            self._start()

    def _orphan(self) -> None:
        """In a forked child: leave the parent's loop, thread and connections alone, and start afresh on first use.

        The child shares the parent's epoll instance: closing the inherited loop or its connections here would
        unregister the parent's sockets from it, and the parent would wait for answers it is never told of. So
        the child's copy of the epoll fd is closed (that touches nothing of the parent's), the loop gets an
        empty selector in its place, and the old loop and session are kept so nothing closes them."""
        loop: Any = self._loop
        if isinstance(loop, asyncio.SelectorEventLoop):  # uvloop's is never run here again: nothing to swap
            loop._selector.close()
            loop._selector = selectors.DefaultSelector()
        self._finalizer.detach()
        _left_by_fork.append((loop, self._session))
        self._pid = -1

    async def _open(self) -> aiohttp.ClientSession:
        headers = {"Content-Type": "application/json"}
        if self._key:
            headers["Authorization"] = f"Bearer {self._key}"
        # limit = concurrency: the pool never holds more connections than requests in flight.
        connector = aiohttp.TCPConnector(limit=self.spec.concurrency, limit_per_host=0)
        # Made here, on the loop: the slots and the session belong to it.
        self._slots = asyncio.Semaphore(self.spec.concurrency)
        # httpx's timeout_s is per connect and per read, not for the whole request: the same here.
        timeout = aiohttp.ClientTimeout(total=None, sock_connect=self.spec.timeout_s, sock_read=self.spec.timeout_s)
        # trust_env=False: no proxy or .netrc from the environment decides where the key goes; no cookies kept.
        return aiohttp.ClientSession(
            connector=connector,
            headers=headers,
            timeout=timeout,
            trust_env=False,
            cookie_jar=aiohttp.DummyCookieJar(),
        )

    def _run(self, coroutine: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result()

    def _submit(self, coroutine: Coroutine[Any, Any, T]) -> concurrent.futures.Future[T]:
        self._in_this_process()
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop)

    def redact(self, text: str) -> str:
        return text.replace(self._key, "***") if self._key else text

    # -- the synchronous surface --------------------------------------------------------------------

    def post(self, url: str, body: dict[str, Any]) -> dict[str, Any]:
        """The server's JSON answer, checked to have at least one choice (as Client.post)."""
        return self._submit(self._post(url, body)).result()[0]

    def post_many(
        self,
        url: str,
        bodies: Sequence[dict[str, Any]],
        progress: Callable[[int, int], None] | None = None,
    ) -> list[dict[str, Any]]:
        """post(url, body) for every body, `concurrency` in flight, the answers in the bodies' order."""
        return [answer for answer, _ in self.post_many_timed(url, bodies, progress)]

    def post_many_timed(
        self,
        url: str,
        bodies: Sequence[dict[str, Any]],
        progress: Callable[[int, int], None] | None = None,
        decode: Decode | None = None,
    ) -> list[tuple[dict[str, Any], float]]:
        """post_many, each answer with its seconds from its start (once it had a slot) to its parsed answer.

        The first failure is raised once every other request has been cancelled (answers already
        received are dropped with the call, as OpenAIModel._in_order drops them); `progress(done, total)`
        is called from the caller's thread, every PROGRESS_EVERY_S and once at the end."""
        if not bodies:
            return []
        self.abandon.clear()  # a failed call before this one left it set; this call retries afresh
        done = [0]
        with _gc_paused(self.pause_gc):
            future = self._submit(self._post_all(url, bodies, done, decode))
            try:
                results = self._wait(future, done, len(bodies), progress)
            except BaseException:
                future.cancel()  # an interrupted caller (Ctrl-C): the requests in flight stop too
                raise
        if progress:
            progress(len(bodies), len(bodies))
        return results

    @staticmethod
    def _wait(
        future: concurrent.futures.Future[T], done: list[int], total: int, progress: Callable[[int, int], None] | None
    ) -> T:
        if progress is None:
            return future.result()
        reported = 0
        while True:
            try:
                return future.result(timeout=PROGRESS_EVERY_S)
            except TimeoutError:
                if future.done():
                    raise  # the batch's own TimeoutError, not the wait's
                if done[0] != reported:
                    reported = done[0]
                    progress(reported, total)

    def served_model(self) -> dict[str, Any] | None:
        """As Client.served_model: the server's entry for our model from GET /models, or None."""
        listing = self._submit(self._models()).result()
        entries = [e for e in listing or [] if isinstance(e, dict) and isinstance(e.get("id"), str)]
        wanted = self.spec.remote_model or self.spec.name
        matching = [e for e in entries if e["id"] == wanted]
        return (matching or entries)[0] if len(matching) == 1 or len(entries) == 1 else None

    def close(self) -> None:
        self._finalizer()

    # -- on the loop --------------------------------------------------------------------------------

    async def _post_all(
        self, url: str, bodies: Sequence[dict[str, Any]], done: list[int], decode: Decode | None = None
    ) -> list[tuple[dict[str, Any], float]]:
        async def one(body: dict[str, Any]) -> tuple[dict[str, Any], float]:
            answer = await self._post(url, body, decode)
            done[0] += 1
            return answer

        tasks = [asyncio.ensure_future(one(body)) for body in bodies]
        try:
            await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
        finally:
            # A failure (or the caller's cancellation): the rest stop now, their answers are not wanted.
            failed = next((t for t in tasks if t.done() and not t.cancelled() and t.exception()), None)
            if failed is not None or not all(t.done() for t in tasks):
                self.abandon.set()
                for task in tasks:
                    task.cancel()
                await asyncio.gather(*tasks, return_exceptions=True)
        if failed is not None:
            raise failed.exception()  # type: ignore[misc]
        return [task.result() for task in tasks]

    async def _post(self, url: str, body: dict[str, Any], decode: Decode | None = None) -> tuple[dict[str, Any], float]:
        data = orjson.dumps({"model": self._model, **body})
        async with self._slots:  # a request holds its slot through its back-off, as a pool thread does
            began = time.perf_counter()
            delay = self.spec.retry_backoff_s
            for attempt in range(self.spec.retries + 1):
                self.calls += 1
                await self._pause(self.rate.reserve())
                try:
                    return self._parse(url, await self._send(url, data), decode), time.perf_counter() - began
                except _TryAgain as exc:
                    failure, wait_s = str(exc), exc.wait_s
                if attempt < self.spec.retries:
                    if self.abandon.is_set():
                        break  # another request of this batch has failed already; its error is the one raised
                    self.retries += 1
                    await self._pause(max(delay, wait_s))
                    delay *= 2
        raise ModelServerError(f"{url}: no answer after {attempt + 1} tries ({failure})")

    async def _pause(self, seconds: float) -> None:
        if seconds <= 0:
            return
        if self.sleep is time.sleep:
            await asyncio.sleep(seconds)
        else:
            self.sleep(seconds)  # a test's fake sleep: it records the wait and returns at once

    async def _send(self, url: str, data: bytes) -> bytes:
        """One try's response body; raises _TryAgain for a failure worth retrying, ModelError otherwise."""
        try:
            # allow_redirects=False, as httpx: a redirect is not followed with the key.
            async with self._session.post(self._url(url), data=data, allow_redirects=False) as response:
                raw = await response.read()
        except TimeoutError:  # aiohttp's socket timeouts are TimeoutErrors
            if self.base not in _answered:
                self._raise_unreachable(TimeoutError())
            raise _TryAgain(f"ReadTimeout: timed out after {self.spec.timeout_s:g} s") from None
        except aiohttp.ClientConnectorError as exc:
            if self.base not in _answered:
                self._raise_unreachable(exc.os_error)
            raise _TryAgain(f"ConnectError: {_os_reason(exc.os_error)}") from None
        except (aiohttp.ClientError, OSError) as exc:
            if self.base not in _answered:
                self._raise_unreachable(_root_cause(exc))
            raise _TryAgain(f"{type(exc).__name__}: {self.redact(str(exc))}") from None
        _answered.add(self.base)
        status = response.status
        if status in TRANSIENT_STATUS:
            raise _TryAgain(f"HTTP {status}", _retry_after(response))  # type: ignore[arg-type]  # reads .headers
        if status >= 400:
            # The key is hidden before the body is cut: a cut through the key would leave most of it.
            text = self.redact(raw.decode("utf-8", errors="replace"))
            raise ModelError(f"{url}: HTTP {status}: {text[:BODY_PREVIEW]!r}")
        return raw

    def _url(self, url: str) -> yarl.URL:
        """The parsed URL, parsed once: the backend posts to one or two URLs thousands of times."""
        parsed = self._urls.get(url)
        if parsed is None:
            parsed = self._urls[url] = yarl.URL(url)
        return parsed

    def _raise_unreachable(self, reason: BaseException) -> None:
        # Client's messages, word for word; the method reads only `base` and `spec`, which this class has too.
        Client._raise_unreachable(self, reason)  # type: ignore[arg-type]

    def _parse(self, url: str, raw: bytes, decode: Decode | None = None) -> dict[str, Any]:
        answer: Any = None
        if not (self._key_bytes and self._key_bytes in raw):
            if decode is not None:
                answer = decode(raw)
                if answer is not None:
                    return answer  # what decode gives has non-empty choices (tasks/models/echo_answer.py)
            with contextlib.suppress(orjson.JSONDecodeError):
                answer = orjson.loads(raw)
        if answer is None:
            # A key to hide, or what orjson refuses (NaN, invalid UTF-8, not JSON): the old path, same result.
            text = self.redact(raw.decode("utf-8", errors="replace"))
            try:
                answer = json.loads(text)
            except ValueError:
                raise ModelError(f"{url} answered with something that is not JSON: {text[:BODY_PREVIEW]!r}") from None
        choices = answer.get("choices") if isinstance(answer, dict) else None
        if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
            text = self.redact(raw.decode("utf-8", errors="replace"))
            raise ModelError(f"{url} answered without 'choices': {text[:BODY_PREVIEW]!r}")
        return answer

    async def _models(self) -> Any:
        wait = aiohttp.ClientTimeout(total=min(self.spec.timeout_s, 10.0))
        try:
            async with self._session.get(self.base + "/models", timeout=wait, allow_redirects=False) as response:
                if response.status != 200:
                    return None
                return orjson.loads(await response.read()).get("data")
        except (aiohttp.ClientError, OSError, TimeoutError, ValueError, AttributeError):
            return None


# Live clients, for the fork hook; what a forked child must keep and never close (see AsyncClient._orphan).
_clients: weakref.WeakSet[AsyncClient] = weakref.WeakSet()
_left_by_fork: list[object] = []


def _after_fork_in_child() -> None:
    for client in list(_clients):
        client._orphan()


os.register_at_fork(after_in_child=_after_fork_in_child)

# Callers inside _gc_paused, and whether the collector was on when the first came in.
_gc_pausers = 0
_gc_was_enabled = False
_gc_lock = threading.Lock()


@contextlib.contextmanager
def _gc_paused(pause: bool) -> Iterator[None]:
    """The cyclic collector off while a batch is in flight, back on (if it was) when the last batch ends.

    Each echoed answer is a few hundred new containers (a dict per token's top_logprobs): at 64 in flight
    the collector runs every couple of answers and took 25-30% of the client's CPU per request, measured
    by tests/bench/bench_serving.py (0.47 -> 0.33 ms). Nothing is freed later than the end of the call:
    reference counting frees everything that is not a cycle at once, and a call is one inference chunk
    (4 x concurrency x batch_size requests)."""
    global _gc_pausers, _gc_was_enabled
    if not pause:
        yield
        return
    with _gc_lock:
        if _gc_pausers == 0:
            _gc_was_enabled = gc.isenabled()
            gc.disable()
        _gc_pausers += 1
    try:
        yield
    finally:
        with _gc_lock:
            _gc_pausers -= 1
            if _gc_pausers == 0 and _gc_was_enabled:
                gc.enable()


def _new_event_loop() -> asyncio.AbstractEventLoop:
    """uvloop's event loop (libuv, in C) where it is installed, as it is on Linux and macOS: 10-15 % less client
    CPU a request than asyncio's at concurrency 64 (tests/bench/bench_serving.py); asyncio's elsewhere."""
    try:
        import uvloop
    except ImportError:
        return asyncio.new_event_loop()
    return uvloop.new_event_loop()


def _os_reason(error: OSError) -> str:
    """httpx's wording ("[Errno 111] Connection refused"): asyncio says only "Connect call failed (...)"."""
    return f"[Errno {error.errno}] {os.strerror(error.errno)}" if error.errno else str(error)


def _shut_down(loop: asyncio.AbstractEventLoop, thread: threading.Thread, session: aiohttp.ClientSession) -> None:
    """Closes the session's connections, then stops the loop and its thread (idempotent via weakref.finalize)."""
    if loop.is_closed():
        return
    if thread.is_alive():
        with contextlib.suppress(Exception):
            asyncio.run_coroutine_threadsafe(session.close(), loop).result(timeout=5)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=5)
    if not thread.is_alive():
        loop.close()
