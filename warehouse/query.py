"""`helmflow query`: the user's SQL on a connection the engine itself keeps read-only and local.

The SQL is untrusted. Rather than parse it ourselves, the connection is opened read-only with
DuckDB's own guards: `enable_external_access = false` (no COPY TO, ATTACH, EXPORT, INSTALL/LOAD,
read_csv/read_text of other files) and `lock_configuration = true` (no SET can lift that).
DuckDB's parser splits the text; more than one statement is refused, since only the last
result would show.
"""

from __future__ import annotations

import duckdb
import pandas as pd

from helmflow.warehouse.db import Connected

LOCKED = {"enable_external_access": False, "lock_configuration": True}


class QueryRefused(ValueError):
    """SQL that the read-only query connection will not run; the message says why."""


class UserQuery(Connected):
    """Mixin of Warehouse."""

    def query(self, sql: str) -> pd.DataFrame:
        with self.connect(read_only=True, config=LOCKED) as con:
            try:
                statements = con.extract_statements(sql)
            except duckdb.Error as exc:
                raise QueryRefused(f"query failed: {exc}") from exc
            if len(statements) != 1:
                raise QueryRefused(
                    f"query: give exactly one SQL statement (got {len(statements)}); run `helmflow query` once for each"
                )
            try:
                return con.execute(sql).df()
            except duckdb.Error as exc:
                raise QueryRefused(f"query failed: {exc}") from exc
