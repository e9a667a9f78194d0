"""The `openai` backend: any OpenAI-compatible completions server (vLLM, llama.cpp server, TGI, ...).

Log-likelihoods use the legacy completions endpoint the way lm-evaluation-harness's
`local-completions` does: send prompt + continuation with `echo`, `max_tokens: 0` and
`logprobs`, and add up the log-probs of the tokens that start at or after the prompt's end.
Generation is greedy (`temperature: 0`) with the request's stop sequences.

Transient failures (connection errors, timeouts, HTTP 429 and 5xx) are retried with exponential
back-off; every request has a timeout. A request that still fails raises ModelServerError, which
the flow's inference task retries in turn (answers already stored come from the cache).
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from typing import Any

from helmflow.specs.schema import ModelSpec
from helmflow.tasks.adapt import Request
from helmflow.tasks.models.base import Completion, ModelError, ModelInfo

TRANSIENT_STATUS = {408, 429, 500, 502, 503, 504}


class ModelServerError(ModelError):
    """The server did not answer after the retries (transient: a later try may succeed)."""


class OpenAIModel:
    def __init__(self, spec: ModelSpec, sleep: Callable[[float], None] = time.sleep) -> None:
        if not spec.path or not spec.path.startswith(("http://", "https://")):
            raise ModelError(f"model '{spec.name}': backend openai needs path: the server's base URL (http://...)")
        self.spec = spec
        self.url = spec.path.rstrip("/") + "/completions"
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

    def _post(self, body: dict[str, Any]) -> dict[str, Any]:
        body = {"model": self.spec.remote_model or self.spec.name, **body}
        data = json.dumps(body).encode()
        delay = self.spec.retry_backoff_s
        for attempt in range(self.spec.retries + 1):
            self.calls += 1
            request = urllib.request.Request(self.url, data=data, headers={"Content-Type": "application/json"})
            try:
                with urllib.request.urlopen(request, timeout=self.spec.timeout_s) as response:
                    return json.load(response)
            except urllib.error.HTTPError as exc:
                if exc.code not in TRANSIENT_STATUS:
                    raise ModelError(f"{self.url}: HTTP {exc.code}: {exc.read()[:300]!r}") from None
                failure = f"HTTP {exc.code}"
            except (urllib.error.URLError, TimeoutError, ConnectionError) as exc:
                failure = f"{type(exc).__name__}: {getattr(exc, 'reason', exc)}"
            if attempt < self.spec.retries:
                self.sleep(delay)
                delay *= 2
        raise ModelServerError(f"{self.url}: no answer after {self.spec.retries + 1} tries ({failure})")

    def loglikelihood(
        self, requests: list[Request], progress: Callable[[int, int], None] | None = None
    ) -> list[Completion]:
        out = []
        for done, request in enumerate(requests, start=1):
            began = time.perf_counter()
            completion = Completion(request_id=request.id, batch_size=1)
            for continuation in request.continuations:
                choice = self._post(
                    {
                        "prompt": request.prompt + continuation,
                        "max_tokens": 0,
                        "echo": True,
                        "logprobs": 1,
                        "temperature": 0,
                    }
                )["choices"][0]
                logprobs = choice["logprobs"]
                scored = [
                    (lp, offset)
                    for lp, offset in zip(logprobs["token_logprobs"], logprobs["text_offset"], strict=True)
                    if offset >= len(request.prompt)
                ]
                completion.logprobs.append(sum(lp for lp, _ in scored))
                completion.continuation_tokens.append(len(scored))
                completion.prompt_tokens = len(logprobs["token_logprobs"]) - len(scored)
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
            logprobs = (choice.get("logprobs") or {}).get("token_logprobs") or []
            usage = answer.get("usage") or {}
            out.append(
                Completion(
                    request_id=request.id,
                    text=choice["text"],
                    logprobs=[float(x) for x in logprobs],
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
