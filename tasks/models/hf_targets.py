"""The scored positions of one forward pass, and the summed log-prob of each target from them.

Every scorer of `hf` (whole sequences, packed rows, cached suffixes) ends the same way: the hidden
state at each position that predicts a target token goes through the output head (49,152 × 576 for
SmolLM2, the costliest single product of a short pass), then a log-softmax, and each target's
tokens' log-probs are summed. The choices of a `multiple_choice_separate` question packed in one row
all predict their first token from the same position (the context's last token, in the shared
prefix): that position's logits are computed once, not once per choice.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class ScoredPositions:
    """Where each target token is predicted: (row, column) of the batch, each position kept once."""

    targets_per_row: list[int]
    positions: dict[tuple[int, int], int] = field(default_factory=dict)
    # (position index, row, the row's target index, token id), one per target token
    reads: list[tuple[int, int, int, int]] = field(default_factory=list)

    def add(self, row: int, target: int, columns: list[int] | range, tokens: list[int]) -> None:
        """Target `target` of row `row`: each of its tokens and the column whose hidden state predicts it."""
        for column, token in zip(columns, tokens, strict=True):
            index = self.positions.setdefault((row, column), len(self.positions))
            self.reads.append((index, row, target, token))

    def sums(self, model: Any, hidden: Any, are_logits: bool = False) -> list[list[float]]:
        """Each row's targets' summed log-probs, from the pass's last hidden states [rows, columns, width]
        (or its logits, for a model whose output head cannot be called apart)."""
        torch = model.torch
        rows = torch.tensor([r for r, _ in self.positions], device=hidden.device)
        cols = torch.tensor([c for _, c in self.positions], device=hidden.device)
        picked = hidden[rows, cols]
        logits = picked if are_logits else model.apart()[1](picked)
        logprobs = torch.log_softmax(logits.float(), dim=-1)
        index = torch.tensor([i for i, _, _, _ in self.reads], device=logprobs.device)
        token = torch.tensor([t for _, _, _, t in self.reads], device=logprobs.device)
        values = logprobs[index, token].cpu().tolist()
        out = [[0.0] * n for n in self.targets_per_row]
        for (_, row, target, _), value in zip(self.reads, values, strict=True):
            out[row][target] += value
        return out
