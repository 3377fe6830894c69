"""Expression events, rest periods and indicators from a per-frame video series.

Everything here is pure computation on the per-frame table built by
:mod:`symmetry.video` (one row per analysed frame, the static measures of
:mod:`symmetry.measures` as ``<name>_<side>`` columns in mm, blendshapes as
``bs_<name>`` columns); nothing here decodes video or runs a model.

How events are found
--------------------
1. A provisional rest baseline is the median of the static measures (and
   blendshapes) over the 30% of frames that move least against the median
   of the whole video.
2. Each frame gets one score per expression class, about 1 at a typical full
   movement and 0 at rest, from the landmark movement against that baseline
   (the primary signal) and, as a supporting signal, the blendshapes:

   =============== ============================================== ===============================
   class           landmark movement (max of the two sides)        blendshapes (max, above rest)
   =============== ============================================== ===============================
   ``smile``       (commissure up + 0.5 x commissure out) / 4 mm   ``mouthSmile*``
   ``eye_closure`` fissure narrowing / 60 %                        ``eyeBlink*``
   ``brow_raise``  brow up / 2.5 mm                                ``browInnerUp``, ``browOuterUp*``
   ``pucker``      commissure toward the midline / 2.5 mm          ``mouthPucker``, ``mouthFunnel``
   ``lower_teeth`` lower-lip depression / 2.5 mm, damped when the  ``mouthLowerDown*``
                   commissure rises ("eee")
   =============== ============================================== ===============================

   The class score is ``max(landmark, 0.8 * blendshape)``.
3. Rest periods are runs of at least :data:`MIN_REST_S` where every score
   stays under :data:`REST_SCORE` (blinks shorter than :data:`MAX_BLINK_S` are
   bridged); the final baseline is the median over them.
4. Events are hysteresis segments of the largest score (on above
   :data:`EVENT_ON`, off below :data:`EVENT_OFF`), labelled by the class with
   the largest summed score; eye closures shorter than :data:`MIN_EYE_CLOSURE_S`
   are blinks and dropped; smiles are ``smile_open`` when the lips part by
   :data:`OPEN_SMILE_GAP_MM` or more at the peak, else ``smile_closed``.
   Bilabial words ("papa, baby") are found first, as clusters of quick mouth
   openings, and reported as ``bilabial`` events whose closures give the lip
   seal.
5. A CSV of ``start_s,end_s,expression`` replaces the automatic events (and,
   when it has ``rest`` rows, the automatic rest periods).

Sides are the patient's; indicator names read trigger -> target
(``smile_eye_narrowing``: eye narrowing when smiling).
"""

from __future__ import annotations

import csv
import functools
import math
import os
import warnings
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Mapping, Protocol, Sequence, TypeVar

import numpy as np
import pandas as pd

from .errors import InputError
from .measures import MIN_DIRECTION_MM, MOVEMENT_MEASURES, STATIC_MEASURES, UNITS, Measure, asymmetry_measures, value_of

__all__ = [
    "EXPRESSIONS",
    "EXPRESSION_CLASSES",
    "EventSpan",
    "DetectedEvent",
    "Segmentation",
    "read_events_csv",
    "normalise_expression",
    "static_columns",
    "movement_series",
    "expression_scores",
    "segment",
    "bilabial_closures",
    "eye_commissure_coupling",
    "indicators",
    "rest_measures_from_baseline",
    "INDICATOR_UNITS",
]

SIDES = ("right", "left")

#: Expression keys an event can carry (reference section 2, plus ``bilabial``).
EXPRESSIONS = (
    "rest",
    "brow_raise",
    "eye_closure",
    "eye_closure_gentle",
    "eye_closure_tight",
    "smile_closed",
    "smile_open",
    "pucker",
    "lower_teeth",
    "snarl",
    "bilabial",
)

#: Detection class of each expression key (``None``: rest, or no automatic class).
EXPRESSION_CLASSES: dict[str, str | None] = {
    "rest": None,
    "brow_raise": "brow_raise",
    "eye_closure": "eye_closure",
    "eye_closure_gentle": "eye_closure",
    "eye_closure_tight": "eye_closure",
    "smile_closed": "smile",
    "smile_open": "smile",
    "pucker": "pucker",
    "lower_teeth": "lower_teeth",
    "snarl": None,
    "bilabial": None,
}

_ALIASES = {
    "eee": "lower_teeth",
    "smile": "smile_open",
    "big_smile": "smile_open",
    "small_smile": "smile_closed",
    "brow": "brow_raise",
    "brows": "brow_raise",
    "eyebrow_raise": "brow_raise",
    "eyes_closed": "eye_closure",
    "eye_closure_full": "eye_closure_tight",
    "ooo": "pucker",
    "papa": "bilabial",
    "baby": "bilabial",
    "bilabial_words": "bilabial",
    "speech": "bilabial",
    "neutral": "rest",
}

