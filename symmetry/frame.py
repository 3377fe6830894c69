"""The pupil frame: the face-fixed coordinate system every measure is taken in.

As in Emotrics (Guarin et al., 2018): the horizontal axis runs through the two
iris centres, the origin is their midpoint, and the midline is the
perpendicular through the origin. Distances called "vertical" are measured
perpendicular to the inter-pupil line, so head roll cancels.

Frame coordinates are in millimetres:

* ``x`` runs from the patient's right iris toward the patient's left iris
  (as labelled by the landmark model), so ``x > 0`` is the patient's left half;
* ``y`` is positive **up**, toward the forehead. "Up" is found from the face
  itself (the forehead landmark), not from the handedness of the image axes,
  so a mirrored photo still has the forehead up.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .landmarks import LM, Side

__all__ = ["PupilFrame", "pupil_frame", "pupil_axes", "inter_pupil_px", "lateral_sign"]


@dataclass(frozen=True)
class PupilFrame:
    """A face-fixed frame in one image.

    Attributes
    ----------
    origin_px : ndarray of shape (2,)
        Midpoint of the iris centres, image pixels (x, y).
    x_axis : ndarray of shape (2,)
        Unit vector in image pixels from the right to the left iris centre.
    up_axis : ndarray of shape (2,)
        Unit vector in image pixels perpendicular to ``x_axis``, toward the forehead.
    mm_per_px : float
        Scale, millimetres per image pixel.
    """

    origin_px: np.ndarray
    x_axis: np.ndarray
    up_axis: np.ndarray
    mm_per_px: float

    @property
    def roll_deg(self) -> float:
        """Angle of the inter-pupil line against the image rows, degrees."""
        return float(np.degrees(np.arctan2(self.x_axis[1], self.x_axis[0])))

    def to_mm(self, points_px: np.ndarray) -> np.ndarray:
        """Image pixels (..., 2 or 3) -> frame millimetres (..., 2): x to patient's left, y up."""
        d = np.asarray(points_px, dtype=float)[..., :2] - self.origin_px
        return np.stack([d @ self.x_axis, d @ self.up_axis], axis=-1) * self.mm_per_px

    def to_px(self, points_mm: np.ndarray) -> np.ndarray:
        """Frame millimetres (..., 2) -> image pixels (..., 2)."""
        p = np.asarray(points_mm, dtype=float) / self.mm_per_px
        return self.origin_px + p[..., :1] * self.x_axis + p[..., 1:2] * self.up_axis

    def with_scale(self, mm_per_px: float) -> "PupilFrame":
        return PupilFrame(self.origin_px, self.x_axis, self.up_axis, float(mm_per_px))


def inter_pupil_px(points_px: np.ndarray) -> float:
    """Distance between the two iris centres, image pixels."""
    pts = np.asarray(points_px)
    return float(np.hypot(*(pts[LM.LEFT_IRIS_CENTER, :2] - pts[LM.RIGHT_IRIS_CENTER, :2])))


def pupil_axes(points_px: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The pupil frame of many landmark arrays at once, image pixels.

    Parameters
    ----------
    points_px : ndarray of shape (n, 478, 2+)

    Returns
    -------
    origin, x_axis, up_axis : ndarray of shape (n, 2)
        As :class:`PupilFrame`'s attributes; NaN rows where the iris centres
        coincide or are missing.
    """
    pts = np.asarray(points_px, dtype=float)[..., :2]
    right = pts[:, LM.RIGHT_IRIS_CENTER]
    left = pts[:, LM.LEFT_IRIS_CENTER]
    axis = left - right
    norm = np.hypot(axis[:, 0], axis[:, 1])
    ok = np.isfinite(norm) & (norm >= 1e-6)
    x_axis = axis / np.where(ok, norm, np.nan)[:, None]
    up = np.stack([x_axis[:, 1], -x_axis[:, 0]], axis=1)  # image y grows downward: "up" for an upright face
    # Choose the perpendicular that points to the forehead, whatever the image handedness.
    toward_forehead = pts[:, LM.FOREHEAD] - pts[:, LM.CHIN]
    up *= np.where(np.einsum("ij,ij->i", toward_forehead, up) < 0, -1.0, 1.0)[:, None]
    origin = np.where(ok[:, None], (left + right) / 2.0, np.nan)
    return origin, x_axis, up


def pupil_frame(points_px: np.ndarray, mm_per_px: float = 1.0) -> PupilFrame:
    """Build the pupil frame from a (478, 2+) landmark array in image pixels.

    Raises
    ------
    ValueError
        If the iris centres coincide (degenerate landmarks).
    """
    origin, x_axis, up = (a[0] for a in pupil_axes(np.asarray(points_px, dtype=float)[None]))
    if not np.isfinite(origin).all():
        raise ValueError("`points_px`: iris centres coincide; cannot build the pupil frame")
    return PupilFrame(origin, x_axis, up, float(mm_per_px))


def lateral_sign(side: Side) -> float:
    """+1 for the patient's left (x > 0 is lateral), -1 for the right."""
    return 1.0 if side is Side.LEFT else -1.0
