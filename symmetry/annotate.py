"""Draw what was measured on the photo: frame axes, measured points, distances, side labels."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import cv2
import numpy as np

from .frame import PupilFrame
from .landmarks import CONTOURS, Side
from .measures import side_geometry

if TYPE_CHECKING:
    from .photo import PhotoResult

__all__ = ["annotate", "save_annotated"]

# BGR colours: patient right = orange, patient left = cyan (colour-blind safe pair).
_SIDE_COLOUR = {Side.RIGHT: (0, 140, 255), Side.LEFT: (255, 200, 0)}
_AXIS = (80, 220, 80)
_TEXT_BG = (20, 20, 20)


def _pt(p: np.ndarray) -> tuple[int, int]:
    return int(round(float(p[0]) * 16)), int(round(float(p[1]) * 16))


def _line(img: np.ndarray, a: np.ndarray, b: np.ndarray, colour: tuple[int, int, int], t: int) -> None:
    cv2.line(img, _pt(a), _pt(b), colour, t, cv2.LINE_AA, shift=4)


def _dot(img: np.ndarray, p: np.ndarray, colour: tuple[int, int, int], r: int) -> None:
    cv2.circle(img, _pt(p), r * 16, colour, -1, cv2.LINE_AA, shift=4)


def _label(img: np.ndarray, text: str, org: tuple[int, int], scale: float, colour: tuple[int, int, int]) -> None:
    th = max(1, int(round(scale * 2)))
    (w, h), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, th)
    x, y = org
    cv2.rectangle(img, (x - 2, y - h - 3), (x + w + 2, y + base), _TEXT_BG, -1)
    cv2.putText(img, text, (x, y), cv2.FONT_HERSHEY_SIMPLEX, scale, colour, th, cv2.LINE_AA)


def _face_view(rgb: np.ndarray, points_px: np.ndarray, min_height: int) -> tuple[np.ndarray, np.ndarray, float]:
    """Crop around the face (40% margin) and upscale to at least ``min_height`` rows.

    Returns the crop (RGB), its top-left corner in the source image (px) and the scale factor.
    """
    h, w = rgb.shape[:2]
    lo, hi = points_px[:, :2].min(axis=0), points_px[:, :2].max(axis=0)
    margin = 0.4 * (hi - lo)
    x0, y0 = np.floor(np.maximum(lo - margin, 0)).astype(int)
    x1, y1 = np.ceil(np.minimum(hi + margin, [w, h])).astype(int)
    crop = rgb[y0:y1, x0:x1]
    scale = max(1.0, min_height / max(crop.shape[0], 1))
    if scale > 1.0:
        crop = cv2.resize(crop, None, fx=scale, fy=scale, interpolation=cv2.INTER_CUBIC)
    return crop, np.array([x0, y0], dtype=float), scale


def annotate(rgb: np.ndarray, result: PhotoResult, *, crop: bool = True, min_height: int = 900) -> np.ndarray:
    """An RGB image of the face with the measurement drawn on it.

    Shows the inter-pupil axis and the midline, the iris circles used for
    scale, the lid, brow and lip contours with the measured points, the
    commissure-to-lower-lip lines, side labels (patient's right / left) and a
    panel of the main per-side values in mm. With ``crop`` (default) the image
    is cropped around the face and upscaled to ``min_height`` rows so that the
    marks are legible; otherwise the whole photo is drawn on.
    """
    pts = result.points_px[:, :2]
    frame = result.frame
    if crop:
        view, corner, s = _face_view(rgb, pts, min_height)
        pts = (pts - corner) * s
        frame = PupilFrame((frame.origin_px - corner) * s, frame.x_axis, frame.up_axis, frame.mm_per_px / s)
    else:
        view = rgb
    img = cv2.cvtColor(np.ascontiguousarray(view), cv2.COLOR_RGB2BGR)
    pts_mm = frame.to_mm(pts)
    t = max(1, int(round(img.shape[1] / 500)))
    r = max(2, t + 1)
    # frame axes: inter-pupil line and midline
    half_w = 60.0  # mm
    _line(img, frame.to_px(np.array([-half_w, 0.0])), frame.to_px(np.array([half_w, 0.0])), _AXIS, t)
    _line(img, frame.to_px(np.array([0.0, 30.0])), frame.to_px(np.array([0.0, -90.0])), _AXIS, t)
    for side in (Side.RIGHT, Side.LEFT):
        colour = _SIDE_COLOUR[side]
        c = CONTOURS[side]
        for chain in (c.upper_lid, c.lower_lid, c.brow, c.outer_upper_lip, c.outer_lower_lip,
                      c.inner_upper_lip, c.inner_lower_lip):
            poly = np.round(pts[list(chain)] * 16).astype(np.int32)
            cv2.polylines(img, [poly], False, colour, max(1, t // 2 + 1), cv2.LINE_AA, shift=4)
        # iris circle (horizontal diameter used for scale)
        centre = pts[c.iris_center]
        radius = float(np.hypot(*(pts[c.iris_lateral] - pts[c.iris_medial]))) / 2.0
        cv2.circle(img, _pt(centre), int(round(radius * 16)), colour, t, cv2.LINE_AA, shift=4)
        _line(img, pts[c.iris_medial], pts[c.iris_lateral], colour, max(1, t // 2))
        g = side_geometry(pts_mm, side)
        to_px = frame.to_px
        # vertical measures: brow, lids (at the pupil's x)
        _line(img, to_px(g.brow_at_pupil), to_px(g.iris_center), colour, t)
        _line(img, to_px(g.upper_lid_at_pupil), to_px(g.lower_lid_at_pupil), (255, 255, 255), t)
        for p in (g.brow_at_pupil, g.upper_lid_at_pupil, g.lower_lid_at_pupil, g.upper_lip_half,
                  g.lower_lip_half):
            _dot(img, to_px(p), colour, r)
        # commissure excursion line and commissure
        _line(img, to_px(g.lower_lip_mid), to_px(g.commissure), colour, t)
        if result.rest_points_mm is not None:
            # movement since rest: arrow from the rest position (pupil frame) to now
            start = _pt(to_px(result.rest_points_mm[c.commissure]))
            cv2.arrowedLine(img, start, _pt(to_px(g.commissure)), (0, 0, 255), t, cv2.LINE_AA, shift=4, tipLength=0.3)
        _dot(img, to_px(g.commissure), (0, 0, 255), r + 1)
        # side label beside the commissure, pushed outward
        out = to_px(g.commissure + np.array([(12.0 if side is Side.LEFT else -22.0), 4.0]))
        # labels follow the measures' side names (mirrored photos swap them)
        name = side.value if not result.mirrored else side.other.value
        _label(img, f"patient {name}", (int(out[0]), int(out[1])), 0.4 * t, colour)
    _panel(img, result, t)
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)


def _panel(img: np.ndarray, result: PhotoResult, t: int) -> None:
    rows = [
        ("commissure_excursion", "excursion"),
        ("commissure_y", "corner height"),
        ("palpebral_fissure_height", "fissure"),
        ("brow_height", "brow"),
        ("commissure_movement", "corner moved"),
        ("palpebral_fissure_change", "fissure chg"),
    ]
    lines = [f"{'mm':<14}{'R':>7}{'L':>7}", ]
    for name, label in rows:
        r, l = result.value(name, "right"), result.value(name, "left")
        if np.isnan(r) and np.isnan(l):
            continue
        lines.append(f"{label:<14}{r:7.1f}{l:7.1f}")
    lines.append(f"scale {result.mm_per_px:.4f} mm/px")
    pose = result.head_pose_deg
    lines.append(f"yaw {pose.get('yaw', 0):.0f}  pitch {pose.get('pitch', 0):.0f}  roll {pose.get('roll', 0):.0f} deg")
    scale = 0.38 * t
    y = int(18 * t)
    for line in lines:
        _label(img, line, (6 * t, y), scale, (255, 255, 255))
        y += int(16 * t)


def save_annotated(path: str | Path, rgb: np.ndarray, result: PhotoResult) -> Path:
    """Write the annotated image (PNG or JPEG by suffix; no metadata is written)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    out = annotate(rgb, result)
    if not cv2.imwrite(str(path), cv2.cvtColor(out, cv2.COLOR_RGB2BGR)):
        raise OSError(f"{path}: cannot write image (unsupported suffix?)")
    return path