#: Score below which every class must stay for a frame to count as rest.
REST_SCORE = 0.3
#: Hysteresis of event detection on the largest class score.
EVENT_ON = 0.5
EVENT_OFF = 0.3
#: Shortest rest period, s.
MIN_REST_S = 0.4
#: Shortest event, s; eye closures shorter than MIN_EYE_CLOSURE_S are blinks.
MIN_EVENT_S = 0.3
MIN_EYE_CLOSURE_S = 0.4
#: Gaps in a rest period shorter than this (s) are bridged (blinks).
MAX_BLINK_S = 0.4
#: Same-class events closer than this (s) are merged.
MERGE_GAP_S = 0.25
#: Interlabial gap at a smile peak (above rest, mm) that makes it ``smile_open``.
OPEN_SMILE_GAP_MM = 1.5
#: Running-median window of the class score when picking a peak, s (longer than a blink).
PEAK_MEDIAN_S = 0.3
#: The plateau of an event: where the smoothed score is within this fraction of its maximum.
PLATEAU = 0.9
#: Peaks are taken among frames within these head yaw and pitch limits when there are any (deg).
PEAK_MAX_YAW_DEG = 10.0
PEAK_MAX_PITCH_DEG = 15.0
#: Head yaw beyond which frames are not used as rest (deg).
REST_MAX_YAW_DEG = 15.0
#: Cross-correlation lags searched by :func:`eye_commissure_coupling`, s.
MAX_LAG_S = 1.0

_CLASSES = ("smile", "eye_closure", "brow_raise", "pucker", "lower_teeth")
_BLENDSHAPES: dict[str, tuple[str, ...]] = {
    "smile": ("mouthSmileLeft", "mouthSmileRight"),
    "eye_closure": ("eyeBlinkLeft", "eyeBlinkRight"),
    "brow_raise": ("browInnerUp", "browOuterUpLeft", "browOuterUpRight"),
    "pucker": ("mouthPucker", "mouthFunnel"),
    "lower_teeth": ("mouthLowerDownLeft", "mouthLowerDownRight"),
}
#: Blendshapes of a non-neutral face (gaze excluded), for ranking frames toward rest. Not browDown:
#: a resting face often holds some, and raised brows take it to 0, which ranked the raised brows of
#: a clip as more neutral than its rest (77 of 77 brow raises lost with unsmoothed landmarks).
_NON_NEUTRAL = (
    "browInnerUp", "browOuterUpLeft", "browOuterUpRight", "cheekSquintLeft",
    "cheekSquintRight", "eyeBlinkLeft", "eyeBlinkRight", "eyeSquintLeft", "eyeSquintRight", "jawOpen",
    "mouthFrownLeft", "mouthFrownRight", "mouthFunnel", "mouthLowerDownLeft", "mouthLowerDownRight",
    "mouthPressLeft", "mouthPressRight", "mouthPucker", "mouthSmileLeft", "mouthSmileRight", "mouthStretchLeft",
    "mouthStretchRight", "mouthUpperUpLeft", "mouthUpperUpRight", "noseSneerLeft", "noseSneerRight",
)
_BLENDSHAPE_FULL = 0.5  # a blendshape rise of this much above rest scores 1
_BLENDSHAPE_WEIGHT = 0.8

#: Units of the indicator names (per side unless noted).
INDICATOR_UNITS: dict[str, str] = {
    "smile_eye_narrowing": "%",
    "pucker_eye_narrowing": "%",
    "eye_closure_commissure_movement": "mm",
    "eye_aperture_commissure_correlation": "r",
    "eye_aperture_commissure_lag": "s",
    "eee_lower_lip_depression": "mm",
    "eee_lower_lip_depression_ratio": "ratio",
    "rest_interlabial_gap": "mm",
    "bilabial_interlabial_gap": "mm",
    "pucker_commissure_shortening": "mm",
    "pucker_commissure_shortening_ratio": "ratio",
    "pucker_symmetry": "ratio",
}


_F = TypeVar("_F", bound=Callable[..., Any])


