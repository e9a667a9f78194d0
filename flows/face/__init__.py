"""helmflow: holistic, HELM-style evaluation of language models as a declarative pipeline.

    from helmflow import evaluate, open_warehouse

    results = evaluate("mmlu", max_instances=20, db="my.duckdb")
    results.metrics                      # one row per run and headline metric, with its 95% interval
    open_warehouse("my.duckdb").query("select * from latest_metrics")

This file is the wheel's `helmflow/__init__.py` (pyproject.toml maps the package `helmflow` to this
folder, because the design card fixes the repository's top level). The API itself is
helmflow.flows.api; it is imported on first use, so `import helmflow.tasks` or `helmflow.specs`
does not import Prefect.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from helmflow.flows.api import Results, evaluate, open_warehouse, resume

__all__ = ["Results", "evaluate", "open_warehouse", "resume"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from helmflow.flows import api

        return getattr(api, name)
    raise AttributeError(f"module 'helmflow' has no attribute '{name}'")
