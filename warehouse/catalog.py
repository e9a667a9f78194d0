"""What a helmflow warehouse holds, object by object: the check that a file from elsewhere is one.

A warehouse from another machine (a `merge` source) is untrusted input. A view or macro in it runs
with the rights of the connection that reads it, so a "table" replaced by a view over `read_text`
would copy the merging machine's files into this warehouse. Two locks hold such a file:
- its catalog must be what helmflow's own migrations build at its schema version: every table a base
  table with the expected columns and types, every view one of helmflow's, nothing else (no extra
  table, view, macro, sequence, type or schema); anything else is refused, naming the object;
- it is read only on connections whose file-system access is off (DuckDB's
  `enable_external_access = false`), so even a helmflow view whose body was rewritten reads no file.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from pathlib import Path

import duckdb

from helmflow.warehouse.db import WarehouseError, apply_migrations

# The connection setting that keeps an attached or opened file from reaching any other file.
SEALED = {"enable_external_access": False}


@dataclass(frozen=True)
class Catalog:
    """A database's own objects: tables with their (column, type) lists, view names, and the rest by kind."""

    tables: dict[str, tuple[tuple[str, str], ...]]
    views: frozenset[str]
    others: tuple[tuple[str, str], ...]  # (kind, name) of every macro, sequence, type, index and extra schema


def read_catalog(con: duckdb.DuckDBPyConnection, database: str) -> Catalog:
    """The catalog of one database of the connection (`database` as DuckDB names it: its alias)."""
    columns: dict[str, list[tuple[str, str]]] = {}
    for schema, table, column, kind in con.execute(
        "select schema_name, table_name, column_name, data_type from duckdb_columns() "
        "where database_name = ? and table_name in (select table_name from duckdb_tables() where database_name = ?) "
        "order by schema_name, table_name, column_index",
        [database, database],
    ).fetchall():
        columns.setdefault(_qualified(schema, table), []).append((column, kind))
    tables = {name: tuple(cols) for name, cols in columns.items()}
    [(table_count,)] = con.execute(
        "select count(*) from duckdb_tables() where database_name = ?", [database]
    ).fetchall()
    if table_count != len(tables):  # a table without columns cannot be made, but say so rather than miss one
        raise WarehouseError(f"{database}: a table has no columns")
    views = frozenset(
        _qualified(s, v)
        for s, v in con.execute(
            "select schema_name, view_name from duckdb_views() where database_name = ? and not internal", [database]
        ).fetchall()
    )
    others = con.execute(
        "select 'macro', function_name from duckdb_functions() where database_name = ? and not internal "
        "union all select 'sequence', sequence_name from duckdb_sequences() where database_name = ? "
        "union all select 'type', type_name from duckdb_types() where database_name = ? and not internal "
        "union all select 'index', index_name from duckdb_indexes() where database_name = ? "
        "union all select 'schema', schema_name from duckdb_schemas() "
        "  where database_name = ? and not internal and schema_name != 'main' "
        "order by 1, 2",
        [database] * 5,
    ).fetchall()
    return Catalog(tables, views, tuple((str(k), str(n)) for k, n in others))


def _qualified(schema: str, name: str) -> str:
    return name if schema == "main" else f"{schema}.{name}"


@cache
def expected_catalog(version: int) -> Catalog:
    """What helmflow's migrations up to `version` build, read from an in-memory database built by them."""
    con = duckdb.connect(":memory:")
    try:
        apply_migrations(con, up_to=version)
        [(database,)] = con.execute("select current_database()").fetchall()
        return read_catalog(con, database)
    finally:
        con.close()


def differences(found: Catalog, expected: Catalog) -> list[str]:
    """Each way `found` is not `expected`, one phrase per object, in a stable order."""
    problems = []
    for name, columns in sorted(expected.tables.items()):
        if name in found.views:
            problems.append(f"'{name}' is a view, not a base table")
        elif name not in found.tables:
            problems.append(f"table '{name}' is missing")
        elif found.tables[name] != columns:
            problems.append(f"table '{name}' {_column_difference(found.tables[name], columns)}")
    for name in sorted(expected.views):
        if name in found.tables:
            problems.append(f"'{name}' is a table, not helmflow's view")
        elif name not in found.views:
            problems.append(f"view '{name}' is missing")
    known = set(expected.tables) | expected.views
    problems += [f"table '{n}' is not part of a helmflow warehouse" for n in sorted(set(found.tables) - known)]
    problems += [f"view '{n}' is not part of a helmflow warehouse" for n in sorted(found.views - known)]
    extra = [(k, n) for k, n in found.others if (k, n) not in expected.others]
    problems += [f"{k} '{n}' is not part of a helmflow warehouse" for k, n in extra]
    return problems


def _column_difference(found: tuple[tuple[str, str], ...], expected: tuple[tuple[str, str], ...]) -> str:
    """How a table's (column, type) list differs from the expected one, in words."""
    have, want = dict(found), dict(expected)
    if missing := [f"{c} {t}" for c, t in expected if c not in have]:
        return f"lacks column(s) {', '.join(missing)}"
    if extra := [f"{c} {t}" for c, t in found if c not in want]:
        return f"has column(s) helmflow does not make: {', '.join(extra)}"
    if retyped := [f"{c} is {have[c]}, expected {t}" for c, t in expected if have[c] != t]:
        return f"has other column types: {'; '.join(retyped)}"
    return f"has its columns in another order: {', '.join(c for c, _ in found)}"


def check_catalog(con: duckdb.DuckDBPyConnection, database: str, version: int, source: Path | str) -> None:
    """Refuse a database that is not exactly a helmflow warehouse at `version`, naming the first odd object
    (and how many more there are)."""
    problems = differences(read_catalog(con, database), expected_catalog(version))
    if problems:
        more = f" (and {len(problems) - 1} more difference(s))" if len(problems) > 1 else ""
        raise WarehouseError(
            f"{source}: not a helmflow warehouse at schema version {version}: {problems[0]}{more}; nothing was merged"
        )
