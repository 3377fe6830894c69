"""Face landmarks: MediaPipe Face Landmarker behind a small symmetry-owned API.

MediaPipe types never leave this module: :class:`Landmarker` converts each
result into a :class:`FaceLandmarks` of plain numpy arrays.

Conventions
-----------
* Points are in **image pixels**: ``x`` = column, ``y`` = row (down), and
  ``z`` on the scale of ``x`` (MediaPipe's relative depth times image width).
* Landmark names are **anatomical**: ``RIGHT_*`` is the patient's right,
  which is on the image's left in an unmirrored photo (MediaPipe's own
  convention). Selfie (mirrored) photos are handled by the caller swapping
  side labels, see :mod:`symmetry.photo`.
* Head pose angles are in degrees: ``yaw`` positive when the patient turns
  toward their own left, ``pitch`` positive chin up, ``roll`` positive when
  the head tilts toward the patient's left shoulder (image clockwise in an
  unmirrored photo). Only the magnitudes are used for quality flags.
"""

from __future__ import annotations

import atexit
import enum
import hashlib
import threading
import weakref
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from .errors import ModelError, NoFaceError

__all__ = [
    "LM",
    "Side",
    "MODEL_SHA256",
    "LandmarkerOptions",
    "RunningMode",
    "Landmarker",
    "FaceLandmarks",
    "head_pose_from_matrix",
    "bundled_model_path",
]

#: SHA-256 of the bundled ``face_landmarker.task`` (see ``symmetry/models/NOTICE``).
MODEL_SHA256 = "64184e229b263107bc2b804c6625db1341ff2bb731874b0bcc2fe6544e0bc9ff"

N_LANDMARKS = 478


class Side(str, enum.Enum):
    """The patient's side (anatomical, not the image's)."""

    LEFT = "left"
    RIGHT = "right"
    MIDLINE = "midline"

    @property
    def other(self) -> "Side":
        if self is Side.LEFT:
            return Side.RIGHT
        if self is Side.RIGHT:
            return Side.LEFT
        return self

    def __str__(self) -> str:  # pragma: no cover - trivial
        return self.value


class LM(enum.IntEnum):
    """Named MediaPipe Face Mesh landmark indices (patient's sides)."""

    # midline
    UPPER_LIP_TOP = 0  # labrale superius
    INNER_UPPER_LIP = 13
    INNER_LOWER_LIP = 14
    LOWER_LIP_BOTTOM = 17  # labrale inferius
    NOSE_TIP = 4
    GLABELLA = 168
    CHIN = 152
    FOREHEAD = 10
    # mouth corners
    RIGHT_COMMISSURE = 61
    LEFT_COMMISSURE = 291
    RIGHT_INNER_CORNER = 78
    LEFT_INNER_CORNER = 308
    # eyes
    RIGHT_UPPER_LID = 159
    RIGHT_LOWER_LID = 145
    LEFT_UPPER_LID = 386
    LEFT_LOWER_LID = 374
    RIGHT_LATERAL_CANTHUS = 33
    RIGHT_MEDIAL_CANTHUS = 133
    LEFT_LATERAL_CANTHUS = 263
    LEFT_MEDIAL_CANTHUS = 362
    # irises
    RIGHT_IRIS_CENTER = 468
    RIGHT_IRIS_MEDIAL = 469
    RIGHT_IRIS_TOP = 470
    RIGHT_IRIS_LATERAL = 471
    RIGHT_IRIS_BOTTOM = 472
    LEFT_IRIS_CENTER = 473
    LEFT_IRIS_LATERAL = 474
    LEFT_IRIS_TOP = 475
    LEFT_IRIS_MEDIAL = 476
    LEFT_IRIS_BOTTOM = 477


@dataclass(frozen=True)
class SideContours:
    """Landmark index chains of one side of the face, midline/medial to lateral."""

    commissure: int
    inner_corner: int
    iris_center: int
    iris_medial: int
    iris_lateral: int
    iris_top: int
    iris_bottom: int
    upper_lid: tuple[int, ...]  # lateral canthus -> medial canthus along the upper margin
    lower_lid: tuple[int, ...]
    brow: tuple[int, ...]  # upper brow edge, lateral -> medial
    outer_upper_lip: tuple[int, ...]  # midline (0) -> commissure
    outer_lower_lip: tuple[int, ...]  # midline (17) -> commissure
    inner_upper_lip: tuple[int, ...]  # midline (13) -> inner corner
    inner_lower_lip: tuple[int, ...]  # midline (14) -> inner corner


