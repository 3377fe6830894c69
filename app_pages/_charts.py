"""Plotly figures of the app. They only draw what the library computed (no statistics here).

The phases, noise band and perception thresholds are the library's
(:mod:`symmetry.trends`), drawn as in the PDF/HTML report (:mod:`symmetry.report`):
swelling (early) and settling phases shaded, the pre-op value's noise band in
blue, the perception thresholds as dashed red lines around the pre-op value.
"""

from __future__ import annotations

import math
from typing import Iterable

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from symmetry.trends import EARLY_MAX_DAYS, NOISE_MM, SETTLING_MAX_DAYS, perception_threshold_mm

from ._common import EXPRESSION_SHORT, PHASE_LABELS, expression_label, measure_label

SWELLING_COLOUR = "#f3d9b1"
SETTLING_COLOUR = "#f8ecd9"
NOISE_COLOUR = "rgba(120,170,220,0.25)"
THRESHOLD_COLOUR = "#b0413e"
SIDE_COLOURS = {"affected": "#c0392b", "healthy": "#2471a3", "midline": "#34495e", "left": "#00a8e8",
                "right": "#ff8c00"}
PHASE_COLOURS = {"pre-op": "#34495e", "early": "#d68910", "settling": "#b9770e", "late": "#1e8449"}
#: One colour per cohort, in sorted order, the same in every cohort plot.
GROUP_COLOURS = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#8c564b", "#e377c2"]
_LAYOUT = dict(template="plotly_white", margin=dict(l=10, r=10, t=50, b=10), font=dict(size=13))


def shade_phases(fig: go.Figure, *, row: int | None = None, col: int | None = None, labels: bool = True) -> None:
    """Shade the swelling (early) and settling phases after the procedure (day 0)."""
    kw: dict = {} if row is None else {"row": row, "col": col}
    for x0, x1, colour, text, where in ((0, EARLY_MAX_DAYS, SWELLING_COLOUR, "swelling", "top left"),
                                        (EARLY_MAX_DAYS, SETTLING_MAX_DAYS, SETTLING_COLOUR, "settling", "top right")):
        notes = dict(annotation_text=text, annotation_position=where, annotation_font_size=11) if labels else {}
        fig.add_vrect(x0=x0, x1=x1, fillcolor=colour, opacity=0.7, line_width=0, layer="below", **notes, **kw)
    fig.add_vline(x=0, line_width=1, line_color="#555", **kw)


def trend_figure(series: pd.DataFrame, expression: str, measure: str, sides: Iterable[str], *,
                 noise_mm: float = NOISE_MM, height: int = 340) -> go.Figure:
    """One measure of one patient over days from the procedure.

    ``series`` is :attr:`symmetry.trends.PatientOutcomes.series`. Swelling-biased visits
    (early, settling) are drawn as open markers. The noise band and perception thresholds
    are drawn around the pre-op value of the first side given (mm measures only).
    """
    fig = go.Figure()
    d0 = series[(series["expression"] == expression) & (series["measure"] == measure)]
    d0 = d0.dropna(subset=["days_from_procedure", "value"])
    unit = str(d0["unit"].iloc[0]) if not d0.empty else ""
    sides = [s for s in sides if s in set(d0["side"])]
    xs: list[float] = []
    if not d0.empty:
        shade_phases(fig)
    for k, side in enumerate(sides):
        d = d0[d0["side"] == side].sort_values("days_from_procedure")
        x = d["days_from_procedure"].astype(float).to_numpy()
        xs += list(x)
        y = d["value"].to_numpy(dtype=float)
        biased = d["phase"].isin(["early", "settling"]).to_numpy()
        colour = SIDE_COLOURS.get(side, "#333")
        fig.add_trace(go.Scatter(
            x=x, y=y, mode="lines+markers",
            name=f"{side} side" if side != "midline" else ("|L − R|" if measure.endswith("_asymmetry") else "affected ÷ healthy" if measure.endswith("_ratio") else "midline"),
            line=dict(color=colour, width=2),
            marker=dict(size=10, color=[("white" if b else colour) for b in biased], line=dict(color=colour, width=2)),
            customdata=np.stack([d["visit_date"].astype(str), d["phase"].fillna("")], axis=-1),
            hovertemplate="%{customdata[0]} (day %{x:.0f}, %{customdata[1]}): %{y:.2f} " + unit + "<extra></extra>",
        ))
        if k == 0 and unit == "mm":
            pre = d[d["phase"] == "pre-op"]
            if not pre.empty:
                base = float(pre["value"].iloc[-1])
                # |L - R| cannot go below 0: keep the band and the lines where the measure can be
                floor = 0.0 if measure.endswith("_asymmetry") else -math.inf
                fig.add_hrect(y0=max(base - noise_mm, floor), y1=base + noise_mm, fillcolor=NOISE_COLOUR,
                              line_width=0, layer="below")
                thr = perception_threshold_mm(measure)
                if thr is not None:
                    for s in (-1, 1):
                        if base + s * thr >= floor:
                            fig.add_hline(y=base + s * thr, line_dash="dash", line_color=THRESHOLD_COLOUR,
                                          line_width=1)
    if d0.empty:
        fig.add_annotation(text="no data", showarrow=False, x=0.5, y=0.5, xref="paper", yref="paper")
    title = f"{EXPRESSION_SHORT.get(expression, expression_label(expression))}: {measure_label(measure)}"
    fig.update_layout(title=dict(text=title, font=dict(size=14)), height=height, showlegend=len(sides) > 1,
                      legend=dict(orientation="h", yanchor="top", y=-0.3, font=dict(size=11)), **_LAYOUT)
    fig.update_xaxes(title_text="days from surgery", zeroline=False)
    fig.update_yaxes(title_text=unit)
    if xs:
        lo, hi = min(xs + [0.0]), max(xs + [0.0])
        pad = max(10.0, 0.05 * (hi - lo))
        fig.update_xaxes(range=[lo - pad, hi + pad])
    return fig


