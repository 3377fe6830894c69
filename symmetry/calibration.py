"""Millimetre scale from the iris (the only anatomical ruler in a face photo).

The horizontal visible iris diameter is about 11.77 mm in adults
(Emotrics default), nearly independent of age, sex and expression, and is not
covered by the lids along the horizontal line through the iris centre.
``mm_per_px = iris_mm / mean horizontal iris diameter in pixels``.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

import numpy as np

from .errors import CalibrationError, FaceTooSmallError, IrisHiddenError
from .landmarks import CONTOURS, Side

__all__ = [
    "DEFAULT_IRIS_MM",
    "MIN_IRIS_PX",
    "CLOSED_FRACTION",
    "ScaleSource",
    "Calibration",
    "iris_diameters_px",
    "iris_visible",
    "lid_gap_fraction",
    "require_iris_px",
    "calibrate_from_iris",
    "manual_calibration",
    "session_calibration",
]

#: Mean horizontal visible iris diameter of adults, mm.
DEFAULT_IRIS_MM = 11.77
#: Below this horizontal iris diameter (pixels) a photo is refused: one pixel would
#: then be over 2 mm, the perception threshold of an eyelid asymmetry.
MIN_IRIS_PX = 6.0
#: Above this relative difference between the two irises the scale is flagged.
_IRIS_MISMATCH_FLAG = 0.10
#: An eye whose lid gap at the pupil is under this fraction of its iris width is closed for calibration.
_MIN_OPEN_FRACTION = 0.35
#: ... and under this fraction, closed: its pupil cannot be seen at all.
CLOSED_FRACTION = 0.15
#: Relative scale uncertainty assumed when only one iris can be measured.
_ONE_IRIS_REL_UNCERTAINTY = 0.03


class ScaleSource(str, enum.Enum):
    IRIS = "iris"  # measured on this photo
    MANUAL = "manual"  # given by the user
    SESSION = "session"  # carried over from the session's rest photo


@dataclass(frozen=True)
class Calibration:
    """A millimetre scale and where it came from.

    Attributes
    ----------
    mm_per_px : float
        Millimetres per image pixel.
    mm_per_px_uncertainty : float
        One standard uncertainty of ``mm_per_px``, same unit (from the
        disagreement of the two irises; 0 for a manual scale).
    source : ScaleSource
    iris_diameter_px : dict
        Horizontal iris diameter per patient side, pixels (NaN when not measured).
    iris_mm : float
        Assumed true iris diameter, mm.
    flags : tuple of str
        Quality flags, e.g. ``"iris_mismatch"``.
    """

    mm_per_px: float
    mm_per_px_uncertainty: float
    source: ScaleSource
    iris_diameter_px: dict[str, float]
    iris_mm: float = DEFAULT_IRIS_MM
    flags: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, object]:
        return {
            "mm_per_px": self.mm_per_px,
            "mm_per_px_uncertainty": self.mm_per_px_uncertainty,
            "source": self.source.value,
            "iris_diameter_px": dict(self.iris_diameter_px),
            "iris_mm": self.iris_mm,
            "flags": list(self.flags),
        }


def iris_diameters_px(points_px: np.ndarray) -> dict[Side, float]:
    """Horizontal iris diameter per patient side, pixels (medial to lateral contour point)."""
    pts = np.asarray(points_px, dtype=float)
    out: dict[Side, float] = {}
    for side in (Side.RIGHT, Side.LEFT):
        c = CONTOURS[side]
        out[side] = float(np.hypot(*(pts[c.iris_lateral, :2] - pts[c.iris_medial, :2])))
    return out


def lid_gap_fraction(points_px: np.ndarray) -> dict[Side, float]:
    """Lid gap at the pupil (upper to lower lid, across the inter-pupil line) per patient side,
    as a fraction of that eye's horizontal iris width (unitless; about 0.8-1.0 for an open eye)."""
    from .frame import pupil_frame
    from .measures import side_geometry

    pts = np.asarray(points_px, dtype=float)
    pix = pupil_frame(pts, 1.0).to_mm(pts)  # frame units = pixels
    diam = iris_diameters_px(pts)
    out = {}
    for side in (Side.RIGHT, Side.LEFT):
        g = side_geometry(pix, side)
        out[side] = float(g.upper_lid_at_pupil[1] - g.lower_lid_at_pupil[1]) / diam[side]
    return out