#: Contours per patient side (from the Face Mesh topology; reference section 3).
CONTOURS: dict[Side, SideContours] = {
    Side.RIGHT: SideContours(
        commissure=61,
        inner_corner=78,
        iris_center=468,
        iris_medial=469,
        iris_lateral=471,
        iris_top=470,
        iris_bottom=472,
        upper_lid=(33, 246, 161, 160, 159, 158, 157, 173, 133),
        lower_lid=(33, 7, 163, 144, 145, 153, 154, 155, 133),
        brow=(70, 63, 105, 66, 107),
        outer_upper_lip=(0, 37, 39, 40, 185, 61),
        outer_lower_lip=(17, 84, 181, 91, 146, 61),
        inner_upper_lip=(13, 82, 81, 80, 191, 78),
        inner_lower_lip=(14, 87, 178, 88, 95, 78),
    ),
    Side.LEFT: SideContours(
        commissure=291,
        inner_corner=308,
        iris_center=473,
        iris_medial=476,
        iris_lateral=474,
        iris_top=475,
        iris_bottom=477,
        upper_lid=(263, 466, 388, 387, 386, 385, 384, 398, 362),
        lower_lid=(263, 249, 390, 373, 374, 380, 381, 382, 362),
        brow=(300, 293, 334, 296, 336),
        outer_upper_lip=(0, 267, 269, 270, 409, 291),
        outer_lower_lip=(17, 314, 405, 321, 375, 291),
        inner_upper_lip=(13, 312, 311, 310, 415, 308),
        inner_lower_lip=(14, 317, 402, 318, 324, 308),
    ),
}


class RunningMode(str, enum.Enum):
    """How frames reach the landmarker (as in MediaPipe Tasks)."""

    IMAGE = "image"
    VIDEO = "video"


#: Face region size (px) at which :meth:`Landmarker.detect_averaged` runs its passes; ``None``:
#: at the photo's own size. 256 px (with 3 zooms) halved the static measures' change on rescaled
#: copies but broke the lid tracking of a turned face (obama2's 90% closure: 66% -> 19% recovered),
#: so it is off by default (see issue 3's notes).
AVERAGED_FACE_PX: float | None = None
#: The (rotation, deg; zoom) of each pass of :meth:`Landmarker.detect_averaged`, each also run on
#: the mirror image. The set is closed under negating the rotation, which keeps the average
#: exactly mirror-consistent.
AVERAGED_PASSES: tuple[tuple[float, float], ...] = ((-10.0, 1.0), (-5.0, 1.0), (0.0, 1.0), (5.0, 1.0), (10.0, 1.0))


def _roi_px(points_px: np.ndarray) -> float:
    """Side of the model's face region of interest, px: 1.5 x the larger landmark extent."""
    return 1.5 * float(max(np.ptp(points_px[:, 0]), np.ptp(points_px[:, 1])))


@dataclass(frozen=True)
class LandmarkerOptions:
    """Options of :class:`Landmarker`.

    Attributes
    ----------
    model_path : path or None
        A ``face_landmarker.task`` file. ``None`` uses the bundled model, whose
        SHA-256 is verified on load. A user-supplied file is not hash-checked
        (it may be a newer model) but must be a readable task bundle.
    running_mode : RunningMode
        ``IMAGE`` for independent photos, ``VIDEO`` for frames with timestamps.
    num_faces : int
        Faces to detect; the largest is returned.
    min_detection_confidence, min_presence_confidence : float
        MediaPipe thresholds in [0, 1].
    """

    model_path: str | Path | None = None
    running_mode: RunningMode = RunningMode.IMAGE
    num_faces: int = 2
    min_detection_confidence: float = 0.5
    min_presence_confidence: float = 0.5
    min_tracking_confidence: float = 0.5


@dataclass(frozen=True)
class FaceLandmarks:
    """One face found in one image.

    Attributes
    ----------
    points_px : ndarray of shape (478, 3), float64
        Landmarks in image pixels (x right, y down, z relative depth in px).
    image_size : (width, height)
        Size in pixels of the image the points refer to.
    blendshapes : dict of str to float
        The 52 MediaPipe blendshape scores in [0, 1] (supporting signals only).
    transform : ndarray of shape (4, 4)
        MediaPipe facial transformation matrix (canonical face -> camera).
    head_pose_deg : dict
        ``yaw``, ``pitch``, ``roll`` in degrees (see module docstring).
    n_faces : int
        Faces detected in the image (the largest one is this one).
    """

    points_px: np.ndarray
    image_size: tuple[int, int]
    blendshapes: dict[str, float] = field(default_factory=dict)
    transform: np.ndarray = field(default_factory=lambda: np.eye(4))
    head_pose_deg: dict[str, float] = field(default_factory=dict)
    n_faces: int = 1

    def xy(self, index: int | LM) -> np.ndarray:
        """(x, y) pixel position of one landmark."""
        return self.points_px[int(index), :2]


