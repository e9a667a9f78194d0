"""Scoring sequences that share a prefix with the prefix computed once, and the batching of rows.

`shared_prefix.prefix_groups` says which sequences share which prefix; here each group is scored in
one of two ways, chosen by its size:
- packed (`PackedRow`): a small group (the four choices of a `multiple_choice_separate` question) in one
  row, its prefix once and then every member's own tokens, under a tree-shaped attention mask;
- cached (`CachedSuffix`): a large group (a subject's 5-shot exemplars, ~500 tokens shared by a hundred
  questions) has its prefix's key/value cache computed once and copied into each member's row.
Either way every scored position sees the same tokens at the same positions as in the whole sequence, so
the log-probs equal the whole computation's up to float rounding (tests/test_shared_prefix.py).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property
from typing import TYPE_CHECKING, Any, TypeVar

from helmflow.tasks.models.hf_targets import ScoredPositions
from helmflow.tasks.models.shared_prefix import PrefixGroup

if TYPE_CHECKING:
    from helmflow.tasks.models.hf import HFModel
    from helmflow.tasks.models.hf_tokens import Sequence

Row = TypeVar("Row")
# A row joins a batch only if it is at least this share of the batch's longest row (see token_budget_batches).
MIN_FILL = 0.9
# (sequences, their target sums, the seconds they took): hf.HFModel.loglikelihood's bookkeeping.
Record = Callable[[list["Sequence"], list[list[float]], float], None]


def _row_length(row: Any) -> int:
    return len(row.input_ids)


def token_budget_batches(
    rows: list[Row],
    size: int,
    max_tokens: int,
    length: Callable[[Row], int] = _row_length,
    min_fill: float = MIN_FILL,
) -> list[list[Row]]:
    """Consecutive batches of rows sorted longest first: at most `size` rows, at most `max_tokens`
    padded tokens (rows × the first row's length), and rows at least `min_fill` of the first row's
    length; at least one row each.

    A fixed row count pads a batch of long prompts (5-shot MMLU runs to 2,048 tokens) to its
    longest row and pays attention's quadratic cost on every padded row; bounding the padded
    tokens keeps long batches small and short ones full. Where lengths fall fast (the long questions
    of ARC-Challenge), a row much shorter than the batch's first starts a batch of its own instead of
    being padded: 16-row batches padded ARC's 16,212 tokens by 9.5 %, these by 3.8 % (`min_fill` 0:
    no such bound).
    """
    batches: list[list[Row]] = []
    for row in rows:
        current = batches[-1] if batches else None
        if (
            current
            and len(current) < size
            and (len(current) + 1) * length(current[0]) <= max_tokens
            and length(row) >= min_fill * length(current[0])
        ):
            current.append(row)
        else:
            batches.append([row])
    return batches


def shareable_length(sequence: Sequence) -> int:
    """How much of a sequence a group may compute once for it: up to and including its first scored
    position (the context's last token, whose hidden state predicts the first target: a packed row
    computes it, the cached path keeps it with the prefix's cache), and never the whole sequence."""
    return min(min(first for _, first, _ in sequence.targets) + 1, len(sequence.input_ids) - 1)


def _columns(first: int, count: int, prefix_length: int, start: int, prefix_columns: bool = True) -> list[int]:
    """Where a row holds the hidden states that predict a target's tokens (whole-sequence positions
    first…first+count-1): after the prefix, in the member's own tokens, which begin at column `start`;
    inside it (only its last token can be, see shareable_length), at its own column when the row holds
    the prefix (`prefix_columns`), else at column 0, where the cached path puts the prefix's last token."""
    return [
        start + pos - prefix_length if pos >= prefix_length else (pos if prefix_columns else 0)
        for pos in range(first, first + count)
    ]


@dataclass
class CachedSuffix:
    """A sequence whose first `prefix_length` tokens are computed once for its group: the rest, the
    group's key/value cache of the prefix ([layers, 2, kv heads, prefix_length, head dim]) and the
    hidden state of the prefix's last token ([width]), which may predict the first target."""

    sequence: Sequence
    prefix_length: int
    prefix_cache: Any
    prefix_hidden: Any

    @cached_property
    def input_ids(self) -> list[int]:
        return self.sequence.input_ids[self.prefix_length :]


@dataclass
class PackedRow:
    """A small group in one row: its prefix once, then each member's own tokens one after another.

    Each member's tokens attend to the prefix and to their own earlier tokens only (a tree-shaped
    mask) and sit at the positions they have in the whole sequence, so every score equals the
    whole sequence's. One pass, no key/value cache to copy: for the four choices of one question
    (`multiple_choice_separate`) this is cheaper than a prefix pass and a cached suffix pass.
    """

    members: list[Sequence]
    prefix_length: int

    @cached_property
    def input_ids(self) -> list[int]:
        first = self.members[0].input_ids[: self.prefix_length]
        return first + [t for m in self.members for t in m.input_ids[self.prefix_length :]]


def score_groups(model: HFModel, groups: list[PrefixGroup], sequences: list[Sequence], record: Record) -> None:
    """Score every group's members, each group packed or cached (see the module's docstring)."""

    # A group whose members fit in one row with their prefix once is packed (one pass, no cache copies).
    def packed_length(group: PrefixGroup) -> int:
        return group.length + sum(len(sequences[m].input_ids) - group.length for m in group.members)

    packed: list[PackedRow] = []
    cached: list[PrefixGroup] = []
    for g in groups:
        if packed_length(g) <= model.packed_row_tokens:
            packed.append(PackedRow([sequences[m] for m in g.members], g.length))
        else:
            cached.append(g)
    cached.sort(key=lambda g: -g.length)
    packed.sort(key=lambda r: -len(r.input_ids))
    for batch in token_budget_batches(packed, model.batch_size, model.max_batch_tokens):
        began = time.perf_counter()
        sums = model._fitting(lambda rows: packed_logprobs(model, rows), batch)
        elapsed = time.perf_counter() - began
        batch_members = sum(len(r.members) for r in batch)
        for row, row_sums in zip(batch, sums, strict=True):
            offsets = [0]
            for member in row.members:
                offsets.append(offsets[-1] + len(member.targets))
            member_sums = [row_sums[offsets[i] : offsets[i + 1]] for i in range(len(row.members))]
            share = elapsed * len(row.members) / batch_members
            record(row.members, member_sums, share)
    for wave in token_budget_batches(cached, model.batch_size, model.max_batch_tokens, lambda g: g.length):
        began = time.perf_counter()
        prefixes = [sequences[g.members[0]].input_ids[: g.length] for g in wave]
        caches = model._fitting(lambda rows: prefix_caches(model, rows), prefixes)
        prefix_s = time.perf_counter() - began
        members = sum(len(g.members) for g in wave)
        suffixes = [
            CachedSuffix(sequences[m], group.length, cache, hidden)
            for group, (cache, hidden) in zip(wave, caches, strict=True)
            for m in group.members
        ]
        suffixes.sort(key=lambda r: -len(r.input_ids))
        for batch in token_budget_batches(suffixes, model.batch_size, model.max_batch_tokens):
            began = time.perf_counter()
            sums = model._fitting(lambda rows: suffix_logprobs(model, rows), batch)
            # The shared pass's time is shared by every member of the wave.
            elapsed = time.perf_counter() - began + prefix_s * len(batch) / members
            record([row.sequence for row in batch], sums, elapsed)
        # The rows hold views of the wave's whole cache: free it before the next wave's prefixes run.
        del caches, suffixes, batch


def prefix_caches(model: HFModel, prefixes: list[list[int]]) -> list[tuple[Any, Any]]:
    """Each prefix's key/value cache, [layers, 2, kv heads, its length, head dim], and its last token's
    hidden state, from one padded pass."""
    torch = model.torch
    width = max(len(p) for p in prefixes)
    ids = torch.full((len(prefixes), width), model.tokenizer.pad_token_id, dtype=torch.long)
    for b, prefix in enumerate(prefixes):
        ids[b, : len(prefix)] = torch.tensor(prefix)
    with torch.inference_mode():
        # Right padding needs no mask (see HFModel._scored_logprobs): the pads' keys are cut off below.
        out = model.apart()[0](input_ids=ids.to(model.device), use_cache=True)
        # Right padding: each row's pads come after its prefix, so they changed nothing before them.
        stacked = torch.stack([torch.stack([layer.keys, layer.values]) for layer in out.cache.layers])
        hidden = out.last_hidden_state
    return [(stacked[:, :, b, :, : len(p)], hidden[b, len(p) - 1]) for b, p in enumerate(prefixes)]


def suffix_logprobs(model: HFModel, batch: list[CachedSuffix]) -> list[list[float]]:
    """HFModel._scored_logprobs for rows whose prefix is already in a cache: only the rest goes through the model.

    Each row's cache is copied into a padded batch cache (prefix pads masked out); its own tokens get
    the positions that follow its prefix, so every attention score equals the whole sequence's.
    """
    torch = model.torch
    caches = [row.prefix_cache for row in batch]
    layers, _, heads, _, head_dim = caches[0].shape
    past_width = max(row.prefix_length for row in batch)
    width = max(len(row.input_ids) for row in batch)
    past = caches[0].new_zeros((layers, 2, len(batch), heads, past_width, head_dim))
    ids = torch.full((len(batch), width), model.tokenizer.pad_token_id, dtype=torch.long)
    mask = torch.zeros((len(batch), past_width + width), dtype=torch.long)
    positions = torch.zeros((len(batch), width), dtype=torch.long)
    scored = ScoredPositions([len(row.sequence.targets) for row in batch])
    for b, row in enumerate(batch):
        n, own = row.prefix_length, row.input_ids
        past[:, :, b, :, :n] = row.prefix_cache
        ids[b, : len(own)] = torch.tensor(own)
        mask[b, :n] = 1
        mask[b, past_width : past_width + len(own)] = 1
        positions[b] = torch.arange(n, n + width)
        for t, (_, first, tokens) in enumerate(row.sequence.targets):
            # Column 0 is the prefix's last token (prepended below), the row's own tokens follow it.
            scored.add(b, t, _columns(first, len(tokens), n, 1, prefix_columns=False), tokens)
    from transformers import DynamicCache

    cache = DynamicCache(ddp_cache_data=[(past[i, 0], past[i, 1]) for i in range(layers)], config=model.model.config)
    device = model.device
    with torch.inference_mode():
        hidden = model.apart()[0](
            input_ids=ids.to(device),
            # Only rows whose prefix is shorter than the longest have pads (between prefix and own tokens).
            attention_mask=mask.to(device) if any(r.prefix_length < past_width for r in batch) else None,
            position_ids=positions.to(device),
            cache=cache,
            use_cache=True,
        ).last_hidden_state
        prefix_hidden = torch.stack([row.prefix_hidden for row in batch])[:, None].to(hidden.device)
        return scored.sums(model, torch.cat([prefix_hidden, hidden], dim=1))


def packed_logprobs(model: HFModel, batch: list[PackedRow]) -> list[list[float]]:
    """HFModel._scored_logprobs for packed rows: per row, every member's target sums, member after member."""
    torch = model.torch
    width = max(len(row.input_ids) for row in batch)
    ids = torch.full((len(batch), width), model.tokenizer.pad_token_id, dtype=torch.long)
    positions = torch.zeros((len(batch), width), dtype=torch.long)
    causal = torch.ones((width, width), dtype=torch.bool).tril()
    # Pads attend to themselves only (a row with nothing to attend to would be NaN); nothing reads them.
    allowed = torch.eye(width, dtype=torch.bool).repeat(len(batch), 1, 1)
    scored = ScoredPositions([sum(len(m.targets) for m in row.members) for row in batch])
    for b, row in enumerate(batch):
        p = row.prefix_length
        ids[b, : len(row.input_ids)] = torch.tensor(row.input_ids)
        positions[b, :p] = torch.arange(p)
        allowed[b, :p, :p] = causal[:p, :p]
        t_base, start = 0, p
        for member in row.members:
            n = len(member.input_ids) - p
            end = start + n
            positions[b, start:end] = torch.arange(p, p + n)
            allowed[b, start:end, :p] = True
            allowed[b, start:end, start:end] = causal[:n, :n]
            for t, (_, first, tokens) in enumerate(member.targets):
                scored.add(b, t_base + t, _columns(first, len(tokens), p, start), tokens)
            t_base += len(member.targets)
            start = end
    device = model.device
    with torch.inference_mode():
        hidden = model.apart()[0](
            input_ids=ids.to(device),
            attention_mask=allowed[:, None].to(device),
            position_ids=positions.to(device),
        ).last_hidden_state
        return scored.sums(model, hidden)
