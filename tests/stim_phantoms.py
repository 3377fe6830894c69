"""Phantom stimulation clips: a sample portrait with one known region moving on one side.

Each clip is a real face (a crop of a sample portrait) warped by the exact
phantom warps of :mod:`symmetry.phantom`: before the stimulation the face is
still; after it, one region of the operated side moves by a known amount in
pupil-frame millimetres (ramping in over three frames, held, ramping out).
The truth of every movement is the warp's own displacement field evaluated at
the baseline landmarks, measured with the same region definitions as
:func:`symmetry.stim.region_movements` (so only the measuring and tracking
are under test); for the moved anchors it equals the design amounts exactly.

Timeline of a single-branch clip at :data:`FPS` frames per second: the
stimulation at frame :data:`STIM_FRAME`; the level is 0 up to frame
``STIM_FRAME + 1``, then 1/3, 2/3 and 1 on the next three frames (so the true
20% onset is two frames, 133 ms at 15 fps, after the stimulation), held for
:data:`HOLD_FRAMES` frames, ramped out and still again.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Sequence

import cv2
import numpy as np

from symmetry.calibration import calibrate_from_iris
from symmetry.frame import PupilFrame, lateral_sign, pupil_frame
from symmetry.landmarks import CONTOURS, Side
from symmetry.phantom import STABLE_FIXED, commissure_shift, warp_landmarks
from symmetry.stim import region_movements

FPS = 15
STIM_FRAME = 10  # 0.67 s of still baseline
RAMP = (1 / 3, 2 / 3, 1.0)
ONSET_DELAY_FRAMES = 2  # first frame at level >= 20%: STIM_FRAME + 2
HOLD_FRAMES = 6
TAIL_FRAMES = 3
#: Crops (rows, cols) of the portraits and the clip size (px).
CROPS = {"obama": ((60, 500), (270, 710)), "astronaut": ((10, 250), (105, 345))}
SIZE = 400


@dataclass
class Face:
    """A still face: RGB, its landmarks (px) and pupil frame (mm scale from the iris)."""

    rgb: np.ndarray
    points: np.ndarray
    frame: PupilFrame


@dataclass
class Phantom:
    """A clip's design: the warped image at each ramp level and the true movements at full level."""

    name: str
    kind: str  # expected class
    side: str
    levels: dict[float, np.ndarray]
    truth: dict[str, float] = field(default_factory=dict)
    head_motion: bool = False


def base_face(portrait: np.ndarray, name: str, landmarker) -> Face:  # type: ignore[no-untyped-def]
    (r0, r1), (c0, c1) = CROPS[name]
    rgb = cv2.resize(portrait[r0:r1, c0:c1], (SIZE, SIZE), interpolation=cv2.INTER_AREA if r1 - r0 > SIZE else cv2.INTER_CUBIC)
    rgb = np.ascontiguousarray(rgb)
    pts = landmarker.detect(rgb).points_px
    return Face(rgb, pts, pupil_frame(pts, calibrate_from_iris(pts).mm_per_px))


# --------------------------------------------------------------------------- the warps (one side, level k)
def _smile(f: Face, side: Side, k: float, lateral: float = 3.0, up: float = 4.0):  # type: ignore[no-untyped-def]
    return [commissure_shift(f.rgb, f.points, f.frame, side, lateral * k, up * k, sigma_mm=8.0)]


def _depressor(f: Face, side: Side, k: float, down: float = 3.5, lateral: float = 0.5):  # type: ignore[no-untyped-def]
    c, o = CONTOURS[side], CONTOURS[side.other]
    moves = {c.commissure: (lateral_sign(side) * lateral * k, -down * k)}
    return [warp_landmarks(f.rgb, f.points, f.frame, moves, fixed=(o.commissure, *STABLE_FIXED), sigma_mm=8.0)]


def _eye_closing(rgb: np.ndarray, f: Face, side: Side, down: float, up: float):  # type: ignore[no-untyped-def]
    """Upper-lid margin down and lower-lid margin up at mid-lid (orbicularis oculi); canthi, irises, other eye still."""
    c, o = CONTOURS[side], CONTOURS[side.other]
    mid = len(c.upper_lid) // 2
    moves = {i: (0.0, -down) for i in c.upper_lid[mid - 1 : mid + 2]}
    moves.update({i: (0.0, up) for i in c.lower_lid[mid - 1 : mid + 2]})
    fixed = (c.upper_lid[0], c.upper_lid[-1], *o.upper_lid[mid - 1 : mid + 2], *o.lower_lid[mid - 1 : mid + 2],
             *STABLE_FIXED)
    return warp_landmarks(rgb, f.points, f.frame, moves, fixed=fixed, sigma_mm=2.5)


def _ocular(f: Face, side: Side, k: float, down: float = 1.5, up: float = 0.8):  # type: ignore[no-untyped-def]
    return [_eye_closing(f.rgb, f, side, down * k, up * k)]


def _brow(f: Face, side: Side, k: float, up: float = 3.0):  # type: ignore[no-untyped-def]
    c, o = CONTOURS[side], CONTOURS[side.other]
    mid = len(c.upper_lid) // 2
    moves = {i: (0.0, up * k) for i in c.brow}
    fixed = (*c.upper_lid[mid - 1 : mid + 2], *o.upper_lid[mid - 1 : mid + 2], *o.brow, *STABLE_FIXED)
    return [warp_landmarks(f.rgb, f.points, f.frame, moves, fixed=fixed, sigma_mm=6.0)]


