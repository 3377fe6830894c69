"""Sample media with known ground truth: a demo patient and a demo cohort.

Everything here is built from public-domain portraits (``sample_media/``), never
from patients. A portrait is warped by smooth landmark-driven fields
(:mod:`symmetry.phantom`, :mod:`symmetry.warp`) so that chosen landmarks move
by exactly known per-side displacements; the displacements, and the values the
movement measures must report for them, are the ground truth.

Run ``python -m symmetry.sample_data --out sample_media`` to regenerate the
bundled sample media (deterministic for a given seed, model and library
versions; see ``sample_media/README.md``).

Conventions
-----------
* Sides are the **patient's** (anatomical). A mirrored portrait is a new
  face: it is flipped *before* its landmarks are found, so its anatomical
  sides are those the landmark model reports on the flipped image. A
  "selfie" patient's photos are flipped *after* warping: the photos are
  mirrored (manifest ``mirrored=true``) and the truth stays anatomical.
* Displacements are in the pupil frame of the unwarped portrait (mm, ``y``
  up). In truth files ``dx`` is **lateral-positive** (away from the midline on
  that side) so that left and right read alike; in :class:`Movement` and
  inside this module ``dx`` is toward the patient's left, as in the frame.
* Millimetres use the portrait's own scale as :func:`symmetry.measure_photo`
  reports it (iris calibration) at generation time; the value is stored per
  patient (``mm_per_px`` in the patients truth file), so a later change of
  calibration can be compared against it.
* Movements are relative to the rest photo of the same visit. The rest photo
  of a visit may itself differ from the portrait (resting commissure drop,
  post-operative swelling); those changes are recorded as ``expression=rest``.

Model of an expression (per side, amplitudes from :class:`SideMovement`)
------------------------------------------------------------------------
* smile: the oral commissure moves by ``smile_mm`` at ``smile_angle_deg``
  above the lateral horizontal (``smile_closed``: 0.6 of it); the fissure of
  the same eye narrows by ``smile_eye_narrowing_pct`` (smile -> eye
  synkinesis; ``smile_closed``: half of it, ``pucker``: 0.8 of it).
* eye narrowing and closure: the central upper-lid points move down and the
  lower-lid points up (sine-squared profile along the lid, canthi and irises held),
  split in proportion to MRD1 and MRD2. The iris centre is held still so that
  the pupil frame is exact; this bounds how far a lid can travel without the
  field folding, so **eye closure is partial**: ``eye_closure_pct`` (default
  55%) of the fissure closes, ``eye_closure_tight`` 10 points more, capped at
  65%. Eye closure also moves the commissure by ``eye_closure_mouth_mm`` up
  and out (eye -> mouth synkinesis), 1.3 times that when tight. Where a
  narrow eye cannot take the asked closure (the warp would fold), the whole
  movement of that photo is shrunk in steps of 0.85 until it can; the truth
  records what was applied (the demo patient's tight closure: 55%
  instead of 65%).
* ``brow_raise``: the five brow points rise by ``brow_mm``; tight eye closure
  lowers them by 1.5 mm.
* ``lower_teeth`` ("eee"): the middle of the outer and inner lower lip moves
  down by ``lower_lip_mm`` and the commissure out by 0.35 of it.
* ``pucker``: the commissure moves ``pucker_mm`` toward the midline (10 deg up).
* ``snarl``: the upper lip halfway to the commissure rises by ``snarl_mm``,
  the alar base by half of it.
* rest: the commissure may sit ``rest_commissure_drop_mm`` lower; swelling
  pushes the cheek out by ``swelling_mm``.

Fields: every photo of a face warps the same control points (the moving
landmarks of both sides plus the irises, nose and canthi held still), with
widths of 2 mm (lids), 5 mm (lips), 6 mm (brows), 8 mm (cheeks) and at least
8 mm, or 1.1 times the largest commissure displacement, at the commissures, so
that no field folds.

The portraits already smile and show teeth, so the "rest" photos are the
portraits as they are and an "open" mouth is not synthesised: warps move
existing skin and cannot create teeth. The measures are defined on landmarks
and are exact for what was applied.

Timing: the demo patient is followed pre-op, 2 weeks, 3 months and 12 months
after a selective neurectomy (:data:`VISITS`, :func:`visit_state`); cohort
patients the same.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as _dt
import logging
import shutil
import sys
import zlib
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Iterable, Mapping, NamedTuple, Sequence

import cv2
import numpy as np
import pandas as pd

from .expressions import EXPRESSIONS
from .calibration import DEFAULT_IRIS_MM
from .frame import PupilFrame, lateral_sign
from .landmarks import CONTOURS, Landmarker, Side
from .measures import movement_measures, side_geometry
from .phantom import STABLE_FIXED
from .photo import measure_photo
from .warp import displacement_at, warp_image

__all__ = [
    "DEFAULT_SEED",
    "EXPRESSIONS",
    "COHORT_EXPRESSIONS",
    "VISITS",
    "FACE_VARIANTS",
    "CLINIC_SCRIPT",
    "COHORTS",
    "DEMO_RENDER",
    "COHORT_RENDER",
    "TRUTH_MEASURES",
    "SideMovement",
    "FaceState",
    "Face",
    "FaceVariant",
    "RenderSpec",
    "Movement",
    "PhantomPhoto",
    "ScriptEvent",
    "VideoTruth",
    "SurgeryOutcome",
    "PatientSpec",
    "Visit",
    "prepare_face",
    "load_faces",
    "variant_image",
    "expression_movement",
    "rest_movement",
    "make_expression_set",
    "make_clinic_video",
    "visit_state",
    "demo_patient",
    "cohort_design",
    "make_patient",
    "make_cohort",
    "generate",
    "main",
]

_log = logging.getLogger(__name__)

#: Seed of the bundled sample media (issue 7).
DEFAULT_SEED = 7

#: The photos taken of each cohort patient at each visit (the outcome measures).
COHORT_EXPRESSIONS: tuple[str, ...] = ("rest", "smile_open", "lower_teeth")

#: Movement measures reported in truth files (names as in :mod:`symmetry.measures`).
TRUTH_MEASURES: tuple[str, ...] = (
    "commissure_movement",
    "commissure_movement_angle",
    "palpebral_fissure_change",
    "brow_movement",
    "lower_lip_movement",
)
_UNITS = {
    "commissure_movement": "mm",
    "commissure_movement_angle": "deg",
    "palpebral_fissure_change": "%",
    "brow_movement": "mm",
    "lower_lip_movement": "mm",
}
#: Below this commissure movement (mm) its angle is not reported as truth (undefined).
_MIN_MOVEMENT_FOR_ANGLE_MM = 0.5


# --------------------------------------------------------------------------- #
# Faces
# --------------------------------------------------------------------------- #
@dataclass(frozen=True)
class FaceVariant:
    """A phantom face made from a bundled portrait.

    Attributes
    ----------
    portrait : str
        File name in the portraits folder.
    mirror : bool
        Flip horizontally before anything else (a new face whose anatomical
        left is the portrait's right).
    tone : tuple of 4 floats or None
        Recolouring in CIELAB: ``(L gain, L offset, a shift, b shift)``, on
        OpenCV's 8-bit Lab scale.
    upscale : float
        Resampling of the portrait before warping (Lanczos); the small
        astronaut face is worked on at twice its size.
    """

    portrait: str
    mirror: bool = False
    tone: tuple[float, float, float, float] | None = None
    upscale: float = 1.0


#: Faces of the sample media: two portraits, mirrored and recoloured.
FACE_VARIANTS: dict[str, FaceVariant] = {
    "obama": FaceVariant("obama.jpg"),
    "obama_mirrored": FaceVariant("obama.jpg", mirror=True),
    "obama_light": FaceVariant("obama.jpg", tone=(1.12, 14.0, -3.0, -6.0)),
    "obama_mirrored_warm": FaceVariant("obama.jpg", mirror=True, tone=(0.94, 0.0, 4.0, 10.0)),
    "astronaut": FaceVariant("astronaut.png", upscale=2.0),
    "astronaut_mirrored": FaceVariant("astronaut.png", mirror=True, upscale=2.0),
    "astronaut_dark": FaceVariant("astronaut.png", tone=(0.70, 0.0, 6.0, 12.0), upscale=2.0),
    "astronaut_mirrored_cool": FaceVariant("astronaut.png", mirror=True, tone=(1.0, 4.0, -3.0, -12.0), upscale=2.0),
}


def variant_image(rgb: np.ndarray, variant: FaceVariant) -> np.ndarray:
    """The working image of a face variant from its portrait (RGB uint8 in, RGB uint8 out)."""
    img = np.asarray(rgb)
    if img.ndim != 3 or img.shape[2] != 3 or img.dtype != np.uint8:
        raise ValueError(f"`rgb` must be an RGB uint8 array of shape (H, W, 3), got {img.shape} {img.dtype}")
    if variant.mirror:
        img = img[:, ::-1]
    if variant.upscale != 1.0:
        img = cv2.resize(img, None, fx=variant.upscale, fy=variant.upscale, interpolation=cv2.INTER_LANCZOS4)
    if variant.tone is not None:
        gain, offset, da, db = variant.tone
        lab = cv2.cvtColor(np.ascontiguousarray(img), cv2.COLOR_RGB2LAB).astype(np.float32)
        lab[..., 0] = lab[..., 0] * gain + offset
        lab[..., 1] += da
        lab[..., 2] += db
        img = cv2.cvtColor(np.clip(np.rint(lab), 0, 255).astype(np.uint8), cv2.COLOR_LAB2RGB)
    return np.ascontiguousarray(img)


@dataclass(frozen=True)
class Face:
    """An unwarped face image with its landmarks and pupil frame.

    Attributes
    ----------
    name : str
    rgb : ndarray of shape (H, W, 3), uint8
    points_px : ndarray of shape (478, 3)
        Landmarks (MediaPipe edge-based pixels), as :func:`symmetry.measure_photo` finds them.
    frame : PupilFrame
        The pupil frame and scale (``frame.mm_per_px``) that define the truth's millimetres.
    """

    name: str
    rgb: np.ndarray = field(repr=False)
    points_px: np.ndarray = field(repr=False)
    frame: PupilFrame

    @property
    def mm_per_px(self) -> float:
        return float(self.frame.mm_per_px)

    @property
    def points_mm(self) -> np.ndarray:
        """Landmarks in the pupil frame, mm (478, 2)."""
        return self.frame.to_mm(self.points_px)


def prepare_face(rgb: np.ndarray, *, name: str = "face", landmarker: Landmarker | None = None) -> Face:
    """Find the landmarks and the scale of an unwarped face image.

    Uses :func:`symmetry.measure_photo`, so the truth's millimetres are the
    measuring pipeline's own for this image.

    Raises
    ------
    NoFaceError, FaceTooSmallError
        If the image has no measurable face.
    """
    result = measure_photo(np.ascontiguousarray(rgb), landmarker=landmarker)
    return Face(name, np.ascontiguousarray(rgb), np.asarray(result.points_px, dtype=float).copy(), result.frame)


# --------------------------------------------------------------------------- #
# Movement model
# --------------------------------------------------------------------------- #
@dataclass(frozen=True)
class SideMovement:
    """What one side of a face does, in mm or % (see the module docstring).

    Attributes
    ----------
    smile_mm : float
        Commissure excursion in ``smile_open``, mm.
    smile_angle_deg : float
        Its direction above the lateral horizontal, degrees.
    smile_eye_narrowing_pct : float
        Palpebral fissure narrowing in ``smile_open``, % of the resting
        fissure (smile -> eye synkinesis when large).
    eye_closure_pct : float
        Fissure closed in ``eye_closure_gentle``, % (partial closure, <= 60).
    eye_closure_mouth_mm : float
        Commissure movement during eye closure, mm (eye -> mouth synkinesis).
    brow_mm : float
        Brow elevation in ``brow_raise``, mm.
    lower_lip_mm : float
        Lower-lip depression in ``lower_teeth``, mm (the oral-competence item).
    pucker_mm : float
        Commissure movement toward the midline in ``pucker``, mm.
    snarl_mm : float
        Upper-lip elevation in ``snarl``, mm.
    rest_commissure_drop_mm : float
        The resting commissure sits this much lower than in the portrait, mm.
    swelling_mm : float
        Post-operative swelling: the cheek is pushed out by this much at rest, mm.
    """

    smile_mm: float = 9.0
    smile_angle_deg: float = 40.0
    smile_eye_narrowing_pct: float = 0.0
    eye_closure_pct: float = 55.0
    eye_closure_mouth_mm: float = 0.0
    brow_mm: float = 5.0
    lower_lip_mm: float = 4.0
    pucker_mm: float = 5.0
    snarl_mm: float = 3.0
    rest_commissure_drop_mm: float = 0.0
    swelling_mm: float = 0.0

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if not np.isfinite(value):
                raise ValueError(f"`{f.name}` must be finite, got {value}")
        for name in ("smile_eye_narrowing_pct", "eye_closure_pct"):
            if not 0.0 <= getattr(self, name) <= 65.0:
                raise ValueError(
                    f"`{name}` must be in [0, 65] %: the iris centre is held still, so a lid "
                    f"cannot cross it (got {getattr(self, name)})"
                )

    def scaled(self, factor: float, names: Iterable[str]) -> "SideMovement":
        """A copy with the named amplitudes multiplied by ``factor``."""
        return replace(self, **{n: getattr(self, n) * factor for n in names})


@dataclass(frozen=True)
class FaceState:
    """Both sides of a face at one visit (patient's sides)."""

    right: SideMovement = SideMovement()
    left: SideMovement = SideMovement()

    def side(self, side: Side | str) -> SideMovement:
        return self.left if Side(side) is Side.LEFT else self.right


class Movement(NamedTuple):
    """Landmark displacements of one expression.

    Attributes
    ----------
    moves_mm : dict of int to (dx, dy)
        Pupil-frame mm, ``dx`` toward the patient's left, ``dy`` up.
    applied : list of (name, side, value, unit)
        The applied displacements, ``dx`` lateral-positive, for the truth file.
    """

    moves_mm: dict[int, np.ndarray]
    applied: list[tuple[str, str, float, str]]


# Landmarks outside CONTOURS used by the model (patient right, patient left).
_ALA = {Side.RIGHT: 64, Side.LEFT: 294}
_CHEEK = {Side.RIGHT: (205, 50, 187), Side.LEFT: (425, 280, 411)}
#: Profile of a lid movement along the 9-point lid chain: sine squared, 1 at mid-lid,
#: 0 at the canthi (which hold still), small next to them where the lids nearly touch.
_LID_PROFILE = np.sin(np.pi * np.arange(9) / 8.0) ** 2
_LID_SIGMA_MM = 2.0
_LIP_SIGMA_MM = 5.0
_BROW_SIGMA_MM = 6.0
_CHEEK_SIGMA_MM = 8.0
_ALA_SIGMA_MM = 4.0
_IRIS_SIGMA_MM = 1.5
_NOSE_SIGMA_MM = 6.0
#: Smallest width of the commissure's field; wider for large movements so the field never folds.
_MIN_COMMISSURE_SIGMA_MM = 8.0


def _anchor_ids() -> list[int]:
    """Every landmark the model may move, both sides (the same set for every expression)."""
    ids: list[int] = []
    for side in (Side.RIGHT, Side.LEFT):
        c = CONTOURS[side]
        ids += [c.commissure, *c.upper_lid[1:-1], *c.lower_lid[1:-1], *c.brow]
        ids += [*c.outer_lower_lip[1:4], *c.inner_lower_lip[1:4], *c.outer_upper_lip[1:3]]
        ids += [_ALA[side], *_CHEEK[side]]
    return ids


def _fixed_ids() -> list[int]:
    """Landmarks held exactly still: irises, nose, and the four canthi."""
    canthi = [i for s in (Side.RIGHT, Side.LEFT) for i in (CONTOURS[s].upper_lid[0], CONTOURS[s].upper_lid[-1])]
    return list(dict.fromkeys([*STABLE_FIXED, *canthi]))


_ANCHORS: tuple[int, ...] = tuple(_anchor_ids())
_FIXED: tuple[int, ...] = tuple(_fixed_ids())


def _commissure_reach_mm(m: SideMovement) -> float:
    """Largest commissure displacement the model can ask of this side, rest change included, mm."""
    return max(m.smile_mm, m.pucker_mm, 1.3 * m.eye_closure_mouth_mm, 0.35 * m.lower_lip_mm) + abs(
        m.rest_commissure_drop_mm
    )


def _sigmas_mm(state: FaceState) -> dict[int, float]:
    """Width of every control point's field, mm (fixed per face state)."""
    sig: dict[int, float] = {}
    for side in (Side.RIGHT, Side.LEFT):
        c, m = CONTOURS[side], state.side(side)
        sig[c.commissure] = max(_MIN_COMMISSURE_SIGMA_MM, 1.1 * _commissure_reach_mm(m))
        for i in (*c.upper_lid, *c.lower_lid):
            sig[i] = _LID_SIGMA_MM
        for i in c.brow:
            sig[i] = _BROW_SIGMA_MM
        for i in (*c.outer_lower_lip[1:4], *c.inner_lower_lip[1:4], *c.outer_upper_lip[1:3]):
            sig[i] = _LIP_SIGMA_MM
        sig[_ALA[side]] = _ALA_SIGMA_MM
        for i in _CHEEK[side]:
            sig[i] = _CHEEK_SIGMA_MM
        for i in (c.iris_center, c.iris_medial, c.iris_lateral):
            sig[i] = _IRIS_SIGMA_MM
    for i in _FIXED:
        sig.setdefault(i, _NOSE_SIGMA_MM)
    return sig


def _lid_split(face: Face, side: Side, closing_pct: float) -> tuple[float, float]:
    """Upper-lid drop and lower-lid rise (mm, both >= 0) that close ``closing_pct`` % of the fissure.

    Split in proportion to MRD1 and MRD2 of the portrait, so each lid travels
    the same fraction of its distance to the (fixed) iris centre.
    """
    g = side_geometry(face.points_mm, side)
    mrd1 = max(float(g.upper_lid_at_pupil[1] - g.iris_center[1]), 0.1)
    mrd2 = max(float(g.iris_center[1] - g.lower_lid_at_pupil[1]), 0.1)
    closing = closing_pct / 100.0 * (mrd1 + mrd2)
    return closing * mrd1 / (mrd1 + mrd2), closing * mrd2 / (mrd1 + mrd2)


class _Builder:
    """Accumulates per-landmark displacements (frame mm) and the applied-values record."""

    def __init__(self) -> None:
        self.moves: dict[int, np.ndarray] = {}
        self.applied: list[tuple[str, str, float, str]] = []

    def add(self, idx: int, dx: float, dy: float) -> None:
        self.moves[idx] = self.moves.get(idx, np.zeros(2)) + (dx, dy)

    def record(self, name: str, side: Side, value: float, unit: str = "mm") -> None:
        self.applied.append((name, side.value, float(value), unit))

    def commissure(self, side: Side, lateral_mm: float, up_mm: float) -> None:
        self.add(CONTOURS[side].commissure, lateral_sign(side) * lateral_mm, up_mm)
        self.record("commissure_dx", side, lateral_mm)
        self.record("commissure_dy", side, up_mm)

    def lids(self, face: Face, side: Side, closing_pct: float) -> None:
        if closing_pct <= 0:
            return
        c = CONTOURS[side]
        drop, rise = _lid_split(face, side, closing_pct)
        for k in range(1, 8):
            self.add(c.upper_lid[k], 0.0, -drop * _LID_PROFILE[k])
            self.add(c.lower_lid[k], 0.0, rise * _LID_PROFILE[k])
        self.record("upper_lid_dy", side, -drop)
        self.record("lower_lid_dy", side, rise)
        self.record("fissure_closing", side, closing_pct, "%")

    def brows(self, side: Side, up_mm: float) -> None:
        for i in CONTOURS[side].brow:
            self.add(i, 0.0, up_mm)
        self.record("brow_dy", side, up_mm)


def expression_movement(face: Face, state: FaceState, expression: str, *, effort: Mapping[str, float] | None = None) -> Movement:
    """Landmark displacements of one expression relative to the visit's rest photo.

    Parameters
    ----------
    face : Face
        The unwarped face (its lid geometry sets the eye-narrowing millimetres).
    state : FaceState
        What each side does at this visit.
    expression : str
        One of :data:`EXPRESSIONS`.
    effort : mapping of side name to float, optional
        Multiplies every amplitude of that side (how strongly the patient
        performed this photo; 1 by default).

    Raises
    ------
    ValueError
        If ``expression`` is unknown.
    """
    if expression not in EXPRESSIONS:
        raise ValueError(f"`expression` must be one of {', '.join(EXPRESSIONS)}; got {expression!r}")
    b = _Builder()
    for side in (Side.RIGHT, Side.LEFT):
        m = state.side(side)
        e = 1.0 if effort is None else float(effort.get(side.value, 1.0))
        c = CONTOURS[side]
        if expression in ("smile_open", "smile_closed"):
            k = 1.0 if expression == "smile_open" else 0.6
            a = np.radians(m.smile_angle_deg)
            b.commissure(side, e * k * m.smile_mm * np.cos(a), e * k * m.smile_mm * np.sin(a))
            b.lids(face, side, min(e * (1.0 if k == 1.0 else 0.5) * m.smile_eye_narrowing_pct, 60.0))
        elif expression in ("eye_closure_gentle", "eye_closure_tight"):
            tight = expression == "eye_closure_tight"
            closing = min(e * m.eye_closure_pct + (10.0 if tight else 0.0), 65.0)
            b.lids(face, side, closing)
            mouth = e * m.eye_closure_mouth_mm * (1.3 if tight else 1.0)
            if mouth > 0:
                a = np.radians(70.0)
                b.commissure(side, mouth * np.cos(a), mouth * np.sin(a))
            if tight:
                b.brows(side, -1.5 * e)
        elif expression == "brow_raise":
            b.brows(side, e * m.brow_mm)
        elif expression == "lower_teeth":
            down = e * m.lower_lip_mm
            for i in (*c.outer_lower_lip[1:4], *c.inner_lower_lip[1:4]):
                b.add(i, 0.0, -down)
            b.record("lower_lip_dy", side, -down)
            b.commissure(side, 0.35 * down, 0.0)
        elif expression == "pucker":
            a = np.radians(10.0)
            p = e * m.pucker_mm
            b.commissure(side, -p * np.cos(a), p * np.sin(a))
            b.lids(face, side, min(e * 0.8 * m.smile_eye_narrowing_pct, 60.0))
        elif expression == "snarl":
            s = e * m.snarl_mm
            for i in c.outer_upper_lip[1:3]:
                b.add(i, 0.0, s)
            b.add(_ALA[side], 0.0, 0.5 * s)
            b.record("upper_lip_dy", side, s)
    return Movement(b.moves, b.applied)


def rest_movement(state: FaceState) -> Movement:
    """Landmark displacements of the visit's rest photo relative to the unwarped portrait."""
    b = _Builder()
    for side in (Side.RIGHT, Side.LEFT):
        m = state.side(side)
        if m.rest_commissure_drop_mm:
            b.add(CONTOURS[side].commissure, 0.0, -m.rest_commissure_drop_mm)
            b.record("commissure_dy", side, -m.rest_commissure_drop_mm)
        if m.swelling_mm:
            for i in _CHEEK[side]:
                b.add(i, lateral_sign(side) * m.swelling_mm, -0.3 * m.swelling_mm)
            b.record("cheek_dx", side, m.swelling_mm)
    return Movement(b.moves, b.applied)


# --------------------------------------------------------------------------- #
# Fields
# --------------------------------------------------------------------------- #
class _Field(NamedTuple):
    """The control points of one warp of a face: anchors then fixed points (pixel-centred px)."""

    anchors_px: np.ndarray
    disp_px: np.ndarray
    fixed_px: np.ndarray
    sigma_px: np.ndarray

    def displacement_px(self, points_px: np.ndarray) -> np.ndarray:
        """Forward displacement (px) at MediaPipe edge-based points."""
        if not np.any(self.disp_px):
            return np.zeros((len(points_px), 2))
        pts = np.asarray(points_px, dtype=float)[:, :2] - 0.5
        return displacement_at(pts, self.anchors_px, self.disp_px, self.sigma_px, fixed_px=self.fixed_px)

    def render(self, rgb: np.ndarray) -> np.ndarray:
        if not np.any(self.disp_px):
            return rgb.copy()
        return warp_image(rgb, self.anchors_px, self.disp_px, self.sigma_px, fixed_px=self.fixed_px)


def _field(face: Face, moves_mm: Mapping[int, np.ndarray], sigma_mm: Mapping[int, float]) -> _Field:
    """The warp moving every model anchor by ``moves_mm`` (0 where absent) and holding the fixed points."""
    fr = face.frame
    pts = face.points_px[:, :2] - 0.5
    d_mm = np.array([moves_mm.get(i, np.zeros(2)) for i in _ANCHORS], dtype=float).reshape(-1, 2)
    d_px = (d_mm[:, :1] * fr.x_axis + d_mm[:, 1:] * fr.up_axis) / fr.mm_per_px
    sig = np.array([sigma_mm[i] for i in (*_ANCHORS, *_FIXED)]) / fr.mm_per_px
    return _Field(pts[list(_ANCHORS)], d_px, pts[list(_FIXED)], sig)


def _measure_truth(face: Face, rest_d_px: np.ndarray, expr_d_px: np.ndarray) -> list[tuple[str, str, float, str]]:
    """The movement measures of the true landmark positions: what a perfect measurement reports."""
    rest_mm = face.frame.to_mm(face.points_px[:, :2] + rest_d_px)
    expr_mm = face.frame.to_mm(face.points_px[:, :2] + expr_d_px)
    values = {(m.name, m.side): m.value for m in movement_measures(rest_mm, expr_mm)}
    rows = []
    for name in TRUTH_MEASURES:
        for side in ("right", "left"):
            if name == "commissure_movement_angle" and values[("commissure_movement", side)] < _MIN_MOVEMENT_FOR_ANGLE_MM:
                continue
            rows.append((name, side, float(values[(name, side)]), _UNITS[name]))
    return rows


def _add_moves(a: Mapping[int, np.ndarray], b: Mapping[int, np.ndarray], scale_b: float = 1.0) -> dict[int, np.ndarray]:
    out = {i: np.asarray(v, dtype=float).copy() for i, v in a.items()}
    for i, v in b.items():
        out[i] = out.get(i, np.zeros(2)) + scale_b * np.asarray(v, dtype=float)
    return out


def _scale_movement(mv: Movement, k: float) -> Movement:
    applied = [(n, s, v * k if u == "mm" or n.endswith("_closing") else v, u) for n, s, v, u in mv.applied]
    return Movement({i: v * k for i, v in mv.moves_mm.items()}, applied)


# --------------------------------------------------------------------------- #
# Rendering (camera): crop, scale, head jitter, exposure, sensor noise
# --------------------------------------------------------------------------- #
@dataclass(frozen=True)
class RenderSpec:
    """How a warped face becomes a photo.

    Attributes
    ----------
    size : (width, height) or None
        Output size, px; ``None`` returns the warped working image unchanged
        (no crop, jitter or noise).
    iris_px : float
        Horizontal iris diameter in the output, px (sets the zoom).
    pupil_y : float
        Height of the pupil midpoint in the output, as a fraction of the height.
    scale : float
        Extra zoom of this session (camera distance).
    roll_deg : float
        Head roll of this session, degrees.
    shift_sd_px, scale_sd, roll_sd_deg : float
        Per-photo head position jitter: translation (px), relative zoom, roll (degrees).
    gain_sd, offset_sd, noise_sd : float
        Per-photo exposure jitter (relative gain, offset in grey levels) and sensor noise (grey levels).
    selfie : bool
        Mirror the photo after warping (a selfie camera); the truth stays anatomical.
    """

    size: tuple[int, int] | None = (320, 400)
    iris_px: float = 15.0
    pupil_y: float = 0.40
    scale: float = 1.0
    roll_deg: float = 0.0
    shift_sd_px: float = 4.0
    scale_sd: float = 0.015
    roll_sd_deg: float = 1.0
    gain_sd: float = 0.04
    offset_sd: float = 4.0
    noise_sd: float = 1.2
    selfie: bool = False


def _camera_matrix(face: Face, spec: RenderSpec, *, zoom: float, roll_deg: float, shift: tuple[float, float]) -> np.ndarray:
    """2x3 affine from working-image pixels (pixel-centred) to output pixels."""
    if spec.size is None:
        raise ValueError("`spec.size` must be set to place the face in an output image")
    w, h = spec.size
    fr = face.frame
    s = spec.iris_px / (DEFAULT_IRIS_MM / fr.mm_per_px) * zoom
    tilt = np.degrees(np.arctan2(fr.x_axis[1], fr.x_axis[0]))
    a = np.radians(roll_deg - tilt)
    rot = s * np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])
    src = fr.origin_px - 0.5
    dst = np.array([w / 2.0 + shift[0], h * spec.pupil_y + shift[1]])
    return np.hstack([rot, (dst - rot @ src)[:, None]])


