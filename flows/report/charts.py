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


# Pixels kept free at each end of a history chart's time axis: the first and last runs' interval rules
# (3 px wide) and points (radius about 4 px) then sit inside the plot, not on its edges or the y axis.
TIME_PADDING_PX = 14
# Share of the value range added above and below the lowest interval end and the highest.
VALUE_PADDING = 0.08


def value_domain(series: pd.DataFrame) -> list[float]:
    """The y domain of a history chart: every value and every interval end, with a margin.

    Vega's default domain covers the encoded fields of each layer and rounds it ("nice"), which can end
    a hair inside an interval; an explicit domain with a margin keeps every interval whole. A metric
    whose values all lie in [0, 1] (a proportion) keeps its margin within [0, 1]."""
    ends = pd.concat([series.value, series.ci_low, series.ci_high]).dropna().astype(float)
    if ends.empty:
        return [0.0, 1.0]
    low, high = float(ends.min()), float(ends.max())
    margin = (high - low) * VALUE_PADDING or max(abs(high) * VALUE_PADDING, 0.01)
    padded = [low - margin, high + margin]
    if low >= 0.0 and high <= 1.0:
        padded = [max(padded[0], 0.0), min(padded[1], 1.0)]
    return padded


def history(series: pd.DataFrame, title: str, lower_is_better: bool) -> dict[str, Any]:
    """One metric over time: the value, its 95% interval as a rule, regressions as red diamonds.

    Layers with no data are left out (vega warns about the empty extent of an empty layer). Both scales
    are set so that every interval shows whole: the value axis spans every interval end (value_domain)
    and the time axis keeps TIME_PADDING_PX free at each end for the first and last runs.
    """
    axis = alt.Axis(format="%Y-%m-%d %H:%M", labelAngle=-30)
    time = alt.X("started_at:T", title="run started (UTC)", axis=axis, scale=alt.Scale(padding=TIME_PADDING_PX))
    base = alt.Chart(series).encode(x=time)
    scale = alt.Scale(domain=value_domain(series), nice=False, zero=False)
    tooltip = [
        "run_id:N",
        alt.Tooltip("value:Q", format=".4f"),
        alt.Tooltip("ci_low:Q", format=".4f"),
        alt.Tooltip("ci_high:Q", format=".4f"),
        "n:Q",
    ]
    value = alt.Y("value:Q", title="value", scale=scale)
    layers = [base.mark_line(point=True, color="#1f77b4").encode(y=value, tooltip=tooltip)]
    if series.ci_low.notna().any():
        rule = base.mark_rule(color="#9ecae1", strokeWidth=3)
        layers.insert(0, rule.encode(y=alt.Y("ci_low:Q", title="value", scale=scale), y2="ci_high:Q"))
    if series.regression.any():
        marked = base.transform_filter("datum.regression").mark_point(shape="diamond", size=160, color="#d62728")
        layers.append(marked.encode(y=value, tooltip=tooltip))
    note = " (lower is better)" if lower_is_better else ""
    return _spec(alt.layer(*layers).properties(width=WIDTH, height=160, title=title + note))


def win_rates(board: pd.DataFrame) -> dict[str, Any]:
    """Overall mean win rate per model, as bars."""
    # The models in order as a list: sort="-x" means overall in the bars but overall_low in the interval
    # layer, and vega warns about the conflict and drops the order.
    order = list(board.sort_values(["overall", "model"], ascending=[False, True]).model)
    base = alt.Chart(board).encode(y=alt.Y("model:N", sort=order, title=None))
    bars = base.mark_bar().encode(
        x=alt.X("overall:Q", title="mean win rate (overall), 95% interval", scale=alt.Scale(domain=[0, 1])),
        tooltip=[
            "model:N",
            alt.Tooltip("overall:Q", format=".3f"),
            alt.Tooltip("overall_low:Q", format=".3f", title="low"),
            alt.Tooltip("overall_high:Q", format=".3f", title="high"),
        ],
    )
    interval = base.mark_rule(color="black").encode(x="overall_low:Q", x2="overall_high:Q")
    return _spec((bars + interval).properties(width=WIDTH))
