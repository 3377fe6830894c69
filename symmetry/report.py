"""A patient's outcome report: self-contained HTML or PDF with overlays, trend plots and tables.

Everything is drawn with matplotlib's object API (no pyplot state, no
network, no browser): HTML embeds its images as ``data:`` URIs and its CSS
inline, so the single file can be mailed or archived; PDF pages are written
with :class:`matplotlib.backends.backend_pdf.PdfPages`.

Plotting functions take an ``ax`` and return it (they never compute);
:func:`write_report` lays out what :func:`symmetry.trends.patient_outcomes`
computed. The report contains face photos (the overlays) unless they are
left out: handle it as patient data.
"""

from __future__ import annotations

import base64
import datetime as dt
import html
import io
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from . import ALGORITHM_VERSION, __version__
from .trends import (
    EARLY_MAX_DAYS,
    KEY_MEASURES,
    NOISE_MM,
    SETTLING_MAX_DAYS,
    Phase,
    PatientOutcomes,
    perception_threshold_mm,
)

__all__ = [
    "Overlay",
    "ReportContext",
    "make_overlays",
    "plot_measure_trend",
    "plot_eface",
    "trend_figure",
    "write_report",
    "write_html",
    "write_pdf",
]

_SWELLING_COLOUR = "#f3d9b1"
_SETTLING_COLOUR = "#f8ecd9"
_NOISE_COLOUR = "#cfe3f5"
_POINT_COLOUR = "#1f5f99"


@dataclass(frozen=True)
class Overlay:
    """An annotated photo for the report: ``image`` is RGB uint8 of shape (H, W, 3)."""

    title: str
    image: np.ndarray


@dataclass
class ReportContext:
    """What the report shows besides the computed outcomes.

    Attributes
    ----------
    outcomes : PatientOutcomes
    aetiology, cohort : str or None
    procedures : DataFrame
        ``kind, date, notes``.
    visits : DataFrame
        ``visit_date, days_from_procedure, phase, n_recordings``.
    scores : DataFrame
        Clinician scores (``visit_date, instrument, item, value, rater``).
    overlays : list of Overlay
    """

    outcomes: PatientOutcomes
    aetiology: str | None = None
    cohort: str | None = None
    procedures: pd.DataFrame = field(default_factory=pd.DataFrame)
    visits: pd.DataFrame = field(default_factory=pd.DataFrame)
    scores: pd.DataFrame = field(default_factory=pd.DataFrame)
    overlays: list[Overlay] = field(default_factory=list)


# --------------------------------------------------------------------------- overlays


def make_overlays(
    recordings: pd.DataFrame,
    *,
    affected_side: str | None,
    expressions: Sequence[str] = ("rest", "smile_open"),
    landmarker: Any = None,
) -> list[Overlay]:
    """Annotated photos of the baseline (last pre-op) and the last visit, re-measured from the stored copies.

    Parameters
    ----------
    recordings : DataFrame
        :meth:`symmetry.store.Store.recordings` of one patient.
    affected_side : str or None
    expressions : sequence of str
        Which expressions to show, in order.
    landmarker : Landmarker, optional
    """
    from .annotate import annotate
    from .images import read_image
    from .landmarks import Landmarker, LandmarkerOptions
    from .photo import PhotoOptions, measure_photo

    if recordings.empty:
        return []
    visits = recordings.drop_duplicates("visit_date")[["visit_date", "phase"]].sort_values("visit_date")
    pre = visits[visits["phase"] == Phase.PRE_OP.value]
    chosen = []
    if not pre.empty:
        chosen.append(pre["visit_date"].iloc[-1])
    last = visits["visit_date"].iloc[-1]
    if last not in chosen:
        chosen.append(last)
    out: list[Overlay] = []
    own = landmarker is None
    lm = landmarker or Landmarker(LandmarkerOptions())
    try:
        for vdate in chosen:
            v = recordings[recordings["visit_date"] == vdate]
            rest = v[v["expression"] == "rest"]
            rest_row = rest.iloc[0] if not rest.empty else None
            for expr in expressions:
                rows = v[v["expression"] == expr]
                if rows.empty:
                    continue
                r = rows.iloc[0]
                rgb = read_image(r["file"])
                rest_rgb = None
                if expr != "rest" and rest_row is not None:
                    rest_rgb = read_image(rest_row["file"])
                    if bool(rest_row["mirrored"]) != bool(r["mirrored"]):
                        rest_rgb = np.ascontiguousarray(rest_rgb[:, ::-1])
                options = PhotoOptions(expression=expr, affected_side=affected_side, mirrored=bool(r["mirrored"]))
                result = measure_photo(rgb, rest=rest_rgb, options=options, landmarker=lm)
                image = annotate(rgb, result, min_height=600)
                days = r["days_from_procedure"]
                when = f"day {int(days)}" if days is not pd.NA and not pd.isna(days) else ""
                title = f"{vdate} {when} {r['phase'] or ''} - {expr}".replace("  ", " ").strip()
                out.append(Overlay(title, _shrink(image, 700)))
    finally:
        if own:
            lm.close()
    return out