def _render(image: np.ndarray, face: Face, spec: RenderSpec, rng: np.random.Generator) -> np.ndarray:
    if spec.size is None:
        return image
    zoom = spec.scale * float(np.exp(rng.normal(0.0, spec.scale_sd)))
    roll = spec.roll_deg + float(rng.normal(0.0, spec.roll_sd_deg))
    shift = (float(rng.normal(0.0, spec.shift_sd_px)), float(rng.normal(0.0, spec.shift_sd_px)))
    mat = _camera_matrix(face, spec, zoom=zoom, roll_deg=roll, shift=shift)
    s = float(np.sqrt(abs(np.linalg.det(mat[:, :2]))))
    src = image
    if s < 0.95:  # anti-alias before shrinking
        src = cv2.GaussianBlur(image, (0, 0), 0.45 * np.sqrt(1.0 / s**2 - 1.0))
    out = cv2.warpAffine(src, mat, spec.size, flags=cv2.INTER_CUBIC, borderMode=cv2.BORDER_REFLECT)
    gain = 1.0 + rng.normal(0.0, spec.gain_sd)
    offset = rng.normal(0.0, spec.offset_sd)
    noisy = out.astype(np.float32) * gain + offset + rng.normal(0.0, spec.noise_sd, out.shape).astype(np.float32)
    out = np.clip(np.rint(noisy), 0, 255).astype(np.uint8)
    if spec.selfie:
        out = out[:, ::-1]
    return np.ascontiguousarray(out)


