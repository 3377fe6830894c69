"""Phantom expressions: real faces warped by known per-side movements (ground truth).

Built on :mod:`symmetry.warp`: chosen landmarks of a real photo move by an
exactly known displacement given in the pupil frame (millimetres, x toward
the patient's left, y up), while chosen landmarks (the other commissure, the
irises, the other lid...) stay exactly where they are. Used by the tests, the
validity benchmark and the sample-media generator.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Sequence

import numpy as np

from .frame import PupilFrame, lateral_sign
from .landmarks import CONTOURS, Side
from .warp import displacement_at, warp_image

__all__ = ["PhantomWarp", "LidOcclusion", "warp_landmarks", "commissure_shift", "upper_lid_drop", "upper_lid_occlusion", "STABLE_FIXED"]

#: Landmarks held still by default: irises (so the pupil frame and the scale
#: are unchanged), nose bridge and tip.
STABLE_FIXED: tuple[int, ...] = (468, 469, 471, 473, 474, 476, 168, 6, 4)


@dataclass(frozen=True)
class PhantomWarp:
    """A warped photo and the field that made it.

    Attributes
    ----------
    image : ndarray
        The warped photo (same shape and dtype as the source).
    anchors_px, displacements_px, fixed_px, sigma_px : ndarray
        The warp's control points (pixel-centred coordinates, see :mod:`symmetry.warp`).
    """

    image: np.ndarray
    anchors_px: np.ndarray
    displacements_px: np.ndarray
    fixed_px: np.ndarray
    sigma_px: np.ndarray

    def displacement_px(self, points_px: np.ndarray) -> np.ndarray:
        """True displacement (px) of the features at ``points_px`` (MediaPipe edge-based px)."""
        pts = np.atleast_2d(np.asarray(points_px, dtype=float))[:, :2] - 0.5
        return displacement_at(pts, self.anchors_px, self.displacements_px, self.sigma_px, fixed_px=self.fixed_px)


def warp_landmarks(
    rgb: np.ndarray,
    points_px: np.ndarray,
    frame: PupilFrame,
    moves_mm: Mapping[int, tuple[float, float]],
    *,
    fixed: Sequence[int] = STABLE_FIXED,
    sigma_mm: float | Mapping[int, float] = 6.0,
) -> PhantomWarp:
    """Move landmarks of a real photo by known displacements.

    Parameters
    ----------
    rgb : ndarray of shape (H, W, 3)
    points_px : ndarray of shape (478, 2+)
        Landmarks of ``rgb`` (MediaPipe edge-based pixel coordinates).
    frame : PupilFrame
        The photo's pupil frame (gives the mm scale and the axes).
    moves_mm : mapping of landmark index to (dx, dy)
        Displacements in pupil-frame mm: ``dx`` toward the patient's left, ``dy`` up.
    fixed : sequence of int
        Landmarks that must not move (those also in ``moves_mm`` are skipped).
    sigma_mm : float or mapping of landmark index to float
        Width of each control point's influence, mm (default for all: 6 mm).
    """
    pts = np.asarray(points_px, dtype=float)[:, :2] - 0.5  # edge-based -> pixel-centred
    move_ids = list(moves_mm)
    fixed_ids = [i for i in dict.fromkeys(int(i) for i in fixed) if i not in moves_mm]
    d_mm = np.array([moves_mm[i] for i in move_ids], dtype=float).reshape(-1, 2)
    d_px = (d_mm[:, :1] * frame.x_axis + d_mm[:, 1:] * frame.up_axis) / frame.mm_per_px

    def sig(i: int) -> float:
        s = sigma_mm.get(i, 6.0) if isinstance(sigma_mm, Mapping) else sigma_mm
        return float(s) / frame.mm_per_px

    sigma = np.array([sig(i) for i in move_ids + fixed_ids])
    anchors, fixed_px = pts[move_ids], pts[fixed_ids].reshape(-1, 2)
    image = warp_image(rgb, anchors, d_px, sigma, fixed_px=fixed_px)
    return PhantomWarp(image, anchors, d_px, fixed_px, sigma)


def commissure_shift(
    rgb: np.ndarray,
    points_px: np.ndarray,
    frame: PupilFrame,
    side: Side,
    lateral_mm: float,
    up_mm: float,
    *,
    sigma_mm: float = 8.0,
) -> PhantomWarp:
    """Move one oral commissure ``lateral_mm`` outward and ``up_mm`` up; the other stays."""
    c, o = CONTOURS[side], CONTOURS[side.other]
    moves = {c.commissure: (lateral_sign(side) * lateral_mm, up_mm)}
    return warp_landmarks(
        rgb, points_px, frame, moves, fixed=(o.commissure, *STABLE_FIXED), sigma_mm=sigma_mm
    )


def upper_lid_drop(
    rgb: np.ndarray,
    points_px: np.ndarray,
    frame: PupilFrame,
    side: Side,
    drop_mm: float,
    *,
    sigma_mm: float = 2.0,
) -> PhantomWarp:
    """Lower one upper-lid margin by ``drop_mm`` at mid-lid (ptosis / eye narrowing).

    The three central upper-lid points move down by ``drop_mm``; the canthi,
    the middle of the lower lid of the same eye, both irises (centre and the
    horizontal contour points) and the middle of the other eye's lids stay
    exactly put. The true drop at any other point is given by
    :meth:`PhantomWarp.displacement_px`.
    """
    c, o = CONTOURS[side], CONTOURS[side.other]
    mid = len(c.upper_lid) // 2
    # A smooth drop along the margin: full at mid-lid, tapering to 0 at the canthi.
    n = len(c.upper_lid) - 1
    moves = {i: (0.0, -drop_mm * float(np.sin(np.pi * k / n)) ** 0.5) for k, i in enumerate(c.upper_lid) if 0 < k < n}
    fixed = (
        c.upper_lid[0],
        c.upper_lid[-1],  # canthi
        *c.lower_lid[mid - 1 : mid + 2],
        *o.upper_lid[mid - 1 : mid + 2],
        *o.lower_lid[mid - 1 : mid + 2],
        *STABLE_FIXED,
    )
    return warp_landmarks(rgb, points_px, frame, moves, fixed=fixed, sigma_mm=sigma_mm)


@dataclass(frozen=True)
class LidOcclusion:
    """A photo whose upper lid was lowered over the eye (see :func:`upper_lid_occlusion`).

    Attributes
    ----------
    image : ndarray
        The new photo (same shape and dtype as the source).
    side : Side
        The patient side whose lid was lowered.
    drop_mm : float
        Drop of the lid margin at mid-lid, mm.
    x_range_mm : (float, float)
        Pupil-frame x of the two canthi (mm): the drop tapers to 0 at both.
    """

    image: np.ndarray
    side: Side
    drop_mm: float
    x_range_mm: tuple[float, float]

    def drop_at(self, x_mm: float | np.ndarray) -> np.ndarray:
        """True drop (mm, >= 0) of the lid margin at pupil-frame abscissa ``x_mm``."""
        x0, x1 = self.x_range_mm
        t = np.clip((np.asarray(x_mm, dtype=float) - x0) / (x1 - x0), 0.0, 1.0)
        return self.drop_mm * np.sin(np.pi * t)


def upper_lid_occlusion(
    rgb: np.ndarray,
    points_px: np.ndarray,
    frame: PupilFrame,
    side: Side,
    drop_mm: float,
    *,
    rigid_mm: float = 2.0,
    spread_mm: float = 4.0,
) -> LidOcclusion:
    """Lower one upper lid over the eye by ``drop_mm`` at mid-lid, as a real ptosis does.

    A smooth warp cannot lower a lid by more than the gap between the margin and
    the fixed iris centre without folding. Here the lid slides over the eye
    instead: above the new margin the image is the lid moved down by
    ``d(x) = drop_mm * sin(pi * t)`` (``t`` from one canthus to the other): the
    ``rigid_mm`` of lid above the margin (the tarsal plate) moves as a block,
    the skin above it follows less and less (a Gaussian of ``spread_mm``); below the new
    margin the eye (iris, sclera, lower lid) is the original, so the part of
    it now under the lid is hidden. The other eye, the irises' horizontal
    edges, the lower lid and everything outside the lid region stay exactly
    put. The new margin is anti-aliased over one pixel. The truth is
    :meth:`LidOcclusion.drop_at`.

    Raises
    ------
    ValueError
        If ``drop_mm`` is not in ``[0, 1.5 * spread_mm)`` (the skin above would fold).
    """
    import cv2

    if not 0.0 <= drop_mm < 1.5 * spread_mm:
        raise ValueError(f"drop_mm must be in [0, {1.5 * spread_mm:g}) for spread_mm={spread_mm:g}")
    c = CONTOURS[side]
    lid = frame.to_mm(np.asarray(points_px, dtype=float)[list(c.upper_lid), :2])
    order = np.argsort(lid[:, 0], kind="stable")
    lx, ly = lid[order, 0], lid[order, 1]
    x0, x1 = float(lx[0]), float(lx[-1])
    out = rgb.copy()
    # The region that changes: between the canthi, from below the new margin to well above the lid.
    top = ly.max() + rigid_mm + 4.0 * spread_mm
    corners_mm = np.array([[x0, ly.min() - drop_mm - 1.0], [x1, ly.min() - drop_mm - 1.0], [x0, top], [x1, top]])
    corners = frame.to_px(corners_mm)
    h, w = rgb.shape[:2]
    c0 = np.clip(np.floor(corners.min(axis=0)).astype(int) - 2, 0, [w, h])
    c1 = np.clip(np.ceil(corners.max(axis=0)).astype(int) + 2, 0, [w, h])
    if (c1 <= c0).any():
        return LidOcclusion(out, side, float(drop_mm), (x0, x1))
    yy, xx = np.mgrid[c0[1] : c1[1], c0[0] : c1[0]]
    centres = np.stack([xx + 0.5, yy + 0.5], axis=-1)  # pixel centres, edge-based coordinates
    q = frame.to_mm(centres)
    x, y = q[..., 0], q[..., 1]
    t = np.clip((x - x0) / (x1 - x0), 0.0, 1.0)
    d = drop_mm * np.sin(np.pi * t)
    u = y - (np.interp(x, lx, ly) - d)  # height above the new margin, mm
    fade = np.exp(-0.5 * (np.maximum(u - rigid_mm, 0.0) / spread_mm) ** 2)
    src = frame.to_px(np.stack([x, y + d * fade], axis=-1)) - 0.5  # pixel-centred source coordinates
    moved = cv2.remap(rgb, src[..., 0].astype(np.float32), src[..., 1].astype(np.float32),
                      interpolation=cv2.INTER_CUBIC, borderMode=cv2.BORDER_REFLECT)
    alpha = np.clip(0.5 + u / frame.mm_per_px, 0.0, 1.0)
    alpha[(x <= x0) | (x >= x1)] = 0.0
    region = out[c0[1] : c1[1], c0[0] : c1[0]]
    blend = alpha[..., None] * moved.astype(np.float64) + (1.0 - alpha[..., None]) * region.astype(np.float64)
    out[c0[1] : c1[1], c0[0] : c1[0]] = np.clip(np.rint(blend), 0, np.iinfo(rgb.dtype).max).astype(rgb.dtype)
    return LidOcclusion(out, side, float(drop_mm), (x0, x1))