def bundled_model_path() -> Path:
    """Path of the bundled ``face_landmarker.task``."""
    return Path(str(resources.files("symmetry").joinpath("models/face_landmarker.task")))


_VERIFIED: set[Path] = set()
# Landmarkers still open at interpreter exit are closed while MediaPipe can still run
# its shutdown code (otherwise its finaliser prints an "Exception ignored" traceback).
_OPEN: "weakref.WeakSet[Landmarker]" = weakref.WeakSet()


@atexit.register
def _close_open_landmarkers() -> None:
    for lm in list(_OPEN):
        try:
            lm.close()
        except Exception:  # pragma: no cover - best effort at exit
            pass

_VERIFY_LOCK = threading.Lock()


def _resolve_model(model_path: str | Path | None) -> Path:
    if model_path is not None:
        path = Path(model_path).expanduser()
        if not path.is_file():
            raise ModelError(f"{path}: model file not found")
        return path
    path = bundled_model_path()
    if not path.is_file():
        raise ModelError(f"{path}: bundled model is missing; reinstall symmetry")
    with _VERIFY_LOCK:
        if path not in _VERIFIED:
            digest = hashlib.sha256(path.read_bytes()).hexdigest()
            if digest != MODEL_SHA256:
                raise ModelError(
                    f"{path}: bundled model fails its SHA-256 check "
                    f"(got {digest[:12]}..., expected {MODEL_SHA256[:12]}...); reinstall symmetry"
                )
            _VERIFIED.add(path)
    return path


def head_pose_from_matrix(matrix: np.ndarray) -> dict[str, float]:
    """Yaw, pitch and roll in degrees from a 4x4 (or 3x3) rotation matrix.

    Uses the intrinsic Y-X-Z decomposition ``R = Ry(yaw) @ Rx(pitch) @ Rz(roll)``
    of MediaPipe's canonical-face-to-camera rotation.
    """
    r = np.asarray(matrix, dtype=float)[:3, :3]
    # remove any scale the transform may carry
    scale = np.linalg.norm(r, axis=0)
    r = r / np.where(scale > 0, scale, 1.0)
    pitch = np.degrees(np.arcsin(np.clip(-r[1, 2], -1.0, 1.0)))
    yaw = np.degrees(np.arctan2(r[0, 2], r[2, 2]))
    roll = np.degrees(np.arctan2(r[1, 0], r[1, 1]))
    return {"yaw": float(yaw), "pitch": float(pitch), "roll": float(roll)}


