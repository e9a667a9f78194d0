"""The warehouse: a DuckDB file and `Warehouse`, the only code in helmflow that runs SQL."""
