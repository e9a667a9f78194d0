"""Memorisation probes (issue 29): what the model itself says about having seen an instance's text, no corpus.

Both probes read one forward pass of the model over the text (the `hf` backend's tokens: its prompt
prefix, then the text's; tasks/models/hf_tokens.py), and keep, per token x_t after the first:

- its log-prob log p(x_t | x_<t), and whether it is the greedy (argmax) token there;
- the mean μ_t and standard deviation σ_t of log p(z | x_<t) for z drawn from p(· | x_<t), over the
  whole vocabulary (Min-K%++'s calibration).

**n-gram completion** (Xu et al. 2024, "Benchmarking Benchmark Leakage in Large Language Models",
arXiv 2404.18824; their code, GAIR-NLP/benbench): at K starting points s spread evenly over the text's
tokens (`numpy.linspace(2, L - n, K)`, as theirs), the model is prompted with the first s tokens and
greedily predicts the next n; the instance's score is the share of the K predictions equal, token for
token, to the text's own n tokens (n = 5, K = 5, their defaults). No generation is needed for that: greedy
decoding from x_<s reproduces x_s..x_{s+n-1} exactly when each of them is the argmax given the true
prefix before it (the first mismatch ends the match, and until then the generated prefix *is* the true
one), so the forward pass's argmax flags decide every start at once. tests/test_contamination_probes.py
checks this against the model's own greedy `generate`.

**Min-K%++** (Zhang et al. 2024, arXiv 2404.02936): per token, (log p(x_t | x_<t) − μ_t) / σ_t; the
score is the mean of the lowest k% of these (k = 20 %). Higher means the text sits at a mode of the
model's distribution: more likely seen in training. **Min-K%** (Shi et al. 2023, arXiv 2310.16789), the
mean of the lowest k% raw log-probs, comes from the same pass; it is kept beside it because one confidently
wrong token (σ_t near 0) drags Min-K%++ down by tens of units, which on a small model can hide a text it
otherwise reproduces (docs/contamination.md has the measured cases).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from helmflow.tasks.models.hf import HFModel

NGRAM_N = 5  # tokens predicted per start (benbench's default)
NGRAM_STARTS = 5  # starting points per instance (benbench's k)
MIN_K_FRACTION = 0.2  # the lowest 20 % of tokens (Min-K%++'s and Min-K%'s usual k)
# The logits of at most this many values (positions × vocabulary) exist at once: a 2,048-token text over
# Gemma's 256k vocabulary would otherwise be 2 GB of float32 per pass (and log_softmax makes copies).
LOGIT_VALUES = 2**23
# σ_t below this (a distribution almost all on one token) is taken as this: the z-score stays finite.
MIN_STD = 1e-6

Progress = Callable[[int, int], None]


@dataclass(frozen=True)
class TokenScores:
    """One text's pass: per scored token (each text token with a token before it), in text order."""

    tokens: int  # the text's tokens as scored (after truncation to max_length; the prompt prefix not counted)
    logprob: np.ndarray  # log p(x_t | x_<t)
    mean: np.ndarray  # μ_t = E_z[log p(z | x_<t)]
    std: np.ndarray  # σ_t
    greedy: np.ndarray  # bool: x_t is the argmax of p(· | x_<t)
    truncated: bool = False

    @property
    def first(self) -> int:
        """The text position of the first scored token: 0 after a prompt prefix (a BOS token), else 1."""
        return self.tokens - len(self.logprob)


def ngram_starts(tokens: int, n: int = NGRAM_N, starts: int = NGRAM_STARTS) -> list[int] | None:
    """benbench's starting points (token positions where a predicted n-gram begins), or None when the text
    is too short for them (benbench skips a text of at most n + 1 tokens). Short texts may repeat a point,
    as benbench's do: each repeat counts again."""
    if tokens - n - 1 <= 0:
        return None
    return [int(s) for s in np.linspace(2, tokens - n, num=starts, endpoint=True, dtype=int)]


def ngram_accuracy(scores: TokenScores, n: int = NGRAM_N, starts: int = NGRAM_STARTS) -> float | None:
    """The share of starting points whose next n tokens greedy decoding reproduces exactly."""
    points = ngram_starts(scores.tokens, n, starts)
    if points is None:
        return None
    # greedy[i] is text token first + i; every start is at least 2, so each of its n tokens is scored.
    hits = [bool(scores.greedy[s - scores.first : s - scores.first + n].all()) for s in points]
    return sum(hits) / len(hits)


def _lowest_mean(values: np.ndarray, fraction: float) -> float | None:
    if not len(values):
        return None
    count = max(1, math.floor(len(values) * fraction))  # at least one token: the reference's int() can give none
    return float(np.sort(values)[:count].mean())


def min_k_pp(scores: TokenScores, fraction: float = MIN_K_FRACTION) -> float | None:
    """Min-K%++: the mean of the lowest `fraction` of the tokens' (log-prob − μ) / σ."""
    return _lowest_mean((scores.logprob - scores.mean) / scores.std, fraction)