class Landmarker:
    """MediaPipe Face Landmarker in IMAGE or VIDEO mode.

    Use as a context manager::

        with Landmarker(LandmarkerOptions()) as lm:
            face = lm.detect(rgb)

    One instance is not thread-safe; create one per thread. A VIDEO-mode
    instance keeps tracking state and needs increasing timestamps.

    Raises
    ------
    ModelError
        If the model file is missing, fails its hash, or cannot be loaded.
    """

    def __init__(self, options: LandmarkerOptions | None = None) -> None:
        self.options = options or LandmarkerOptions()
        self._lock = threading.Lock()  # one model call at a time per instance
        path = _resolve_model(self.options.model_path)
        try:
            from mediapipe.tasks.python.core.base_options import BaseOptions
            from mediapipe.tasks.python.vision import face_landmarker as mp_fl
            from mediapipe.tasks.python.vision.core.vision_task_running_mode import (
                VisionTaskRunningMode,
            )

            mode = (
                VisionTaskRunningMode.VIDEO
                if self.options.running_mode is RunningMode.VIDEO
                else VisionTaskRunningMode.IMAGE
            )
            mp_options = mp_fl.FaceLandmarkerOptions(
                base_options=BaseOptions(model_asset_buffer=path.read_bytes()),
                running_mode=mode,
                num_faces=self.options.num_faces,
                min_face_detection_confidence=self.options.min_detection_confidence,
                min_face_presence_confidence=self.options.min_presence_confidence,
                min_tracking_confidence=self.options.min_tracking_confidence,
                output_face_blendshapes=True,
                output_facial_transformation_matrixes=True,
            )
            self._task: Any = mp_fl.FaceLandmarker.create_from_options(mp_options)
            _OPEN.add(self)
        except ModelError:
            raise
        except Exception as exc:  # mediapipe raises RuntimeError/ValueError on bad bundles
            raise ModelError(f"{path}: cannot load landmark model ({exc})") from exc

    # -- context manager -------------------------------------------------
    def __enter__(self) -> "Landmarker":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        task = getattr(self, "_task", None)
        if task is not None:
            with self._lock:  # not while a call runs
                task.close()
                self._task = None

    def __del__(self) -> None:  # pragma: no cover - best effort
        try:
            self.close()
        except Exception:
            pass

    # -- detection -------------------------------------------------------
    def detect(self, image: np.ndarray, *, source: str | None = None) -> FaceLandmarks:
        """Landmarks of the largest face in one RGB image (IMAGE mode).

        Parameters
        ----------
        image : ndarray of shape (H, W, 3), uint8
            RGB image.
        source : str, optional
            File name used in error messages.

        Raises
        ------
        NoFaceError
            If no face is found.
        ValueError
            If the landmarker was created in VIDEO mode.
        """
        if self.options.running_mode is not RunningMode.IMAGE:
            raise ValueError(
                "Landmarker is not in IMAGE mode; current running mode: "
                f"{self.options.running_mode.value}. Use detect_for_video()."
            )
        face = self._run(image, None)
        if face is None:
            raise NoFaceError(source, "no face found")
        return face

    def detect_averaged(
        self,
        image: np.ndarray,
        *,
        source: str | None = None,
        passes: tuple[tuple[float, float], ...] = AVERAGED_PASSES,
        flip: bool = True,
        face_px: float | None = AVERAGED_FACE_PX,
    ) -> FaceLandmarks:
        """Landmarks averaged over small rotations, zooms and the mirror image (IMAGE mode).

        The model's error depends on the exact pixels it sees; averaging its
        answers over in-plane rotations and zooms of the photo (about its
        centre) and over the horizontally flipped photo (landmarks mapped
        back with the left-right mirror map) halves the spread of static measures under
        rotation and makes them exactly mirror-consistent: a mirrored photo
        gives the same values with the sides swapped. Blendshapes, head pose
        and face count come from the unaltered photo.

        Parameters
        ----------
        passes : tuple of (float, float)
            (rotation, degrees counter-clockwise; zoom factor) of each pass,
            each run on the photo and its mirror image. Keep the set closed
            under negating the rotation for exact mirror consistency.
        flip : bool
            Also run every pass on the mirror image.
        face_px : float or None
            When the face's region of interest (1.5 x the larger extent of the
            landmarks, px) is larger than ``face_px`` pixels, the passes run on
            a copy of the photo shrunk (area-averaged) to make it ``face_px``;
            points are mapped back to the photo's pixels.
            The model samples its input crop without anti-aliasing, so a
            large face otherwise reaches it aliased, and the same face at two
            resolutions reaches it as different pixels: at 256 px, with the
            passes at zooms 0.85, 1 and 1.15, the static mm measures of 0.5x
            and 0.75x copies changed by a median 1.5% instead of 3.2%
            (``benchmarks/validity.py``, 5 faces), at twice the time. The
            size is taken from the photo and its mirror image alike, so mirror
            consistency is exact.
            ``None`` runs the passes at the photo's own resolution.

        Raises
        ------
        NoFaceError
            If no face is found in the unaltered photo.
        """
        import cv2

        from ._mirror import MIRROR

        base = self.detect(image, source=source)
        work, mirrored_base = image, None
        if face_px is not None:
            mirrored_base = self._run(np.ascontiguousarray(image[:, ::-1]), None)
            sizes = [_roi_px(base.points_px)] + ([_roi_px(mirrored_base.points_px)] if mirrored_base is not None else [])
            # symmetric in (photo, mirror): the mirror image of a photo gets the same size
            scale = float(face_px) / float(np.mean(sizes))
            h0, w0 = image.shape[:2]
            size = (max(1, round(w0 * scale)), max(1, round(h0 * scale)))
            if size[0] < 0.98 * w0:  # only ever shrink: enlarging adds no information
                work = cv2.resize(image, size, interpolation=cv2.INTER_AREA)
        h, w = work.shape[:2]
        back_xy = np.array([image.shape[1] / w, image.shape[0] / h])
        # Rotate about the image centre: the set of passes of a mirrored photo is then
        # exactly the mirror of the set of passes of the photo itself.
        centre = np.array([(w - 1) / 2.0, (h - 1) / 2.0])
        flip_m = np.array([[-1.0, 0.0, w - 1.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]])
        answers = []
        for mirrored in (False, True) if flip else (False,):
            for angle, zoom in passes:
                m = np.vstack([cv2.getRotationMatrix2D((float(centre[0]), float(centre[1])), angle, zoom), [0, 0, 1]])
                if mirrored:
                    m = m @ flip_m
                untouched = angle == 0.0 and zoom == 1.0
                identity = untouched and not mirrored
                if identity and work is image:
                    pts = base.points_px
                else:
                    if untouched and mirrored and work is image and mirrored_base is not None:
                        face = mirrored_base  # detected above on these very pixels (a flip warps exactly)
                    else:
                        warped = work if identity else cv2.warpAffine(
                            work, m[:2], (w, h), flags=cv2.INTER_CUBIC, borderMode=cv2.BORDER_REFLECT
                        )
                        face = self._run(warped, None)
                    if face is None:
                        continue
                    inv = cv2.invertAffineTransform(m[:2])
                    pts = face.points_px.copy()
                    pts[:, :2] = (pts[:, :2] - 0.5) @ inv[:, :2].T + inv[:, 2] + 0.5
                    if mirrored:
                        pts = pts[MIRROR]
                    if work is not image:  # pixel edges at integers: a pure scale maps back
                        pts[:, :2] *= back_xy
                        pts[:, 2] *= back_xy[0]  # z is on the scale of x
                answers.append(pts)
        if not answers:  # the face was lost at the working size: the unaltered photo's answer
            answers = [base.points_px]
        return FaceLandmarks(
            points_px=np.mean(answers, axis=0),
            image_size=base.image_size,
            blendshapes=base.blendshapes,
            transform=base.transform,
            head_pose_deg=base.head_pose_deg,
            n_faces=base.n_faces,
        )

    def detect_for_video(self, image: np.ndarray, timestamp_ms: int) -> FaceLandmarks | None:
        """Landmarks of the largest face in one video frame, or ``None`` when there is no face.

        Raises
        ------
        ValueError
            If the landmarker was created in IMAGE mode.
        """
        if self.options.running_mode is not RunningMode.VIDEO:
            raise ValueError(
                "Landmarker is not in VIDEO mode; current running mode: "
                f"{self.options.running_mode.value}. Use detect()."
            )
        return self._run(image, int(timestamp_ms))

    def _run(self, image: np.ndarray, timestamp_ms: int | None) -> FaceLandmarks | None:
        from mediapipe.tasks.python.vision.core import image as mp_image

        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise ValueError("`image` must be an RGB uint8 array of shape (H, W, 3)")
        mp_img = mp_image.Image(
            image_format=mp_image.ImageFormat.SRGB, data=np.ascontiguousarray(image)
        )
        with self._lock:
            if self._task is None:
                raise ValueError("Landmarker is closed")
            raw = _raw_result(self._task, mp_img, timestamp_ms) if _FAST_PATH else None
            if raw is None:  # MediaPipe's public result objects (slower: 478 Python objects per face)
                if timestamp_ms is None:
                    result = self._task.detect(mp_img)
                else:
                    result = self._task.detect_for_video(mp_img, timestamp_ms)
                raw = _arrays_of(result)
        return _largest_face(*raw, width=image.shape[1], height=image.shape[0])