# --------------------------------------------------------------------------- #
# Photos of one visit
# --------------------------------------------------------------------------- #
class PhantomPhoto(NamedTuple):
    """One generated photo and its truth.

    ``truth`` is a tidy DataFrame with columns ``expression, kind, name, side,
    value, unit``: ``kind == "applied"`` rows are the displacements put in
    (``dx`` lateral-positive, ``dy`` up, mm), ``kind == "measure"`` rows are
    what a perfect measurement must report for :data:`TRUTH_MEASURES`
    (movement measures of the true landmark positions, rest of the same visit
    as reference).
    """

    image: np.ndarray
    truth: pd.DataFrame


def _seed(*parts: object) -> list[int]:
    """A stable integer seed sequence from names and numbers (independent of PYTHONHASHSEED)."""
    out = []
    for p in parts:
        out.append(int(p) if isinstance(p, (int, np.integer)) else zlib.crc32(str(p).encode()))
    return out


def _effort(rng: np.random.Generator, sd: float) -> dict[str, float]:
    return {s: float(np.clip(rng.normal(1.0, sd), 1.0 - 3 * sd, 1.0 + 3 * sd)) for s in ("right", "left")}


def _truth_frame(expression: str, applied: Sequence[tuple[str, str, float, str]], measured: Sequence[tuple[str, str, float, str]]) -> pd.DataFrame:
    rows = [(expression, "applied", n, s, v, u) for n, s, v, u in applied]
    rows += [(expression, "measure", n, s, v, u) for n, s, v, u in measured]
    return pd.DataFrame(rows, columns=["expression", "kind", "name", "side", "value", "unit"])


