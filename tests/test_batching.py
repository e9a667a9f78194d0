"""Multiple-choice batches are bounded by rows and by padded tokens."""

from __future__ import annotations

from helmflow.tasks.models.hf import _Sequence, token_budget_batches


def lengths(batches: list[list[_Sequence]]) -> list[list[int]]:
    return [[len(s.input_ids) for s in batch] for batch in batches]


def test_long_rows_share_a_batch_only_within_the_token_budget() -> None:
    sequences = [_Sequence(i, [0] * n) for i, n in enumerate([2048, 1500, 900, 800, 120, 100, 90, 80, 70])]
    # 2048: alone (two rows would pad to 4096 > 4000); 1500 + 900 = 2 × 1500 ≤ 4000, a third would be 4500;
    # 800 and the short ones: up to 4 rows (the row limit), then the rest.
    assert lengths(token_budget_batches(sequences, 4, 4000)) == [[2048], [1500, 900], [800, 120, 100, 90], [80, 70]]


def test_short_rows_fill_whole_batches_and_a_row_longer_than_the_budget_still_runs() -> None:
    sequences = [_Sequence(i, [0] * n) for i, n in enumerate([5000, 60, 50, 40])]
    assert lengths(token_budget_batches(sequences, 2, 4096)) == [[5000], [60, 50], [40]]