def _quiet_nan(func: _F) -> _F:
    """Silence numpy's empty-slice warnings: frames without a face are NaN by design."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        with warnings.catch_warnings(), np.errstate(invalid="ignore", divide="ignore"):
            warnings.simplefilter("ignore", RuntimeWarning)
            return func(*args, **kwargs)

    return wrapper  # type: ignore[return-value]


# --------------------------------------------------------------------------- spans
@dataclass(frozen=True)
class EventSpan:
    """A user-given time span: ``expression`` from ``start_s`` to ``end_s`` (seconds)."""

    expression: str
    start_s: float
    end_s: float


def normalise_expression(name: str) -> str:
    """The expression key for ``name`` (case, spaces, dashes and common aliases forgiven).

    Raises
    ------
    ValueError
        If ``name`` is not a known expression; the message lists the keys.
    """
    key = str(name).strip().lower().replace(" ", "_").replace("-", "_").strip('"')
    key = _ALIASES.get(key, key)
    if key not in EXPRESSIONS:
        raise ValueError(f"unknown expression {name!r}; use one of: {', '.join(EXPRESSIONS)} (or eee, smile)")
    return key


def read_events_csv(path: str | os.PathLike[str]) -> list[EventSpan]:
    """Read an events CSV with the header ``start_s,end_s,expression``.

    Extra columns are ignored. Rows with the expression ``rest`` mark rest
    periods (the baseline); the others replace the automatic events.

    Raises
    ------
    InputError
        If the file is missing or unreadable, a column is missing, a time is
        not a number, ``end_s <= start_s``, or an expression is unknown; the
        message names the row.
    """
    source = str(path)
    try:
        with open(path, newline="", encoding="utf-8-sig") as fh:
            rows = list(csv.DictReader(fh))
            header = [h.strip() for h in (rows[0].keys() if rows else [])]
    except FileNotFoundError:
        raise InputError(source, "events file not found") from None
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise InputError(source, f"cannot read events file ({exc})") from None
    if not rows:
        raise InputError(source, "events file has no rows; expected the header start_s,end_s,expression")
    missing = [c for c in ("start_s", "end_s", "expression") if c not in header]
    if missing:
        raise InputError(source, f"events file lacks column(s) {', '.join(missing)}; expected start_s,end_s,expression")
    spans: list[EventSpan] = []
    for line, row in enumerate(rows, start=2):
        row = {str(k).strip(): (v or "").strip() for k, v in row.items() if k is not None}
        try:
            start, end = float(row["start_s"]), float(row["end_s"])
        except ValueError:
            raise InputError(source, f"line {line}: start_s and end_s must be numbers (seconds)") from None
        if not (math.isfinite(start) and math.isfinite(end) and start >= 0 and end > start):
            raise InputError(source, f"line {line}: need 0 <= start_s < end_s, got {start}..{end}")
        try:
            expression = normalise_expression(row["expression"])
        except ValueError as exc:
            raise InputError(source, f"line {line}: {exc}") from None
        spans.append(EventSpan(expression, start, end))
    return sorted(spans, key=lambda s: s.start_s)


# --------------------------------------------------------------------------- series
def static_columns(sides: Sequence[str] = SIDES) -> list[str]:
    """``<name>_<side>`` column names of the static measures, in report order."""
    return [f"{name}_{side}" for name in STATIC_MEASURES for side in sides]


def movement_series(frames: pd.DataFrame, baseline: Mapping[str, float]) -> pd.DataFrame:
    """Movement measures of every frame against a rest baseline, vectorised.

    The same definitions as :func:`symmetry.measures.movement_measures`,
    written on the static columns (``commissure_x`` is lateral-signed, so its
    change is the lateral component of the commissure displacement).

    Parameters
    ----------
    frames : DataFrame
        Static measure columns ``<name>_<side>`` (mm, pupil frame).
    baseline : mapping
        Rest value of each static column.

    Returns
    -------
    DataFrame
        ``<movement name>_<side>`` columns, same index as ``frames``.
    """
    out: dict[str, np.ndarray] = {}
    for side in SIDES:
        col = lambda name: frames[f"{name}_{side}"].to_numpy(dtype=float)  # noqa: E731
        base = lambda name: float(baseline[f"{name}_{side}"])  # noqa: E731
        dx = col("commissure_x") - base("commissure_x")
        dy = col("commissure_y") - base("commissure_y")
        pfh0 = base("palpebral_fissure_height")
        with np.errstate(invalid="ignore", divide="ignore"):
            out[f"commissure_movement_{side}"] = np.hypot(dx, dy)
            moved = np.hypot(dx, dy)
            out[f"commissure_movement_angle_{side}"] = np.where(
                moved >= MIN_DIRECTION_MM, np.degrees(np.arctan2(dy, dx)), np.nan
            )
            out[f"palpebral_fissure_change_{side}"] = (
                100.0 * (col("palpebral_fissure_height") / pfh0 - 1.0) if pfh0 > 1e-6 else np.full(len(dx), np.nan)
            )
        out[f"brow_movement_{side}"] = col("brow_height") - base("brow_height")
        out[f"lower_lip_movement_{side}"] = col("lower_lip_height") - base("lower_lip_height")
    ordered = {f"{n}_{s}": out[f"{n}_{s}"] for n in MOVEMENT_MEASURES for s in SIDES}
    return pd.DataFrame(ordered, index=frames.index)


def _median_baseline(frames: pd.DataFrame, mask: np.ndarray) -> dict[str, float]:
    cols = static_columns() + [c for c in frames.columns if c.startswith("bs_")]
    sub = frames.loc[mask, cols]
    return {c: float(np.nanmedian(sub[c].to_numpy(dtype=float))) if len(sub) else float("nan") for c in cols}


@_quiet_nan
def expression_scores(frames: pd.DataFrame, baseline: Mapping[str, float]) -> pd.DataFrame:
    """One score per expression class and frame (about 1 at a full movement, 0 at rest).

    See the module docstring for the definitions. Frames without a face score NaN.

    Returns
    -------
    DataFrame
        Columns ``smile``, ``eye_closure``, ``brow_raise``, ``pucker``, ``lower_teeth``.
    """
    lm: dict[str, list[np.ndarray]] = {c: [] for c in _CLASSES}
    for side in SIDES:
        d = lambda name: frames[f"{name}_{side}"].to_numpy(dtype=float) - float(baseline[f"{name}_{side}"])  # noqa: E731
        dx, dy = d("commissure_x"), d("commissure_y")
        up, out_ = np.clip(dy, 0, None), np.clip(dx, 0, None)
        lm["smile"].append((up + 0.5 * out_) / 4.0)
        lm["pucker"].append(np.clip(-dx, 0, None) / 2.5)
        pfh0 = float(baseline[f"palpebral_fissure_height_{side}"])
        pfh = frames[f"palpebral_fissure_height_{side}"].to_numpy(dtype=float)
        closure = 100.0 * (1.0 - pfh / pfh0) if pfh0 > 1e-6 else np.zeros_like(pfh)
        lm["eye_closure"].append(np.clip(closure, 0, None) / 60.0)
        lm["brow_raise"].append(np.clip(d("brow_height"), 0, None) / 2.5)
        damp = np.clip(1.0 - up / 3.0, 0.0, 1.0)
        lm["lower_teeth"].append(np.clip(-d("lower_lip_height"), 0, None) / 2.5 * damp)
    scores: dict[str, np.ndarray] = {}
    with np.errstate(invalid="ignore"):
        for cls in _CLASSES:
            s = np.fmax.reduce(lm[cls])
            names = [f"bs_{b}" for b in _BLENDSHAPES[cls] if f"bs_{b}" in frames.columns]
            if names:
                bs = np.fmax.reduce(
                    [frames[n].to_numpy(dtype=float) - float(baseline.get(n, 0.0)) for n in names]
                )
                s = np.fmax(s, _BLENDSHAPE_WEIGHT * np.clip(bs, 0, None) / _BLENDSHAPE_FULL)
            scores[cls] = s
    out = pd.DataFrame(scores, index=frames.index)
    if "face_found" in frames.columns:
        out[~frames["face_found"].to_numpy(dtype=bool)] = np.nan
    return out


# --------------------------------------------------------------------------- segmentation
@dataclass(frozen=True)
class DetectedEvent:
    """One expression event in the series.

    Attributes
    ----------
    expression : str
        Expression key (see :data:`EXPRESSIONS`).
    start_s, end_s, peak_s : float
        Times in seconds (``end_s`` is the time of the last frame of the event).
    peak_row : int
        Row of the peak frame in the series.
    score : float
        Class score at the peak (about 1 for a typical full movement).
    origin : str
        ``"auto"`` or ``"csv"``.
    closure_rows : tuple of int
        For ``bilabial`` events, the rows of the lip closures.
    """

    expression: str
    start_s: float
    end_s: float
    peak_s: float
    peak_row: int
    score: float
    origin: str = "auto"
    closure_rows: tuple[int, ...] = ()


@dataclass
class Segmentation:
    """Rest periods, baseline and events of one video.

    Attributes
    ----------
    rest_periods : list of (start_s, end_s)
    rest_mask : ndarray of bool, shape (n_frames,)
        Frames used for the baseline.
    baseline : dict
        Median static measure (and ``bs_*``) per column over ``rest_mask``.
    rest_row : int
        The rest frame closest to the baseline (for tracking and key frames).
    events : list of DetectedEvent
    scores : DataFrame
        Per-frame class scores against ``baseline``.
    warnings : list of str
    """

    rest_periods: list[tuple[float, float]]
    rest_mask: np.ndarray
    baseline: dict[str, float]
    rest_row: int
    events: list[DetectedEvent]
    scores: pd.DataFrame
    warnings: list[str] = field(default_factory=list)


def _runs(mask: np.ndarray) -> list[tuple[int, int]]:
    """Half-open [start, stop) index runs where ``mask`` is True."""
    m = np.concatenate([[False], np.asarray(mask, dtype=bool), [False]])
    d = np.diff(m.astype(np.int8))
    return list(zip(np.flatnonzero(d == 1).tolist(), np.flatnonzero(d == -1).tolist()))


def _bridge(mask: np.ndarray, time_s: np.ndarray, max_gap_s: float) -> np.ndarray:
    """Fill False gaps shorter than ``max_gap_s`` between True runs."""
    out = mask.copy()
    runs = _runs(mask)
    for (a0, a1), (b0, _b1) in zip(runs, runs[1:]):
        if time_s[b0] - time_s[a1 - 1] <= max_gap_s:
            out[a1:b0] = True
    return out


def _frame_step(time_s: np.ndarray) -> float:
    d = np.diff(time_s)
    d = d[d > 0]
    return float(np.median(d)) if len(d) else 1 / 30


def _duration(time_s: np.ndarray, a: int, b: int) -> float:
    """Duration of rows [a, b), counting the last frame's own interval."""
    return float(time_s[b - 1] - time_s[a]) + _frame_step(time_s)


