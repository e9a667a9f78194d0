"""Which requests share a leading run of tokens, and so can compute it once.

In MMLU 5-shot every question of a subject begins with the same instructions and five exemplars
(~500 tokens) before its own ~60; with `multiple_choice_separate` every choice of an instance
repeats the instance's context. A model that scores each sequence whole recomputes those tokens
every time. Here the sequences are grouped by their longest common prefix of *token ids* (not
strings, so any spec benefits without a hint in its YAML): sorted, neighbours' common-prefix
lengths form the LCP array, and the ranges of that array are the nodes of the token trie. A node
may become a group (its members share its depth's tokens) or hand its members down to its
children (longer prefixes, fewer members each); the choice that saves the most tokens wins.

Only the grouping lives here, free of torch; `hf.py` computes each group's prefix once and the
members' remaining tokens against its key/value cache.
"""

from __future__ import annotations

from dataclasses import dataclass

# A prefix shorter than this is not worth a pass of its own and a copy of its key/value cache per row.
MIN_SHARED_TOKENS = 8
# What a group costs beyond its tokens (its own pass, its cache copied per row), in tokens saved.
GROUP_COST_TOKENS = 4
# How deep the trie is searched for longer prefixes; deeper nodes are taken whole.
MAX_DEPTH = 48


@dataclass(frozen=True)
class PrefixGroup:
    """Sequences (indices into the list given to `prefix_groups`) whose first `length` tokens are equal."""

    length: int
    members: tuple[int, ...]


def common_prefix_length(a: list[int], b: list[int]) -> int:
    n = min(len(a), len(b))
    i = 0
    while i < n and a[i] == b[i]:
        i += 1
    return i


def prefix_groups(
    sequences: list[list[int]], limits: list[int], min_tokens: int = MIN_SHARED_TOKENS
) -> list[PrefixGroup]:
    """Groups of sequences that share a prefix worth computing once; sequences in no group share nothing.

    `limits[i]` is the longest prefix sequence i may share (`hf_prefix.shareable_length`: up to and
    including the position that predicts its first scored token).
    """
    order = sorted(range(len(sequences)), key=sequences.__getitem__)
    lcp = [common_prefix_length(sequences[order[k]], sequences[order[k + 1]]) for k in range(len(order) - 1)]
    _, chosen = _best(order, lcp, limits, 0, len(order), min_tokens, 0)
    return [PrefixGroup(length, tuple(order[start:end])) for length, start, end in chosen]


def _best(
    order: list[int], lcp: list[int], limits: list[int], start: int, end: int, min_tokens: int, depth: int
) -> tuple[int, list[tuple[int, int, int]]]:
    """Tokens saved, and (prefix length, start, end) groups, for the sorted sequences order[start:end]."""
    if end - start < 2:
        return 0, []
    shared = min(lcp[start : end - 1])
    length = min(shared, min(limits[order[k]] for k in range(start, end)))
    whole = (end - start - 1) * length - GROUP_COST_TOKENS if length >= min_tokens else 0
    as_one = [(length, start, end)] if whole > 0 else []
    if depth >= MAX_DEPTH:
        return max(whole, 0), as_one
    # The trie's children: the runs between the places where the common prefix is only `shared` long.
    cuts = [k + 1 for k in range(start, end - 1) if lcp[k] == shared]  # at least one: `shared` is the minimum
    saved, children = 0, []
    for child_start, child_end in zip([start, *cuts], [*cuts, end], strict=True):
        value, groups = _best(order, lcp, limits, child_start, child_end, min_tokens, depth + 1)
        saved += value
        children.extend(groups)
    return (saved, children) if saved > whole else (max(whole, 0), as_one)