_FOLD_BACKOFF = 0.85
_MAX_BACKOFF_STEPS = 8


def _warp_expression(face: Face, rest: Movement, mv: Movement, sigma: Mapping[int, float]) -> tuple[np.ndarray, Movement, _Field]:
    """Render rest + movement; if the field would fold, shrink the movement (recorded) until it does not."""
    k = 1.0
    for _ in range(_MAX_BACKOFF_STEPS):
        scaled = mv if k == 1.0 else _scale_movement(mv, k)
        fld = _field(face, _add_moves(rest.moves_mm, scaled.moves_mm), sigma)
        try:
            return fld.render(face.rgb), scaled, fld
        except ValueError as exc:
            if "fold" not in str(exc) and "invert" not in str(exc):
                raise
            _log.info("%s: movement too strong for the field, scaled by %.2f", face.name, k * _FOLD_BACKOFF)
            k *= _FOLD_BACKOFF
    raise ValueError(f"{face.name}: could not build a non-folding warp for this movement")


def make_expression_set(
    face: Face | np.ndarray,
    state: FaceState,
    *,
    seed: int,
    expressions: Sequence[str] = EXPRESSIONS,
    render: RenderSpec | None = None,
    effort_sd: float = 0.05,
    landmarker: Landmarker | None = None,
) -> dict[str, PhantomPhoto]:
    """The standard-expression photos of one visit, with their truth.

    Parameters
    ----------
    face : Face or ndarray of shape (H, W, 3), uint8
        The unwarped face (an image is passed to :func:`prepare_face`).
    state : FaceState
        What each side does at this visit.
    seed : int
        Seeds the performance variation (``effort_sd``) and the camera jitter.
    expressions : sequence of str
        Which photos, from :data:`EXPRESSIONS`; ``rest`` is always made.
    render : RenderSpec, optional
        Camera; default ``RenderSpec()`` (320x400, iris 15 px, jitter and noise).
        ``RenderSpec(size=None)`` returns the warped working images.
    effort_sd : float
        Per-photo, per-side relative variation of the amplitudes (how strongly
        the patient performs); the truth records what was applied.
    landmarker : Landmarker, optional
        Reused when ``face`` is an image.

    Returns
    -------
    dict of str to PhantomPhoto
        ``(image, truth)`` per expression, in the order of :data:`EXPRESSIONS`.

    Raises
    ------
    ValueError
        If an expression is unknown.
    NoFaceError, FaceTooSmallError
        If ``face`` is an image without a measurable face.
    """
    if not isinstance(face, Face):
        face = prepare_face(face, landmarker=landmarker)
    bad = [e for e in expressions if e not in EXPRESSIONS]
    if bad:
        raise ValueError(f"`expressions` must be taken from {', '.join(EXPRESSIONS)}; got {bad}")
    render = RenderSpec() if render is None else render
    wanted = [e for e in EXPRESSIONS if e == "rest" or e in expressions]
    sigma = _sigmas_mm(state)
    rest = rest_movement(state)
    rest_field = _field(face, rest.moves_mm, sigma)
    rest_d = rest_field.displacement_px(face.points_px)
    out: dict[str, PhantomPhoto] = {}
    for expression in wanted:
        rng = np.random.default_rng(_seed(seed, expression))
        if expression == "rest":
            img = rest_field.render(face.rgb)
            truth = _truth_frame("rest", rest.applied, [])
        else:
            mv = expression_movement(face, state, expression, effort=_effort(rng, effort_sd))
            img, mv, fld = _warp_expression(face, rest, mv, sigma)
            truth = _truth_frame(expression, mv.applied, _measure_truth(face, rest_d, fld.displacement_px(face.points_px)))
        out[expression] = PhantomPhoto(_render(img, face, render, rng), truth)
    return out