def _in_spans(time_s: np.ndarray, spans: Iterable[tuple[float, float]]) -> np.ndarray:
    mask = np.zeros(len(time_s), dtype=bool)
    for a, b in spans:
        mask |= (time_s >= a) & (time_s <= b)
    return mask


def _nanmax_rows(x: np.ndarray) -> np.ndarray:
    """Row-wise max ignoring NaN; NaN for all-NaN rows (without numpy's warning)."""
    ok = np.isfinite(x)
    out = np.where(ok, x, -np.inf).max(axis=1) if x.size else np.full(len(x), np.nan)
    return np.where(ok.any(axis=1), out, np.nan) if x.size else out


def _nanmean_rows(x: np.ndarray) -> np.ndarray:
    ok = np.isfinite(x)
    n = ok.sum(axis=1)
    total = np.where(ok, x, 0.0).sum(axis=1)
    return np.where(n > 0, total / np.maximum(n, 1), np.nan)


def _mouth_opening(frames: pd.DataFrame) -> np.ndarray:
    return _nanmean_rows(np.stack([frames[f"interlabial_gap_{s}"].to_numpy(dtype=float) for s in SIDES], axis=1))


def _find_peaks(x: np.ndarray, prominence: float, *, window: int, max_width: float | None = None) -> np.ndarray:
    """Local maxima of ``x`` rising at least ``prominence`` above both sides within ``±window`` samples.

    A small, windowed form of the usual peak prominence (as in
    ``scipy.signal.find_peaks(..., prominence=, wlen=)``, without importing
    scipy.signal); ``max_width`` (samples) bounds the width at half prominence.
    """
    x = np.asarray(x, dtype=float)
    n = len(x)
    if n < 3:
        return np.zeros(0, dtype=int)
    inner = (x[1:-1] > x[:-2]) & (x[1:-1] >= x[2:])
    out = []
    for i in np.flatnonzero(inner) + 1:
        lo, hi = max(0, i - window), min(n, i + window + 1)

        def base(side: np.ndarray) -> float:
            # lowest point before the signal rises above the peak again (side runs away from it)
            higher = np.flatnonzero(side > x[i])
            return float(side[: higher[0]].min() if len(higher) else side.min())

        prom = x[i] - max(base(x[lo:i][::-1]), base(x[i + 1 : hi]))
        if prom < prominence:
            continue
        if max_width is not None:
            half = x[i] - prom / 2
            a = i
            while a > lo and x[a - 1] > half:
                a -= 1
            b = i
            while b < hi - 1 and x[b + 1] > half:
                b += 1
            if b - a + 1 > max_width:
                continue
        out.append(i)
    return np.asarray(out, dtype=int)


