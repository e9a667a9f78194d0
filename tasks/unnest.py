"""One row per element of a list column: how a query with its candidate passages becomes one row per pair.

HELM's ranking scenarios (MS MARCO) hold a query and its passages in one row; the binary ranking adapter asks
about each passage on its own. A spec's `source.unnest: passages` turns such a row into one row per passage,
the column holding that element, `<column>_index` its 0-based position, every other column as it was.

A list column comes in two shapes: a list of dicts (JSON files), or, from `datasets`, a dict of parallel lists
(a Sequence of a dict feature: {"passage_text": [...], "is_selected": [...]}); the second is turned into the
first, and lists of unequal lengths are an error naming the row.
"""

from __future__ import annotations

from typing import Any

Rows = list[tuple[str, dict[str, Any]]]


class UnnestError(ValueError):
    """A row whose column is not a list (or a dict of equal-length lists); the message names the row."""


def elements(value: Any, origin: str, column: str) -> list[Any]:
    """The column's elements, each a dict when the column is a dict of parallel lists."""
    if isinstance(value, list | tuple):
        return list(value)
    if isinstance(value, dict) and all(isinstance(v, list | tuple) for v in value.values()):
        lengths = {len(v) for v in value.values()}
        if len(lengths) > 1:
            sizes = ", ".join(f"{k}: {len(v)}" for k, v in value.items())
            raise UnnestError(f"{origin}: column '{column}' holds lists of different lengths ({sizes})")
        count = lengths.pop() if lengths else 0
        return [{k: v[i] for k, v in value.items()} for i in range(count)]
    raise UnnestError(
        f"{origin}: column '{column}' (source.unnest) should hold a list, or a dict of lists, "
        f"got {type(value).__name__}"
    )


def unnest(rows: Rows, column: str) -> Rows:
    """Each row once per element of `column` (a row with none gives none), origins "<row> element <i>"."""
    out: Rows = []
    for origin, row in rows:
        if column not in row:
            raise UnnestError(f"{origin}: no column '{column}' to unnest (source.unnest); it has {', '.join(row)}")
        for index, element in enumerate(elements(row[column], origin, column)):
            out.append((f"{origin} element {index}", {**row, column: element, f"{column}_index": index}))
    return out