def _shrink(rgb: np.ndarray, max_side: int) -> np.ndarray:
    h, w = rgb.shape[:2]
    s = max_side / max(h, w)
    if s >= 1:
        return rgb
    from PIL import Image

    return np.asarray(Image.fromarray(rgb).resize((max(1, round(w * s)), max(1, round(h * s))), Image.LANCZOS))


# --------------------------------------------------------------------------- plots


def _shade_phases(ax: Axes) -> None:
    ax.axvspan(0, EARLY_MAX_DAYS, color=_SWELLING_COLOUR, lw=0, zorder=0, label="swelling (early)")
    ax.axvspan(EARLY_MAX_DAYS, SETTLING_MAX_DAYS, color=_SETTLING_COLOUR, lw=0, zorder=0, label="settling")
    ax.axvline(0, color="0.3", lw=0.8, ls="-", zorder=1)


def plot_measure_trend(
    series: pd.DataFrame,
    expression: str,
    measure: str,
    side: str,
    *,
    ax: Axes,
    noise_mm: float = NOISE_MM,
) -> Axes:
    """One measure over days from the procedure, with the swelling phases, noise band and perception thresholds.

    Parameters
    ----------
    series : DataFrame
        ``PatientOutcomes.series``.
    ax : matplotlib Axes

    Returns
    -------
    Axes
    """
    d = series[(series["expression"] == expression) & (series["measure"] == measure) & (series["side"] == side)]
    d = d.dropna(subset=["days_from_procedure", "value"]).sort_values("days_from_procedure")
    ax.set_title(f"{expression}: {measure} ({side})", fontsize=8)
    ax.tick_params(labelsize=7)
    if d.empty:
        ax.text(0.5, 0.5, "no data", ha="center", va="center", transform=ax.transAxes, fontsize=8, color="0.5")
        return ax
    x = d["days_from_procedure"].astype(float).to_numpy()
    y = d["value"].to_numpy(dtype=float)
    unit = str(d["unit"].iloc[0])
    _shade_phases(ax)
    pre = d[d["phase"] == Phase.PRE_OP.value]
    if not pre.empty and unit == "mm":
        base = float(pre["value"].iloc[-1])
        ax.axhspan(base - noise_mm, base + noise_mm, color=_NOISE_COLOUR, lw=0, zorder=0.5, label=f"noise ±{noise_mm:g} mm")
        thr = perception_threshold_mm(measure)
        if thr is not None:
            for s in (-1, 1):
                ax.axhline(base + s * thr, color="#b0413e", lw=0.8, ls="--", zorder=1)
    ax.plot(x, y, "-o", color=_POINT_COLOUR, ms=4, lw=1.2, zorder=3)
    ax.set_xlabel("days from procedure", fontsize=7)
    ax.set_ylabel(unit, fontsize=7)
    return ax


def plot_eface(eface: pd.DataFrame, *, ax: Axes) -> Axes:
    """Approximate eFACE sub-scores over days (labelled as approximations)."""
    ax.set_title("eFACE-style scores (approximation from photos)", fontsize=8)
    ax.tick_params(labelsize=7)
    d = eface[eface["group"] == "score"].dropna(subset=["days_from_procedure"]) if not eface.empty else eface
    if d.empty:
        ax.text(0.5, 0.5, "no data (affected side or expressions missing)", ha="center", va="center",
                transform=ax.transAxes, fontsize=8, color="0.5")
        return ax
    _shade_phases(ax)
    for item, g in d.groupby("item", sort=False):
        g = g.sort_values("days_from_procedure")
        ax.plot(g["days_from_procedure"].astype(float), g["score"], "-o", ms=3, lw=1, label=str(item))
    ax.set_ylim(0, 105)
    ax.set_xlabel("days from procedure", fontsize=7)
    ax.set_ylabel("score (100 = normal)", fontsize=7)
    ax.legend(fontsize=6, loc="lower right")
    return ax