def _speech_spans(frames: pd.DataFrame, exclude: np.ndarray) -> list[tuple[float, float]]:
    """Clusters of at least three quick mouth openings (bilabial words), as time spans."""
    t = frames["time_s"].to_numpy(dtype=float)
    step = _frame_step(t)
    opening = pd.Series(_mouth_opening(frames)).interpolate(limit_direction="both").to_numpy()
    if not np.isfinite(opening).any():
        return []
    peaks = _find_peaks(np.nan_to_num(opening), 1.5, window=max(2, int(round(1.0 / step))),
                        max_width=max(1.0, 0.5 / step))
    peaks = [int(p) for p in peaks if not exclude[p]]
    spans: list[tuple[float, float]] = []
    cluster: list[int] = []
    for p in peaks + [None]:  # type: ignore[list-item]
        if p is not None and cluster and t[p] - t[cluster[-1]] <= 0.8:
            cluster.append(p)
            continue
        if len(cluster) >= 3:
            spans.append((max(t[0], t[cluster[0]] - 0.25), min(t[-1], t[cluster[-1]] + 0.25)))
        cluster = [p] if p is not None else []
    return spans


@_quiet_nan
def bilabial_closures(frames: pd.DataFrame, start_s: float, end_s: float) -> list[int]:
    """Rows of the lip closures (local minima of the mouth opening) within a span.

    Returns at least the row of the smallest opening when the span has frames with a face.
    """
    t = frames["time_s"].to_numpy(dtype=float)
    rows = np.flatnonzero((t >= start_s) & (t <= end_s) & frames["face_found"].to_numpy(dtype=bool))
    if len(rows) == 0:
        return []
    opening = _mouth_opening(frames.iloc[rows])
    ok = np.isfinite(opening)
    if not ok.any():
        return []
    step = _frame_step(t)
    minima = _find_peaks(-np.where(ok, opening, np.nanmax(opening)), 0.5, window=max(2, int(round(1.0 / step))))
    if len(minima) == 0:
        minima = np.array([int(np.nanargmin(opening))])
    return [int(rows[i]) for i in minima]


def _rest_row(frames: pd.DataFrame, mask: np.ndarray, baseline: Mapping[str, float]) -> int:
    """The rest frame closest to the baseline (robustly scaled), preferring a frontal pose."""
    rows = np.flatnonzero(mask)
    if len(rows) == 0:
        return int(np.flatnonzero(frames["face_found"].to_numpy(dtype=bool))[0])
    cols = static_columns()
    x = frames.iloc[rows][cols].to_numpy(dtype=float)
    base = np.array([baseline[c] for c in cols])
    mad = np.nanmedian(np.abs(x - base), axis=0)
    mad = np.where(mad > 1e-6, mad, 1.0)
    cost = np.nansum(np.abs(x - base) / mad, axis=1) / len(cols)
    if "yaw_deg" in frames.columns:
        cost = cost + np.abs(np.nan_to_num(frames["yaw_deg"].to_numpy(dtype=float)[rows])) / 5.0
    return int(rows[int(np.argmin(cost))])


def _class_of(expression: str) -> str | None:
    return EXPRESSION_CLASSES.get(expression)


def _peak(frames: pd.DataFrame, scores: pd.DataFrame, cls: str | None, a: int, b: int) -> tuple[int, float]:
    """The peak frame of rows [a, b): the most typical frame of the plateau of the class score.

    The score is first smoothed by a running median over :data:`PEAK_MEDIAN_S`
    (a blink or one noisy frame cannot make a peak); the plateau is where it is
    within :data:`PLATEAU` of its maximum; the frame chosen there is the one
    whose static measures are closest to the plateau's median (so a blink
    during a smile is not where the smile is measured).
    """
    block = scores.iloc[a:b]
    values = block[cls].to_numpy(dtype=float) if cls else np.nanmax(block.to_numpy(dtype=float), axis=1)
    if not np.isfinite(values).any():
        return a + (b - a) // 2, float("nan")
    t = frames["time_s"].to_numpy(dtype=float)
    window = max(3, int(round(PEAK_MEDIAN_S / _frame_step(t))) | 1)
    smooth = pd.Series(values).rolling(window, center=True, min_periods=1).median().to_numpy()
    frontal = _frontal(frames.iloc[a:b])
    if (frontal & np.isfinite(smooth)).any():
        smooth = np.where(frontal, smooth, np.nan)  # measure where the face is frontal
    top = np.nanmax(smooth)
    plateau = np.flatnonzero(np.nan_to_num(smooth, nan=-np.inf) >= top - (1 - PLATEAU) * abs(top))
    x = frames.iloc[a:b][static_columns()].to_numpy(dtype=float)[plateau]
    med = np.nanmedian(x, axis=0)
    mad = np.nanmedian(np.abs(x - med), axis=0)
    mad = np.where(mad > 1e-6, mad, 1.0)
    cost = np.nanmean(np.abs(x - med) / mad, axis=1)
    k = int(plateau[int(np.nanargmin(cost))]) if np.isfinite(cost).any() else int(plateau[0])
    return a + k, float(smooth[k])