# --------------------------------------------------------------------------- #
# Clinic video
# --------------------------------------------------------------------------- #
@dataclass(frozen=True)
class ScriptEvent:
    """One expression of the clinic script: rise, hold at full strength, fall (seconds)."""

    expression: str
    onset_s: float
    rise_s: float = 0.5
    hold_s: float = 1.0
    fall_s: float = 0.5

    @property
    def apex_start_s(self) -> float:
        return self.onset_s + self.rise_s

    @property
    def apex_end_s(self) -> float:
        return self.apex_start_s + self.hold_s

    @property
    def offset_s(self) -> float:
        return self.apex_end_s + self.fall_s

    def envelope(self, t: float) -> float:
        """Strength in [0, 1] at time ``t`` (raised-cosine onset and offset)."""
        if t <= self.onset_s or t >= self.offset_s:
            return 0.0
        if t < self.apex_start_s:
            return 0.5 * (1.0 - np.cos(np.pi * (t - self.onset_s) / self.rise_s))
        if t <= self.apex_end_s:
            return 1.0
        return 0.5 * (1.0 + np.cos(np.pi * (t - self.apex_end_s) / self.fall_s))


def _script(order: Sequence[str], start_s: float = 1.0, gap_s: float = 0.5) -> tuple[ScriptEvent, ...]:
    events, t = [], start_s
    for e in order:
        ev = ScriptEvent(e, t)
        events.append(ev)
        t = ev.offset_s + gap_s
    return tuple(events)


#: The clinic script: rest, brow raise, gentle eye closure, smiles, "eee", pucker, rest (16.5 s).
CLINIC_SCRIPT: tuple[ScriptEvent, ...] = _script(
    ("brow_raise", "eye_closure_gentle", "smile_closed", "smile_open", "lower_teeth", "pucker")
)


class VideoTruth(NamedTuple):
    """Truth of a generated clinic video.

    ``frames``: one row per frame (``frame, time_s, expression, envelope`` then
    per side the applied displacements and the true movement measures, e.g.
    ``smile_commissure_dx_left`` (mm, lateral +), ``commissure_movement_left``
    (mm), ``palpebral_fissure_change_left`` (%), movements relative to the
    first frame). ``events``: one row per script event with ``onset_s,
    apex_start_s, apex_end_s, offset_s``. ``fourcc``: the codec written.
    """

    frames: pd.DataFrame
    events: pd.DataFrame
    fourcc: str


def _open_writer(path: Path, fps: float, size: tuple[int, int], bitrate: int | None) -> tuple[cv2.VideoWriter, str]:
    """H.264 (``avc1``) if this OpenCV build can write it, else MPEG-4 Part 2 (``mp4v``)."""
    params: list[int] = []
    if bitrate is not None and hasattr(cv2, "VIDEOWRITER_PROP_BITRATE"):
        params = [cv2.VIDEOWRITER_PROP_BITRATE, int(bitrate)]
    for fourcc in ("avc1", "mp4v"):
        writer = cv2.VideoWriter(str(path), cv2.CAP_FFMPEG, cv2.VideoWriter_fourcc(*fourcc), float(fps), size, params)
        if writer.isOpened():
            return writer, fourcc
        writer.release()
    raise RuntimeError(f"{path}: OpenCV cannot write an MP4 video here (neither avc1 nor mp4v)")


