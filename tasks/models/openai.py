"""The `openai` backend: any OpenAI-compatible server (vLLM, llama.cpp server, transformers serve, TGI, ...).

Log-likelihoods use the legacy completions endpoint the way lm-evaluation-harness's
`local-completions` does: send prompt + continuation with `echo`, `max_tokens: 0` and
`logprobs`, and add up the log-probs of the tokens that start at or after the prompt's end.
`batch_size` prompts go in one request (`prompt` as a list) when it is above 1.
Generation is greedy (`temperature: 0`) with the request's stop sequences; text past a stop
sequence is cut here too, since some servers (transformers serve) keep it. A sampled request
(the adapter's num_samples) sends its temperature, top_p and seed instead (`decoding`).

`concurrency` requests are in flight at once, on one asyncio event loop (openai_async.py: aiohttp,
`concurrency` keep-alive connections, orjson), and answers come back in request order. Within one call,
answers received before a failure are dropped with the call: flows/inference.py stores answers chunk by
chunk, so a resumed run recomputes only the chunk that failed.

With `chat: true` generation goes to /chat/completions, the prompt as the user message after the
spec's `system_prompt`: the stored prompt plus the model spec (stored with the run) give the exact
messages (`messages()` below builds them). Multiple choice then has no log-probs to compare, so the
model generates the option letter, as HELM does for chat APIs, and chat_letter() reads it: the chosen
option scores log-prob 0 and the others LETTER_MISS, an answer without a letter (or naming a letter
that is not an option) is an error, and the model fingerprint ends in "+mc-by-letter" so such runs
never share cached answers or comparisons with scored ones.

The HTTP side (retries, fail-fast, rate limit, API key) is in openai_async.py, over openai_client.py's
rules and messages.
"""

from __future__ import annotations

import hashlib
import math
import numbers
import re
import time
from bisect import bisect_left
from collections.abc import Callable, Sequence
from typing import Any

from helmflow.specs.schema import ModelSpec
from helmflow.tasks.adapt import Request
from helmflow.tasks.models.base import Backend, Completion, ModelError, ModelInfo
from helmflow.tasks.models.echo_answer import EchoedLogprobs, decode_echo
from helmflow.tasks.models.openai_async import AsyncClient, Decode
from helmflow.tasks.models.openai_client import ModelServerError

__all__ = ["LETTER_MISS", "ModelServerError", "OpenAIModel", "chat_letter", "fingerprint"]

# The log-prob given to the options a chat model did not name (finite: validation rejects -inf).
LETTER_MISS = -100.0
# chat_letter's two patterns. A leading option letter: "B", " B.", "(B)", "**B**", "B) Paris", "B\n..." — not
# the article in "A good one", nor the first letter of "I'm", "E.g.,", "A/B" or "D-Day": closing punctuation
# must end the word.
LEADING_LETTER = re.compile(r"\s*[(*\[]*([A-Z])(?:[.):*\],]+(?=\s|$)|(?=[ \t]*(?:\n|$)))")
# A stated answer: "answer is" or "answer:" (any case; "**Answer:** D", "The answer is: (D)") and then a
# capital letter that ends its word ("D", "D.", "D: Paris", "D because"; not "A/B", "D-Day", "I'm"), or a
# small one that ends the answer or is closed by punctuation ("answer: d", "answer is d)"; not the
# article in "the answer is a cat").
STATED_LETTER = re.compile(
    r"\b(?i:answer)(?:\s+is\b|[\s*]*:)[\s*:]*(?i:option\s+)?[(*\[]*"
    r"(?:([A-Z])(?=[.):*\],;!?]*(?:\s|$))|([a-z])(?=[.):*\],;!?]*$|[.):*\],;!?]+\s))"
)
# Tokens a chat model may spend on its answer: the letter and its punctuation, or a short statement of it
# ("The answer is D." is five tokens on common tokenizers).
LETTER_TOKENS = 5

