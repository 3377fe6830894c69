"""Measure one photo (optionally against the same patient's rest photo).

This is the photo engine behind ``symmetry measure``: image in, landmarks,
pupil frame and scale, per-side measures out, as a :class:`PhotoResult` that
serialises to the CLI's JSON contract and to a tidy DataFrame.
"""

from __future__ import annotations

import hashlib
import os
import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np
import pandas as pd

from .calibration import (
    DEFAULT_IRIS_MM,
    Calibration,
    CLOSED_FRACTION,
    calibrate_from_iris,
    iris_diameters_px,
    iris_visible,
    low_resolution_warning,
    manual_calibration,
    require_iris_px,
    session_calibration,
)
from .frame import PupilFrame, inter_pupil_px, pupil_frame
from .errors import IrisHiddenError
from .images import read_image
from .landmarks import FaceLandmarks, Landmarker, LandmarkerOptions
from .refine import similarity_fit, track_points
from .measures import Measure, asymmetry_measures, movement_measures, static_measures, value_of

__all__ = ["PhotoOptions", "PhotoResult", "measure_photo", "measure_photos", "results_to_frame", "YAW_LIMIT_DEG"]

#: Beyond this head yaw (degrees) frontal 2-D measures are unreliable and flagged.
YAW_LIMIT_DEG = 10.0
#: Beyond this pitch (degrees) vertical measures are foreshortened and flagged.
PITCH_LIMIT_DEG = 15.0

ImageInput = str | os.PathLike[str] | np.ndarray


@dataclass(frozen=True)
class PhotoOptions:
    """How to measure a photo.

    Attributes
    ----------
    expression : str or None
        Expression key (``rest``, ``smile_open``, ...; reference section 2).
    affected_side : {"left", "right"} or None
        The patient's affected side, for affected/healthy ratios.
    mirrored : bool
        The photo is mirrored (selfie camera): side labels are swapped.
    mm_per_px : float or None
        Manual scale (mm per pixel); overrides the iris and session scale.
    iris_mm : float
        Assumed horizontal iris diameter, mm.
    average : bool
        Average the model over small rotations and the mirrored photo
        (:meth:`Landmarker.detect_averaged`): steadier static measures and
        exact-in-principle mirror consistency, at 10x the model time.
    refine : bool
        With a rest photo, track the measured points from the rest photo into
        this one (image evidence) instead of trusting the model's positions.
    iris_fit : bool
        Read the iris diameters from an image fit of the limbus
        (:func:`symmetry.calibration.fit_iris_edges`) instead of the model's
        iris contour points, falling back to the model when the fit is rejected
        (flag ``iris_edge_fallback``). Off by default: on real photos and video
        it is less repeatable than the averaged model (``benchmarks/iris.py``).
    """

    expression: str | None = None
    affected_side: str | None = None
    mirrored: bool = False
    mm_per_px: float | None = None
    iris_mm: float = DEFAULT_IRIS_MM
    average: bool = True
    refine: bool = True
    iris_fit: bool = False

    def __post_init__(self) -> None:
        if self.affected_side is not None and self.affected_side not in ("left", "right"):
            raise ValueError(f"`affected_side` must be 'left' or 'right', got {self.affected_side!r}")


