"""The report's charts as Vega-Lite specs, built with altair; the page renders them with vega-embed.

altair only builds the JSON here (no renderer, no network): the site ships vega, vega-lite and
vega-embed in its assets folder, at the versions altair's schema names.
"""

from __future__ import annotations

from typing import Any

import altair as alt
import pandas as pd

WIDTH = 520


def _spec(chart: alt.TopLevelMixin) -> dict[str, Any]:
    spec = chart.to_dict()
    spec.pop("$schema", None)  # a URL: the page needs no schema to render
    return spec


def reliability(bins: pd.DataFrame) -> dict[str, Any]:
    """Calibration reliability diagram: accuracy against mean confidence per equal-mass bin, and y = x."""
    diagonal = alt.Chart(pd.DataFrame({"x": [0.0, 1.0], "y": [0.0, 1.0]})).mark_line(strokeDash=[4, 4], color="gray")
    diagonal = diagonal.encode(x="x:Q", y="y:Q")
    points = (
        alt.Chart(bins)
        .mark_circle(color="#1f77b4")
        .encode(
            x=alt.X("confidence:Q", title="mean confidence in bin", scale=alt.Scale(domain=[0, 1])),
            y=alt.Y("accuracy:Q", title="accuracy in bin", scale=alt.Scale(domain=[0, 1])),
            size=alt.Size("n:Q", title="instances"),
            tooltip=[
                "bin:O",
                "n:Q",
                alt.Tooltip("confidence:Q", format=".3f"),
                alt.Tooltip("accuracy:Q", format=".3f"),
            ],
        )
    )
    line = alt.Chart(bins).mark_line(color="#1f77b4").encode(x="confidence:Q", y="accuracy:Q")
    return _spec((diagonal + line + points).properties(width=320, height=320))


def history(series: pd.DataFrame, title: str, lower_is_better: bool) -> dict[str, Any]:
    """One metric over time: the value, its 95% interval as a rule, regressions as red diamonds.

    Layers with no data are left out (vega warns about the empty extent of an empty layer).
    """
    axis = alt.Axis(format="%Y-%m-%d %H:%M", labelAngle=-30)
    base = alt.Chart(series).encode(x=alt.X("started_at:T", title="run started (UTC)", axis=axis))
    tooltip = [
        "run_id:N",
        alt.Tooltip("value:Q", format=".4f"),
        alt.Tooltip("ci_low:Q", format=".4f"),
        alt.Tooltip("ci_high:Q", format=".4f"),
        "n:Q",
    ]
    layers = [base.mark_line(point=True, color="#1f77b4").encode(y=alt.Y("value:Q", title="value"), tooltip=tooltip)]
    if series.ci_low.notna().any():
        layers.insert(0, base.mark_rule(color="#9ecae1", strokeWidth=3).encode(y="ci_low:Q", y2="ci_high:Q"))
    if series.regression.any():
        marked = base.transform_filter("datum.regression").mark_point(shape="diamond", size=160, color="#d62728")
        layers.append(marked.encode(y="value:Q", tooltip=tooltip))
    note = " (lower is better)" if lower_is_better else ""
    return _spec(alt.layer(*layers).properties(width=WIDTH, height=160, title=title + note))


def win_rates(board: pd.DataFrame) -> dict[str, Any]:
    """Overall mean win rate per model, as bars."""
    chart = (
        alt.Chart(board)
        .mark_bar()
        .encode(
            x=alt.X("overall:Q", title="mean win rate (overall)", scale=alt.Scale(domain=[0, 1])),
            y=alt.Y("model:N", sort="-x", title=None),
            tooltip=["model:N", alt.Tooltip("overall:Q", format=".3f")],
        )
    )
    return _spec(chart.properties(width=WIDTH))
