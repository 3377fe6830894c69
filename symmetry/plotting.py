"""Plots of a video's per-frame series: eye aperture and commissure movement per side over time.

Plotting is kept apart from computing: these functions only draw what
:mod:`symmetry.video` measured. Matplotlib is used through its object API
(no pyplot state, safe in servers and threads); the interactive version is a
self-contained plotly HTML file (plotly.js embedded: no network needed to view it).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np

if TYPE_CHECKING:
    from .video import FrameSeries, VideoResult

__all__ = ["plot_video_series", "video_series_figure", "save_video_plot"]

# patient right = orange, patient left = cyan (as in symmetry.annotate)
_SIDE_COLOUR = {"right": "#ff8c00", "left": "#00a8e8"}
_REST_COLOUR = "#d9d9d9"
_EVENT_COLOURS = {
    "smile_open": "#e45756", "smile_closed": "#f58518", "eye_closure": "#4c78a8",
    "eye_closure_gentle": "#4c78a8", "eye_closure_tight": "#2d4f7c", "brow_raise": "#54a24b",
    "pucker": "#b279a2", "lower_teeth": "#eeca3b", "bilabial": "#9d755d", "snarl": "#72b7b2",
}
_PANELS = (
    ("palpebral_fissure_height", "eye aperture (mm)"),
    ("commissure_movement", "commissure movement (mm)"),
)


def _parts(data: "VideoResult | FrameSeries") -> tuple[Any, list[tuple[float, float]], list[tuple[str, float, float, float]], str]:
    series = getattr(data, "series", data)
    seg = series.segmentation
    events = [(e.expression, e.start_s, e.end_s, e.peak_s) for e in getattr(data, "events", seg.events)]
    return series.frames, list(seg.rest_periods), events, str(series.source)


def plot_video_series(data: "VideoResult | FrameSeries", *, axes: Sequence[Any] | None = None,
                      figsize: tuple[float, float] = (11.0, 6.0)) -> Sequence[Any]:
    """Eye aperture and commissure movement per side over time, with rest and events marked.

    Parameters
    ----------
    data : VideoResult or FrameSeries
    axes : two matplotlib Axes, optional
        Drawn into when given; otherwise a new Figure (no pyplot) is made.

    Returns
    -------
    list of matplotlib Axes
        The two panels; ``axes[0].figure`` is the figure.
    """
    frames, rest, events, source = _parts(data)
    if axes is None:
        from matplotlib.figure import Figure

        fig = Figure(figsize=figsize, layout="constrained")
        axes = fig.subplots(2, 1, sharex=True)
    t = frames["time_s"].to_numpy(dtype=float)
    for ax, (name, label) in zip(axes, _PANELS):
        for a, b in rest:
            ax.axvspan(a, b, color=_REST_COLOUR, alpha=0.6, lw=0)
        for expression, a, b, peak in events:
            colour = _EVENT_COLOURS.get(expression, "#999999")
            ax.axvspan(a, b, color=colour, alpha=0.18, lw=0)
            ax.axvline(peak, color=colour, lw=1.0, ls="--")
        for side in ("right", "left"):
            col = f"{name}_{side}"
            if col in frames:
                ax.plot(t, frames[col].to_numpy(dtype=float), color=_SIDE_COLOUR[side], lw=1.3,
                        label=f"patient {side}")
        ax.set_ylabel(label)
        ax.grid(True, alpha=0.3)
    top = axes[0]
    ymax = top.get_ylim()[1]
    for expression, a, b, _peak in events:
        top.text((a + b) / 2, ymax, expression, ha="center", va="bottom", fontsize=8,
                 color=_EVENT_COLOURS.get(expression, "#555555"), clip_on=False)
    axes[0].legend(loc="upper right", fontsize=8)
    axes[-1].set_xlabel("time (s)")
    axes[0].set_title(f"{Path(source).name}: grey = rest, coloured = events, dashed = peaks", fontsize=10, pad=14)
    return list(axes)


def video_series_figure(data: "VideoResult | FrameSeries") -> Any:
    """The same plot as an interactive plotly Figure."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    frames, rest, events, source = _parts(data)
    fig = make_subplots(rows=2, cols=1, shared_xaxes=True, vertical_spacing=0.06,
                        subplot_titles=[label for _, label in _PANELS])
    t = frames["time_s"].to_numpy(dtype=float)
    for row, (name, label) in enumerate(_PANELS, start=1):
        for side in ("right", "left"):
            col = f"{name}_{side}"
            if col not in frames:
                continue
            y = frames[col].to_numpy(dtype=float)
            fig.add_trace(
                go.Scatter(x=t, y=np.where(np.isfinite(y), y, None), mode="lines", name=f"patient {side}",
                           line={"color": _SIDE_COLOUR[side], "width": 1.5}, legendgroup=side, showlegend=row == 1,
                           hovertemplate=f"%{{x:.2f}} s: %{{y:.2f}} mm ({side})<extra></extra>"),
                row=row, col=1,
            )
        fig.update_yaxes(title_text=label, row=row, col=1)
    for a, b in rest:
        fig.add_vrect(x0=a, x1=b, fillcolor=_REST_COLOUR, opacity=0.5, line_width=0, layer="below")
    for expression, a, b, peak in events:
        colour = _EVENT_COLOURS.get(expression, "#999999")
        fig.add_vrect(x0=a, x1=b, fillcolor=colour, opacity=0.18, line_width=0, layer="below",
                      annotation_text=expression, annotation_position="top left")
        fig.add_vline(x=peak, line={"color": colour, "dash": "dash", "width": 1})
    fig.update_xaxes(title_text="time (s)", row=2, col=1)
    fig.update_layout(title=f"{Path(source).name}: eye aperture and commissure movement",
                      template="plotly_white", height=650, hovermode="x unified")
    return fig


def save_video_plot(data: "VideoResult | FrameSeries", path: str | os.PathLike[str]) -> Path:
    """Write the plot as PNG (``.png``, matplotlib) or interactive HTML (``.html``, plotly).

    Raises
    ------
    ValueError
        If the suffix is neither.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in (".png", ".html"):
        raise ValueError(f"`path` must end in .png or .html, got {path.name!r}")
    path.parent.mkdir(parents=True, exist_ok=True)
    if suffix == ".png":
        axes = plot_video_series(data)
        axes[0].figure.savefig(path, dpi=120)
    else:
        video_series_figure(data).write_html(path, include_plotlyjs=True, full_html=True)
    return path