Progress = Callable[[int, int], None] | None


def _ascending(offsets: list[Any]) -> bool:
    try:
        return offsets == sorted(offsets)
    except TypeError:  # a null or a string among them: the plain pass (and its comparisons) decide
        return False


def _bos_shift(tokens: Any, offsets: list[Any], prompt: str) -> int:
    """How far the echoed offsets are shifted by a BOS token the server put before the prompt and counted
    in them (vLLM echoes "<s>" or "<|begin_of_text|>" at offset 0, and the prompt's first token after it):
    a first token that looks special ("<...>"), is not the prompt's start, and which the next offset follows."""
    if not isinstance(tokens, list) or len(tokens) < 2 or len(offsets) < 2 or offsets[0] != 0:
        return 0
    first = tokens[0]
    special = isinstance(first, str) and first.startswith("<") and first.endswith(">") and len(first) > 2
    return len(first) if special and not prompt.startswith(first) and offsets[1] == len(first) else 0


def chat_letter(text: str) -> str | None:
    """The option letter a chat model's answer names, or None: how multiple choice reads a chat answer.

    A leading letter that stands alone, as HELM reads a chat answer ("D", "D.", "D) Paris", "(D)",
    "**D**", "B, since"), else the first stated answer, as lm-evaluation-harness's answer-extracting
    filters read one ("The answer is D.", "The answer is (D)", "Answer: D", "answer: d", "The correct
    answer is D: Paris"); LEADING_LETTER and STATED_LETTER say what counts. None for "I'm not sure",
    "E.g., A/B testing", "D-Day" or "A good one". The letter is returned as a capital; whether it is
    one of the request's options is the caller's to check (an "E" for four options is no answer).
    """
    leading = LEADING_LETTER.match(text)
    if leading:
        return leading.group(1)
    stated = STATED_LETTER.search(text)
    return (stated.group(1) or stated.group(2).upper()) if stated else None


def fingerprint(spec: ModelSpec, served: dict[str, Any] | None = None) -> str:
    """What the answers depend on: the URL, the model id and revision the server reports (GET /models;
    the spec's when it reports none), and for chat the system prompt and letter-scored multiple choice."""
    model_id = served["id"] if served else (spec.remote_model or "")
    revision = next((str(served[k]) for k in ("revision", "version") if served and served.get(k)), None)
    text = f"{spec.path}#{model_id}@{revision or spec.revision or 'unversioned'}"
    if spec.chat:
        system = hashlib.sha256((spec.system_prompt or "").encode()).hexdigest()[:8]
        text += f"+chat(system:{system})+mc-by-letter"
    return text