@dataclass
class PhotoResult:
    """Measures of one photo.

    Attributes
    ----------
    source : str
        File name (or ``"<array>"``).
    expression : str or None
    calibration : Calibration
        The scale used, with its uncertainty and source.
    frame : PupilFrame
        The pupil frame in this image.
    face : FaceLandmarks
        Raw model landmarks (image pixels).
    points_px : ndarray of shape (478, 3)
        The landmarks the measures were taken from (raw unless refined).
    measures : list of Measure
        Static, movement (with a rest photo) and asymmetry rows.
    mirrored : bool
    refined : list of str
        Names of the points moved by image-based refinement (empty: raw model points).
    warnings : list of str
    rest_source : str or None
    rest_points_mm : ndarray of shape (478, 2) or None
        The rest photo's landmarks in its pupil frame (mm), for drawing movement.
    """

    source: str
    expression: str | None
    calibration: Calibration
    frame: PupilFrame
    face: FaceLandmarks
    points_px: np.ndarray
    measures: list[Measure]
    mirrored: bool = False
    affected_side: str | None = None
    refined: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    rest_source: str | None = None
    rest_points_mm: np.ndarray | None = None

    @property
    def mm_per_px(self) -> float:
        return self.calibration.mm_per_px

    @property
    def head_pose_deg(self) -> dict[str, float]:
        return dict(self.face.head_pose_deg)

    def value(self, name: str, side: str) -> float:
        """The value of one measure (NaN when absent)."""
        return value_of(self.measures, name, side)

    def to_dict(self) -> dict[str, Any]:
        """The JSON contract of ``symmetry measure --format json``."""
        return {
            "source": self.source,
            "expression": self.expression,
            "mm_per_px": self.calibration.mm_per_px,
            "mm_per_px_uncertainty": self.calibration.mm_per_px_uncertainty,
            "scale_source": self.calibration.source.value,
            "iris_method": self.calibration.iris_method,
            "head_pose_deg": {k: round(v, 2) for k, v in self.face.head_pose_deg.items()},
            "mirrored": self.mirrored,
            "affected_side": self.affected_side,
            "rest_source": self.rest_source,
            "refined_points": list(self.refined),
            "warnings": list(self.warnings),
            "measures": [m.to_dict() for m in self.measures],
        }

    def to_frame(self) -> pd.DataFrame:
        """Tidy rows: ``source, expression, name, side, value, unit``."""
        return pd.DataFrame(
            [
                {"source": self.source, "expression": self.expression, **m.to_dict()}
                for m in self.measures
            ],
            columns=["source", "expression", "name", "side", "value", "unit"],
        )


def _swap_sides(measures: list[Measure]) -> list[Measure]:
    swap = {"left": "right", "right": "left"}
    return [Measure(m.name, swap.get(m.side, m.side), m.value, m.unit) for m in measures]


def _load(image: ImageInput) -> tuple[np.ndarray, str]:
    if isinstance(image, np.ndarray):
        return image, "<array>"
    return read_image(image), str(image)


def _session_scale(reference: Calibration, rest_points_px: np.ndarray, points_px: np.ndarray) -> Calibration:
    """The session's scale carried from the rest photo to this one.

    By the inter-pupil distance, unless an eye of this photo is closed (lid gap
    under 15% of the iris: eye closure, a squeeze): the model then guesses where
    the pupil is (and the canthi move with the lids), so the nose and face
    outline carry it.
    """
    if all(iris_visible(points_px, CLOSED_FRACTION).values()):
        return session_calibration(reference, inter_pupil_px(rest_points_px), inter_pupil_px(points_px))
    # the scale between the two photos of the points that eye closure does not move (nose, forehead)
    sim = similarity_fit(rest_points_px[list(_NOT_EYE)], points_px[list(_NOT_EYE)])
    return session_calibration(reference, 1.0, float(np.sqrt(abs(np.linalg.det(sim[:, :2])))))


#: Landmarks that eye closure and squeezing do not move: nasal bridge and tip, alae, and the face
#: outline above the mouth (forehead, temples, cheeks).
_NOT_EYE = (168, 6, 197, 195, 5, 4, 1, 2, 98, 327,
            10, 338, 297, 332, 284, 251, 389, 356, 454, 323, 93, 234, 127, 162, 21, 54, 103, 67, 109)


@dataclass
class _Prepared:
    rgb: np.ndarray
    source: str
    face: FaceLandmarks
    points_px: np.ndarray
    calibration: Calibration
    frame: PupilFrame
    warnings: list[str]


