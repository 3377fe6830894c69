"""Per-side facial measures from landmarks in the pupil frame.

Every function here is pure: it takes landmark arrays already converted to
pupil-frame millimetres (``(478, 2)``, x toward the patient's left, y up; see
:mod:`symmetry.frame`) and returns :class:`Measure` rows. Sides are the
patient's (the model's labels); mirrored photos are relabelled by the caller.

Definitions follow the project reference (``clinical-measures.md`` section 5):

Static (unit)
    ``commissure_x`` (mm): lateral distance of the oral commissure from the midline.
    ``commissure_y`` (mm): vertical position of the commissure, + up (negative: below the pupils).
    ``commissure_excursion`` (mm): lower-lip midline point (17) to commissure (Emotrics).
    ``smile_angle`` (deg): angle of the line 17 -> commissure above the horizontal.
    ``palpebral_fissure_height`` (mm): upper to lower lid margin, vertically, at the pupil's x.
    ``mrd1`` / ``mrd2`` (mm): iris centre to upper / lower lid margin at the pupil's x
    (so ``mrd1 + mrd2 == palpebral_fissure_height``). A lid margin is read there on a
    smooth curve through its landmarks (cubic Hermite), other contours on straight segments.
    ``brow_height`` (mm): iris centre to the upper brow edge at the pupil's x.
    ``upper_lip_height`` / ``lower_lip_height`` (mm): vertical position (+ up) of the
    outer upper / lower lip contour halfway between the midline and the commissure.
    ``interlabial_gap`` (mm): inner upper minus inner lower lip at the same halfway
    line, 0 when closed.

Movement, expression minus rest (unit)
    ``commissure_movement`` (mm): length of the commissure displacement vector.
    ``commissure_movement_angle`` (deg): its direction above the horizontal,
    lateral positive (0 = straight out, 90 = straight up, 180 = toward the midline);
    NaN when the commissure moved less than 0.1 mm (no direction to speak of).
    ``palpebral_fissure_change`` (%): 100 * (PFH_expression / PFH_rest - 1).
    ``brow_movement`` (mm): change of ``brow_height``, + up.
    ``lower_lip_movement`` (mm): change of ``lower_lip_height``, + up (depression < 0).

Asymmetry (side ``midline``)
    ``<name>_asymmetry``: |left - right|, unit of the measure.
    ``<name>_ratio``: affected / healthy (unit ``ratio``), only when the affected side is known.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Iterable

import numpy as np

from .frame import lateral_sign
from .landmarks import CONTOURS, LM, Side

__all__ = [
    "Measure",
    "STATIC_MEASURES",
    "MOVEMENT_MEASURES",
    "UNITS",
    "static_measures",
    "static_measure_array",
    "movement_measures",
    "asymmetry_measures",
    "value_of",
    "side_geometry",
    "SideGeometry",
]

#: Static measure names, in report order.
STATIC_MEASURES = (
    "commissure_x",
    "commissure_y",
    "commissure_excursion",
    "smile_angle",
    "palpebral_fissure_height",
    "mrd1",
    "mrd2",
    "brow_height",
    "upper_lip_height",
    "lower_lip_height",
    "interlabial_gap",
)
#: Movement measure names (need a rest photo), in report order.
MOVEMENT_MEASURES = (
    "commissure_movement",
    "commissure_movement_angle",
    "palpebral_fissure_change",
    "brow_movement",
    "lower_lip_movement",
)
UNITS: dict[str, str] = {name: "mm" for name in STATIC_MEASURES + MOVEMENT_MEASURES}
UNITS.update(
    smile_angle="deg",
    commissure_movement_angle="deg",
    palpebral_fissure_change="%",
)

#: Below this commissure movement (mm) its direction is not reported (NaN): it would be noise.
MIN_DIRECTION_MM = 0.1

# Ratios are not meaningful for signed positions or angles (they cross zero).
_RATIO_MEASURES = frozenset(
    {
        "commissure_x",
        "commissure_excursion",
        "palpebral_fissure_height",
        "mrd1",
        "mrd2",
        "brow_height",
        "commissure_movement",
        "brow_movement",
        "lower_lip_movement",
        "palpebral_fissure_change",
    }
)


@dataclass(frozen=True)
class Measure:
    """One number: ``name`` on ``side`` is ``value`` ``unit``."""

    name: str
    side: str  # "left", "right" or "midline" (patient's)
    value: float
    unit: str

    def to_dict(self) -> dict[str, object]:
        d = asdict(self)
        d["value"] = None if not np.isfinite(self.value) else float(self.value)
        return d


@dataclass(frozen=True)
class SideGeometry:
    """The points behind the measures of one side, pupil-frame mm.

    Used for measuring and for drawing (annotations show exactly these points).
    """

    commissure: np.ndarray
    lower_lip_mid: np.ndarray
    iris_center: np.ndarray
    upper_lid_at_pupil: np.ndarray
    lower_lid_at_pupil: np.ndarray
    brow_at_pupil: np.ndarray
    upper_lip_half: np.ndarray
    lower_lip_half: np.ndarray
    inner_upper_half: np.ndarray
    inner_lower_half: np.ndarray


def _y_at_x(points_mm: np.ndarray, chain: Iterable[int], x: float, smooth: bool = False) -> float:
    """y of a landmark chain at abscissa ``x`` (see :func:`_y_at_x_batch`)."""
    p = np.asarray(points_mm, dtype=float)[None, :, :2]
    return float(_y_at_x_batch(p, chain, np.array([float(x)]), smooth)[0])


def side_geometry(points_mm: np.ndarray, side: Side) -> SideGeometry:
    """The measured points of one patient side, in pupil-frame millimetres."""
    p = np.asarray(points_mm, dtype=float)[:, :2]
    c = CONTOURS[side]
    iris = p[c.iris_center]
    pupil_x = float(iris[0])
    commissure = p[c.commissure]
    half_x = commissure[0] / 2.0  # halfway between the facial midline (x = 0) and the commissure

    def at(chain: tuple[int, ...], x: float, smooth: bool = False) -> np.ndarray:
        return np.array([x, _y_at_x(p, chain, x, smooth)])

    return SideGeometry(
        commissure=commissure,
        lower_lip_mid=p[LM.LOWER_LIP_BOTTOM],
        iris_center=iris,
        upper_lid_at_pupil=at(c.upper_lid, pupil_x, smooth=True),
        lower_lid_at_pupil=at(c.lower_lid, pupil_x, smooth=True),
        brow_at_pupil=at(c.brow, pupil_x),
        upper_lip_half=at(c.outer_upper_lip, half_x),
        lower_lip_half=at(c.outer_lower_lip, half_x),
        inner_upper_half=at(c.inner_upper_lip, half_x),
        inner_lower_half=at(c.inner_lower_lip, half_x),
    )


def _static_values(g: SideGeometry, side: Side) -> dict[str, float]:
    s = lateral_sign(side)
    to_corner = g.commissure - g.lower_lip_mid
    return {
        "commissure_x": s * float(g.commissure[0]),
        "commissure_y": float(g.commissure[1]),
        "commissure_excursion": float(np.hypot(*to_corner)),
        "smile_angle": float(np.degrees(np.arctan2(to_corner[1], s * to_corner[0]))),
        "palpebral_fissure_height": float(g.upper_lid_at_pupil[1] - g.lower_lid_at_pupil[1]),
        "mrd1": float(g.upper_lid_at_pupil[1] - g.iris_center[1]),
        "mrd2": float(g.iris_center[1] - g.lower_lid_at_pupil[1]),
        "brow_height": float(g.brow_at_pupil[1] - g.iris_center[1]),
        "upper_lip_height": float(g.upper_lip_half[1]),
        "lower_lip_height": float(g.lower_lip_half[1]),
        "interlabial_gap": max(0.0, float(g.inner_upper_half[1] - g.inner_lower_half[1])),
    }


def static_measures(points_mm: np.ndarray) -> list[Measure]:
    """All static measures of both sides.

    Parameters
    ----------
    points_mm : ndarray of shape (478, 2)
        Landmarks in the pupil frame, millimetres (x to the patient's left, y up).

    Returns
    -------
    list of Measure
        One row per measure and side (right first), units as in :data:`UNITS`.
    """
    rows: list[Measure] = []
    values = {side: _static_values(side_geometry(points_mm, side), side) for side in (Side.RIGHT, Side.LEFT)}
    for name in STATIC_MEASURES:
        for side in (Side.RIGHT, Side.LEFT):
            rows.append(Measure(name, side.value, values[side][name], UNITS[name]))
    return rows


def _y_at_x_batch(points_mm: np.ndarray, chain: Iterable[int], x: np.ndarray, smooth: bool = False) -> np.ndarray:
    """y of a landmark chain at abscissa ``x``, for many frames: ``points_mm`` (n, 478, 2), ``x`` (n,) -> (n,).

    The chain's points are taken in order of x and joined by straight segments,
    or with ``smooth`` by a cubic Hermite curve through them (each point's slope
    that of the parabola through it and its neighbours). The lid margins use the
    curve: their highest point usually falls between two landmarks, and on a lid
    drooping 1-3 mm the straight chord there read 2-4% less than the drop.
    Clamped at the ends; NaN where a point or ``x`` is missing.
    """
    xy = points_mm[:, list(chain)]
    order = np.argsort(xy[..., 0], axis=1, kind="stable")
    xs = np.take_along_axis(xy[..., 0], order, axis=1)
    ys = np.take_along_axis(xy[..., 1], order, axis=1)
    k = xs.shape[1]
    # the segment [j, j+1] holding x (np.interp's rule: the last knot <= x), clamped at the ends
    j = np.clip((xs <= x[:, None]).sum(axis=1) - 1, 0, k - 2)
    rows = np.arange(len(x))
    x0, x1, y0, y1 = xs[rows, j], xs[rows, j + 1], ys[rows, j], ys[rows, j + 1]
    with np.errstate(invalid="ignore", divide="ignore"):
        t = np.clip(np.where(x1 > x0, (x - x0) / (x1 - x0), 0.0), 0.0, 1.0)
        if smooth:  # each knot's slope: the parabola's through it and its neighbours (the end segment's at an end)
            hs = np.diff(xs, axis=1)
            d = np.where(hs > 0, np.diff(ys, axis=1) / hs, 0.0)  # secant slopes
            m = np.empty_like(xs)
            m[:, 0], m[:, -1] = d[:, 0], d[:, -1]
            w = hs[:, :-1] + hs[:, 1:]
            m[:, 1:-1] = np.where(w > 0, (hs[:, 1:] * d[:, :-1] + hs[:, :-1] * d[:, 1:]) / w, 0.0)
            h = x1 - x0
            y = ((2 * t**3 - 3 * t**2 + 1) * y0 + (t**3 - 2 * t**2 + t) * h * m[rows, j]
                 + (-2 * t**3 + 3 * t**2) * y1 + (t**3 - t**2) * h * m[rows, j + 1])
        else:
            y = y0 + t * (y1 - y0)
    y = np.where(x <= xs[:, 0], ys[:, 0], y)
    y = np.where(x >= xs[:, -1], ys[:, -1], y)
    return np.where(np.isfinite(xs).all(axis=1) & np.isfinite(x), y, np.nan)


def static_measure_array(points_mm: np.ndarray) -> np.ndarray:
    """The static measures of many frames at once, vectorised.

    The same definitions as :func:`static_measures` (which it equals to
    rounding), for a video's per-frame series.

    Parameters
    ----------
    points_mm : ndarray of shape (n, 478, 2)
        Landmarks of ``n`` frames in their pupil frames (x to the patient's
        left, y up), any unit; NaN rows give NaN values.

    Returns
    -------
    ndarray of shape (n, len(STATIC_MEASURES), 2)
        ``[:, i, 0]`` the patient's right and ``[:, i, 1]`` the left value of
        ``STATIC_MEASURES[i]``, in the unit of ``points_mm`` (degrees for
        ``smile_angle``).
    """
    p = np.asarray(points_mm, dtype=float)[..., :2]
    if p.ndim != 3:
        raise ValueError(f"`points_mm` must have shape (n, 478, 2), got {p.shape}")
    out = np.empty((p.shape[0], len(STATIC_MEASURES), 2))
    lower_mid = p[:, LM.LOWER_LIP_BOTTOM]
    for k, side in enumerate((Side.RIGHT, Side.LEFT)):
        c = CONTOURS[side]
        s = lateral_sign(side)
        iris = p[:, c.iris_center]
        comm = p[:, c.commissure]
        half_x = comm[:, 0] / 2.0
        upper_lid = _y_at_x_batch(p, c.upper_lid, iris[:, 0], smooth=True)
        lower_lid = _y_at_x_batch(p, c.lower_lid, iris[:, 0], smooth=True)
        to_corner = comm - lower_mid
        inner_gap = _y_at_x_batch(p, c.inner_upper_lip, half_x) - _y_at_x_batch(p, c.inner_lower_lip, half_x)
        values = {
            "commissure_x": s * comm[:, 0],
            "commissure_y": comm[:, 1],
            "commissure_excursion": np.hypot(to_corner[:, 0], to_corner[:, 1]),
            "smile_angle": np.degrees(np.arctan2(to_corner[:, 1], s * to_corner[:, 0])),
            "palpebral_fissure_height": upper_lid - lower_lid,
            "mrd1": upper_lid - iris[:, 1],
            "mrd2": iris[:, 1] - lower_lid,
            "brow_height": _y_at_x_batch(p, c.brow, iris[:, 0]) - iris[:, 1],
            "upper_lip_height": _y_at_x_batch(p, c.outer_upper_lip, half_x),
            "lower_lip_height": _y_at_x_batch(p, c.outer_lower_lip, half_x),
            "interlabial_gap": np.where(np.isnan(inner_gap), np.nan, np.maximum(inner_gap, 0.0)),
        }
        for i, name in enumerate(STATIC_MEASURES):
            out[:, i, k] = values[name]
    return out


def movement_measures(rest_mm: np.ndarray, expression_mm: np.ndarray) -> list[Measure]:
    """Movement measures of both sides, expression minus rest.

    Both arrays are ``(478, 2)`` pupil-frame millimetres of the same patient;
    the pupils are the stable reference (Manktelow), so head translation and
    roll between the photos cancel.
    """
    rows: list[Measure] = []
    vals: dict[Side, dict[str, float]] = {}
    for side in (Side.RIGHT, Side.LEFT):
        g0, g1 = side_geometry(rest_mm, side), side_geometry(expression_mm, side)
        s0, s1 = _static_values(g0, side), _static_values(g1, side)
        d = g1.commissure - g0.commissure
        pfh0 = s0["palpebral_fissure_height"]
        vals[side] = {
            "commissure_movement": float(np.hypot(*d)),
            "commissure_movement_angle": float(np.degrees(np.arctan2(d[1], lateral_sign(side) * d[0])))
            if np.hypot(*d) >= MIN_DIRECTION_MM
            else float("nan"),
            "palpebral_fissure_change": 100.0 * (s1["palpebral_fissure_height"] / pfh0 - 1.0)
            if pfh0 > 1e-6
            else float("nan"),
            "brow_movement": s1["brow_height"] - s0["brow_height"],
            "lower_lip_movement": s1["lower_lip_height"] - s0["lower_lip_height"],
        }
    for name in MOVEMENT_MEASURES:
        for side in (Side.RIGHT, Side.LEFT):
            rows.append(Measure(name, side.value, vals[side][name], UNITS[name]))
    return rows


def value_of(measures: Iterable[Measure], name: str, side: str) -> float:
    """The value of the measure ``name`` on ``side`` (``left``, ``right``, ``midline``); NaN when absent."""
    for m in measures:
        if m.name == name and m.side == side:
            return m.value
    return float("nan")


def asymmetry_measures(measures: Iterable[Measure], affected_side: Side | str | None = None) -> list[Measure]:
    """|left - right| for every bilateral measure, and affected/healthy ratios.

    Ratios are given only for magnitudes (not signed positions or angles) and
    only when ``affected_side`` is known; a healthy value of 0 gives NaN.
    """
    by_name: dict[str, dict[str, Measure]] = {}
    for m in measures:
        if m.side in (Side.LEFT.value, Side.RIGHT.value):
            by_name.setdefault(m.name, {})[m.side] = m
    affected = Side(affected_side) if affected_side is not None else None
    rows: list[Measure] = []
    for name, sides in by_name.items():
        if len(sides) != 2:
            continue
        left, right = sides["left"], sides["right"]
        rows.append(Measure(f"{name}_asymmetry", Side.MIDLINE.value, abs(left.value - right.value), left.unit))
        if affected is not None and name in _RATIO_MEASURES:
            a, h = sides[affected.value].value, sides[affected.other.value].value
            ratio = a / h if abs(h) > 1e-9 else float("nan")
            rows.append(Measure(f"{name}_ratio", Side.MIDLINE.value, ratio, "ratio"))
    return rows