def make_clinic_video(
    face: Face,
    state: FaceState,
    path: str | Path | None,
    *,
    seed: int,
    fps: float = 30.0,
    size: tuple[int, int] = (1280, 720),
    iris_px: float = 28.0,
    script: Sequence[ScriptEvent] = CLINIC_SCRIPT,
    duration_s: float | None = None,
    bitrate: int | None = 750_000,
    frames_out: list[np.ndarray] | None = None,
) -> VideoTruth:
    """A clinic-script video of one face with per-frame truth.

    Each frame warps the face by ``sum_e envelope_e(t) * movement_e`` (one field
    with the same control points throughout, so the movement is smooth in
    time), then films it with a slow head sway (translation of a few px, roll
    under 1 degree, zoom within 1%).

    Parameters
    ----------
    face, state
        As in :func:`make_expression_set` (the state's rest changes apply to every frame).
    path : path or None
        Output ``.mp4``; ``None`` writes nothing (frames still rendered if
        ``frames_out`` is given, truth always computed).
    seed : int
        Seeds the sway phases.
    fps, size, iris_px
        Frame rate, frame size (px) and iris diameter in the frame (px; the
        face is upscaled as needed).
    script : sequence of ScriptEvent
    duration_s : float, optional
        Default: one second after the last event.
    bitrate : int or None
        Target bit rate, bit/s (``None``: OpenCV's default).
    frames_out : list, optional
        If given, each RGB frame is appended to it.

    Returns
    -------
    VideoTruth

    Raises
    ------
    ValueError
        If a frame's field would fold (unlike the photos, the video does not
        shrink movements: lower the state's amplitudes).
    RuntimeError
        If OpenCV cannot write an MP4 file here.
    """
    rng = np.random.default_rng(_seed(seed, "video"))
    duration = duration_s if duration_s is not None else max(ev.offset_s for ev in script) + 1.0
    n_frames = int(round(duration * fps))
    sigma = _sigmas_mm(state)
    rest = rest_movement(state)
    rest_field = _field(face, rest.moves_mm, sigma)
    rest_d = rest_field.displacement_px(face.points_px)
    apex = {ev.expression: expression_movement(face, state, ev.expression) for ev in script}
    spec = RenderSpec(size=size, iris_px=iris_px, pupil_y=0.40)
    phases = rng.uniform(0, 2 * np.pi, 4)
    writer, fourcc = (None, "")
    if path is not None:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        writer, fourcc = _open_writer(Path(path), fps, size, bitrate)
    rows = []
    cache: dict[tuple, np.ndarray] = {}
    try:
        for f in range(n_frames):
            t = f / fps
            weights = {ev.expression: ev.envelope(t) for ev in script}
            active = [e for e, w in weights.items() if w > 0]
            moves = dict(rest.moves_mm)
            applied: dict[tuple[str, str], float] = {}
            for e in active:
                moves = _add_moves(moves, apex[e].moves_mm, weights[e])
                for n, s, v, _u in apex[e].applied:
                    applied[(n, s)] = applied.get((n, s), 0.0) + weights[e] * v
            fld = _field(face, moves, sigma)
            key = tuple(np.round(fld.disp_px.ravel(), 6))
            if writer is not None or frames_out is not None:
                if key not in cache:
                    cache.clear()
                    cache[key] = fld.render(face.rgb)
                warped = cache[key]
                zoom = 1.0 + 0.008 * np.sin(2 * np.pi * t / 6.3 + phases[0])
                roll = 0.7 * np.sin(2 * np.pi * t / 9.7 + phases[1])
                shift = (5.0 * np.sin(2 * np.pi * t / 7.3 + phases[2]), 3.0 * np.sin(2 * np.pi * t / 5.1 + phases[3]))
                mat = _camera_matrix(face, spec, zoom=float(zoom), roll_deg=float(roll), shift=shift)
                frame_rgb = cv2.warpAffine(warped, mat, size, flags=cv2.INTER_CUBIC, borderMode=cv2.BORDER_REFLECT)
                if writer is not None:
                    writer.write(cv2.cvtColor(frame_rgb, cv2.COLOR_RGB2BGR))
                if frames_out is not None:
                    frames_out.append(frame_rgb)
            row: dict[str, object] = {
                "frame": f,
                "time_s": round(t, 6),
                "expression": max(active, key=lambda e: weights[e]) if active else "rest",
                "envelope": round(max(weights.values(), default=0.0), 6),
            }
            for (n, s), v in sorted(applied.items()):
                row[f"{n}_{s}"] = v
            for n, s, v, _u in _measure_truth(face, rest_d, fld.displacement_px(face.points_px)):
                row[f"{n}_{s}"] = v
            rows.append(row)
    finally:
        if writer is not None:
            writer.release()
    frames = pd.DataFrame(rows)
    lead = ["frame", "time_s", "expression", "envelope"]
    rest_cols = sorted(c for c in frames.columns if c not in lead)
    frames = frames[lead + rest_cols]
    applied_cols = [c for c in rest_cols if not c.startswith(TRUTH_MEASURES)]
    frames[applied_cols] = frames[applied_cols].fillna(0.0)
    events = pd.DataFrame(
        [
            {
                "expression": ev.expression,
                "onset_s": ev.onset_s,
                "apex_start_s": ev.apex_start_s,
                "apex_end_s": ev.apex_end_s,
                "offset_s": ev.offset_s,
            }
            for ev in script
        ]
    )
    return VideoTruth(frames, events, fourcc)


# --------------------------------------------------------------------------- #
# Patients and visits
# --------------------------------------------------------------------------- #
class Visit(NamedTuple):
    """A follow-up visit: label and days after the procedure."""

    label: str
    days: int


#: Pre-op (two weeks before), 2 weeks, 3 months and 12 months after the procedure.
VISITS: tuple[Visit, ...] = (Visit("preop", -14), Visit("2w", 14), Visit("3m", 91), Visit("12m", 365))

# Time courses per visit label (fractions): smile gain, synkinesis reduction,
# lower-lip loss (post-op weakness appears at once, half recovers), swelling.
_GAIN = {"preop": 0.0, "2w": 0.0, "3m": 0.6, "12m": 1.0}
_SYNK = {"preop": 0.0, "2w": 1.0, "3m": 1.0, "12m": 1.0}
_LIP_LOSS = {"preop": 0.0, "2w": 1.0, "3m": 0.8, "12m": 0.5}
_SWELL = {"preop": 0.0, "2w": 1.0, "3m": 0.25, "12m": 0.0}
#: Swelling: amplitudes of mouth movements on the operated side shrink by this fraction at full swelling.
_SWELL_DAMPING = 0.2
#: Swelling: the cheek of the operated side is pushed out by this much at full swelling, mm.
_SWELL_MM = 1.5
_MOUTH_MOVES = ("smile_mm", "lower_lip_mm", "pucker_mm", "snarl_mm")


@dataclass(frozen=True)
class SurgeryOutcome:
    """What the procedure does to the operated (affected) side, reached at 12 months.

    Attributes
    ----------
    smile_gain_mm : float
        Smile excursion gained, mm (60% of it by 3 months).
    synkinesis_reduction : float
        Fraction of the smile -> eye narrowing and eye -> mouth movement
        removed (from 2 weeks on; 0 = no effect).
    lower_lip_loss : float
        Fraction of the lower-lip depression lost after surgery (all of it at
        2 weeks, 80% at 3 months, 50% at 12 months; 0 = no weakness).
    rest_drop_reduction : float
        Fraction of the resting commissure drop corrected (with the smile gain's time course).
    """

    smile_gain_mm: float = 0.0
    synkinesis_reduction: float = 0.0
    lower_lip_loss: float = 0.0
    rest_drop_reduction: float = 0.0


@dataclass(frozen=True)
class PatientSpec:
    """A phantom patient: face, affected side, pre-op movements, surgery and dates.

    Attributes
    ----------
    patient : str
        Identifier.
    face : str
        Key of :data:`FACE_VARIANTS`.
    affected_side : {"left", "right"}
    healthy, affected : SideMovement
        Pre-operative movements of the healthy and the affected side.
    outcome : SurgeryOutcome
    procedure_date : datetime.date
    procedure, cohort, aetiology : str
    selfie : bool
        Photos are mirrored (selfie camera); manifest ``mirrored=true``.
    expressions : tuple of str
        Photos taken at each visit.
    lower_lip_weakness : bool
        Whether the patient develops post-operative lower-lip weakness (for the truth file).
    """

    patient: str
    face: str
    affected_side: str
    healthy: SideMovement
    affected: SideMovement
    outcome: SurgeryOutcome
    procedure_date: _dt.date
    procedure: str = "selective neurectomy"
    cohort: str = ""
    aetiology: str = "Bell's palsy"
    selfie: bool = False
    expressions: tuple[str, ...] = COHORT_EXPRESSIONS

    def __post_init__(self) -> None:
        if self.affected_side not in ("left", "right"):
            raise ValueError(f"`affected_side` must be 'left' or 'right', got {self.affected_side!r}")
        if self.face not in FACE_VARIANTS:
            raise ValueError(f"`face` must be one of {', '.join(FACE_VARIANTS)}, got {self.face!r}")

    @property
    def lower_lip_weakness(self) -> bool:
        return self.outcome.lower_lip_loss > 0

    def visit_date(self, visit: Visit) -> _dt.date:
        return self.procedure_date + _dt.timedelta(days=visit.days)


def visit_state(patient: PatientSpec, visit: Visit | str) -> FaceState:
    """Both sides of the patient's face at a visit (the surgery's time course applied)."""
    label = visit if isinstance(visit, str) else visit.label
    if label not in _GAIN:
        raise ValueError(f"`visit` must be one of {', '.join(_GAIN)}; got {label!r}")
    a, o = patient.affected, patient.outcome
    swell = _SWELL[label]
    operated = replace(
        a,
        smile_mm=a.smile_mm + o.smile_gain_mm * _GAIN[label],
        smile_eye_narrowing_pct=a.smile_eye_narrowing_pct * (1.0 - o.synkinesis_reduction * _SYNK[label]),
        eye_closure_mouth_mm=a.eye_closure_mouth_mm * (1.0 - o.synkinesis_reduction * _SYNK[label]),
        lower_lip_mm=a.lower_lip_mm * (1.0 - o.lower_lip_loss * _LIP_LOSS[label]),
        rest_commissure_drop_mm=a.rest_commissure_drop_mm * (1.0 - o.rest_drop_reduction * _GAIN[label]),
        swelling_mm=_SWELL_MM * swell,
    ).scaled(1.0 - _SWELL_DAMPING * swell, _MOUTH_MOVES)
    if patient.affected_side == "left":
        return FaceState(right=patient.healthy, left=operated)
    return FaceState(right=operated, left=patient.healthy)


