"""A hand-built landmark array with measures worked out by hand (image pixels).

Layout (image coordinates, y down; the patient's right is on the image left):

* iris centres at (100, 100) [right] and (200, 100) [left], horizontal iris
  diameter 20 px, so mm_per_px = 11.77 / 20 = 0.5885;
* at the pupil's x: upper lid 12 px above the iris centre, lower lid 8 px
  below (PFH 20 px), brow edge 40 px above;
* commissures at (120, 250) [right] and (180, 250) [left], lower-lip midline
  point 17 at (150, 270): excursion sqrt(30^2 + 20^2) px, smile angle
  atan(20 / 30);
* outer upper lip straight from (150, 240) to the commissure, outer lower lip
  from (150, 270), inner upper from (150, 252), inner lower from (150, 258),
  both to the inner corner at (122 | 178, 250).
"""

from __future__ import annotations

import numpy as np

from symmetry.landmarks import CONTOURS, LM, Side

IRIS_PX = 20.0
MM_PER_PX = 11.77 / IRIS_PX


def _chain(pts: np.ndarray, chain: tuple[int, ...], start: tuple[float, float], end: tuple[float, float]) -> None:
    """Spread a chain evenly on the straight segment start -> end."""
    for k, idx in enumerate(chain):
        t = k / (len(chain) - 1)
        pts[idx, :2] = (1 - t) * np.asarray(start) + t * np.asarray(end)


def synthetic_face(commissure_shift_px: dict[str, tuple[float, float]] | None = None) -> np.ndarray:
    """(478, 3) landmark array in pixels; optional per-side commissure shifts (dx, dy) in px."""
    pts = np.zeros((478, 3))
    pts[:, :2] = (150.0, 200.0)
    pts[LM.FOREHEAD, :2] = (150, 0)
    pts[LM.CHIN, :2] = (150, 400)
    pts[LM.UPPER_LIP_TOP, :2] = (150, 240)
    pts[LM.LOWER_LIP_BOTTOM, :2] = (150, 270)
    pts[LM.INNER_UPPER_LIP, :2] = (150, 252)
    pts[LM.INNER_LOWER_LIP, :2] = (150, 258)
    for side, cx, sgn in ((Side.RIGHT, 100.0, -1.0), (Side.LEFT, 200.0, 1.0)):
        c = CONTOURS[side]
        pts[c.iris_center, :2] = (cx, 100)
        pts[c.iris_lateral, :2] = (cx + sgn * 10, 100)
        pts[c.iris_medial, :2] = (cx - sgn * 10, 100)
        pts[c.iris_top, :2] = (cx, 90)
        pts[c.iris_bottom, :2] = (cx, 110)
        # lids: canthi 30 px either side of the pupil; the middle point sits at the pupil's x
        lateral, medial = (cx + sgn * 30, 100), (cx - sgn * 30, 100)
        mid = len(c.upper_lid) // 2
        _chain(pts, c.upper_lid[: mid + 1], lateral, (cx, 88))
        _chain(pts, c.upper_lid[mid:], (cx, 88), medial)
        _chain(pts, c.lower_lid[: mid + 1], lateral, (cx, 108))
        _chain(pts, c.lower_lid[mid:], (cx, 108), medial)
        _chain(pts, c.brow, (cx + sgn * 30, 60), (cx - sgn * 30, 60))
        com = np.array([150 + sgn * 30, 250.0])
        if commissure_shift_px and side.value in commissure_shift_px:
            com = com + np.asarray(commissure_shift_px[side.value])
        inner = (150 + sgn * 28, 250)
        _chain(pts, c.outer_upper_lip, (150, 240), tuple(com))
        _chain(pts, c.outer_lower_lip, (150, 270), tuple(com))
        _chain(pts, c.inner_upper_lip, (150, 252), inner)
        _chain(pts, c.inner_lower_lip, (150, 258), inner)
    return pts


def transform(points: np.ndarray, *, angle_deg: float = 0.0, scale: float = 1.0, shift=(0.0, 0.0)) -> np.ndarray:
    """Rotate (image-plane, about (150, 200)), scale and shift a landmark array."""
    a = np.radians(angle_deg)
    rot = np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])
    out = points.copy()
    out[:, :2] = ((points[:, :2] - (150, 200)) @ rot.T) * scale + (150, 200) + np.asarray(shift)
    out[:, 2] *= scale
    return out
