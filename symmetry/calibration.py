"""Millimetre scale from the iris (the only anatomical ruler in a face photo).

The horizontal visible iris diameter is about 11.77 mm in adults
(Emotrics default), nearly independent of age, sex and expression, and is not
covered by the lids along the horizontal line through the iris centre.
``mm_per_px = iris_mm / mean horizontal iris diameter in pixels``.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

import numpy as np

from .errors import CalibrationError, FaceTooSmallError, IrisHiddenError
from .landmarks import CONTOURS, Side

__all__ = [
    "DEFAULT_IRIS_MM",
    "MIN_IRIS_PX",
    "LOW_RES_IRIS_PX",
    "CLOSED_FRACTION",
    "ScaleSource",
    "Calibration",
    "IRIS_METHODS",
    "IrisFit",
    "IrisReading",
    "fit_iris_edges",
    "read_irises",
    "iris_diameters_px",
    "iris_visible",
    "lid_gap_fraction",
    "require_iris_px",
    "low_resolution_warning",
    "calibrate_from_iris",
    "manual_calibration",
    "session_calibration",
]

#: Mean horizontal visible iris diameter of adults, mm.
DEFAULT_IRIS_MM = 11.77
#: Below this horizontal iris diameter (pixels) a photo is refused: one pixel would
#: then be over 2 mm, the perception threshold of an eyelid asymmetry.
MIN_IRIS_PX = 6.0
#: Below this horizontal iris diameter (pixels) a face is measured with a warning: one pixel is
#: then over 1.2 mm, and the lid skin has little texture to track (``benchmarks/validity.py``: 1-3 mm
#: lid slides recovered 91-117% and lid drops 86-123% on the astronaut portrait, 8.6 px iris).
LOW_RES_IRIS_PX = 10.0
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
        Quality flags, e.g. ``"iris_mismatch"``, ``"iris_edge_fallback"``.
    iris_method : str or None
        How the iris diameters were read: ``"model"`` (the landmark model's iris
        contour points) or ``"edge"`` (the image fit of the limbus,
        :func:`fit_iris_edges`); ``None`` for a manual scale.
    """

    mm_per_px: float
    mm_per_px_uncertainty: float
    source: ScaleSource
    iris_diameter_px: dict[str, float]
    iris_mm: float = DEFAULT_IRIS_MM
    flags: tuple[str, ...] = ()
    iris_method: str | None = "model"

    def to_dict(self) -> dict[str, object]:
        return {
            "mm_per_px": self.mm_per_px,
            "mm_per_px_uncertainty": self.mm_per_px_uncertainty,
            "source": self.source.value,
            "iris_diameter_px": dict(self.iris_diameter_px),
            "iris_mm": self.iris_mm,
            "flags": list(self.flags),
            "iris_method": self.iris_method,
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


def low_resolution_warning(iris_px: float, what: str = "photo") -> str | None:
    """The warning for a face whose iris is under :data:`LOW_RES_IRIS_PX` pixels, else ``None``.

    ``iris_px``: mean horizontal iris diameter, pixels; ``what``: "photo" or "video".
    """
    if not np.isfinite(iris_px) or iris_px >= LOW_RES_IRIS_PX:
        return None
    return (
        f"low resolution: iris {iris_px:.1f} px wide ({DEFAULT_IRIS_MM / iris_px:.1f} mm per pixel), under "
        f"{LOW_RES_IRIS_PX:.0f} px: eyelid changes and other differences under about 1.5 mm are unreliable; "
        f"use a closer or higher-resolution {what}"
    )


def calibrate_from_iris(
    points_px: np.ndarray,
    *,
    iris_mm: float = DEFAULT_IRIS_MM,
    source: str | None = None,
    rgb: np.ndarray | None = None,
    method: str = "model",
) -> Calibration:
    """Scale from the mean horizontal iris diameter of both eyes.

    ``method="model"`` reads the diameters off the model's iris contour points;
    ``method="edge"`` fits the limbus in ``rgb`` (:func:`read_irises`), falling
    back to the model (flag ``iris_edge_fallback``) when the fit is rejected.
    The uncertainty combines the two eyes' disagreement with, for the edge
    fit, the standard errors of the two fitted diameters.

    Raises
    ------
    CalibrationError
        If ``iris_mm`` is not positive, ``method`` is unknown, or ``"edge"`` has no ``rgb``.
    IrisHiddenError
        If both eyes are closed (lid gap under 35% of the iris width); with one
        eye closed, the other iris alone gives the scale (flag ``one_iris_hidden``).
    FaceTooSmallError
        If the irises are narrower than :data:`MIN_IRIS_PX` pixels.
    """
    if not (iris_mm > 0):
        raise CalibrationError(f"`iris_mm` must be positive, got {iris_mm}")
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
    reading = read_irises(points_px, rgb, method=method, sides=tuple(s for s in (Side.RIGHT, Side.LEFT) if visible[s]))
    flags.extend(reading.flags)
    diam = reading.diameter_px
    values = np.array(list(diam.values()))
    mean = float(values.mean())
    require_iris_px(mean, source)
    mm_per_px = iris_mm / mean
    # Standard uncertainty of the mean of two readings: |d1 - d2| / 2, propagated to the scale;
    # with the edge fit, also the fits' own standard errors (of the mean: sqrt(se1^2 + se2^2) / 2).
    se = np.array([v for v in reading.se_px.values() if np.isfinite(v)])
    fit_rel = float(np.sqrt(np.sum(se**2)) / len(values) / mean) if len(se) else 0.0
    if len(values) == 2:
        rel = float(np.hypot(abs(values[0] - values[1]) / 2.0 / mean, fit_rel))
        if abs(values[0] - values[1]) / mean > _IRIS_MISMATCH_FLAG:
            flags.append("iris_mismatch")
    else:
        rel = max(_ONE_IRIS_REL_UNCERTAINTY, fit_rel)
    return Calibration(
        mm_per_px=mm_per_px,
        mm_per_px_uncertainty=mm_per_px * rel,
        source=ScaleSource.IRIS,
        iris_diameter_px={s.value: diam.get(s, float("nan")) for s in (Side.RIGHT, Side.LEFT)},
        iris_mm=iris_mm,
        flags=tuple(flags),
        iris_method=reading.method,
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
        iris_method=None,
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
        iris_method=reference.iris_method,
    )


# --------------------------------------------------------------------------- #
# Image-based iris edge fit
# --------------------------------------------------------------------------- #
#: Rays are cast within this angle (degrees) of the eye's horizontal axis, on both sides.
_RAY_HALF_ANGLE_DEG = 35.0
#: Angular step between rays, degrees.
_RAY_STEP_DEG = 5.0
#: Radial search band, as fractions of the model's iris radius.
_BAND = (0.7, 1.3)
#: Step along a ray, px (sub-pixel sampling with bicubic interpolation).
_RADIAL_STEP_PX = 0.1
#: Luminance smoothing before sampling, as a fraction of the model's iris radius (at least 0.5 px).
_SIGMA_FRAC = 0.06
#: A ray's step must be at least this fraction of the median step of its side's rays.
_MIN_STRENGTH_FRAC = 0.35
#: Edge points nearer the model's lid contours than this fraction of the iris radius are dropped.
_LID_MARGIN = 0.0
#: Half-width of the derivative window the edge's centroid is taken over, fraction of the radius (>= 1.5 px).
_CENTROID_FRAC = 0.12
#: Fewest accepted rays on each side (medial, lateral) for a fit.
_MIN_RAYS = 3
#: A fit over this relative distance from the model's diameter is rejected.
_MAX_MODEL_DEV = 0.20
#: A fit whose centre is over this fraction of the model radius from the model's centre is rejected.
_MAX_CENTRE_OFF = 0.35
#: Above this relative difference between the two eyes' fitted diameters, the fits are rejected.
_EDGE_PAIR_MAX = 0.08
#: Iris diameter methods: the model's contour points, or the image-based edge fit.
IRIS_METHODS = ("model", "edge")


@dataclass(frozen=True)
class IrisFit:
    """The image-based fit of one iris's horizontal edges (the limbus).

    Positions are image pixels in MediaPipe's edge-based convention (the centre
    of pixel (0, 0) is (0.5, 0.5)), like ``points_px``.

    Attributes
    ----------
    side : Side
        The patient's side (``Side.LEFT`` is the image's right in an unmirrored photo).
    diameter_px : float
        Horizontal iris diameter of the fitted circle, px (NaN when not fitted).
    model_diameter_px : float
        The model's diameter (medial to lateral contour point), px.
    centre_px, medial_px, lateral_px : ndarray of shape (2,)
        Fitted centre, and the sub-pixel medial and lateral limbus points on the
        eye's horizontal axis (parallel to the line through both iris centres).
    diameter_se_px : float
        Standard error of ``diameter_px`` from the scatter of the edge points, px.
    residual_px : float
        RMS distance of the accepted edge points from the fitted circle, px.
    n_medial, n_lateral : int
        Rays whose edge was used on each side (of ``n_rays`` per side).
    accepted : bool
        Whether the fit passed every check.
    reason : str
        Why not (``too_few_rays``, ``model_disagreement``, ``centre_off``,
        ``poor_fit``, ``no_model_iris``, ``outside_image``); empty when accepted.
    edge_points_px : ndarray of shape (n, 2)
        The edge points used, px (for drawing).
    """

    side: Side
    diameter_px: float
    model_diameter_px: float
    centre_px: np.ndarray
    medial_px: np.ndarray
    lateral_px: np.ndarray
    diameter_se_px: float
    residual_px: float
    n_medial: int
    n_lateral: int
    n_rays: int
    accepted: bool
    reason: str = ""
    edge_points_px: np.ndarray = field(default_factory=lambda: np.zeros((0, 2)))


def _fit_circle(uv: np.ndarray, x0: np.ndarray, f_scale: float | None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Circle through edge points ``uv`` (eye-axis coordinates, px, the model's iris centre at
    the origin) with its centre on the axis (``v = 0``): the lids leave only short arcs either
    side, too short to give the curvature, so the centre height is the model's and the fit
    gives the horizontal centre and the radius. Robust ``soft_l1`` loss of scale ``f_scale``
    px, or plain least squares for ``None``. Returns ``(u0, r)``, the residuals (px) and the
    parameter covariance."""
    from scipy.optimize import least_squares

    def res(p: np.ndarray) -> np.ndarray:
        return np.hypot(uv[:, 0] - p[0], uv[:, 1]) - p[1]

    sol = least_squares(res, x0, loss="linear" if f_scale is None else "soft_l1", f_scale=f_scale or 1.0)
    r = res(sol.x)
    j = sol.jac
    try:
        cov = np.linalg.inv(j.T @ j) * float(np.sum(r**2) / max(len(uv) - 2, 1))
    except np.linalg.LinAlgError:
        cov = np.full((2, 2), np.inf)
    return sol.x, r, cov


def _edges_on_rays(gray: np.ndarray, centre: np.ndarray, dirs: np.ndarray, r_model: float) -> tuple[np.ndarray, np.ndarray]:
    """The steepest dark-to-bright step along each ray from ``centre`` (pixel-centred px).

    Returns the sub-pixel edge radius (px; the centroid of the positive radial derivative
    around its peak; NaN when the step is not positive or the peak is at the end of the
    0.7-1.3x ``r_model`` band) and the step's strength (grey levels/px).
    """
    import cv2

    lo, hi = _BAND
    pad = max(1.5, _CENTROID_FRAC * r_model) + 0.5
    radii = np.arange(lo * r_model - pad, hi * r_model + pad, _RADIAL_STEP_PX)
    pts = centre + radii[None, :, None] * dirs[:, None, :]
    prof = cv2.remap(gray, pts[..., 0].astype(np.float32), pts[..., 1].astype(np.float32),
                     interpolation=cv2.INTER_CUBIC, borderMode=cv2.BORDER_REPLICATE).astype(float)
    deriv = np.gradient(prof, _RADIAL_STEP_PX, axis=1)
    idx = np.flatnonzero((radii >= lo * r_model) & (radii <= hi * r_model))
    k = idx[np.argmax(deriv[:, idx], axis=1)]
    rows = np.arange(len(dirs))
    y0 = deriv[rows, k]
    ok = (y0 > 0) & (k > idx[0]) & (k < idx[-1])
    # sub-pixel: centroid of the positive derivative within +-half of the step's width around the
    # peak (a derivative-peak parabola is pixel-locked on a sharp edge: up to 0.3 px here)
    half = int(round(max(1.5, _CENTROID_FRAC * r_model) / _RADIAL_STEP_PX))
    win = np.clip(k[:, None] + np.arange(-half, half + 1)[None, :], 0, len(radii) - 1)
    g = np.maximum(np.take_along_axis(deriv, win, axis=1), 0.0)
    rho = (g * radii[win]).sum(axis=1) / np.maximum(g.sum(axis=1), 1e-12)
    return np.where(ok, rho, np.nan), np.where(ok, y0, 0.0)


def _lid_aperture(
    points_px: np.ndarray, side: Side, axis: np.ndarray, up: np.ndarray, q: np.ndarray, margin: float
) -> np.ndarray:
    """Whether points ``q`` (px) lie at least ``margin`` px inside the model's upper and lower lid
    contours of ``side``."""
    c = CONTOURS[side]
    centre = points_px[c.iris_center, :2]
    u, v = (q - centre) @ axis, (q - centre) @ up

    def lid_v(chain: tuple[int, ...]) -> np.ndarray:
        lp = points_px[list(chain), :2] - centre
        lu, lv = lp @ axis, lp @ up
        o = np.argsort(lu)
        return np.interp(u, lu[o], lv[o])

    return (v <= lid_v(c.upper_lid) - margin) & (v >= lid_v(c.lower_lid) + margin)


def fit_iris_edges(
    rgb: np.ndarray,
    points_px: np.ndarray,
    *,
    sides: tuple[Side, ...] = (Side.RIGHT, Side.LEFT),
) -> dict[Side, IrisFit]:
    """Fit each iris's limbus (dark iris -> bright sclera) in the image, to sub-pixel precision.

    From the model's iris centre, 15 rays within 35 deg of the eye's horizontal
    axis (the line through both iris centres) on each of the medial and lateral
    sides; along each, the luminance (Gaussian-smoothed by 6% of the iris
    radius, at least 0.5 px, and sampled bicubically every 0.1 px, so small
    irises need no upsampling) has its steepest dark-to-bright step within
    0.7-1.3x the model's radius, located to sub-pixel as the centroid of the
    positive derivative around its peak. Dropped: rays with no or a weak step (under 35% of the side's median),
    and edge points outside the model's lid contours (the ray met a lid, not
    the sclera). A robust fit of a circle centred on the horizontal line through
    the model's centre (``soft_l1``, then least squares on the points within 3
    robust sigma) gives the horizontal centre and the diameter (px).

    A fit is ``accepted`` with at least 3 rays left on each side, a diameter
    within 20% of the model's, a centre within 0.35 model radii of the model's
    and an RMS residual under max(0.5 px, 8% of the radius).

    Parameters
    ----------
    rgb : ndarray of shape (H, W, 3), uint8 RGB (or (H, W) grey)
    points_px : ndarray of shape (478, 2+)
        Landmarks of ``rgb`` (image px, MediaPipe's edge-based convention).
    sides : tuple of Side
        Patient sides to fit (e.g. only the eyes :func:`iris_visible` says are open).
    """
    import cv2

    from .frame import pupil_frame

    pts = np.asarray(points_px, dtype=float)
    img = np.asarray(rgb)
    gray = cv2.cvtColor(img, cv2.COLOR_RGB2GRAY) if img.ndim == 3 else img
    h, w = gray.shape[:2]
    frame = pupil_frame(pts, 1.0)
    axis, up = frame.x_axis, frame.up_axis  # along the inter-pupil line, and toward the forehead
    model_diameters = iris_diameters_px(pts)
    angles = np.radians(np.arange(-_RAY_HALF_ANGLE_DEG, _RAY_HALF_ANGLE_DEG + 1e-9, _RAY_STEP_DEG))
    rot = np.stack([np.cos(angles), np.sin(angles)], axis=1)
    out: dict[Side, IrisFit] = {}
    for side in sides:
        c = CONTOURS[side]
        d_model = model_diameters[side]
        r_model = d_model / 2.0
        lateral = axis if side is Side.LEFT else -axis
        nan2 = np.full(2, np.nan)

        def fail(reason: str, n_m: int = 0, n_l: int = 0, edge: np.ndarray | None = None) -> IrisFit:
            return IrisFit(side, float("nan"), d_model, nan2, nan2, nan2, float("nan"), float("nan"), n_m, n_l,
                           len(angles), False, reason, np.zeros((0, 2)) if edge is None else edge)

        if not (np.isfinite(r_model) and r_model > 1.0 and np.isfinite(pts[c.iris_center, :2]).all()):
            out[side] = fail("no_model_iris")
            continue
        sigma = max(0.5, _SIGMA_FRAC * r_model)
        m = int(np.ceil(_BAND[1] * r_model + 4 * sigma + 3))
        cx, cy = (int(np.floor(v)) for v in pts[c.iris_center, :2])
        xa, ya, xb, yb = max(cx - m, 0), max(cy - m, 0), min(cx + m + 1, w), min(cy + m + 1, h)
        if xb - xa < 4 or yb - ya < 4:
            out[side] = fail("outside_image")
            continue
        crop = cv2.GaussianBlur(gray[ya:yb, xa:xb].astype(np.float32), (0, 0), sigma)
        to_abs = np.array([xa + 0.5, ya + 0.5])  # crop pixel-centred -> image edge-based px
        local = pts[c.iris_center, :2] - to_abs
        arcs = []
        for base in (-lateral, lateral):  # medial, lateral
            dirs = np.stack([rot[:, 0] * base[0] - rot[:, 1] * base[1], rot[:, 1] * base[0] + rot[:, 0] * base[1]], axis=1)
            rho, strength = _edges_on_rays(crop, local, dirs, r_model)
            ref = np.median(strength[strength > 0]) if (strength > 0).any() else 0.0
            keep = np.isfinite(rho) & (strength >= _MIN_STRENGTH_FRAC * ref)
            q = dirs[keep] * rho[keep, None] + local
            arcs.append(q[_lid_aperture(pts, side, axis, up, q + to_abs, _LID_MARGIN * r_model)])
        xy = np.concatenate(arcs)
        arc = np.r_[np.zeros(len(arcs[0]), int), np.ones(len(arcs[1]), int)]
        if min(len(a) for a in arcs) < _MIN_RAYS:
            out[side] = fail("too_few_rays", len(arcs[0]), len(arcs[1]), xy + to_abs)
            continue
        uv = np.stack([(xy - local) @ lateral, (xy - local) @ up], axis=1)  # u lateral, v up
        p, res, _ = _fit_circle(uv, np.array([0.0, r_model]), f_scale=max(0.2, 0.03 * r_model))
        mad = 1.4826 * np.median(np.abs(res - np.median(res)))
        inl = np.abs(res) <= max(3.0 * mad, 0.25, 0.03 * r_model)
        n_m, n_l = int((inl & (arc == 0)).sum()), int((inl & (arc == 1)).sum())
        if min(n_m, n_l) < _MIN_RAYS:
            out[side] = fail("too_few_rays", n_m, n_l, xy[inl] + to_abs)
            continue
        p, res, cov = _fit_circle(uv[inl], p, f_scale=None)
        diam = 2.0 * float(p[1])
        se = 2.0 * float(np.sqrt(max(cov[1, 1], 0.0)))
        rms = float(np.sqrt(np.mean(res**2)))
        reason = ""
        if not np.isfinite(diam) or abs(diam / d_model - 1.0) > _MAX_MODEL_DEV:
            reason = "model_disagreement"
        elif abs(float(p[0])) > _MAX_CENTRE_OFF * r_model:
            reason = "centre_off"
        elif rms > max(0.5, 0.08 * r_model):
            reason = "poor_fit"
        ctr = local + lateral * p[0] + to_abs
        out[side] = IrisFit(side, diam, d_model, ctr, ctr - lateral * p[1], ctr + lateral * p[1], se, rms,
                            n_m, n_l, len(angles), reason == "", reason, xy[inl] + to_abs)
    return out


@dataclass(frozen=True)
class IrisReading:
    """The horizontal iris diameters one photo gives, per patient side.

    Attributes
    ----------
    diameter_px : dict of Side to float
        The diameter used for each measured (open) eye, px.
    se_px : dict of Side to float
        Its standard error from the edge points, px (NaN for the model's diameter).
    method : str
        ``"edge"`` (image fit) or ``"model"`` (contour landmarks): one ruler for both eyes.
    fits : dict of Side to IrisFit
        The edge fits tried (empty for ``method="model"``).
    flags : tuple of str
        ``"iris_edge_fallback"`` when the edge fit was asked for and rejected.
    """

    diameter_px: dict[Side, float]
    se_px: dict[Side, float]
    method: str
    fits: dict[Side, IrisFit]
    flags: tuple[str, ...] = ()


def read_irises(
    points_px: np.ndarray,
    rgb: np.ndarray | None = None,
    *,
    method: str = "model",
    sides: tuple[Side, ...] = (Side.RIGHT, Side.LEFT),
) -> IrisReading:
    """Horizontal iris diameters (px) of the eyes in ``sides``, by ``method``.

    ``"edge"`` fits the limbus in ``rgb`` (:func:`fit_iris_edges`). If the fit
    of any of ``sides`` is rejected, or the two fitted eyes differ by over 8%,
    the photo falls back to the model's diameters for both eyes (flag
    ``iris_edge_fallback``): the edge fit sits 4-8% off the model's contour
    points on real faces, so mixing the two rulers would shift the mean by
    half of that.

    Raises
    ------
    CalibrationError
        If ``method`` is unknown, or ``"edge"`` without ``rgb``.
    """
    if method not in IRIS_METHODS:
        raise CalibrationError(f"`method` must be one of {IRIS_METHODS}, got {method!r}")
    model = iris_diameters_px(points_px)
    nan_se = {s: float("nan") for s in sides}
    if method == "model" or not sides:
        return IrisReading({s: model[s] for s in sides}, nan_se, "model", {})
    if rgb is None:
        raise CalibrationError("the edge iris fit needs the image (`rgb`)")
    fits = fit_iris_edges(rgb, points_px, sides=tuple(sides))
    ok = all(f.accepted for f in fits.values())
    if ok and len(fits) == 2:
        a, b = (f.diameter_px for f in fits.values())
        ok = abs(a - b) / ((a + b) / 2.0) <= _EDGE_PAIR_MAX
    if not ok:
        return IrisReading({s: model[s] for s in sides}, nan_se, "model", fits, ("iris_edge_fallback",))
    return IrisReading({s: f.diameter_px for s, f in fits.items()}, {s: f.diameter_se_px for s, f in fits.items()},
                       "edge", fits)