def demo_patient() -> PatientSpec:
    """The demo patient: weak left smile with left smile -> eye synkinesis, selective neurectomy.

    Pre-op the left commissure moves 4 mm on a big smile (right 9 mm) and the
    left eye narrows by 35% (right 0%); the neurectomy adds 3.5 mm of smile
    and removes 60% of the synkinesis by 12 months, and a mild lower-lip
    weakness appears on the left after surgery (40% of the depression lost at
    2 weeks, 20% still at 12 months).
    """
    return PatientSpec(
        patient="DEMO",
        face="obama",
        affected_side="left",
        healthy=SideMovement(smile_mm=9.0, smile_angle_deg=40.0, lower_lip_mm=4.0, brow_mm=5.0, pucker_mm=5.0),
        affected=SideMovement(
            smile_mm=4.0,
            smile_angle_deg=35.0,
            smile_eye_narrowing_pct=35.0,
            eye_closure_pct=45.0,
            eye_closure_mouth_mm=2.5,
            brow_mm=2.0,
            lower_lip_mm=3.5,
            pucker_mm=3.0,
            snarl_mm=1.5,
            rest_commissure_drop_mm=1.5,
        ),
        outcome=SurgeryOutcome(smile_gain_mm=3.5, synkinesis_reduction=0.6, lower_lip_loss=0.4, rest_drop_reduction=0.5),
        procedure_date=_dt.date(2024, 2, 12),
        procedure="selective neurectomy",
        cohort="",
        aetiology="Bell's palsy",
        expressions=EXPRESSIONS,
    )


#: The two arms of the demo cohort: (cohort name, procedure).
COHORTS: tuple[tuple[str, str], ...] = (("neurectomy", "selective neurectomy"), ("myectomy", "DAO myectomy"))
_AETIOLOGIES = ("Bell's palsy", "Bell's palsy", "Bell's palsy", "Ramsay Hunt syndrome", "acoustic neuroma resection")


def cohort_design(*, seed: int = DEFAULT_SEED, n_per_cohort: int = 12) -> list[PatientSpec]:
    """The phantom cohort: two surgical techniques with known effects.

    Both arms: affected side random, pre-op severity varied (affected smile
    2.5-7 mm, smile -> eye narrowing 20-45%, lower-lip depression 2.5-4.5 mm;
    healthy smile 9 +- 1 mm with 0-8% eye narrowing), the same smile gain
    (3.0 +- 0.8 mm by 12 months).

    * ``neurectomy`` (selective neurectomy): synkinesis reduced by 55 +- 12%;
      a quarter of the patients develop a mild lower-lip weakness
      (35 +- 10% of the depression lost).
    * ``myectomy`` (DAO myectomy): **no effect on synkinesis** (the null),
      one patient with a lower-lip weakness.

    So the smile gain is real in both arms and does not differ between them
    (a null between-arm effect); the synkinesis reduction is real in one arm
    only; the healthy side never changes. Faces cycle through
    :data:`FACE_VARIANTS`; two patients per arm are photographed with a
    selfie camera (mirrored photos).
    """
    if n_per_cohort < 2:
        raise ValueError(f"`n_per_cohort` must be at least 2, got {n_per_cohort}")
    faces = list(FACE_VARIANTS)
    out: list[PatientSpec] = []
    for arm, (cohort, procedure) in enumerate(COHORTS):
        rng = np.random.default_rng(_seed(seed, "cohort", cohort))
        n_weak = max(1, round(0.25 * n_per_cohort)) if arm == 0 else 1
        weak = set(rng.choice(n_per_cohort, size=n_weak, replace=False).tolist())
        selfie = set(rng.choice(n_per_cohort, size=min(2, n_per_cohort), replace=False).tolist())
        for i in range(n_per_cohort):
            healthy = SideMovement(
                smile_mm=float(np.clip(rng.normal(9.0, 1.0), 7.0, 11.0)),
                smile_angle_deg=float(rng.uniform(35, 50)),
                smile_eye_narrowing_pct=float(rng.uniform(0, 8)),
                eye_closure_pct=55.0,
                lower_lip_mm=float(rng.uniform(3.5, 5.0)),
            )
            affected = SideMovement(
                smile_mm=float(rng.uniform(2.5, 7.0)),
                smile_angle_deg=float(rng.uniform(25, 50)),
                smile_eye_narrowing_pct=float(rng.uniform(20, 45)),
                eye_closure_pct=45.0,
                eye_closure_mouth_mm=float(rng.uniform(1.0, 4.0)),
                lower_lip_mm=float(rng.uniform(2.5, 4.5)),
                rest_commissure_drop_mm=float(rng.uniform(0.0, 2.0)),
            )
            outcome = SurgeryOutcome(
                smile_gain_mm=float(np.clip(rng.normal(3.0, 0.8), 1.0, 5.0)),
                synkinesis_reduction=float(np.clip(rng.normal(0.55, 0.12), 0.2, 0.85)) if arm == 0 else 0.0,
                lower_lip_loss=float(np.clip(rng.normal(0.35, 0.10), 0.2, 0.5)) if i in weak else 0.0,
                rest_drop_reduction=0.5,
            )
            date = _dt.date(2022, 1, 10) + _dt.timedelta(days=int(rng.integers(0, 730)))
            out.append(
                PatientSpec(
                    patient=f"{'AB'[arm]}{i + 1:02d}",
                    face=faces[(i + arm * 3) % len(faces)],
                    affected_side=str(rng.choice(["left", "right"])),
                    healthy=healthy,
                    affected=affected,
                    outcome=outcome,
                    procedure_date=date,
                    procedure=procedure,
                    cohort=cohort,
                    aetiology=str(_AETIOLOGIES[int(rng.integers(0, len(_AETIOLOGIES)))]),
                    selfie=i in selfie,
                    expressions=COHORT_EXPRESSIONS,
                )
            )
    return out


def _visit_render(base: RenderSpec, rng: np.random.Generator, selfie: bool) -> RenderSpec:
    """A session's camera: zoom and head roll vary between visits."""
    return replace(base, scale=float(rng.uniform(0.92, 1.08)), roll_deg=float(rng.normal(0.0, 1.5)), selfie=selfie)


def _patient_row(p: PatientSpec, face: Face) -> dict[str, object]:
    row: dict[str, object] = {
        "patient": p.patient,
        "cohort": p.cohort,
        "procedure": p.procedure,
        "procedure_date": p.procedure_date.isoformat(),
        "face": p.face,
        "affected_side": p.affected_side,
        "aetiology": p.aetiology,
        "mirrored": "true" if p.selfie else "false",
        "mm_per_px": face.mm_per_px,
        "lower_lip_weakness": "true" if p.lower_lip_weakness else "false",
    }
    for f in dataclasses.fields(SurgeryOutcome):
        row[f"outcome_{f.name}"] = getattr(p.outcome, f.name)
    for prefix, m in (("affected", p.affected), ("healthy", p.healthy)):
        for f in dataclasses.fields(SideMovement):
            if f.name != "swelling_mm":
                row[f"{prefix}_{f.name}"] = getattr(m, f.name)
    return row


def _save_jpeg(path: Path, rgb: np.ndarray, quality: int) -> None:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(rgb).save(path, format="JPEG", quality=quality, optimize=True, subsampling=2)


