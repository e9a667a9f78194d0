"""The store: `Warehouse(path)` owns every SQL statement helmflow runs.

It is assembled from small mixins, one per concern, each in its own module: the run lifecycle
(runs.py), the inference cache (cache.py), typed reads (reads.py) and the user's read-only
query (query.py). Connections are short-lived (db.py): DuckDB allows one writing process per
file, so a Warehouse holds no connection between calls.
"""

from __future__ import annotations

from pathlib import Path

from helmflow.warehouse.cache import InferenceCache
from helmflow.warehouse.contamination import ContaminationStore
from helmflow.warehouse.contamination_probes import ProbeStore
from helmflow.warehouse.db import db_path
from helmflow.warehouse.merge import Merge
from helmflow.warehouse.query import UserQuery
from helmflow.warehouse.reads import Reads
from helmflow.warehouse.report_reads import ReportReads
from helmflow.warehouse.runs import RunLifecycle


class Warehouse(RunLifecycle, InferenceCache, Reads, ReportReads, UserQuery, Merge, ContaminationStore, ProbeStore):
    def __init__(self, path: str | Path | None = None) -> None:
        self.path = db_path(path)

    def check(self) -> None:
        """Open the file once (creating or upgrading it): a path that is not a warehouse fails here, early."""
        with self.connect():
            pass

    def __repr__(self) -> str:
        return f"Warehouse({str(self.path)!r})"