def min_k(scores: TokenScores, fraction: float = MIN_K_FRACTION) -> float | None:
    """Min-K%: the mean of the lowest `fraction` of the tokens' log-probs."""
    return _lowest_mean(scores.logprob, fraction)


def _text_ids(model: HFModel, text: str) -> tuple[list[int], int, bool]:
    """The pass's ids (prompt prefix, then the text's), the prefix's length, and whether the text was cut:
    a text longer than max_length keeps its beginning, the part a completion probe starts from."""
    prefix = list(model.prompt_prefix)
    ids: list[int] = model.tokenizer(text, add_special_tokens=False).input_ids
    room = model.spec.max_length - len(prefix)
    return [*prefix, *ids[:room]], len(prefix), len(ids) > room


def position_stats(torch: Any, logits: Any, targets: Any) -> tuple[Any, ...]:
    """Per position: the target's log-prob, μ and σ of the log-probs under the distribution, greedy hit."""
    logprobs = torch.log_softmax(logits.float(), dim=-1)
    probs = logprobs.exp()
    mean = (probs * logprobs).sum(-1)
    # Σ p (log p − μ)², not E[(log p)²] − μ², whose difference of near-equal terms loses σ on peaked rows.
    std = (probs * (logprobs - mean[:, None]) ** 2).sum(-1).sqrt().clamp_min(MIN_STD)
    picked = logprobs.gather(-1, targets[:, None])[:, 0]
    return picked, mean, std, logprobs.argmax(-1) == targets


def _vocabulary(model: HFModel) -> int:
    head = model.model.get_output_embeddings()
    return int(head.weight.shape[0]) if head is not None else int(model.model.config.vocab_size)


def _unscored(tokens: int, truncated: bool) -> TokenScores:
    empty = np.zeros(0)
    return TokenScores(tokens, empty, empty, empty, np.zeros(0, dtype=bool), truncated)


def score_texts(model: HFModel, texts: list[str], progress: Progress | None = None) -> list[TokenScores]:
    """One forward pass per text on an `hf`/`embedded` model (tasks/models/hf.py's HFModel): rows sorted by
    length, batched by its token budget and right-padded without a mask (causal attention keeps the pads
    out of every real position, as in its scoring), halved and retried when a batch runs out of GPU memory.
    A text of fewer than two ids (no token with one before it) has nothing to score and no pass."""
    from helmflow.tasks.models.hf_prefix import token_budget_batches

    torch = model.torch
    encoded = [_text_ids(model, text) for text in texts]
    out = [_unscored(len(ids) - prefix, cut) for ids, prefix, cut in encoded]
    chunk = max(1, LOGIT_VALUES // _vocabulary(model))

    def run(batch: list[int]) -> list[TokenScores]:
        rows = [encoded[i][0] for i in batch]
        ids = torch.full((len(rows), max(map(len, rows))), model.tokenizer.pad_token_id, dtype=torch.long)
        for b, row in enumerate(rows):
            ids[b, : len(row)] = torch.tensor(row)
        ids = ids.to(model.device)
        scored = []
        with torch.inference_mode():
            if model.parts is not None:  # the hidden states now, the output head a slice of positions at a time
                decoder, head = model.apart()
                hidden = decoder(input_ids=ids).last_hidden_state
            else:  # a model that runs whole gives every position's logits at once
                hidden, head = model.model(input_ids=ids).logits, None
            for b, i in enumerate(batch):
                _, prefix, truncated = encoded[i]
                pieces: list[list[Any]] = [[], [], [], []]
                for start in range(max(prefix, 1), len(rows[b]), chunk):
                    stop = min(len(rows[b]), start + chunk)
                    states = hidden[b, start - 1 : stop - 1]  # position t − 1 predicts id t
                    logits = head(states) if head is not None else states
                    for kept, value in zip(pieces, position_stats(torch, logits, ids[b, start:stop]), strict=True):
                        kept.append(value.cpu())
                logprob, mean, std, greedy = (torch.cat(p).numpy() for p in pieces)
                scored.append(
                    TokenScores(len(rows[b]) - prefix, logprob.astype(float), mean.astype(float),
                                std.astype(float), greedy.astype(bool), truncated)
                )  # fmt: skip
        return scored

    todo = sorted((i for i, (ids, _, _) in enumerate(encoded) if len(ids) >= 2), key=lambda i: -len(encoded[i][0]))
    done = 0
    for batch in token_budget_batches(todo, model.batch_size, model.max_batch_tokens, lambda i: len(encoded[i][0])):
        # HFModel's own OOM halving (a batch that does not fit is split and retried), not a copy of it.
        for i, scores in zip(batch, model._fitting(run, batch), strict=True):
            out[i] = scores
        done += len(batch)
        if progress:
            progress(done, len(todo))
    return out


__all__ = [
    "MIN_K_FRACTION",
    "MIN_STD",
    "NGRAM_N",
    "NGRAM_STARTS",
    "TokenScores",
    "min_k",
    "min_k_pp",
    "ngram_accuracy",
    "ngram_starts",
    "position_stats",
    "score_texts",
]