def make_patient(
    patient: PatientSpec,
    face: Face,
    *,
    seed: int,
    out_dir: str | Path | None = None,
    subdir: str = "",
    render: RenderSpec | None = None,
    jpeg_quality: int = 90,
    visits: Sequence[Visit] = VISITS,
) -> tuple[pd.DataFrame, pd.DataFrame, dict[tuple[str, str], np.ndarray]]:
    """Generate one patient's photos at every visit.

    Parameters
    ----------
    patient : PatientSpec
    face : Face
        The prepared face of ``patient.face``.
    seed : int
    out_dir : path, optional
        Root folder: photos go to ``out_dir/<subdir>/<visit date>_<visit>/<expression>.jpg``
        and manifest paths are relative to ``out_dir``. ``None`` writes nothing.
    subdir : str
        Folder of this patient under ``out_dir`` (default: the patient identifier).
    render : RenderSpec, optional
        The camera (its ``scale``, ``roll_deg`` and ``selfie`` are set per visit).
    jpeg_quality : int
    visits : sequence of Visit

    Returns
    -------
    manifest : DataFrame
        Ingest rows (``patient, visit_date, expression, path, procedure_date,
        procedure, affected_side, aetiology, cohort, mirrored``).
    truth : DataFrame
        Tidy truth (``patient, visit, visit_date, expression, path, kind, name, side, value, unit``).
    images : dict of (visit label, expression) to ndarray
        The photos (RGB uint8), before JPEG compression.
    """
    render = render if render is not None else RenderSpec()
    manifest, truths, images = [], [], {}
    for vi, visit in enumerate(visits):
        rng = np.random.default_rng(_seed(seed, patient.patient, visit.label))
        spec = _visit_render(render, rng, patient.selfie)
        state = visit_state(patient, visit)
        photos = make_expression_set(
            face, state, seed=int(rng.integers(0, 2**31)), expressions=patient.expressions, render=spec
        )
        date = patient.visit_date(visit)
        folder = f"{date.isoformat()}_{visit.label}"
        for expression, (img, truth) in photos.items():
            rel = f"{subdir or patient.patient}/{folder}/{expression}.jpg"
            if out_dir is not None:
                _save_jpeg(Path(out_dir) / rel, img, jpeg_quality)
            images[(visit.label, expression)] = img
            manifest.append(
                {
                    "patient": patient.patient,
                    "visit_date": date.isoformat(),
                    "expression": expression,
                    "path": rel,
                    "procedure_date": patient.procedure_date.isoformat(),
                    "procedure": patient.procedure,
                    "affected_side": patient.affected_side,
                    "aetiology": patient.aetiology,
                    "cohort": patient.cohort,
                    "mirrored": "true" if patient.selfie else "false",
                }
            )
            t = truth.copy()
            t.insert(0, "path", rel)
            t.insert(0, "visit_date", date.isoformat())
            t.insert(0, "visit", visit.label)
            t.insert(0, "patient", patient.patient)
            truths.append(t)
    truth_df = pd.concat(truths, ignore_index=True)
    truth_df = truth_df[["patient", "visit", "visit_date", "expression", "path", "kind", "name", "side", "value", "unit"]]
    return pd.DataFrame(manifest), truth_df, images


def make_cohort(
    faces: Mapping[str, Face],
    *,
    seed: int = DEFAULT_SEED,
    n_per_cohort: int = 12,
    out_dir: str | Path | None = None,
    render: RenderSpec | None = None,
    jpeg_quality: int = 85,
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Generate the demo cohort (:func:`cohort_design`) under ``out_dir/cohort/``.

    Returns
    -------
    manifest, truth : DataFrame
        As in :func:`make_patient`, all patients.
    patients : DataFrame
        One row per patient: design, face, scale (``mm_per_px``), outcome and pre-op movements.
    """
    manifests, truths, rows = [], [], []
    for p in cohort_design(seed=seed, n_per_cohort=n_per_cohort):
        _log.info("cohort patient %s (%s, %s)", p.patient, p.cohort, p.face)
        m, t, _ = make_patient(
            p, faces[p.face], seed=seed, out_dir=out_dir, subdir=f"cohort/{p.patient}", render=render, jpeg_quality=jpeg_quality
        )
        manifests.append(m)
        truths.append(t)
        rows.append(_patient_row(p, faces[p.face]))
    return pd.concat(manifests, ignore_index=True), pd.concat(truths, ignore_index=True), pd.DataFrame(rows)


# --------------------------------------------------------------------------- #
# Everything in sample_media/
# --------------------------------------------------------------------------- #
#: The demo patient's photos: 560x640, iris about 21 px (the Obama portrait at its own scale;
#: the pupils sit high because the portrait has little room above the head).
DEMO_RENDER = RenderSpec(size=(560, 640), iris_px=21.0, pupil_y=0.32, shift_sd_px=5.0)
#: Cohort photos: 320x400, iris about 15 px.
COHORT_RENDER = RenderSpec(size=(320, 400), iris_px=15.0, pupil_y=0.40)
_PORTRAITS = ("astronaut.png", "obama.jpg")


def load_faces(portraits_dir: str | Path, names: Iterable[str] = FACE_VARIANTS, *, landmarker: Landmarker | None = None) -> dict[str, Face]:
    """Prepare the named face variants from the portraits in ``portraits_dir``."""
    from .images import read_image

    own = landmarker is None
    lm = landmarker or Landmarker()
    try:
        cache: dict[str, np.ndarray] = {}
        faces = {}
        for name in names:
            v = FACE_VARIANTS[name]
            if v.portrait not in cache:
                cache[v.portrait] = read_image(Path(portraits_dir) / v.portrait)
            faces[name] = prepare_face(variant_image(cache[v.portrait], v), name=name, landmarker=lm)
        return faces
    finally:
        if own:
            lm.close()


def generate(
    out_dir: str | Path,
    *,
    seed: int = DEFAULT_SEED,
    portraits_dir: str | Path | None = None,
    n_per_cohort: int = 12,
    video: bool = True,
) -> dict[str, object]:
    """Regenerate everything in ``out_dir``: demo patient, clinic video, cohort, manifest, truth.

    The portraits are read from ``portraits_dir`` (default ``out_dir``) and
    copied to ``out_dir`` if they are not there. Previously generated
    ``demo/`` and ``cohort/`` folders are replaced.

    Returns
    -------
    dict
        Summary: counts, codec, total size in bytes.
    """
    out = Path(out_dir)
    src = Path(portraits_dir) if portraits_dir is not None else out
    out.mkdir(parents=True, exist_ok=True)
    for name in _PORTRAITS:
        if not (src / name).is_file():
            raise FileNotFoundError(f"{src / name}: portrait not found; pass `portraits_dir`")
        if src.resolve() != out.resolve():
            shutil.copy2(src / name, out / name)
    for sub in ("demo", "cohort"):
        if (out / sub).is_dir():
            shutil.rmtree(out / sub)

    with Landmarker() as lm:
        faces = load_faces(src, landmarker=lm)

    demo = demo_patient()
    _log.info("demo patient")
    d_manifest, d_truth, _ = make_patient(
        demo, faces[demo.face], seed=seed, out_dir=out, subdir="demo", render=DEMO_RENDER, jpeg_quality=90
    )
    fourcc = ""
    if video:
        _log.info("clinic video")
        vt = make_clinic_video(faces[demo.face], visit_state(demo, "preop"), out / "demo" / "clinic_video_preop.mp4", seed=seed)
        vt.frames.to_csv(out / "demo" / "clinic_video_preop_truth.csv", index=False, float_format="%.4f")
        vt.events.to_csv(out / "demo" / "clinic_video_preop_truth_events.csv", index=False, float_format="%.3f")
        fourcc = vt.fourcc
    c_manifest, c_truth, c_patients = make_cohort(faces, seed=seed, n_per_cohort=n_per_cohort, out_dir=out)

    manifest = pd.concat([d_manifest, c_manifest], ignore_index=True)
    manifest.to_csv(out / "manifest.csv", index=False)
    truth = pd.concat([d_truth, c_truth], ignore_index=True)
    truth.to_csv(out / "truth.csv", index=False, float_format="%.4f")
    patients = pd.concat([pd.DataFrame([_patient_row(demo, faces[demo.face])]), c_patients], ignore_index=True)
    patients.to_csv(out / "truth_patients.csv", index=False, float_format="%.4f")
    total = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
    return {
        "photos": int(len(manifest)),
        "patients": int(manifest["patient"].nunique()),
        "video_fourcc": fourcc,
        "total_bytes": int(total),
    }


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m symmetry.sample_data --out sample_media``: regenerate the sample media."""
    parser = argparse.ArgumentParser(
        prog="python -m symmetry.sample_data",
        description="Regenerate the sample media: demo patient, clinic video, phantom cohort, manifest and truth.",
    )
    parser.add_argument("--out", default="sample_media", help="output folder (default: sample_media)")
    parser.add_argument("--portraits", default=None, help="folder with astronaut.png and obama.jpg (default: --out)")
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED, help=f"random seed (default: {DEFAULT_SEED})")
    parser.add_argument("--per-cohort", type=int, default=12, help="patients per cohort (default: 12)")
    parser.add_argument("--no-video", action="store_true", help="skip the clinic video")
    parser.add_argument("-q", "--quiet", action="store_true")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING if args.quiet else logging.INFO, format="%(message)s")
    summary = generate(
        args.out, seed=args.seed, portraits_dir=args.portraits, n_per_cohort=args.per_cohort, video=not args.no_video
    )
    print(
        f"{summary['photos']} photos of {summary['patients']} patients"
        + (f", video ({summary['video_fourcc']})" if summary["video_fourcc"] else "")
        + f"; {summary['total_bytes'] / 1e6:.1f} MB in {args.out}"
    )
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