def trend_figure(outcomes: PatientOutcomes, measures: Sequence[tuple[str, str, str]] = KEY_MEASURES, *, ncols: int = 3) -> Figure:
    """A grid of :func:`plot_measure_trend` for the measures that have data."""
    s = outcomes.series
    present = set(zip(s["expression"], s["measure"], s["side"])) if not s.empty else set()
    todo = [m for m in measures if m in present] or list(measures[:1])
    nrows = max(1, math.ceil(len(todo) / ncols))
    fig = Figure(figsize=(3.2 * ncols, 2.4 * nrows))
    # fixed margins: a layout engine costs about a second per figure here
    fig.subplots_adjust(left=0.07, right=0.98, top=1 - 0.35 / (2.4 * nrows), bottom=0.45 / (2.4 * nrows), wspace=0.4, hspace=0.6)
    axes = fig.subplots(nrows, ncols, squeeze=False)
    for ax, (e, m, side) in zip(axes.flat, todo):
        plot_measure_trend(s, e, m, side, ax=ax)
    for ax in list(axes.flat)[len(todo):]:
        ax.set_axis_off()
    return fig


# --------------------------------------------------------------------------- tables

_DELTA_COLUMNS = ["expression", "measure", "side", "unit", "baseline", "visit_date", "days_from_procedure", "phase", "value", "delta", "marks"]


def _delta_table(outcomes: PatientOutcomes) -> pd.DataFrame:
    d = outcomes.key_deltas()
    if d.empty:
        return pd.DataFrame(columns=_DELTA_COLUMNS)
    marks = []
    for _, r in d.iterrows():
        m = []
        if r["within_noise"] is True:
            m.append("within noise")
        if r["beyond_perception"] is True:
            m.append("perceptible")
        if isinstance(r["direction"], str) and r["direction"] != "within noise":
            m.append(r["direction"])
        if r["swelling_biased"]:
            m.append("swelling")
        marks.append(", ".join(m))
    d = d.assign(marks=marks)
    for c in ("baseline", "value", "delta"):
        d[c] = d[c].map(lambda v: f"{v:.2f}")
    return d[_DELTA_COLUMNS]


def _eface_table(outcomes: PatientOutcomes) -> pd.DataFrame:
    e = outcomes.eface
    if e.empty:
        return pd.DataFrame()
    t = e.pivot_table(index="item", columns="visit_date", values="score", aggfunc="first", sort=False)
    t.columns = [str(c) for c in t.columns]
    return t.map(lambda v: "" if pd.isna(v) else f"{v:.0f}").reset_index()


def _scores_table(scores: pd.DataFrame) -> pd.DataFrame:
    if scores is None or scores.empty:
        return pd.DataFrame()
    t = scores.assign(score=scores["instrument"] + " " + scores["item"]).pivot_table(
        index="score", columns="visit_date", values="value", aggfunc="mean"
    )
    t.columns = [str(c) for c in t.columns]
    return t.map(lambda v: "" if pd.isna(v) else f"{v:g}").reset_index()


def _oral_lines(outcomes: PatientOutcomes) -> list[str]:
    if outcomes.oral_competence.empty:
        return ["Oral competence: no pre-op and post-op proxies to compare."]
    if not outcomes.oral_competence_flag:
        return [f"Oral competence: no proxy worsened beyond the {NOISE_MM:g} mm noise band after surgery."]
    lines = [
        "FLAG - oral competence: a proxy worsened beyond the noise band after surgery"
        + (" and persists at the last late visit." if outcomes.oral_competence_persistent else " (not at a late visit; swelling may explain it).")
    ]
    for _, r in outcomes.oral_competence[outcomes.oral_competence["flagged"]].iterrows():
        lines.append(f"  {r['visit_date']} ({r['phase']}): {r['proxy']} worse by {r['worsening_mm']:.1f} mm")
    return lines