def _prepare(
    image: ImageInput,
    landmarker: Landmarker,
    options: PhotoOptions,
    *,
    session: tuple[Calibration, np.ndarray] | None = None,
    face: FaceLandmarks | None = None,
    source: str | None = None,
) -> _Prepared:
    rgb, loaded_as = _load(image)
    source = source or loaded_as
    if face is None:
        face = landmarker.detect_averaged(rgb, source=source) if options.average else landmarker.detect(rgb, source=source)
    points = face.points_px.copy()
    warnings: list[str] = []
    if face.n_faces > 1:
        warnings.append(f"{face.n_faces} faces found; measured the largest")
    iris = [d for d in iris_diameters_px(points).values() if np.isfinite(d)]
    if iris:  # whatever the scale: one pixel would be over 2 mm
        require_iris_px(max(iris), source)
        low_res = low_resolution_warning(float(np.mean(iris)))
        if low_res:
            warnings.append(low_res)
    if options.mm_per_px is not None:
        cal = manual_calibration(options.mm_per_px)
    elif session is not None:
        cal = _session_scale(session[0], session[1], points)
    else:
        cal = calibrate_from_iris(points, iris_mm=options.iris_mm, source=source, rgb=rgb,
                                  method="edge" if options.iris_fit else "model")
    if "one_iris_hidden" in cal.flags:
        warnings.append("one eye is closed: scale from the other iris only")
    if "iris_mismatch" in cal.flags:
        warnings.append("the two irises differ by over 10% in width: scale is uncertain (iris occluded?)")
    if "iris_edge_fallback" in cal.flags:
        warnings.append("iris edge fit rejected (edge hidden or unclear): scale from the model's iris points")
    pose = face.head_pose_deg
    if abs(pose.get("yaw", 0.0)) > YAW_LIMIT_DEG:
        warnings.append(f"head yaw {pose['yaw']:.0f} deg exceeds {YAW_LIMIT_DEG:.0f} deg: frontal measures unreliable")
    if abs(pose.get("pitch", 0.0)) > PITCH_LIMIT_DEG:
        warnings.append(f"head pitch {pose['pitch']:.0f} deg exceeds {PITCH_LIMIT_DEG:.0f} deg: vertical measures foreshortened")
    frame = pupil_frame(points, cal.mm_per_px)
    return _Prepared(rgb, source, face, points, cal, frame, warnings)


# Rest photos are measured once per session and reused for each of its expression
# photos: a small cache keyed by the pixels and every option that changes the result.
_REST_CACHE: OrderedDict[tuple[object, ...], _Prepared] = OrderedDict()
_REST_CACHE_SIZE = 2
_REST_CACHE_LOCK = threading.Lock()


def _prepare_rest(
    image: ImageInput, landmarker: Landmarker, options: PhotoOptions, face: FaceLandmarks | None = None
) -> _Prepared:
    """The rest photo measured once (cached); ``face``: its landmarks, already detected elsewhere."""
    rgb, source = _load(image)
    digest = hashlib.blake2b(np.ascontiguousarray(rgb).data, digest_size=16).hexdigest()
    model = str(landmarker.options.model_path)
    key = (digest, rgb.shape, model, options.average, options.mm_per_px, options.iris_mm, options.iris_fit)
    with _REST_CACHE_LOCK:
        hit = _REST_CACHE.get(key)
        if hit is not None:
            _REST_CACHE.move_to_end(key)
            return _Prepared(hit.rgb, source, hit.face, hit.points_px, hit.calibration, hit.frame, list(hit.warnings))
    try:
        prep = _prepare(rgb, landmarker, options, face=face, source=source)
    except IrisHiddenError:
        raise IrisHiddenError(
            source,
            "rest photo with the eyes closed or the irises hidden: it gives the session no scale; "
            "retake it with the eyes open or give --mm-per-px",
        ) from None
    prep.source = source
    with _REST_CACHE_LOCK:
        _REST_CACHE[key] = prep
        while len(_REST_CACHE) > _REST_CACHE_SIZE:
            _REST_CACHE.popitem(last=False)
    return prep


