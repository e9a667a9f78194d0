"""The static report site (`helmflow report`): leaderboard, matrix, runs, instances, history, compare.

Its names are imported on first use (PEP 562), so that a light module of the package (answers.py,
which `helmflow run` prints from) loads without the templates, altair and the history reads.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from helmflow.flows.report.content import Selection
    from helmflow.flows.report.site import SiteSummary, write_site

__all__ = ["Selection", "SiteSummary", "write_site"]


def __getattr__(name: str) -> Any:
    if name == "Selection":
        from helmflow.flows.report.content import Selection

        return Selection
    if name in ("SiteSummary", "write_site"):
        from helmflow.flows.report import site

        return getattr(site, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
