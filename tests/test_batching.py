"""Batches are bounded by rows, by padded tokens, and by how much of a batch's width a row fills."""

from __future__ import annotations

from helmflow.tasks.models.hf import token_budget_batches
from helmflow.tasks.models.hf_tokens import Sequence


def lengths(batches: list[list[Sequence]]) -> list[list[int]]:
    return [[len(s.input_ids) for s in batch] for batch in batches]


def rows(*sizes: int) -> list[Sequence]:
    return [Sequence(i, [0] * n) for i, n in enumerate(sizes)]


def test_long_rows_share_a_batch_only_within_the_token_budget() -> None:
    # 2048: alone (two rows would pad to 4096 > 4000); 1500 + 1400 = 2 × 1500 ≤ 4000, a third would be 4500.
    # 120 and the rows within 90 % of it: up to 4 rows (the row limit), then the rest.
    sequences = rows(2048, 1500, 1400, 1350, 120, 118, 115, 110, 109, 108)
    assert lengths(token_budget_batches(sequences, 4, 4000)) == [
        [2048],
        [1500, 1400],
        [1350],
        [120, 118, 115, 110],
        [109, 108],
    ]


def test_a_row_much_shorter_than_the_batch_starts_its_own() -> None:
    # 900 would fit 1500's batch by tokens and rows, but as its second row it would be 40 % padding.
    assert lengths(token_budget_batches(rows(1500, 900, 880, 100, 91, 89), 4, 4000)) == [
        [1500],
        [900, 880],
        [100, 91],
        [89],
    ]


def test_short_rows_fill_whole_batches_and_a_row_longer_than_the_budget_still_runs() -> None:
    assert lengths(token_budget_batches(rows(5000, 60, 58, 56), 2, 4096)) == [[5000], [60, 58], [56]]