def measure_photo(
    image: ImageInput,
    *,
    rest: ImageInput | None = None,
    options: PhotoOptions | None = None,
    landmarker: Landmarker | None = None,
) -> PhotoResult:
    """Measure one frontal photo.

    Parameters
    ----------
    image : path or ndarray of shape (H, W, 3), uint8 RGB
        The photo.
    rest : path or ndarray, optional
        The same patient's rest photo of the same session. Adds the movement
        measures, and the photo takes the rest photo's scale (transferred by
        the inter-pupil distance) unless ``options.mm_per_px`` is given.
    options : PhotoOptions, optional
    landmarker : Landmarker, optional
        A reusable IMAGE-mode landmarker (one is created and closed otherwise).

    Returns
    -------
    PhotoResult

    Raises
    ------
    ImageReadError, NoFaceError, FaceTooSmallError
        The photo (or the rest photo) cannot be measured; the message names the file.
    """
    options = options or PhotoOptions()
    own = landmarker is None
    lm = landmarker or Landmarker(LandmarkerOptions())
    try:
        rest_prep = None
        session = None
        if rest is not None:
            rest_prep = _prepare_rest(rest, lm, options)
            session = (rest_prep.calibration, rest_prep.points_px)
        prep = _prepare(image, lm, options, session=session)
    finally:
        if own:
            lm.close()

    refined: list[str] = []
    untracked: str | None = None
    if rest_prep is not None and options.refine:
        tracked = track_points(rest_prep.rgb, rest_prep.points_px, prep.rgb, prep.points_px)
        prep.points_px = tracked.points_px
        refined = tracked.refined_groups()
        untracked = tracked.untracked_warning(options.mirrored)
        # the frame follows the tracked irises; the scale follows the tracked inter-pupil distance
        # (the nose and face outline when an eye is closed)
        if options.mm_per_px is None:
            prep.calibration = _session_scale(rest_prep.calibration, rest_prep.points_px, prep.points_px)
        prep.frame = pupil_frame(prep.points_px, prep.calibration.mm_per_px)
    pts_mm = prep.frame.to_mm(prep.points_px)
    measures = static_measures(pts_mm)
    rest_mm = None
    if rest_prep is not None:
        rest_mm = rest_prep.frame.to_mm(rest_prep.points_px)
        measures += movement_measures(rest_mm, pts_mm)
    if options.mirrored:
        measures = _swap_sides(measures)
    measures += asymmetry_measures(measures, options.affected_side)
    warnings = prep.warnings + ([f"rest photo: {w}" for w in rest_prep.warnings] if rest_prep else [])
    if untracked:
        warnings.append(untracked)
    return PhotoResult(
        source=prep.source,
        expression=options.expression,
        calibration=prep.calibration,
        frame=prep.frame,
        face=prep.face,
        points_px=prep.points_px,
        measures=measures,
        mirrored=options.mirrored,
        affected_side=options.affected_side,
        refined=refined,
        warnings=warnings,
        rest_source=rest_prep.source if rest_prep else None,
        rest_points_mm=rest_mm,
    )


def measure_photos(
    images: Sequence[ImageInput],
    *,
    rest: ImageInput | None = None,
    options: PhotoOptions | None = None,
) -> pd.DataFrame:
    """Measure several photos with one landmarker; a tidy DataFrame of all rows.

    Photos that cannot be measured raise; use the CLI for keep-going behaviour.
    """
    with Landmarker(LandmarkerOptions()) as lm:
        results = [measure_photo(p, rest=rest, options=options, landmarker=lm) for p in images]
    return results_to_frame(results)


def results_to_frame(results: Sequence[PhotoResult]) -> pd.DataFrame:
    """Concatenate the tidy rows of several results."""
    frames = [r.to_frame() for r in results]
    if not frames:
        return pd.DataFrame(columns=["source", "expression", "name", "side", "value", "unit"])
    return pd.concat(frames, ignore_index=True)