def _header_lines(ctx: ReportContext) -> list[str]:
    o = ctx.outcomes
    lines = [
        f"Patient {o.patient}",
        f"affected side: {o.affected_side or 'unknown'}   aetiology: {ctx.aetiology or 'unknown'}   cohort: {ctx.cohort or '-'}",
    ]
    if ctx.procedures is not None and not ctx.procedures.empty:
        lines.append("procedures: " + "; ".join(f"{r['date']} {r['kind']}" for _, r in ctx.procedures.iterrows()))
    lines.append(
        f"generated {dt.date.today().isoformat()} by symmetry {__version__} (measuring algorithm {ALGORITHM_VERSION})"
    )
    return lines


_FOOTNOTE = (
    f"Changes under {NOISE_MM:g} mm are within measurement noise. Perception thresholds: 2 mm at the eyelids, "
    "3 mm at the mouth. Visits up to 3 weeks after surgery (early) and up to 4 months (settling) are biased by "
    "swelling. Sides are the patient's. eFACE-style scores are approximations computed from photos "
    "(Auto-eFACE style), not a clinician's eFACE."
)


# --------------------------------------------------------------------------- writers


def _png(fig: Figure, dpi: int = 110) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def _jpeg(rgb: np.ndarray) -> str:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, format="JPEG", quality=85)
    return "data:image/jpeg;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def _html_table(frame: pd.DataFrame, empty: str) -> str:
    if frame is None or frame.empty:
        return f"<p class='muted'>{html.escape(empty)}</p>"
    return frame.to_html(index=False, escape=True, border=0, classes="t", na_rep="")


_CSS = """
body{font-family:-apple-system,Segoe UI,Helvetica,Arial,sans-serif;margin:2em auto;max-width:1100px;color:#222}
h1{font-size:1.5em;margin-bottom:.2em} h2{font-size:1.15em;border-bottom:1px solid #ccc;margin-top:1.6em}
.muted{color:#777} .flag{background:#fbe3e1;border-left:4px solid #b0413e;padding:.5em 1em}
.ok{background:#e6f2e6;border-left:4px solid #4a8a4a;padding:.5em 1em}
table.t{border-collapse:collapse;font-size:.82em} table.t td,table.t th{padding:2px 8px;border-bottom:1px solid #eee;text-align:left}
.grid{display:flex;flex-wrap:wrap;gap:12px} figure{margin:0} figcaption{font-size:.8em;color:#555}
img{max-width:100%} .note{font-size:.85em;color:#555}
"""


def write_html(path: str | os.PathLike[str], ctx: ReportContext) -> Path:
    """Write the self-contained HTML report; returns its path."""
    o = ctx.outcomes
    head = _header_lines(ctx)
    oral = _oral_lines(o)
    parts = [
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>",
        f"<title>symmetry report {html.escape(o.patient)}</title><style>{_CSS}</style></head><body>",
        f"<h1>{html.escape(head[0])}</h1>",
        *(f"<p class='muted'>{html.escape(line)}</p>" for line in head[1:]),
        f"<div class='{'flag' if o.oral_competence_flag else 'ok'}'>" + "<br>".join(html.escape(x) for x in oral) + "</div>",
    ]
    if o.notes:
        parts.append("<ul class='note'>" + "".join(f"<li>{html.escape(n)}</li>" for n in o.notes) + "</ul>")
    parts += ["<h2>Visits</h2>", _html_table(ctx.visits, "no visits")]
    parts += [
        "<h2>Key measures: pre-op vs each post-op visit</h2>",
        _html_table(_delta_table(o), "no pre-op and post-op visits to compare"),
    ]
    fig = trend_figure(o)
    parts += ["<h2>Trends</h2>", f"<img alt='trend plots' src='{_png(fig)}'>"]
    efig = Figure(figsize=(7, 3))
    efig.subplots_adjust(left=0.09, right=0.98, top=0.9, bottom=0.16)
    plot_eface(o.eface, ax=efig.subplots())
    parts += [
        "<h2>eFACE-style scores (approximation)</h2>",
        f"<img alt='eFACE-style scores' src='{_png(efig)}'>",
        _html_table(_eface_table(o), "no approximation (affected side unknown or expressions missing)"),
        "<h2>Clinician scores</h2>",
        _html_table(_scores_table(ctx.scores), "none entered"),
    ]
    if ctx.overlays:
        parts.append("<h2>Photos with measurements</h2><div class='grid'>")
        for ov in ctx.overlays:
            parts.append(
                f"<figure><img alt='{html.escape(ov.title)}' src='{_jpeg(ov.image)}' width='{ov.image.shape[1]}'>"
                f"<figcaption>{html.escape(ov.title)}</figcaption></figure>"
            )
        parts.append("</div>")
    parts += [f"<p class='note'>{html.escape(_FOOTNOTE)}</p>", "</body></html>"]
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("\n".join(parts), encoding="utf-8")
    return out