class OpenAIModel:
    def __init__(self, spec: ModelSpec, sleep: Callable[[float], None] = time.sleep) -> None:
        if not spec.path or not spec.path.startswith(("http://", "https://")):
            raise ModelError(f"model '{spec.name}': backend openai needs path: the server's base URL (http://...)")
        assert isinstance(spec.batch_size, int)  # the spec refuses "auto" for openai
        self.spec = spec
        self.client = AsyncClient(spec, sleep)
        self.base = self.client.base
        self.url = self.base + "/completions"
        self.chat_url = self.base + "/chat/completions"
        self.info = ModelInfo(
            name=spec.name,
            backend="openai",
            fingerprint=fingerprint(spec, self.client.served_model()),
            device="remote",
            dtype=spec.dtype,
            # What is in flight at once: flows/inference.py sizes its chunks from this.
            batch_size=spec.concurrency * spec.batch_size,
            num_threads=spec.concurrency,
            num_parameters=None,
        )

    @property
    def calls(self) -> int:
        """HTTP tries so far (retries included)."""
        return self.client.calls

    @property
    def retries(self) -> int:
        """HTTP tries so far that failed and were tried again (inference's progress shows them)."""
        return self.client.retries

    def messages(self, prompt: str) -> list[dict[str, str]]:
        """The chat messages a prompt is sent as (with `chat: true`)."""
        system = [{"role": "system", "content": self.spec.system_prompt}] if self.spec.system_prompt else []
        return [*system, {"role": "user", "content": prompt}]

    # -- concurrency -------------------------------------------------------------------------------

    def _post_all(
        self, url: str, bodies: Sequence[dict[str, Any]], progress: Progress, decode: Decode | None = None
    ) -> list[tuple[Any, float]]:
        """Every body posted, `concurrency` at a time, each answer with its seconds, in the bodies' order. The
        first failure is raised once the others are cancelled: the call's answers are dropped with it."""
        return self.client.post_many_timed(url, bodies, progress, decode)

    # -- checking what came back ----------------------------------------------------------------

    def _checked(self, values: list[Any], request: Request, what: str, url: str) -> list[float]:
        """The log-probs as floats; a null or non-finite one is the server's fault, not a score."""
        for value in values:
            if value is None:
                raise ModelError(f"{url} answered request '{request.id}' with a null log-prob for {what}")
            if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value):
                raise ModelError(
                    f"{url} answered request '{request.id}' with a non-finite log-prob ({value!r}) for {what}"
                )
        return [float(v) for v in values]

    def _scored(self, choice: dict[str, Any], request: Request, continuation: str) -> tuple[list[float], int]:
        """The continuation's token log-probs, and how many prompt tokens came before them."""
        what = f"continuation {continuation!r}"
        logprobs = choice.get("logprobs")
        if isinstance(logprobs, EchoedLogprobs):
            read = self._scored_from_end(logprobs, request, continuation)
            if read is not None:
                return self._checked(read[0], request, what, self.url), read[1]
            logprobs = logprobs.lists()  # not what reading from the end accepts: the whole arrays, as below
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
        shift = _bos_shift(logprobs.get("tokens"), offsets, request.prompt)
        # As lm-evaluation-harness scores it: the prompt's trailing whitespace belongs to the continuation,
        # so " yes" after "A: " is the continuation's token even though it starts at the prompt's space.
        boundary = shift + len(request.prompt.rstrip())
        # The first prompt token's log-prob is null on most servers (nothing precedes it): only the
        # continuation's tokens must have one. Tokens past the echoed text were generated (echo_max_tokens).
        end = shift + len(request.prompt) + len(continuation)
        if _ascending(offsets):  # as every server gives them: found by bisection, in C (a 5-shot prompt
            # has hundreds of tokens, and a Python pass over them was a tenth of the request's CPU)
            first, past = bisect_left(offsets, boundary), bisect_left(offsets, end)
            scored, prompt_tokens = tokens[first:past], first
        else:
            scored = [lp for lp, offset in zip(tokens, offsets, strict=True) if boundary <= offset < end]
            prompt_tokens = sum(1 for offset in offsets if offset < boundary)
        if not scored:
            # An empty sum would score the continuation as certain (log-prob 0).
            raise ModelError(
                f"{self.url} answered request '{request.id}' without a token of {what} "
                "(none starts at or after the prompt's end)"
            )
        return self._checked(scored, request, what, self.url), prompt_tokens

    @staticmethod
    def _scored_from_end(
        logprobs: EchoedLogprobs, request: Request, continuation: str
    ) -> tuple[list[float | None], int] | None:
        """What _scored finds, read from the arrays' end (echo_answer.py), or None: read them whole."""
        head = logprobs.head()
        if head is None:
            return None
        offsets, first_token = head
        shift = _bos_shift([first_token, None] if first_token is not None else None, offsets, request.prompt)
        boundary = shift + len(request.prompt.rstrip())
        read = logprobs.tail(boundary, shift + len(request.prompt) + len(continuation))
        return read if read is not None and read[0] else None  # none scored: the whole path says so

    # -- log-likelihoods ------------------------------------------------------------------------

    def _echo_body(self, group: list[tuple[Request, int]]) -> dict[str, Any]:
        """One completions request scoring each (request, continuation index) of the group."""
        texts = [request.prompt + request.continuations[k] for request, k in group]
        prompt = texts[0] if len(texts) == 1 else texts
        body = {"prompt": prompt, "max_tokens": self.spec.echo_max_tokens, "echo": True, "logprobs": 1}
        return {**body, "temperature": 0}

    def _echo_scored(self, group: list[tuple[Request, int]], answer: dict[str, Any]) -> list[tuple[list[float], int]]:
        choices = answer["choices"]
        if len(choices) != len(group):
            raise ModelError(f"{self.url} answered {len(choices)} choices for {len(group)} prompts")
        if all(isinstance(c.get("index"), int) for c in choices):
            choices = sorted(choices, key=lambda c: c["index"])
        return [self._scored(c, r, r.continuations[k]) for c, (r, k) in zip(choices, group, strict=True)]

    def loglikelihood(
        self, requests: list[Request], progress: Callable[[int, int], None] | None = None
    ) -> list[Completion]:
        text_alone = next((r for r in requests if not r.prompt), None)
        if text_alone is not None:
            # An echo gives no log-prob for a text's first token (nothing precedes it on the server) and scores no
            # more than the server's window: a text scored whole (language_modeling) needs the hf backend's windows.
            raise ModelError(
                f"model '{self.spec.name}': request '{text_alone.id}' scores a text by itself (adapter method "
                "language_modeling), which the openai backend cannot: run it on an hf or embedded model"
            )
        if self.spec.chat:
            answers = self._post_all(self.chat_url, [self._chat_body(r, LETTER_TOKENS, ()) for r in requests], progress)
            return [self._letter(r, answer, elapsed) for r, (answer, elapsed) in zip(requests, answers, strict=True)]
        assert isinstance(self.spec.batch_size, int)
        pairs = [(r, k) for r in requests for k in range(len(r.continuations))]
        groups = [pairs[i : i + self.spec.batch_size] for i in range(0, len(pairs), self.spec.batch_size)]
        out = {r.id: Completion(request_id=r.id, batch_size=0) for r in requests}
        for c, r in zip(out.values(), requests, strict=True):
            c.logprobs, c.continuation_tokens = [0.0] * len(r.continuations), [0] * len(r.continuations)
        answers = self._post_all(self.url, [self._echo_body(group) for group in groups], progress, decode_echo)
        for group, (answer, elapsed) in zip(groups, answers, strict=True):
            for (request, k), (logprobs, prompt_tokens) in zip(group, self._echo_scored(group, answer), strict=True):
                completion = out[request.id]
                completion.logprobs[k] = sum(logprobs)
                completion.continuation_tokens[k] = len(logprobs)
                completion.prompt_tokens = prompt_tokens
                # A request's latency: its share of each HTTP request that scored one of its continuations.
                completion.latency_s += elapsed / len(group)
                completion.forward_s = completion.latency_s
                completion.batch_size = max(completion.batch_size, len(group))
        return list(out.values())

    def _letter(self, request: Request, answer: dict[str, Any], elapsed: float) -> Completion:
        """Multiple choice through a chat API: the model names an option letter (see the module's doc)."""
        letters = [c.strip() for c in request.continuations]
        if not all(len(letter) == 1 and letter.isalpha() and letter.isupper() for letter in letters):
            raise ModelError(
                f"model '{self.spec.name}' is a chat model (no log-probs): it can answer multiple choice only "
                f"by naming an option letter (method multiple_choice_joint), not {request.continuations[:2]!r}..."
            )
        completion = self._chatted(request, answer, elapsed)
        named = chat_letter(completion.text)
        chosen = named if named in letters else None
        completion.logprobs = [0.0 if letter == chosen else LETTER_MISS for letter in letters]
        completion.continuation_tokens = [1] * len(letters)
        if named is None:
            completion.error = f"no option letter in the chat answer {completion.text[:40]!r}"
        elif chosen is None:
            completion.error = (
                f"the chat answer {completion.text[:40]!r} names {named}, "
                f"not one of the options {letters[0]} to {letters[-1]}"
            )
        return completion

    # -- generation ----------------------------------------------------------------------------

    def _complete_body(self, request: Request) -> dict[str, Any]:
        body = {"prompt": request.prompt, "max_tokens": request.max_tokens, **decoding(request), "logprobs": 1}
        return {**body, "stop": list(request.stop) or None}

    def _completed(self, request: Request, answer: dict[str, Any], elapsed: float) -> Completion:
        choice = answer["choices"][0]
        if not isinstance(choice.get("text"), str):
            raise ModelError(f"{self.url} answered request '{request.id}' without the generated 'text'")
        # Output log-probs are optional (they only give the confidence), but present ones must be numbers.
        raw = (choice.get("logprobs") or {}).get("token_logprobs") or []
        return self._generated(request, answer, choice["text"], raw, self.url, elapsed)

    def _chat_body(self, request: Request, max_tokens: int, stop: tuple[str, ...]) -> dict[str, Any]:
        body = {"messages": self.messages(request.prompt), "max_tokens": max_tokens, **decoding(request)}
        return {**body, "logprobs": True, "stop": list(stop) or None}

    def _chatted(self, request: Request, answer: dict[str, Any], elapsed: float) -> Completion:
        message = answer["choices"][0].get("message")
        text = message.get("content") if isinstance(message, dict) else None
        if not isinstance(text, str):
            raise ModelError(f"{self.chat_url} answered request '{request.id}' without the message's 'content'")
        content = (answer["choices"][0].get("logprobs") or {}).get("content") or []
        raw = [t.get("logprob") if isinstance(t, dict) else t for t in content]
        return self._generated(request, answer, text, raw, self.chat_url, elapsed)

    def _generated(
        self, request: Request, answer: dict[str, Any], text: str, raw: list[Any], url: str, elapsed: float
    ) -> Completion:
        logprobs = self._checked(raw, request, "its output tokens", url)
        cut = min((text.find(s) for s in request.stop if s and s in text), default=-1)
        usage = answer.get("usage") or {}
        produced = int(usage.get("completion_tokens", len(logprobs)))
        return Completion(
            request_id=request.id,
            text=text[:cut] if cut >= 0 else text,
            logprobs=logprobs,
            prompt_tokens=int(usage.get("prompt_tokens", 0)),
            output_tokens=produced,
            generated_tokens=produced,
            latency_s=elapsed,
            batch_size=1,
        )

    def generate(self, requests: list[Request], progress: Progress = None) -> list[Completion]:
        if self.spec.chat:
            bodies = [self._chat_body(r, r.max_tokens, r.stop) for r in requests]
            answers = self._post_all(self.chat_url, bodies, progress)
            return [self._chatted(r, answer, elapsed) for r, (answer, elapsed) in zip(requests, answers, strict=True)]
        answers = self._post_all(self.url, [self._complete_body(r) for r in requests], progress)
        return [self._completed(r, answer, elapsed) for r, (answer, elapsed) in zip(requests, answers, strict=True)]


def decoding(request: Request) -> dict[str, Any]:
    """How a generation is decoded, in the body's keys: greedy (`temperature: 0`), or a sampled request's
    temperature, top_p and seed (tasks/samples.py). A server that honours `seed` (vLLM, llama.cpp, OpenAI's
    best effort) gives the same sample for the same seed; one that ignores it samples anew on every run."""
    if not request.sample:
        return {"temperature": 0}
    return {"temperature": request.temperature, "top_p": request.top_p, "seed": request.seed}


def _fingerprint_without_loading(spec: ModelSpec) -> str:
    client = AsyncClient(spec)
    try:
        return fingerprint(spec, client.served_model())
    finally:
        client.close()


BACKEND = Backend(load=OpenAIModel, fingerprint=_fingerprint_without_loading)