def timeline_figure(visits: pd.DataFrame, scores: pd.DataFrame | None = None) -> go.Figure:
    """The patient's visits on a days-from-surgery axis, coloured by phase.

    Labels alternate above and below the markers in time order, so visits a few weeks
    apart do not print their dates over each other.
    """
    fig = go.Figure()
    v = visits.dropna(subset=["days_from_procedure"])
    if not v.empty:
        shade_phases(fig)
    order = v["days_from_procedure"].astype(float).rank(method="first").astype(int) - 1  # 0 = first visit
    for phase, g in v.groupby("phase", sort=False):
        fig.add_trace(go.Scatter(
            x=g["days_from_procedure"].astype(float), y=[0] * len(g), mode="markers+text",
            name=PHASE_LABELS.get(str(phase), str(phase)),
            marker=dict(size=18, color=PHASE_COLOURS.get(str(phase), "#777"), symbol="circle"),
            text=[f"{d}<br>{n} photo(s)" for d, n in zip(g["visit_date"].astype(str), g["n_recordings"])],
            textposition=["top center" if k % 2 == 0 else "bottom center" for k in order[g.index]],
            hovertemplate="%{text}<br>day %{x:.0f}<extra></extra>",
        ))
    fig.update_layout(height=280, showlegend=True, **_LAYOUT,
                      legend=dict(orientation="h", yanchor="bottom", y=1.02, xanchor="right", x=1),
                      title=dict(text="Visits, days from surgery", font=dict(size=14)))
    fig.update_yaxes(visible=False, range=[-1.2, 1.2])
    fig.update_xaxes(title_text="days from surgery")
    if not v.empty:
        x = v["days_from_procedure"].astype(float)
        pad = max(15.0, 0.08 * (x.max() - x.min()))
        fig.update_xaxes(range=[min(x.min(), 0) - pad, max(x.max(), 0) + pad])
    return fig


def synkinesis_figure(series: pd.DataFrame) -> go.Figure:
    """Synkinesis indicators over time: eye narrowing with smile / pucker (%), mouth movement with eye closure (mm)."""
    from plotly.subplots import make_subplots

    fig = make_subplots(rows=1, cols=2, subplot_titles=(
        "Eye narrowing (%) in big smile and pucker (0 = none)",
        "Mouth corner movement (mm) during gentle eye closure"))
    shown = False
    for col, specs in ((1, (("smile_open", "palpebral_fissure_change", "dash"), ("pucker", "palpebral_fissure_change", "dot"))),
                       (2, (("eye_closure_gentle", "commissure_movement", "solid"),))):
        for expr, measure, dash in specs:
            for side in ("affected", "healthy", "left", "right"):
                d = series[(series["expression"] == expr) & (series["measure"] == measure) & (series["side"] == side)]
                d = d.dropna(subset=["days_from_procedure", "value"]).sort_values("days_from_procedure")
                if d.empty:
                    continue
                shown = True
                y = -d["value"] if measure == "palpebral_fissure_change" else d["value"]  # narrowing positive
                fig.add_trace(go.Scatter(
                    x=d["days_from_procedure"].astype(float), y=y, mode="lines+markers",
                    name=f"{EXPRESSION_SHORT.get(expr, expr)}, {side}", line=dict(color=SIDE_COLOURS.get(side), dash=dash),
                    marker=dict(size=8), hovertemplate="day %{x:.0f}: %{y:.1f}<extra></extra>",
                ), row=1, col=col)
        shade_phases(fig, row=1, col=col, labels=False)
    if not shown:
        fig.add_annotation(text="no smile, pucker or eye-closure photos with a rest photo", showarrow=False,
                           x=0.5, y=0.5, xref="paper", yref="paper")
    fig.update_layout(height=400, legend=dict(orientation="h", yanchor="top", y=-0.2), **_LAYOUT)
    fig.update_xaxes(title_text="days from surgery")
    return fig