def _text_page(lines: Sequence[str], title: str | None = None) -> Figure:
    fig = Figure(figsize=(8.27, 11.69))
    y = 0.95
    if title:
        fig.text(0.06, y, title, fontsize=14, weight="bold")
        y -= 0.04
    for line in lines:
        fig.text(0.06, y, line, fontsize=8.5, family="monospace", color="#b0413e" if line.startswith("FLAG") else "black")
        y -= 0.018
        if y < 0.04:
            break
    return fig


def _table_pages(frame: pd.DataFrame, title: str, rows_per_page: int = 40) -> list[Figure]:
    if frame is None or frame.empty:
        return []
    pages = []
    for start in range(0, len(frame), rows_per_page):
        chunk = frame.iloc[start : start + rows_per_page].astype(str)
        fig = Figure(figsize=(11.69, 8.27))
        fig.text(0.03, 0.96, title + (" (cont.)" if start else ""), fontsize=12, weight="bold")
        ax = fig.add_axes((0.02, 0.02, 0.96, 0.9))
        ax.set_axis_off()
        table = ax.table(cellText=chunk.to_numpy(), colLabels=list(chunk.columns), loc="upper left", cellLoc="left")
        table.auto_set_font_size(False)
        table.set_fontsize(6.5)
        table.auto_set_column_width(list(range(len(chunk.columns))))
        pages.append(fig)
    return pages


def write_pdf(path: str | os.PathLike[str], ctx: ReportContext) -> Path:
    """Write the PDF report; returns its path."""
    from matplotlib.backends.backend_pdf import PdfPages

    o = ctx.outcomes
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    head = _header_lines(ctx)
    lines = head[1:] + [""] + _oral_lines(o) + [""] + [f"note: {n}" for n in o.notes]
    if ctx.visits is not None and not ctx.visits.empty:
        lines += ["", "visits:"] + ["  " + line for line in ctx.visits.to_string(index=False).splitlines()]
    lines += ["", *_wrap(_FOOTNOTE, 100)]
    pages = [_text_page(lines, head[0])]
    pages += _table_pages(_delta_table(o), "Key measures: pre-op vs each post-op visit")
    pages.append(trend_figure(o))
    efig = Figure(figsize=(11.69, 8.27))
    efig.subplots_adjust(left=0.07, right=0.97, top=0.93, bottom=0.08)
    plot_eface(o.eface, ax=efig.subplots())
    pages.append(efig)
    pages += _table_pages(_eface_table(o), "eFACE-style scores (approximation from photos)")
    pages += _table_pages(_scores_table(ctx.scores), "Clinician scores")
    for start in range(0, len(ctx.overlays), 4):
        fig = Figure(figsize=(11.69, 8.27))
        fig.subplots_adjust(left=0.02, right=0.98, top=0.95, bottom=0.02, wspace=0.05, hspace=0.12)
        axes = fig.subplots(2, 2, squeeze=False)
        for ax, ov in zip(axes.flat, ctx.overlays[start : start + 4]):
            ax.imshow(ov.image)
            ax.set_title(ov.title, fontsize=8)
        for ax in axes.flat:
            ax.set_axis_off()
        pages.append(fig)
    with PdfPages(out, metadata={"Title": f"symmetry report {o.patient}", "Creator": f"symmetry {__version__}"}) as pdf:
        for fig in pages:
            pdf.savefig(fig)
    return out


def _wrap(text: str, width: int) -> list[str]:
    import textwrap

    return textwrap.wrap(text, width)


def write_report(path: str | os.PathLike[str], ctx: ReportContext) -> Path:
    """Write the report as HTML (``.html``/``.htm``) or PDF (``.pdf``) by the file's suffix.

    Raises
    ------
    ValueError
        Another suffix.
    """
    suffix = Path(path).suffix.lower()
    if suffix in (".html", ".htm"):
        return write_html(path, ctx)
    if suffix == ".pdf":
        return write_pdf(path, ctx)
    raise ValueError(f"report file must end in .html or .pdf, got {Path(path).name!r}")