def _frontal(frames: pd.DataFrame) -> np.ndarray:
    """Frames whose head pose allows frontal 2-D measures (yaw and pitch limits)."""
    ok = np.ones(len(frames), dtype=bool)
    for col, limit in (("yaw_deg", PEAK_MAX_YAW_DEG), ("pitch_deg", PEAK_MAX_PITCH_DEG)):
        if col in frames.columns:
            ok &= np.abs(np.nan_to_num(frames[col].to_numpy(dtype=float), nan=90.0)) <= limit
    return ok


def _label_smile(frames: pd.DataFrame, row: int, baseline: Mapping[str, float]) -> str:
    gap = np.nanmean([frames[f"interlabial_gap_{s}"].iat[row] - baseline[f"interlabial_gap_{s}"] for s in SIDES])
    return "smile_open" if np.isfinite(gap) and gap >= OPEN_SMILE_GAP_MM else "smile_closed"


def _auto_events(
    frames: pd.DataFrame, scores: pd.DataFrame, baseline: Mapping[str, float], exclude: np.ndarray
) -> list[DetectedEvent]:
    t = frames["time_s"].to_numpy(dtype=float)
    values = scores[list(_CLASSES)].to_numpy(dtype=float)
    activity = np.where(exclude, 0.0, np.nan_to_num(_nanmax_rows(values), nan=0.0))
    activity = pd.Series(activity).rolling(3, center=True, min_periods=1).median().to_numpy()
    # hysteresis
    on = np.zeros(len(t), dtype=bool)
    state = False
    for i, v in enumerate(activity):
        state = v > EVENT_ON if not state else v > EVENT_OFF
        on[i] = state
    segs: list[tuple[int, int, str]] = []
    for a, b in _runs(on):
        block = np.nan_to_num(values[a:b])
        cls = _CLASSES[int(np.argmax(block.sum(axis=0)))]
        segs.append((a, b, cls))
    # merge same-class neighbours separated by a short dip
    merged: list[tuple[int, int, str]] = []
    for a, b, cls in segs:
        if merged and merged[-1][2] == cls and t[a] - t[merged[-1][1] - 1] <= MERGE_GAP_S:
            merged[-1] = (merged[-1][0], b, cls)
        else:
            merged.append((a, b, cls))
    events: list[DetectedEvent] = []
    for a, b, cls in merged:
        dur = _duration(t, a, b)
        if dur < (MIN_EYE_CLOSURE_S if cls == "eye_closure" else MIN_EVENT_S):
            continue
        row, score = _peak(frames, scores, cls, a, b)
        expression = _label_smile(frames, row, baseline) if cls == "smile" else cls
        events.append(DetectedEvent(expression, float(t[a]), float(t[b - 1]), float(t[row]), row, score))
    return events


@_quiet_nan
def segment(
    frames: pd.DataFrame,
    *,
    spans: Sequence[EventSpan] | None = None,
    rest_mask: np.ndarray | None = None,
) -> Segmentation:
    """Find rest periods, the rest baseline and the expression events.

    Parameters
    ----------
    frames : DataFrame
        The per-frame series: ``time_s``, ``face_found``, ``yaw_deg``, static
        measure columns ``<name>_<side>`` in mm and ``bs_*`` blendshape columns.
    spans : sequence of EventSpan, optional
        User-given events (and rest periods, for ``rest`` rows) that replace
        the automatic ones.
    rest_mask : ndarray of bool, optional
        Frames to use as rest, overriding the automatic rest detection
        (``rest`` rows of ``spans`` do the same).

    Returns
    -------
    Segmentation

    Raises
    ------
    ValueError
        If no frame has a face.
    """
    t = frames["time_s"].to_numpy(dtype=float)
    face = frames["face_found"].to_numpy(dtype=bool)
    if not face.any():
        raise ValueError("no frame has a face")
    warnings: list[str] = []
    yaw = np.abs(np.nan_to_num(frames["yaw_deg"].to_numpy(dtype=float), nan=90.0)) if "yaw_deg" in frames else np.zeros(len(t))
    usable = face & (yaw <= REST_MAX_YAW_DEG)
    if not usable.any():
        usable = face
        warnings.append(f"head yaw exceeds {REST_MAX_YAW_DEG:.0f} deg throughout: frontal measures unreliable")
    spans = list(spans or [])
    rest_spans = [(s.start_s, s.end_s) for s in spans if s.expression == "rest"]
    event_spans = [s for s in spans if s.expression != "rest"]

    if rest_mask is not None:
        given_rest = np.asarray(rest_mask, dtype=bool) & face
    elif rest_spans:
        given_rest = _in_spans(t, rest_spans) & face
        if not given_rest.any():
            warnings.append("the events file's rest rows hold no frame with a face; rest detected automatically")
    else:
        given_rest = None

    # 1. provisional baseline: the given rest, or the frames ranked most neutral by both
    #    the blendshapes (absolute) and the landmarks (against the whole video's median)
    if given_rest is not None and given_rest.any():
        mask0 = given_rest
    else:
        rough = expression_scores(frames, _median_baseline(frames, usable))
        act = _nanmax_rows(rough.to_numpy(dtype=float))
        names = [f"bs_{b}" for b in _NON_NEUTRAL if f"bs_{b}" in frames.columns]
        if names:
            bs = frames[names].to_numpy(dtype=float).sum(axis=1)
            # the median of an expressive video is no rest: add the blendshape activity above
            # the video's least active frame, on the scale of the class scores
            act = act + (bs - np.nanmin(bs)) / _BLENDSHAPE_FULL
        cand = usable & np.isfinite(act)
        mask0 = cand & (act <= np.nanquantile(act[cand], 0.3)) if cand.any() else usable
    baseline = _median_baseline(frames, mask0)
    scores = expression_scores(frames, baseline)

    # 2. rest periods
    event_mask = _in_spans(t, [(s.start_s, s.end_s) for s in event_spans])
    if given_rest is not None and given_rest.any():
        rest = given_rest
    else:
        values = np.nan_to_num(scores.to_numpy(dtype=float), nan=np.inf)
        eye = list(scores.columns).index("eye_closure")
        still = np.delete(values, eye, axis=1).max(axis=1) < REST_SCORE
        eyes_open = _bridge(values[:, eye] < REST_SCORE, t, MAX_BLINK_S)  # blinks do not end a rest
        calm = usable & still & eyes_open & ~event_mask
        rest = np.zeros(len(t), dtype=bool)
        for a, b in _runs(calm):
            if _duration(t, a, b) >= MIN_REST_S:
                rest[a:b] = True
        if not rest.any():
            warnings.append(
                f"no rest period of {MIN_REST_S} s found: baseline taken from the least active frames; "
                "give rest rows in an events CSV for a reliable baseline"
            )
            rest = mask0
    baseline = _median_baseline(frames, rest & face)
    scores = expression_scores(frames, baseline)
    rest_periods = [(float(t[a]), float(t[b - 1])) for a, b in _runs(rest)]

    # 3. events
    events: list[DetectedEvent] = []
    if event_spans:
        for s in event_spans:
            rows = np.flatnonzero((t >= s.start_s) & (t <= s.end_s))
            if len(rows) == 0 or not face[rows].any():
                warnings.append(f"{s.expression} {s.start_s:g}-{s.end_s:g} s: no frame with a face; skipped")
                continue
            a, b = int(rows[0]), int(rows[-1]) + 1
            closures: tuple[int, ...] = ()
            if s.expression == "bilabial":
                closures = tuple(bilabial_closures(frames, s.start_s, s.end_s))
                row, score = _worst_closure(frames, closures), float("nan")
            else:
                row, score = _peak(frames, scores, _class_of(s.expression), a, b)
            events.append(DetectedEvent(s.expression, s.start_s, s.end_s, float(t[row]), row, score, "csv", closures))
    else:
        speech = _speech_spans(frames, rest)
        speech_mask = _in_spans(t, speech)
        for a_s, b_s in speech:
            closures = tuple(bilabial_closures(frames, a_s, b_s))
            if closures:
                row = _worst_closure(frames, closures)
                events.append(DetectedEvent("bilabial", a_s, b_s, float(t[row]), row, float("nan"), "auto", closures))
        events += _auto_events(frames, scores, baseline, rest | speech_mask | ~face)
        events.sort(key=lambda e: e.start_s)
    return Segmentation(rest_periods, rest, baseline, _rest_row(frames, rest, baseline), events, scores, warnings)