def _lower_lip(f: Face, side: Side, k: float, down: float = 3.0):  # type: ignore[no-untyped-def]
    c, o = CONTOURS[side], CONTOURS[side.other]
    profile = (0.7, 1.0, 1.0, 0.7)  # outer / inner lower lip points, midline -> commissure
    moves = {}
    for chain in (c.outer_lower_lip, c.inner_lower_lip):
        for w, i in zip(profile, chain[1:-1]):
            moves[i] = (0.0, -down * k * w)
    fixed = (c.commissure, o.commissure, *c.outer_upper_lip[1:-1], *c.inner_upper_lip[1:-1], *o.outer_lower_lip[2:-1],
             *STABLE_FIXED)
    return [warp_landmarks(f.rgb, f.points, f.frame, moves, fixed=fixed, sigma_mm=4.0)]


def _mixed(f: Face, side: Side, k: float):  # type: ignore[no-untyped-def]
    smile = _smile(f, side, k, lateral=2.5, up=3.5)[0]
    lid = _eye_closing(smile.image, f, side, 1.2 * k, 0.6 * k)
    return [smile, lid]


WARPS: dict[str, Callable[..., list]] = {
    "smile_agonist": _smile,
    "smile_antagonist": _depressor,
    "ocular": _ocular,
    "brow": _brow,
    "lower_lip": _lower_lip,
    "mixed": _mixed,
}


def phantom(face: Face, name: str, kind: str, side: str) -> Phantom:
    """The ramp images of one movement kind (a key of :data:`WARPS`, ``none`` or ``head_motion``)."""
    s = Side(side)
    if kind in ("none", "head_motion"):
        return Phantom(name, "none", side, {k: face.rgb for k in RAMP}, {}, head_motion=kind == "head_motion")
    levels: dict[float, np.ndarray] = {}
    truth: dict[str, float] = {}
    for k in RAMP:
        warps = WARPS[kind](face, s, k)
        levels[k] = warps[-1].image
        if k == 1.0:
            d = sum(w.displacement_px(face.points) for w in warps)
            moved = face.points[:, :2] + d
            truth = {m.name: m.value for m in region_movements(face.frame.to_mm(face.points), face.frame.to_mm(moved), s)}
    expected = "ocular" if kind == "brow" else kind
    return Phantom(name, expected, side, levels, truth)


def _level(j: int, stim: int) -> float:
    """Ramp level of frame ``j`` for a stimulation at frame ``stim``."""
    rel = j - stim - 1
    if rel < 1:
        return 0.0
    if rel <= 3:
        return RAMP[rel - 1]
    rel -= 3
    if rel <= HOLD_FRAMES:
        return 1.0
    rel -= HOLD_FRAMES
    return RAMP[::-1][rel] if rel < 3 else 0.0


def _head_moved(rgb: np.ndarray, k: float) -> np.ndarray:
    """The whole image rotated 4 deg, scaled 1.04x and shifted (9, 6) px at full level k = 1."""
    h, w = rgb.shape[:2]
    m = cv2.getRotationMatrix2D((w / 2, h / 2), 4.0 * k, 1.0 + 0.04 * k)
    m[:, 2] += (9.0 * k, 6.0 * k)
    return cv2.warpAffine(rgb, m, (w, h), flags=cv2.INTER_CUBIC, borderMode=cv2.BORDER_REFLECT)


def frames(p: Phantom, base: np.ndarray, n_frames: int, stim: int) -> Iterable[np.ndarray]:
    """The frames of one stimulation (level per frame); head motion stays once reached."""
    for j in range(n_frames):
        k = _level(j, stim)
        if p.head_motion:
            rel = j - stim - 1
            hk = 0.0 if rel < 1 else min(rel / 6.0, 1.0)  # drifts over 6 frames, then stays moved
            yield _head_moved(base, hk) if hk > 0 else base
        else:
            yield p.levels[k] if k > 0 else base


def clip_length() -> int:
    return STIM_FRAME + 1 + 3 + HOLD_FRAMES + 3 + TAIL_FRAMES


def write_video(path: Path, images: Iterable[np.ndarray], fps: int = FPS) -> Path:
    """H.264 MP4 (PyAV), crf 18."""
    import av

    out = av.open(str(path), "w")
    stream = out.add_stream("libx264", rate=fps)
    started = False
    for img in images:
        if not started:
            stream.height, stream.width = img.shape[:2]
            stream.pix_fmt = "yuv420p"
            stream.options = {"crf": "18", "preset": "veryfast"}
            started = True
        for packet in stream.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(img), format="rgb24")):
            out.mux(packet)
    for packet in stream.encode():
        out.mux(packet)
    out.close()
    return path


def write_clip(path: Path, face: Face, p: Phantom) -> Path:
    return write_video(path, frames(p, face.rgb, clip_length(), STIM_FRAME))


def write_session(path: Path, face: Face, phantoms: Sequence[Phantom], spacing_frames: int = 24) -> list[float]:
    """One video with several stimulations ``spacing_frames`` apart; returns the stimulation times (s)."""
    stims = [STIM_FRAME + k * spacing_frames for k in range(len(phantoms))]
    n = stims[-1] + spacing_frames

    def gen() -> Iterable[np.ndarray]:
        for j in range(n):
            k = max(range(len(stims)), key=lambda i: stims[i] if stims[i] <= j else -1)
            p = phantoms[k]
            lvl = _level(j, stims[k]) if stims[k] <= j else 0.0
            yield p.levels[lvl] if lvl > 0 else face.rgb

    write_video(path, gen())
    return [s / FPS for s in stims]


def true_onset_ms() -> float:
    return 1000.0 * ONSET_DELAY_FRAMES / FPS


def relative_error(measured: float, truth: float) -> float:
    return abs(measured - truth) / abs(truth) if truth else math.inf
