"""`make bench-refresh`: two refreshes of the quickstart suite into a new warehouse.

The first finds nothing and runs everything; the second, with nothing changed, should find every
model × scenario fresh and make no model call. Prints `key value` lines.
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path


def main() -> int:
    from helmflow.flows.cli import _quiet_environment

    _quiet_environment(verbose=False)
    from helmflow.flows.refresh import refresh
    from helmflow.warehouse.store import Warehouse

    db = str(Path(tempfile.mkdtemp(prefix="helmflow-refresh-")) / "refresh.duckdb")
    figures = []
    for attempt in ("first", "second"):
        began = time.perf_counter()
        report = refresh(["quickstart"], None, db)
        seconds = time.perf_counter() - began
        calls = Warehouse(db).model_calls(report.ran)
        figures.append(seconds)
        print(f"{attempt}_refresh_seconds   {seconds:.1f}")
        print(f"{attempt}_refresh_runs      {len(report.ran)}")
        print(f"{attempt}_refresh_fresh     {len(report.fresh)}")
        print(f"{attempt}_refresh_model_calls {calls}")
    print(f"second_over_first        {figures[1] / figures[0]:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