def _worst_closure(frames: pd.DataFrame, closures: Sequence[int]) -> int:
    """The closure with the widest lip gap (the poorest seal)."""
    if not closures:
        return 0
    gaps = [np.nanmax([frames[f"interlabial_gap_{s}"].iat[r] for s in SIDES]) for r in closures]
    return int(closures[int(np.nanargmax(gaps))]) if np.isfinite(gaps).any() else int(closures[0])


# --------------------------------------------------------------------------- coupling
@_quiet_nan
def eye_commissure_coupling(
    frames: pd.DataFrame, side: str, *, max_lag_s: float = MAX_LAG_S
) -> tuple[float, float]:
    """Peak cross-correlation of eye aperture and commissure movement on one side, and its lag.

    Eye aperture is ``palpebral_fissure_height_<side>``, commissure movement
    ``commissure_movement_<side>`` (both mm). Gaps (frames without a face) are
    interpolated. The lag searched is within ``±max_lag_s``; a positive lag
    means the eye follows the commissure. Synkinetic eye narrowing with
    mouth movement gives a negative correlation.

    Returns
    -------
    (r, lag_s) : tuple of float
        NaN when either signal does not vary.
    """
    t = frames["time_s"].to_numpy(dtype=float)
    eye = pd.Series(frames[f"palpebral_fissure_height_{side}"].to_numpy(dtype=float)).interpolate(limit_direction="both")
    com = pd.Series(frames[f"commissure_movement_{side}"].to_numpy(dtype=float)).interpolate(limit_direction="both")
    x, y = com.to_numpy(), eye.to_numpy()
    if len(t) < 3 or not (np.isfinite(x).all() and np.isfinite(y).all()):
        return float("nan"), float("nan")
    x, y = x - x.mean(), y - y.mean()
    sx, sy = x.std(), y.std()
    if sx < 1e-9 or sy < 1e-9:
        return float("nan"), float("nan")
    step = _frame_step(t)
    n = len(x)
    max_k = min(int(round(max_lag_s / step)), n - 2)
    best_r, best_k = 0.0, 0
    for k in range(-max_k, max_k + 1):
        # eye at t + k vs commissure at t
        a, b = (x[: n - k], y[k:]) if k >= 0 else (x[-k:], y[: n + k])
        r = float(np.mean((a - a.mean()) * (b - b.mean())) / max(a.std() * b.std(), 1e-12))
        if abs(r) > abs(best_r):
            best_r, best_k = r, k
    return best_r, best_k * step


# --------------------------------------------------------------------------- indicators
class _HasMeasures(Protocol):
    expression: str
    measures: list[Measure]


def _mean(values: Sequence[float]) -> float:
    v = np.asarray([x for x in values if np.isfinite(x)], dtype=float)
    return float(v.mean()) if len(v) else float("nan")


def _ratio(affected: float, healthy: float) -> float:
    return affected / healthy if np.isfinite(affected) and np.isfinite(healthy) and abs(healthy) > 1e-9 else float("nan")


