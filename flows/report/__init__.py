"""The static report site (`helmflow report`): leaderboard, matrix, runs, instances, history, compare."""

from __future__ import annotations

from helmflow.flows.report.content import Selection
from helmflow.flows.report.site import SiteSummary, write_site

__all__ = ["Selection", "SiteSummary", "write_site"]