def eface_figure(eface: pd.DataFrame) -> go.Figure:
    """Approximate eFACE sub-scores over time (labelled as approximations)."""
    fig = go.Figure()
    d = eface[eface["group"] == "score"].dropna(subset=["days_from_procedure"]) if not eface.empty else eface
    if d.empty:
        fig.add_annotation(text="no eFACE approximation (affected side or expressions missing)", showarrow=False,
                           x=0.5, y=0.5, xref="paper", yref="paper")
    else:
        shade_phases(fig, labels=False)
        for item, g in d.groupby("item", sort=False):
            g = g.sort_values("days_from_procedure")
            fig.add_trace(go.Scatter(x=g["days_from_procedure"].astype(float), y=g["score"], mode="lines+markers",
                                     name=str(item).replace("_", " ")))
    fig.update_layout(height=320, title=dict(text="eFACE-style scores: approximation from photos (100 = normal)",
                                             font=dict(size=14)), **_LAYOUT)
    fig.update_yaxes(range=[0, 105], title_text="score")
    fig.update_xaxes(title_text="days from surgery")
    return fig


def change_distribution_figure(pairs: pd.DataFrame, unit: str, title: str) -> go.Figure:
    """Pre → post change per patient, by group: box, every patient as a point, the noise band."""
    fig = go.Figure()
    for k, (group, g) in enumerate(pairs.groupby("group", sort=True)):
        colour = GROUP_COLOURS[k % len(GROUP_COLOURS)]
        fig.add_trace(go.Box(y=g["change"], name=str(group), boxpoints="all", jitter=0.4, pointpos=0,
                             marker_color=colour, line_color=colour,
                             text=g["patient"], hovertemplate="%{text}: %{y:.2f} " + unit + "<extra></extra>"))
    if unit == "mm":
        fig.add_hrect(y0=-NOISE_MM, y1=NOISE_MM, fillcolor=NOISE_COLOUR, line_width=0, layer="below",
                      annotation_text=f"noise ±{NOISE_MM:g} mm", annotation_position="top left")
    fig.add_hline(y=0, line_color="#555", line_width=1)
    fig.update_layout(height=400, title=dict(text=title, font=dict(size=14)), showlegend=False, **_LAYOUT)
    fig.update_yaxes(title_text=f"change post − pre ({unit})")
    return fig


def prepost_figure(pairs: pd.DataFrame, unit: str, title: str) -> go.Figure:
    """Pre and post values side by side per group, each patient a line."""
    fig = go.Figure()
    groups = sorted(pairs["group"].unique())
    palette = GROUP_COLOURS
    for k, group in enumerate(groups):
        g = pairs[pairs["group"] == group]
        colour = palette[k % len(palette)]
        for _, r in g.iterrows():
            fig.add_trace(go.Scatter(x=[f"{group}<br>pre-op", f"{group}<br>post-op"], y=[r["pre"], r["post"]],
                                     mode="lines+markers", line=dict(color=colour, width=1), opacity=0.6,
                                     showlegend=False, hovertemplate=f"{r['patient']}: %{{y:.2f}} {unit}<extra></extra>"))
    fig.update_layout(height=400, title=dict(text=title, font=dict(size=14)), **_LAYOUT)
    fig.update_yaxes(title_text=unit)
    return fig


def spaghetti_figure(values: pd.DataFrame, title: str, unit: str) -> go.Figure:
    """Every patient's trajectory over days from surgery, coloured by group, with each group's mean per phase."""
    fig = go.Figure()
    palette = GROUP_COLOURS
    groups = sorted(values["group"].unique())
    if not values.empty:
        shade_phases(fig)
    for k, group in enumerate(groups):
        colour = palette[k % len(palette)]
        g = values[values["group"] == group]
        first = True
        for patient, p in g.groupby("patient", sort=True):
            p = p.sort_values("days_from_procedure")
            fig.add_trace(go.Scatter(
                x=p["days_from_procedure"].astype(float), y=p["value"], mode="lines+markers",
                line=dict(color=colour, width=1), marker=dict(size=5), opacity=0.45, legendgroup=str(group),
                name=str(group), showlegend=first,
                hovertemplate=f"{patient}" + ": day %{x:.0f}, %{y:.2f} " + unit + "<extra></extra>",
            ))
            first = False
        mean = g.groupby("phase").agg(days=("days_from_procedure", "median"), value=("value", "mean")).reset_index()
        mean = mean.sort_values("days")
        fig.add_trace(go.Scatter(x=mean["days"].astype(float), y=mean["value"], mode="lines+markers",
                                 line=dict(color=colour, width=4), marker=dict(size=11, symbol="diamond"),
                                 name=f"{group}: mean per phase", legendgroup=str(group)))
    fig.update_layout(height=450, title=dict(text=title, font=dict(size=14)), **_LAYOUT,
                      legend=dict(orientation="h", y=-0.2))
    fig.update_xaxes(title_text="days from surgery")
    fig.update_yaxes(title_text=unit)
    return fig