@_quiet_nan
def indicators(
    events: Sequence[_HasMeasures],
    frames: pd.DataFrame,
    segmentation: Segmentation,
    *,
    rest_measures: Sequence[Measure] = (),
    affected_side: str | None = None,
) -> list[Measure]:
    """Synkinesis and oral-competence indicators of one video.

    Event values are means over the events of the trigger expression, taken
    from each event's peak measures (tracked against the rest frame).

    Synkinesis (per side; trigger -> target)
        ``smile_eye_narrowing`` (%): ``100 * (1 - fissure at smile peak / fissure at rest)``.
        ``pucker_eye_narrowing`` (%): the same at pucker peaks.
        ``eye_closure_commissure_movement`` (mm): commissure movement at eye-closure peaks.
        ``eye_aperture_commissure_correlation`` (r) and ``eye_aperture_commissure_lag`` (s):
        peak cross-correlation over the whole video (:func:`eye_commissure_coupling`).
    Oral competence
        ``eee_lower_lip_depression`` (mm, per side, + down) at "eee" peaks, and its
        ``_ratio`` affected / healthy (side ``midline``) when the affected side is known.
        ``rest_interlabial_gap`` (mm, per side): median over the rest frames (lip seal at rest).
        ``bilabial_interlabial_gap`` (mm, per side): median over the lip closures of bilabial words.
        ``pucker_commissure_shortening`` (mm, per side): commissure movement toward the
        midline at pucker peaks; ``pucker_symmetry`` (midline): smaller / larger side (1 =
        symmetric) and ``pucker_commissure_shortening_ratio`` affected / healthy.

    Indicators whose trigger is absent from the video are left out.

    Parameters
    ----------
    events : sequence
        Objects with ``expression`` and ``measures`` (the photo contract rows at the peak).
    frames : DataFrame
        The per-frame series with movement columns.
    segmentation : Segmentation
    rest_measures : sequence of Measure
        Static measures of the rest frame the events were measured against
        (for the pucker shortening); without them the series baseline is used.
    affected_side : {"left", "right"} or None
    """
    rows: list[Measure] = []

    def add(name: str, side: str, value: float) -> None:
        rows.append(Measure(name, side, float(value), INDICATOR_UNITS[name]))

    def of(cls: str) -> list[_HasMeasures]:
        return [e for e in events if EXPRESSION_CLASSES.get(e.expression) == cls]

    for trigger, name in (("smile", "smile_eye_narrowing"), ("pucker", "pucker_eye_narrowing")):
        evs = of(trigger)
        if evs:
            for side in SIDES:
                add(name, side, -_mean([value_of(e.measures, "palpebral_fissure_change", side) for e in evs]))
    evs = of("eye_closure")
    if evs:
        for side in SIDES:
            add("eye_closure_commissure_movement", side, _mean([value_of(e.measures, "commissure_movement", side) for e in evs]))
    if all(f"commissure_movement_{s}" in frames.columns for s in SIDES):
        face = frames["face_found"].to_numpy(dtype=bool)
        for side in SIDES:
            r, lag = eye_commissure_coupling(frames.loc[face], side)
            if np.isfinite(r):
                add("eye_aperture_commissure_correlation", side, r)
                add("eye_aperture_commissure_lag", side, lag)

    affected = affected_side if affected_side in SIDES else None
    healthy = None if affected is None else ("left" if affected == "right" else "right")
    evs = of("lower_teeth")
    if evs:
        dep = {s: -_mean([value_of(e.measures, "lower_lip_movement", s) for e in evs]) for s in SIDES}
        for side in SIDES:
            add("eee_lower_lip_depression", side, dep[side])
        if affected and healthy:
            add("eee_lower_lip_depression_ratio", "midline", _ratio(dep[affected], dep[healthy]))
    rest = segmentation.rest_mask & frames["face_found"].to_numpy(dtype=bool)
    if rest.any():
        for side in SIDES:
            add("rest_interlabial_gap", side, float(np.nanmedian(frames.loc[rest, f"interlabial_gap_{side}"])))
    closures = sorted({r for e in segmentation.events if e.expression == "bilabial" for r in e.closure_rows})
    if closures:
        for side in SIDES:
            add("bilabial_interlabial_gap", side, float(np.nanmedian(frames[f"interlabial_gap_{side}"].iloc[closures])))
    evs = of("pucker")
    if evs:
        short: dict[str, float] = {}
        for side in SIDES:
            rest_x = value_of(rest_measures, "commissure_x", side)
            if not np.isfinite(rest_x):
                rest_x = segmentation.baseline.get(f"commissure_x_{side}", float("nan"))
            short[side] = _mean([rest_x - value_of(e.measures, "commissure_x", side) for e in evs])
            add("pucker_commissure_shortening", side, short[side])
        lo, hi = sorted([short["left"], short["right"]])
        add("pucker_symmetry", "midline", lo / hi if np.isfinite(lo) and hi > 1e-9 and lo >= 0 else float("nan"))
        if affected and healthy:
            add("pucker_commissure_shortening_ratio", "midline", _ratio(short[affected], short[healthy]))
    return rows


def rest_measures_from_baseline(baseline: Mapping[str, float], affected_side: str | None = None) -> list[Measure]:
    """The rest baseline as photo-contract rows (static measures and their asymmetry)."""
    rows = [
        Measure(name, side, float(baseline[f"{name}_{side}"]), UNITS[name])
        for name in STATIC_MEASURES
        for side in SIDES
    ]
    return rows + asymmetry_measures(rows, affected_side)
