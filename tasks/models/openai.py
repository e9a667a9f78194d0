"""The `openai` backend: any OpenAI-compatible completions server (vLLM, llama.cpp server, TGI, ...).

Log-likelihoods use the legacy completions endpoint the way lm-evaluation-harness's
`local-completions` does: send prompt + continuation with `echo`, `max_tokens: 0` and
`logprobs`, and add up the log-probs of the tokens that start at or after the prompt's end.
Generation is greedy (`temperature: 0`) with the request's stop sequences.

Transient failures (timeouts, HTTP 429 and 5xx, connection errors once the server has answered)
are retried with exponential back-off; every request has a timeout. A request that still fails
raises ModelServerError, which the flow's inference task retries in turn (answers already stored
come from the cache).

Everything else raises a plain ModelError, which nothing retries: a server that has never answered
in this process and refuses the connection or lets the first request time out (a wrong URL or a
server that is down or stuck: retrying only delays the message by minutes), a reply that is not
JSON or has no `choices`, and log-probs that are missing, null or not finite where they are
scored (they would otherwise be summed into a score, stored in the cache and reused).
"""

from __future__ import annotations

import json
import math
import numbers
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from typing import Any

from helmflow.specs.schema import ModelSpec
from helmflow.tasks.adapt import Request
from helmflow.tasks.models.base import Backend, Completion, ModelError, ModelInfo

TRANSIENT_STATUS = {408, 429, 500, 502, 503, 504}
# How much of a malformed body an error message shows.
BODY_PREVIEW = 200

# Completions URLs that have sent an HTTP response (any status) in this process. Before the first
# one a refused connection or a timeout means the server is not there (fail at once); after it,
# the same failure is a restart or a hiccup mid-run (back off and retry).
_answered: set[str] = set()


class ModelServerError(ModelError):
    """The server did not answer after the retries (transient: a later try may succeed)."""


class _TryAgain(Exception):
    """One try failed in a way a later try may not; the message says how."""