#: Read MediaPipe's C result directly with numpy (see :func:`_raw_result`).
_FAST_PATH = True

_Raw = tuple[list[np.ndarray], list[dict[str, float]], list[np.ndarray]]


def _raw_result(task: Any, mp_img: Any, timestamp_ms: int | None) -> _Raw | None:
    """Run the task and copy its C result into numpy arrays, or ``None`` if unavailable.

    MediaPipe's Python API turns every landmark into a dataclass (478 per
    face, about 1.5 ms per frame of pure Python). This reads the same C
    structs (``MpFaceLandmarkerResultC``) as structured numpy arrays instead.
    It relies on the ctypes layer of mediapipe >= 0.10.30; when that layer is
    missing (another mediapipe version) the public API is used, and
    ``tests/test_landmarks.py`` checks both give identical results.
    """
    lib, handle = getattr(task, "_lib", None), getattr(task, "_handle", None)
    if lib is None or handle is None or not hasattr(lib, "MpFaceLandmarkerCloseResult"):
        return None
    try:
        import ctypes

        from mediapipe.tasks.python.vision.face_landmarker import MpFaceLandmarkerResultC
    except ImportError:
        return None
    result_c = MpFaceLandmarkerResultC()
    c_image = mp_img._image_ptr  # noqa: SLF001 - as MediaPipe's own detect() does
    raw = getattr(lib, "_lib", None)  # the CDLL behind MediaPipe's SerialDispatcher
    args: tuple[Any, ...] = (handle, c_image, None) if timestamp_ms is None else (handle, c_image, None, int(timestamp_ms))
    name = "MpFaceLandmarkerDetectImage" if timestamp_ms is None else "MpFaceLandmarkerDetectForVideo"
    if raw is not None and hasattr(raw, name) and hasattr(raw, "MpErrorFree"):
        # Call the C function in this thread. MediaPipe's wrapper hands every call to a
        # dispatcher thread and back (a thread switch per frame and, with several
        # landmarkers in threads, waits for the GIL); the caller's per-instance lock
        # (Landmarker._lock) gives the same one-call-at-a-time guarantee.
        from mediapipe.tasks.python.core import mediapipe_c_utils

        error_msg = ctypes.c_char_p()
        status = getattr(raw, name)(*args, ctypes.byref(result_c), ctypes.byref(error_msg))
        try:
            mediapipe_c_utils.handle_status(status, error_msg)
        finally:
            if error_msg.value is not None:
                raw.MpErrorFree(error_msg)
    else:
        getattr(lib, name)(*args, ctypes.byref(result_c))
    try:
        faces = []
        for i in range(result_c.face_landmarks_count):
            lms = result_c.face_landmarks[i]
            n = int(lms.landmarks_count)
            struct = lms.landmarks._type_
            size = ctypes.sizeof(struct)
            buf = (ctypes.c_char * (n * size)).from_address(ctypes.addressof(lms.landmarks.contents)) if n else b""
            dtype = np.dtype({"names": ["x", "y", "z"], "formats": ["<f4"] * 3,
                              "offsets": [struct.x.offset, struct.y.offset, struct.z.offset], "itemsize": size})
            rec = np.frombuffer(buf, dtype=dtype, count=n)
            faces.append(np.stack([rec["x"], rec["y"], rec["z"]], axis=1).astype(np.float64))
        blends = []
        for i in range(result_c.face_blendshapes_count):
            cats = result_c.face_blendshapes[i]
            blends.append({
                cats.categories[j].category_name.decode("utf-8"): float(cats.categories[j].score)
                for j in range(cats.categories_count)
            })
        matrices = [
            result_c.facial_transformation_matrixes[i].to_numpy()
            for i in range(result_c.facial_transformation_matrixes_count)
        ]
    finally:
        lib.MpFaceLandmarkerCloseResult(ctypes.byref(result_c))
    return faces, blends, matrices