def iris_visible(points_px: np.ndarray, min_open: float = _MIN_OPEN_FRACTION) -> dict[Side, bool]:
    """Whether each iris is open enough to measure: lid gap at the pupil >= ``min_open`` of the
    iris width (default 35%, enough to measure the iris's width)."""
    return {side: gap >= min_open for side, gap in lid_gap_fraction(points_px).items()}


def require_iris_px(iris_px: float, source: str | None = None) -> None:
    """Refuse a face whose iris is narrower than :data:`MIN_IRIS_PX` pixels (or not measurable).

    Raises
    ------
    FaceTooSmallError
    """
    if not np.isfinite(iris_px) or iris_px < MIN_IRIS_PX:
        raise FaceTooSmallError(
            source,
            f"face too small: iris is {iris_px:.1f} px wide, under the {MIN_IRIS_PX:.0f} px minimum; "
            "use a closer or higher-resolution photo",
        )


def calibrate_from_iris(
    points_px: np.ndarray,
    *,
    iris_mm: float = DEFAULT_IRIS_MM,
    source: str | None = None,
) -> Calibration:
    """Scale from the mean horizontal iris diameter of both eyes.

    Raises
    ------
    CalibrationError
        If ``iris_mm`` is not positive.
    IrisHiddenError
        If both eyes are closed (lid gap under 35% of the iris width); with one
        eye closed, the other iris alone gives the scale (flag ``one_iris_hidden``).
    FaceTooSmallError
        If the irises are narrower than :data:`MIN_IRIS_PX` pixels.
    """
    if not (iris_mm > 0):
        raise CalibrationError(f"`iris_mm` must be positive, got {iris_mm}")
    diam = iris_diameters_px(points_px)
    visible = iris_visible(points_px)
    flags: list[str] = []
    if not any(visible.values()):
        raise IrisHiddenError(
            source,
            "eyes closed or irises hidden: this photo gives no scale; measure it with the "
            "session's rest photo (--rest) or give --mm-per-px",
        )
    if not all(visible.values()):
        flags.append("one_iris_hidden")
        diam = {s: d for s, d in diam.items() if visible[s]}
    values = np.array(list(diam.values()))
    mean = float(values.mean())
    require_iris_px(mean, source)
    mm_per_px = iris_mm / mean
    # Standard uncertainty of the mean of two readings: |d1 - d2| / 2, propagated to the scale.
    if len(values) == 2:
        rel = float(abs(values[0] - values[1]) / 2.0 / mean)
        if abs(values[0] - values[1]) / mean > _IRIS_MISMATCH_FLAG:
            flags.append("iris_mismatch")
    else:
        rel = _ONE_IRIS_REL_UNCERTAINTY
    return Calibration(
        mm_per_px=mm_per_px,
        mm_per_px_uncertainty=mm_per_px * rel,
        source=ScaleSource.IRIS,
        iris_diameter_px={s.value: diam.get(s, float("nan")) for s in (Side.RIGHT, Side.LEFT)},
        iris_mm=iris_mm,
        flags=tuple(flags),
    )


def manual_calibration(mm_per_px: float) -> Calibration:
    """A scale given by the user (e.g. from a ruler in the photo).

    Raises
    ------
    CalibrationError
        If ``mm_per_px`` is not a positive finite number.
    """
    if not (np.isfinite(mm_per_px) and mm_per_px > 0):
        raise CalibrationError(f"`mm_per_px` must be a positive number, got {mm_per_px}")
    return Calibration(
        mm_per_px=float(mm_per_px),
        mm_per_px_uncertainty=0.0,
        source=ScaleSource.MANUAL,
        iris_diameter_px={s.value: float("nan") for s in (Side.RIGHT, Side.LEFT)},
    )


def session_calibration(
    reference: Calibration, reference_ipd_px: float, ipd_px: float
) -> Calibration:
    """Carry a session's scale (measured on its rest photo) to another photo.

    The inter-pupil distance (IPD) in pixels transfers the scale between photos
    taken at slightly different distances or resolutions:
    ``mm_per_px = reference.mm_per_px * reference_ipd_px / ipd_px``.
    """
    if not (reference_ipd_px > 0 and ipd_px > 0):
        raise CalibrationError("inter-pupil distance must be positive to transfer the session scale")
    factor = reference_ipd_px / ipd_px
    return Calibration(
        mm_per_px=reference.mm_per_px * factor,
        mm_per_px_uncertainty=reference.mm_per_px_uncertainty * factor,
        source=ScaleSource.SESSION if reference.source is ScaleSource.IRIS else reference.source,
        iris_diameter_px=dict(reference.iris_diameter_px),
        iris_mm=reference.iris_mm,
        flags=reference.flags,
    )