class OpenAIModel:
    def __init__(self, spec: ModelSpec, sleep: Callable[[float], None] = time.sleep) -> None:
        if not spec.path or not spec.path.startswith(("http://", "https://")):
            raise ModelError(f"model '{spec.name}': backend openai needs path: the server's base URL (http://...)")
        self.spec = spec
        self.base = spec.path.rstrip("/")
        self.url = self.base + "/completions"
        self.sleep = sleep
        self.calls = 0
        self.info = ModelInfo(
            name=spec.name,
            backend="openai",
            fingerprint=f"{spec.path}#{spec.remote_model or ''}@{spec.revision or 'unversioned'}",
            device="remote",
            dtype=spec.dtype,
            batch_size=spec.batch_size,
            num_threads=0,
            num_parameters=None,
        )

    # -- HTTP ---------------------------------------------------------------------------------------

    def _post(self, body: dict[str, Any]) -> dict[str, Any]:
        """The server's JSON answer, checked to have at least one choice."""
        data = json.dumps({"model": self.spec.remote_model or self.spec.name, **body}).encode()
        delay = self.spec.retry_backoff_s
        for attempt in range(self.spec.retries + 1):
            self.calls += 1
            try:
                return self._parse(self._send(data))
            except _TryAgain as exc:
                failure = str(exc)
            if attempt < self.spec.retries:
                self.sleep(delay)
                delay *= 2
        raise ModelServerError(f"{self.url}: no answer after {self.spec.retries + 1} tries ({failure})")

    def _send(self, data: bytes) -> bytes:
        """One try's response body; raises _TryAgain for a failure worth retrying, ModelError otherwise."""
        request = urllib.request.Request(self.url, data=data, headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=self.spec.timeout_s) as response:
                _answered.add(self.url)
                return response.read()
        except urllib.error.HTTPError as exc:
            _answered.add(self.url)
            if exc.code not in TRANSIENT_STATUS:
                raise ModelError(f"{self.url}: HTTP {exc.code}: {exc.read()[:300]!r}") from None
            raise _TryAgain(f"HTTP {exc.code}") from None
        except (urllib.error.URLError, TimeoutError, ConnectionError) as exc:
            # urllib wraps connect errors in URLError(reason=...); a read timeout comes bare.
            reason = getattr(exc, "reason", exc)
            if self.url not in _answered:
                self._raise_if_unreachable(reason)
            raise _TryAgain(f"{type(exc).__name__}: {reason}") from None

    def _raise_if_unreachable(self, reason: object) -> None:
        """Raise a non-retryable ModelError when the very first contact shows no working server."""
        if isinstance(reason, ConnectionRefusedError):
            raise ModelError(f"cannot reach the model server at {self.base}: connection refused; is it running?")
        if isinstance(reason, TimeoutError):
            # Without this a hanging server costs timeout_s x tries x the flow's task retries (~13 min).
            raise ModelError(
                f"the model server at {self.base} did not answer its first request within "
                f"{self.spec.timeout_s:g} s; is it running and not stuck? (a slow server needs a larger timeout_s)"
            )

    def _parse(self, raw: bytes) -> dict[str, Any]:
        text = raw.decode("utf-8", errors="replace")
        try:
            answer = json.loads(text)
        except ValueError:
            raise ModelError(f"{self.url} answered with something that is not JSON: {text[:BODY_PREVIEW]!r}") from None
        choices = answer.get("choices") if isinstance(answer, dict) else None
        if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
            raise ModelError(f"{self.url} answered without 'choices': {text[:BODY_PREVIEW]!r}")
        return answer

    # -- checking what came back ----------------------------------------------------------------

    def _checked(self, values: list[Any], request: Request, what: str) -> list[float]:
        """The log-probs as floats; a null or non-finite one is the server's fault, not a score."""
        for value in values:
            if value is None:
                raise ModelError(f"{self.url} answered request '{request.id}' with a null log-prob for {what}")
            if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value):
                raise ModelError(
                    f"{self.url} answered request '{request.id}' with a non-finite log-prob ({value!r}) for {what}"
                )
        return [float(v) for v in values]

    def _scored(self, choice: dict[str, Any], request: Request, continuation: str) -> tuple[list[float], int]:
        """The continuation's token log-probs, and how many prompt tokens came before them."""
        what = f"continuation {continuation!r}"
        logprobs = choice.get("logprobs")
        tokens = logprobs.get("token_logprobs") if isinstance(logprobs, dict) else None
        offsets = logprobs.get("text_offset") if isinstance(logprobs, dict) else None
        if not isinstance(tokens, list) or not isinstance(offsets, list):
            raise ModelError(
                f"{self.url} answered request '{request.id}' without log-probs (token_logprobs and text_offset) "
                f"for {what}; the server must support echo with logprobs on the completions endpoint"
            )
        if len(tokens) != len(offsets):
            raise ModelError(
                f"{self.url} answered request '{request.id}' with {len(tokens)} log-probs "
                f"but {len(offsets)} token offsets for {what}"
            )
        # The first prompt token's log-prob is null on most servers (nothing precedes it): only the
        # continuation's tokens must have one.
        scored = [lp for lp, offset in zip(tokens, offsets, strict=True) if offset >= len(request.prompt)]
        if not scored:
            # An empty sum would score the continuation as certain (log-prob 0).
            raise ModelError(
                f"{self.url} answered request '{request.id}' without a token of {what} "
                "(none starts at or after the prompt's end)"
            )
        return self._checked(scored, request, what), len(tokens) - len(scored)

    # -- the backend interface ------------------------------------------------------------------

    def loglikelihood(
        self, requests: list[Request], progress: Callable[[int, int], None] | None = None
    ) -> list[Completion]:
        out = []
        for done, request in enumerate(requests, start=1):
            began = time.perf_counter()
            completion = Completion(request_id=request.id, batch_size=1)
            for continuation in request.continuations:
                answer = self._post(
                    {
                        "prompt": request.prompt + continuation,
                        "max_tokens": 0,
                        "echo": True,
                        "logprobs": 1,
                        "temperature": 0,
                    }
                )
                scored, prompt_tokens = self._scored(answer["choices"][0], request, continuation)
                completion.logprobs.append(sum(scored))
                completion.continuation_tokens.append(len(scored))
                completion.prompt_tokens = prompt_tokens
            completion.latency_s = completion.forward_s = time.perf_counter() - began
            out.append(completion)
            if progress:
                progress(done, len(requests))
        return out

    def generate(self, requests: list[Request], progress: Callable[[int, int], None] | None = None) -> list[Completion]:
        out = []
        for done, request in enumerate(requests, start=1):
            began = time.perf_counter()
            body = {
                "prompt": request.prompt,
                "max_tokens": request.max_tokens,
                "temperature": 0,
                "logprobs": 1,
                "stop": list(request.stop) or None,
            }
            answer = self._post(body)
            choice = answer["choices"][0]
            if not isinstance(choice.get("text"), str):
                raise ModelError(f"{self.url} answered request '{request.id}' without the generated 'text'")
            # Output log-probs are optional (they only give the confidence), but present ones must be numbers.
            raw = (choice.get("logprobs") or {}).get("token_logprobs") or []
            logprobs = self._checked(raw, request, "its output tokens")
            usage = answer.get("usage") or {}
            out.append(
                Completion(
                    request_id=request.id,
                    text=choice["text"],
                    logprobs=logprobs,
                    prompt_tokens=int(usage.get("prompt_tokens", 0)),
                    output_tokens=int(usage.get("completion_tokens", len(logprobs))),
                    generated_tokens=int(usage.get("completion_tokens", len(logprobs))),
                    latency_s=time.perf_counter() - began,
                    batch_size=1,
                )
            )
            if progress:
                progress(done, len(requests))
        return out


BACKEND = Backend(
    load=OpenAIModel,
    fingerprint=lambda spec: f"{spec.path}#{spec.remote_model or ''}@{spec.revision or 'unversioned'}",
)