def _arrays_of(result: Any) -> _Raw:
    """MediaPipe's public FaceLandmarkerResult -> normalised (n, 3) arrays, blendshape dicts, matrices."""
    faces = [np.array([(p.x, p.y, p.z) for p in face], dtype=np.float64) for face in result.face_landmarks]
    blends = [{c.category_name: float(c.score) for c in cats} for cats in (result.face_blendshapes or [])]
    matrices = [np.asarray(m, dtype=np.float64) for m in (result.facial_transformation_matrixes or [])]
    return faces, blends, matrices


def _largest_face(
    faces: list[np.ndarray], blends: list[dict[str, float]], matrices: list[np.ndarray], *, width: int, height: int
) -> FaceLandmarks | None:
    """Normalised MediaPipe landmarks -> FaceLandmarks (pixels) of the largest face."""
    if not faces:
        return None
    scale = np.array([width, height, width], dtype=np.float64)
    arrays = [f * scale for f in faces]
    areas = [float(np.ptp(a[:, 0]) * np.ptp(a[:, 1])) for a in arrays]
    k = int(np.argmax(areas))
    blend = blends[k] if k < len(blends) else {}
    transform = np.asarray(matrices[k], dtype=np.float64) if k < len(matrices) and np.size(matrices[k]) == 16 else np.eye(4)
    return FaceLandmarks(
        points_px=arrays[k],
        image_size=(width, height),
        blendshapes=blend,
        transform=transform,
        head_pose_deg=head_pose_from_matrix(transform),
        n_faces=len(arrays),
    )
