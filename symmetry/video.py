"""Clinic videos: decoding, the per-frame series, events and the video summary.

The video path is built on the photo engine. One streaming pass decodes the
video (PyAV: mp4/mov with H.264 or HEVC, avi, webm, mkv; rotation metadata
honoured), runs Face Landmarker in VIDEO mode with the frames' real
timestamps, and keeps per frame only the static measures, blendshapes, head
pose and the measured landmarks (never the pixels), so memory does not grow
with anything but the length of the resulting table. Segments of the video
are analysed in parallel, one landmarker per worker thread (decoding, colour
conversion and inference all release the GIL).

Then :mod:`symmetry.events` finds the rest periods (the video's own baseline)
and the expression events; a second, short pass decodes only the rest frame
and the event peaks, where the movement measures are taken exactly as for a
photo pair: the rest frame's points are tracked into the peak frame
(:func:`symmetry.refine.track_points`) before measuring.

Conventions
-----------
* Sides are the patient's (``--mirrored`` swaps them for selfie videos).
* ``time_s`` is the presentation time of a frame from the start of the video
  stream; ``frame_index`` is ``round(time_s * fps)`` (the nominal index for a
  variable-frame-rate video).
* Scale: ``mm_per_px`` of the video is the iris scale at rest (median over the
  rest frames, or ``mm_per_px`` given by hand); each frame's own ``mm_per_px``
  carries it over by the inner-canthal distance (stable under gaze, smiles and
  eye closure), so a patient moving toward the camera keeps true millimetres.
"""

from __future__ import annotations

import contextlib
import math
import os
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from fractions import Fraction
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import numpy as np
import pandas as pd

from .calibration import DEFAULT_IRIS_MM, MIN_IRIS_PX, Calibration, ScaleSource, low_resolution_warning, session_calibration
from .errors import FaceTooSmallError, InputError, NoFaceError
from .events import (
    EXPRESSIONS,
    EventSpan,
    Segmentation,
    indicators,
    movement_series,
    read_events_csv,
    rest_measures_from_baseline,
    segment,
    static_columns,
)
from .frame import inter_pupil_px, pupil_axes, pupil_frame
from .landmarks import CONTOURS, LM, FaceLandmarks, Landmarker, LandmarkerOptions, RunningMode, Side, head_pose_from_matrix
from .tracking import BLENDSHAPE_MODEL_NAMES, FaceTracker, TrackerOptions, YUV420Image
from .measures import (
    MOVEMENT_MEASURES,
    STATIC_MEASURES,
    UNITS,
    Measure,
    asymmetry_measures,
    movement_measures,
    static_measure_array,
    static_measures,
    value_of,
)

__all__ = [
    "VIDEO_SUFFIXES",
    "BLENDSHAPE_NAMES",
    "POINT_IDS",
    "VideoReadError",
    "VideoInfo",
    "VideoFrame",
    "VideoOptions",
    "FrameSeries",
    "VideoEvent",
    "VideoResult",
    "VideoAnalyser",
    "probe_video",
    "iter_frames",
    "is_video_path",
    "video_frames",
    "measure_video",
    "write_annotated_video",
]

#: File suffixes treated as video by the CLI.
VIDEO_SUFFIXES = (".mp4", ".mov", ".avi", ".webm", ".mkv", ".m4v")

#: The 52 MediaPipe blendshapes, in the model's order (columns ``bs_<name>``).
BLENDSHAPE_NAMES: tuple[str, ...] = (
    "_neutral", "browDownLeft", "browDownRight", "browInnerUp", "browOuterUpLeft", "browOuterUpRight",
    "cheekPuff", "cheekSquintLeft", "cheekSquintRight", "eyeBlinkLeft", "eyeBlinkRight", "eyeLookDownLeft",
    "eyeLookDownRight", "eyeLookInLeft", "eyeLookInRight", "eyeLookOutLeft", "eyeLookOutRight", "eyeLookUpLeft",
    "eyeLookUpRight", "eyeSquintLeft", "eyeSquintRight", "eyeWideLeft", "eyeWideRight", "jawForward", "jawLeft",
    "jawOpen", "jawRight", "mouthClose", "mouthDimpleLeft", "mouthDimpleRight", "mouthFrownLeft",
    "mouthFrownRight", "mouthFunnel", "mouthLeft", "mouthLowerDownLeft", "mouthLowerDownRight",
    "mouthPressLeft", "mouthPressRight", "mouthPucker", "mouthRight", "mouthRollLower", "mouthRollUpper",
    "mouthShrugLower", "mouthShrugUpper", "mouthSmileLeft", "mouthSmileRight", "mouthStretchLeft",
    "mouthStretchRight", "mouthUpperUpLeft", "mouthUpperUpRight", "noseSneerLeft", "noseSneerRight",
)


def _point_ids() -> tuple[int, ...]:
    ids: dict[int, None] = {}
    for side in (Side.RIGHT, Side.LEFT):
        for value in vars(CONTOURS[side]).values():
            for i in (value,) if isinstance(value, int) else value:
                ids[int(i)] = None
    for lm in LM:
        ids[int(lm)] = None
    return tuple(sorted(ids))


#: Landmarks kept per frame (everything the measures and the overlay use).
POINT_IDS: tuple[int, ...] = _point_ids()

#: Warm-up of a worker's landmarker before its segment starts, s (MediaPipe's VIDEO mode smooths
#: its points across frames), and of a worker's tracker, in analysed frames (it carries nothing from
#: frame to frame but the face region, which settles within a frame of finding the face).
_WARMUP_S = 0.5
_TRACKER_WARMUP_FRAMES = 5
#: Shortest segment given to one worker, s.
_MIN_SEGMENT_S = 8.0
#: Segments aim at this length, s (several per worker balance the load).
_TARGET_SEGMENT_S = 60.0
#: A forward gap larger than this (s) between needed frames makes the second pass seek.
_SEEK_GAP_S = 2.0
_YAW_LIMIT_DEG = 10.0

_INNER_CANTHI = (int(LM.RIGHT_MEDIAL_CANTHUS), int(LM.LEFT_MEDIAL_CANTHUS))

Progress = Callable[[int], None]


class VideoReadError(InputError):
    """The video file is missing, unreadable, has no video stream or no decodable frame."""


# --------------------------------------------------------------------------- decoding
@dataclass(frozen=True)
class VideoInfo:
    """What the container says about a video.

    Attributes
    ----------
    source : str
    width, height : int
        Display size in pixels, after rotation.
    fps : float
        Average frame rate.
    duration_s : float
        Duration of the video stream (NaN when unknown).
    n_frames : int
        Frame count the container declares or its duration implies (0 when unknown).
    rotation_deg : int
        Counter-clockwise display rotation applied to the decoded frames (0, 90, 180, 270).
    codec : str
    truncated : bool
        The MP4/MOV file is cut short (its data runs past the end of the file): only
        the frames before the cut can be decoded.
    """

    source: str
    width: int
    height: int
    fps: float
    duration_s: float
    n_frames: int
    rotation_deg: int
    codec: str
    truncated: bool = False


@dataclass(frozen=True)
class VideoFrame:
    """One decoded frame: ``rgb`` (H, W, 3) uint8, upright, at ``time_s``."""

    frame_index: int
    time_s: float
    rgb: np.ndarray

    @property
    def timestamp_ms(self) -> int:
        return int(round(self.time_s * 1000.0))


def is_video_path(path: str | os.PathLike[str]) -> bool:
    """Whether ``path`` has one of the :data:`VIDEO_SUFFIXES` (case-insensitive)."""
    return Path(path).suffix.lower() in VIDEO_SUFFIXES


def _open(path: str | os.PathLike[str]) -> Any:
    import av

    source = str(path)
    p = Path(path)
    if not p.exists():
        raise VideoReadError(source, "file not found")
    if p.is_dir():
        raise VideoReadError(source, "is a directory, not a video")
    try:
        size = p.stat().st_size
    except OSError as exc:
        raise VideoReadError(source, f"cannot read ({exc.strerror or exc})") from None
    if size == 0:
        raise VideoReadError(source, "file is empty (0 bytes)")
    try:
        container = av.open(source, mode="r")
    except EOFError:
        raise VideoReadError(source, _damage(p) or "has no video frames (zero-frame, empty or truncated video)") from None
    except PermissionError:
        raise VideoReadError(source, "cannot read (permission denied)") from None
    except Exception as exc:  # av raises many FFmpegError subclasses, OSError, ValueError
        raise VideoReadError(source, _damage(p) or f"not a readable video ({_reason(exc)})") from None
    if not container.streams.video:
        container.close()
        raise VideoReadError(source, "has no video stream or no video frames")
    return container


#: Top-level boxes of an ISO base media file (MP4, MOV, M4V, 3GP): a file starts with one of them.
_ISO_BOXES = frozenset({b"ftyp", b"moov", b"mdat", b"free", b"skip", b"wide", b"pnot", b"uuid", b"styp", b"sidx",
                        b"moof", b"mfra", b"meta", b"pdin", b"prfl", b"junk"})


def _iso_layout(path: Path) -> tuple[set[bytes], bool] | None:
    """(top-level box types, whether the last box runs past the end of the file) of an MP4/MOV file.

    ``None`` when the file is not an ISO base media file. Only box headers are read.
    """
    try:
        with open(path, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            kinds: set[bytes] = set()
            pos = 0
            while pos + 8 <= size:
                f.seek(pos)
                head = f.read(16)
                length, kind = int.from_bytes(head[:4], "big"), head[4:8]
                if pos == 0 and kind not in _ISO_BOXES:
                    return None
                if length == 1 and len(head) >= 16:
                    length = int.from_bytes(head[8:16], "big")
                elif length == 0:  # runs to the end of the file
                    length = size - pos
                if length < 8:
                    return kinds, True  # a damaged header
                kinds.add(kind)
                pos += length
            if pos == 0:
                return None
            return kinds, pos > size
    except OSError:
        return None


def _damage(path: Path) -> str | None:
    """A clinician-readable reason when an MP4/MOV file is cut short or was never finished."""
    layout = _iso_layout(path)
    if layout is None:
        return None
    kinds, cut = layout
    if b"moov" not in kinds and b"moof" not in kinds:
        return ("truncated or unfinished video: the MP4 index ('moov' atom) is missing "
                "(the recording was interrupted or the file was cut short)")
    if cut:
        return "truncated video: the file is cut short and no frame can be decoded"
    return None


def _reason(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    # PyAV messages look like "[Errno 1094995529] Invalid data found when processing input: 'x.mp4'"
    if "] " in text:
        text = text.split("] ", 1)[1]
    return text.split(": '", 1)[0]


def _stream_t0(stream: Any) -> float:
    return float(stream.start_time * stream.time_base) if stream.start_time is not None else 0.0


def _decoded(container: Any, stream: Any, source: str) -> Iterator[tuple[float, Any]]:
    """(time_s, av.VideoFrame) in presentation order; undecodable packets are skipped."""
    import av

    t0 = _stream_t0(stream)
    tb = float(stream.time_base) if stream.time_base else 0.0
    last = -math.inf
    step = 1.0 / _rate(stream)
    try:
        packets = container.demux(stream)
        for packet in packets:
            try:
                frames = packet.decode()
            except av.error.InvalidDataError:
                continue
            for frame in frames:
                t = frame.pts * tb - t0 if frame.pts is not None and tb else last + step
                last = t
                yield t, frame
    except av.error.FFmpegError as exc:
        raise VideoReadError(source, f"cannot decode video ({_reason(exc)})") from None


def _rate(stream: Any) -> float:
    for rate in (stream.average_rate, stream.guessed_rate, stream.base_rate):
        if rate:
            value = float(rate)
            if math.isfinite(value) and 0 < value < 1000:
                return value
    return 30.0


def _rotation(frame: Any) -> int:
    try:
        return int(round(float(frame.rotation))) % 360
    except (AttributeError, TypeError, ValueError):
        return 0


def probe_video(path: str | os.PathLike[str]) -> VideoInfo:
    """Open a video, decode its first frame and describe it.

    Raises
    ------
    VideoReadError
        If the file is missing, not a video, has no video stream or no decodable frame.
    """
    source = str(path)
    with _open(path) as container:
        stream = container.streams.video[0]
        first = next(_decoded(container, stream, source), None)
        layout = _iso_layout(Path(path))
        truncated = layout is not None and layout[1]
        if first is None:
            reason = "has no decodable video frames (zero-frame or corrupt video)"
            if truncated:
                reason = "truncated video: the file is cut short before its first complete frame"
            raise VideoReadError(source, reason)
        frame = first[1]
        rot = _rotation(frame)
        fps = _rate(stream)
        duration = math.nan
        if stream.duration is not None and stream.time_base:
            duration = float(stream.duration * stream.time_base)
        elif container.duration is not None:
            duration = container.duration / 1_000_000
        n = int(stream.frames or 0) or (int(round(duration * fps)) if math.isfinite(duration) else 0)
        w, h = frame.width, frame.height
        if rot in (90, 270):
            w, h = h, w
        return VideoInfo(source, int(w), int(h), fps, duration, n, rot, str(stream.codec_context.name), truncated)


def _to_rgb(frame: Any, rotation: int) -> np.ndarray:
    """Upright RGB uint8 of a decoded frame: one colour conversion, one rotation if needed."""
    import cv2

    if frame.format.name == "yuv420p" and frame.width % 2 == 0 and frame.height % 2 == 0:
        rgb = cv2.cvtColor(frame.to_ndarray(format="yuv420p"), cv2.COLOR_YUV2RGB_I420)
    else:
        rgb = frame.to_ndarray(format="rgb24")
    if rotation == 90:
        rgb = cv2.rotate(rgb, cv2.ROTATE_90_COUNTERCLOCKWISE)
    elif rotation == 180:
        rgb = cv2.rotate(rgb, cv2.ROTATE_180)
    elif rotation == 270:
        rgb = cv2.rotate(rgb, cv2.ROTATE_90_CLOCKWISE)
    return rgb


def _planes(frame: Any, rotation: int) -> YUV420Image | np.ndarray:
    """A decoded frame as the tracker reads it: its 4:2:0 planes in place (no copy, no conversion),
    or upright RGB for the pixel formats that have no such planes (see :func:`_to_rgb`)."""
    if frame.format.name != "yuv420p" or frame.width % 2 or frame.height % 2:
        return _to_rgb(frame, rotation)
    y, u, v = (
        np.frombuffer(p, np.uint8).reshape(p.height, p.line_size)[:, : p.width] for p in frame.planes[:3]
    )
    return YUV420Image.from_planes(y, u, v, rotation)


def _seek(container: Any, stream: Any, target_s: float) -> None:
    """Seek to the keyframe at or before ``target_s`` (stream time)."""
    t0 = stream.start_time or 0
    offset = int(t0 + max(target_s, 0.0) / float(stream.time_base))
    container.seek(offset, stream=stream, backward=True, any_frame=False)


def _decoded_from(container: Any, stream: Any, source: str, start_s: float) -> Iterator[tuple[float, Any]]:
    """Decoded frames from the keyframe before ``start_s``; falls back to the stream start if seeking overshoots."""
    if start_s <= 0:
        yield from _decoded(container, stream, source)
        return
    tol = 0.5 / _rate(stream)
    try:
        _seek(container, stream, start_s)
    except Exception:
        container.seek(0)
        yield from _decoded(container, stream, source)
        return
    it = _decoded(container, stream, source)
    first = next(it, None)
    if first is None:
        return
    if first[0] > start_s + tol:  # broken index: the seek landed after the target
        container.seek(0)
        yield from _decoded(container, stream, source)
        return
    yield first
    yield from it


def iter_frames(
    path: str | os.PathLike[str],
    *,
    start_s: float = 0.0,
    end_s: float = math.inf,
    frame_stride: int = 1,
) -> Iterator[VideoFrame]:
    """Decode a video lazily, one upright RGB frame at a time.

    Parameters
    ----------
    path : path
    start_s, end_s : float
        Time range ``[start_s, end_s)`` in seconds.
    frame_stride : int
        Yield every ``frame_stride``-th frame (by nominal frame index).

    Raises
    ------
    VideoReadError
    """
    info = probe_video(path)
    with _open(path) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        for t, frame in _decoded_from(container, stream, str(path), start_s):
            if t < start_s - 1e-9:
                continue
            if t >= end_s:
                break
            index = int(round(t * info.fps))
            if index % frame_stride:
                continue
            yield VideoFrame(index, float(t), _to_rgb(frame, info.rotation_deg))


def _ends_early(info: VideoInfo, time_s: np.ndarray, stride: int = 1) -> str | None:
    """A warning when the decodable frames stop well before the duration the file declares."""
    if not len(time_s):
        return None
    end = float(time_s[-1]) + stride / info.fps
    declared = info.duration_s
    short = math.isfinite(declared) and declared - end > max(0.25, 3.0 / info.fps)
    if not (info.truncated or short):
        return None
    where = f" of the {declared:.2f} s it declares" if math.isfinite(declared) else ""
    return (f"video truncated or damaged: frames stop at {float(time_s[-1]):.2f} s{where}; "
            "nothing after that is measured")


# --------------------------------------------------------------------------- options
@dataclass(frozen=True)
class VideoOptions:
    """How to analyse a video.

    Attributes
    ----------
    frame_stride : int
        Analyse every ``frame_stride``-th frame (1 = all).
    smoothing_s : float
        Width (s) of a centred moving average applied to the per-frame series;
        0 = off. The raw series is kept in ``<column>_raw`` columns.
    affected_side : {"left", "right"} or None
        For affected/healthy ratios.
    mirrored : bool
        Selfie (mirrored) video: side labels are swapped.
    mm_per_px : float or None
        Manual scale at rest (mm per pixel); otherwise the iris scale at rest.
    iris_mm : float
        Assumed horizontal iris diameter, mm.
    refine : bool
        Track the rest frame's points into each event peak frame (recommended).
    workers : int
        Parallel landmarkers (threads); 0 = one and a half per available core
        (at least one more than the cores: each landmarker's thread waits on its
        model's own threads part of the time, and the extra one fills the gaps).
    model_path : path or None
        Another ``face_landmarker.task``.
    engine : {"auto", "tracker", "mediapipe"}
        How each frame's face is found. ``"tracker"``:
        :class:`~symmetry.tracking.FaceTracker` runs the FaceLandmarker's own
        detector, landmark and blendshape models directly: the detector finds
        the face, then the landmark model follows it on the region the previous
        frame's points give (about 1.5x faster per frame; points not smoothed
        across frames); the summary's rest and peak frames are found the same
        way. ``"mediapipe"``: the FaceLandmarker in VIDEO mode on every frame
        (and in IMAGE mode on the summary's frames). ``"auto"``: the tracker
        where LiteRT is installed.
    """

    frame_stride: int = 1
    smoothing_s: float = 0.0
    affected_side: str | None = None
    mirrored: bool = False
    mm_per_px: float | None = None
    iris_mm: float = DEFAULT_IRIS_MM
    refine: bool = True
    workers: int = 0
    model_path: str | os.PathLike[str] | None = None
    engine: str = "auto"

    def __post_init__(self) -> None:
        if self.engine not in ("auto", "tracker", "mediapipe"):
            raise ValueError(f"`engine` must be 'auto', 'tracker' or 'mediapipe', got {self.engine!r}")
        if not (isinstance(self.frame_stride, int) and self.frame_stride >= 1):
            raise ValueError(f"`frame_stride` must be a positive integer, got {self.frame_stride!r}")
        if not (math.isfinite(self.smoothing_s) and self.smoothing_s >= 0):
            raise ValueError(f"`smoothing_s` must be >= 0 seconds, got {self.smoothing_s!r}")
        if self.affected_side is not None and self.affected_side not in ("left", "right"):
            raise ValueError(f"`affected_side` must be 'left' or 'right', got {self.affected_side!r}")
        if self.mm_per_px is not None and not (math.isfinite(self.mm_per_px) and self.mm_per_px > 0):
            raise ValueError(f"`mm_per_px` must be a positive number, got {self.mm_per_px!r}")
        if not (self.iris_mm > 0):
            raise ValueError(f"`iris_mm` must be positive, got {self.iris_mm!r}")
        if not (isinstance(self.workers, int) and self.workers >= 0):
            raise ValueError(f"`workers` must be >= 0 (0 = automatic), got {self.workers!r}")

    def uses_tracker(self) -> bool:
        """Whether the per-frame pass runs :class:`~symmetry.tracking.FaceTracker` (see ``engine``)."""
        from .tracking import tracker_available

        return self.engine == "tracker" or (self.engine == "auto" and tracker_available())

    def n_workers(self) -> int:
        if self.workers:
            return self.workers
        try:
            cores = max(1, len(os.sched_getaffinity(0)))
        except AttributeError:  # pragma: no cover - not Linux
            cores = max(1, os.cpu_count() or 1)
        return cores + max(1, cores // 2)


# --------------------------------------------------------------------------- first pass
# per-frame values kept by the workers, in this order
_STATIC_COLS = static_columns()
_MM_STATIC = np.array([UNITS[c.rsplit("_", 1)[0]] == "mm" for c in _STATIC_COLS])
_EXTRA = ("iris_right_px", "iris_left_px", "inner_canthal_px", "yaw_deg", "pitch_deg", "roll_deg")
_N_VALUES = len(_STATIC_COLS) + len(_EXTRA) + len(BLENDSHAPE_NAMES)
_POINT_INDEX = np.array(POINT_IDS)


@dataclass
class _Segment:
    index: int
    start_s: float
    end_s: float
    times: list[float] = field(default_factory=list)
    values: list[np.ndarray] = field(default_factory=list)
    points: list[np.ndarray] = field(default_factory=list)
    decoded: int = 0
    checks: list[float] = field(default_factory=list)  # times to count the faces at (tracker only)
    faces: list[tuple[int, bool]] = field(default_factory=list)  # (faces, the followed face is the largest)


#: Values a worker keeps per frame (the geometry comes later from the kept points, vectorised).
_N_FRAME_VALUES = 3 + len(BLENDSHAPE_NAMES)
_N_GEOMETRY = len(_STATIC_COLS) + 3  # static measures, iris widths, inner-canthal distance


def _frame_values(face: FaceLandmarks) -> tuple[np.ndarray, np.ndarray]:
    """Head pose, blendshapes and the kept landmarks of one frame (the worker's per-frame work)."""
    pose = face.head_pose_deg
    bs = face.blendshapes
    values = np.array(
        [pose.get("yaw", np.nan), pose.get("pitch", np.nan), pose.get("roll", np.nan)]
        + [bs.get(name, np.nan) for name in BLENDSHAPE_NAMES],
        dtype=np.float64,
    )
    return values, face.points_px[_POINT_INDEX, :2].astype(np.float32)


def _geometry(points: np.ndarray, chunk: int = 2048) -> np.ndarray:
    """Static measures (pupil-frame pixels), iris widths and inner-canthal distance per frame.

    ``points`` is (n, len(POINT_IDS), 2) image pixels; returns (n, :data:`_N_GEOMETRY`), in
    the order of ``_STATIC_COLS`` then ``_EXTRA[:3]``; NaN where there is no face or the iris
    centres coincide. Computed in chunks (memory stays bounded on long videos).
    """
    n = len(points)
    out = np.full((n, _N_GEOMETRY), np.nan)
    r, l = CONTOURS[Side.RIGHT], CONTOURS[Side.LEFT]
    for a in range(0, n, chunk):
        block = np.full((min(chunk, n - a), 478, 2), np.nan)
        block[:, _POINT_INDEX] = points[a : a + chunk]
        origin, x_axis, up = pupil_axes(block)
        ok = np.isfinite(origin).all(axis=1)
        d = block - origin[:, None, :]
        in_frame = np.stack([np.einsum("nkj,nj->nk", d, x_axis), np.einsum("nkj,nj->nk", d, up)], axis=-1)
        static = static_measure_array(in_frame)  # (m, n_static, 2): name-major, right then left
        res = out[a : a + chunk]
        res[:, : len(_STATIC_COLS)] = static.reshape(len(block), -1)
        res[:, len(_STATIC_COLS)] = np.hypot(*(block[:, r.iris_lateral] - block[:, r.iris_medial]).T)
        res[:, len(_STATIC_COLS) + 1] = np.hypot(*(block[:, l.iris_lateral] - block[:, l.iris_medial]).T)
        res[:, len(_STATIC_COLS) + 2] = np.hypot(*(block[:, _INNER_CANTHI[1]] - block[:, _INNER_CANTHI[0]]).T)
        res[~ok] = np.nan
    return out


_NO_FACE = np.full(_N_FRAME_VALUES, np.nan)
_NO_POINTS = np.full((len(POINT_IDS), 2), np.nan, dtype=np.float32)


def _plan_segments(info: VideoInfo, workers: int) -> list[_Segment]:
    d = info.duration_s
    if workers <= 1 or not math.isfinite(d) or d < 2 * _MIN_SEGMENT_S:
        return [_Segment(0, 0.0, math.inf)]
    n = max(workers, int(math.ceil(d / _TARGET_SEGMENT_S)))
    n = min(n, int(d // _MIN_SEGMENT_S))
    bounds = [d * i / n for i in range(n)] + [math.inf]
    return [_Segment(i, bounds[i], bounds[i + 1]) for i in range(n)]


class _StopRequested(Exception):
    pass


def _run_segment(
    seg: _Segment,
    landmarker: Landmarker | None,
    tracker: FaceTracker | None,
    info: VideoInfo,
    stride: int,
    last_ts: list[int],
    progress: Progress | None,
    stop: threading.Event,
    workers: int,
) -> None:
    source = info.source
    warm_s = _TRACKER_WARMUP_FRAMES * stride / info.fps if tracker is not None else _WARMUP_S
    warm_from = seg.start_s - warm_s if seg.start_s > 0 else -math.inf
    previous: np.ndarray | None = None  # the tracker's last points (image px)
    pending: list[tuple[int, np.ndarray]] = []  # (row, points) of tracked frames awaiting blendshapes
    with _open(source) as container:
        stream = container.streams.video[0]
        if workers <= 1:
            stream.thread_type = "AUTO"  # the other core decodes ahead
        else:
            stream.codec_context.thread_count = 1  # every core already runs a worker
        for t, frame in _decoded_from(container, stream, source, max(warm_from, 0.0)):
            if stop.is_set():
                raise _StopRequested
            if t >= seg.end_s:
                break
            seg.decoded += 1
            if t < warm_from:
                continue
            index = int(round(t * info.fps))
            if index % stride:
                continue
            points = None  # the tracker's landmarks; their blendshapes and head pose come in batches
            if landmarker is not None:
                ts = max(int(round(t * 1000.0)), last_ts[0] + 1)  # MediaPipe needs increasing timestamps
                last_ts[0] = ts
                face = landmarker.detect_for_video(_to_rgb(frame, info.rotation_deg), ts)
            elif tracker is not None:
                # the tracker reads its face crops from the decoded planes: no whole-frame RGB
                face = None
                image = _planes(frame, info.rotation_deg)
                if previous is not None:
                    points = tracker.landmarks(image, previous)
                if points is None:  # no face yet, or the tracker lost it: look over the whole frame
                    points = tracker.detect(image)
                previous = points
            if t < seg.start_s:
                continue  # warm-up frame of the tracker
            seg.times.append(float(t))
            if points is not None:
                pending.append((len(seg.values), points))
                seg.values.append(_NO_FACE)  # until _finish_tracked
                seg.points.append(points[_POINT_INDEX, :2].astype(np.float32))
                if len(pending) >= _TRACKED_BATCH:
                    _finish_tracked(tracker, seg, pending)
            elif face is None:
                seg.values.append(_NO_FACE)
                seg.points.append(_NO_POINTS)
            else:
                kept = _frame_values(face)
                seg.values.append(kept[0])
                seg.points.append(kept[1])
            if tracker is not None and seg.checks and t >= seg.checks[0]:
                seg.checks.pop(0)
                seg.faces.append(_count_faces(tracker, image, points))
            if progress is not None:
                progress(1)
    _finish_tracked(tracker, seg, pending)


def _count_faces(tracker: FaceTracker, image: YUV420Image | np.ndarray, points: np.ndarray | None) -> tuple[int, bool]:
    """(faces in the frame, whether the followed face's eyes lie in the largest face's box)."""
    faces = tracker.faces(image)
    if not faces or points is None:
        return len(faces), True
    box = faces[0][0]
    mid = (points[int(LM.RIGHT_IRIS_CENTER), :2] + points[int(LM.LEFT_IRIS_CENTER), :2]) / 2.0
    return len(faces), bool(np.all(np.abs(mid - box[:2]) <= box[2:4] / 2.0))


#: Tracked frames whose blendshapes and head pose are computed together (each model's weights stay
#: in the cache while it runs over the batch: 0.3 ms a frame less than model after model per frame).
_TRACKED_BATCH = 64
_MODEL_BLENDSHAPES = np.array([BLENDSHAPE_MODEL_NAMES.index(name) for name in BLENDSHAPE_NAMES])


def _finish_tracked(tracker: FaceTracker | None, seg: _Segment, pending: list[tuple[int, np.ndarray]]) -> None:
    """Fill the head pose and blendshapes of the tracked frames in ``pending`` (then emptied)."""
    if not pending or tracker is None:
        return
    rows = [row for row, _ in pending]
    points = np.stack([p for _, p in pending])
    scores = tracker.blendshapes(points)[:, _MODEL_BLENDSHAPES]
    for row, transform, bs in zip(rows, tracker.head_pose(points), scores):
        pose = head_pose_from_matrix(transform)
        seg.values[row] = np.concatenate([[pose["yaw"], pose["pitch"], pose["roll"]], bs])
    pending.clear()


@dataclass
class _RawSeries:
    time_s: np.ndarray
    values: np.ndarray  # (n, _N_VALUES) float64
    points: np.ndarray  # (n, len(POINT_IDS), 2) float32
    decoded: int
    faces: list[tuple[int, bool]] | None = None  # faces counted at sampled frames (tracker only)


def _landmark_pass(info: VideoInfo, options: VideoOptions, progress: Progress | None) -> _RawSeries:
    """The per-frame pass: landmarks, blendshapes and head pose of every analysed frame.

    With the tracker (``options.uses_tracker()``) each worker runs a
    :class:`~symmetry.tracking.FaceTracker`, which also finds the faces it has
    not followed from the previous frame (a segment's first frame, a lost face)
    with the bundle's face detector, as the Face Landmarker does.
    Otherwise each worker runs a Face Landmarker in VIDEO mode.
    """
    workers = options.n_workers()
    segments = _plan_segments(info, workers)
    use_tracker = options.uses_tracker()
    if use_tracker and math.isfinite(info.duration_s):
        # frames spread over the video where the workers count the faces (see _several_faces)
        for k in range(_FACE_SAMPLES):
            at = (k + 0.5) / _FACE_SAMPLES * info.duration_s
            next(s for s in reversed(segments) if s.start_s <= at).checks.append(at)
    queue = list(segments)
    lock = threading.Lock()
    stop = threading.Event()
    errors: list[BaseException] = []
    lm_options = LandmarkerOptions(model_path=options.model_path, running_mode=RunningMode.VIDEO, num_faces=1)

    def work() -> None:
        try:
            with contextlib.ExitStack() as stack:
                if use_tracker:
                    lm, tracker = None, stack.enter_context(FaceTracker(TrackerOptions(options.model_path)))
                else:
                    lm, tracker = stack.enter_context(Landmarker(lm_options)), None
                last_ts = [-1]
                while not stop.is_set():
                    with lock:
                        if not queue:
                            return
                        seg = queue.pop(0)
                    _run_segment(seg, lm, tracker, info, options.frame_stride, last_ts, progress, stop, len(segments))
        except _StopRequested:
            pass
        except BaseException as exc:  # re-raised in the caller's thread
            errors.append(exc)
            stop.set()

    n_threads = min(workers, len(segments))
    if n_threads == 1:
        work()
    else:
        threads = [threading.Thread(target=work, name=f"symmetry-video-{k}", daemon=True) for k in range(n_threads)]
        for th in threads:
            th.start()
        try:
            for th in threads:
                while th.is_alive():
                    th.join(0.2)
        except BaseException:
            stop.set()
            for th in threads:
                th.join()
            raise
    if errors:
        raise errors[0]
    times = [t for s in segments for t in s.times]
    n = len(times)
    decoded = sum(s.decoded for s in segments)
    if n == 0:
        raise VideoReadError(info.source, "has no decodable video frames (zero-frame or corrupt video)")
    values = np.empty((n, _N_VALUES))
    points = np.empty((n, len(POINT_IDS), 2), dtype=np.float32)
    k = 0
    for s in segments:  # segments are in time order and disjoint
        m = len(s.times)
        if m:
            values[k : k + m, _N_GEOMETRY:] = np.stack(s.values)
            points[k : k + m] = np.stack(s.points)
        k += m
        s.values.clear()
        s.points.clear()
    values[:, :_N_GEOMETRY] = _geometry(points)
    lost = ~np.isfinite(values[:, 0])  # no face, or a degenerate one: the whole row is missing
    values[lost] = np.nan
    points[lost] = np.nan
    counted = use_tracker and math.isfinite(info.duration_s)
    return _RawSeries(np.asarray(times), values, points, decoded, [f for s in segments for f in s.faces] if counted else None)


# --------------------------------------------------------------------------- the series
@dataclass
class FrameSeries:
    """The per-frame series of one video.

    Attributes
    ----------
    source : str
    info : VideoInfo
    frames : DataFrame
        One row per analysed frame. Columns:

        ``frame_index`` (int), ``time_s`` (s), ``timestamp_ms`` (int),
        ``face_found`` (bool), ``phase`` (``rest``, an expression key, or empty),
        ``mm_per_px`` (this frame's scale), ``iris_right_px``, ``iris_left_px``,
        ``inner_canthal_px`` (pixels), ``yaw_deg``, ``pitch_deg``, ``roll_deg``;
        every static and movement measure of the photo contract as
        ``<name>_<side>`` (unit in :data:`symmetry.measures.UNITS`; movement
        against the video's rest baseline, from the model's landmarks);
        ``<name>_asymmetry`` (|left - right|) and, with an affected side,
        ``<name>_ratio``; the 52 blendshapes as ``bs_<name>`` (the model's own
        names and sides, in [0, 1]). With smoothing, ``<column>_raw`` holds the
        unsmoothed value of every measure, pose and blendshape column.
        Frames without a face have ``face_found`` False and NaN measures.
    points_px : ndarray of shape (n_frames, len(POINT_IDS), 2), float32
        The measured landmarks (image pixels of the upright frame), NaN without a face.
    calibration : Calibration
        The video's scale at rest.
    segmentation : Segmentation
        Rest periods, baseline and events found in the series.
    frames_decoded : int
    warnings : list of str
    """

    source: str
    info: VideoInfo
    frames: pd.DataFrame
    points_px: np.ndarray
    calibration: Calibration
    segmentation: Segmentation
    frames_decoded: int = 0
    warnings: list[str] = field(default_factory=list)

    @property
    def n_frames(self) -> int:
        return len(self.frames)

    @property
    def frames_without_face(self) -> int:
        return int((~self.frames["face_found"]).sum())

    def point(self, row: int, landmark: int) -> np.ndarray:
        """(x, y) pixels of one landmark in one row (NaN without a face)."""
        return self.points_px[row, POINT_IDS.index(int(landmark))]

    def to_long(self) -> pd.DataFrame:
        """Tidy long form: ``frame_index, time_s, name, side, value, unit`` (frames with a face)."""
        rows = []
        face = self.frames[self.frames["face_found"]]
        for name in STATIC_MEASURES + MOVEMENT_MEASURES:
            for side in ("right", "left"):
                col = f"{name}_{side}"
                if col in face:
                    rows.append(pd.DataFrame({
                        "frame_index": face["frame_index"], "time_s": face["time_s"], "name": name,
                        "side": side, "value": face[col], "unit": UNITS[name],
                    }))
        return pd.concat(rows, ignore_index=True) if rows else pd.DataFrame(
            columns=["frame_index", "time_s", "name", "side", "value", "unit"])

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write ``frames`` as Parquet (``.parquet``) or CSV (``.csv``).

        Raises
        ------
        ValueError
            If the suffix is neither.
        """
        path = Path(path)
        suffix = path.suffix.lower()
        if suffix not in (".parquet", ".csv"):
            raise ValueError(f"`path` must end in .parquet or .csv, got {path.name!r}")
        path.parent.mkdir(parents=True, exist_ok=True)
        if suffix == ".parquet":
            self.frames.to_parquet(path, index=False)
        else:
            self.frames.to_csv(path, index=False, float_format="%.6g")
        return path


def _swap_name(col: str) -> str:
    for a, b in (("_right", "_left"), ("_left", "_right")):
        if col.endswith(a):
            return col[: -len(a)] + b
        if col.endswith(a + "_raw"):
            return col[: -len(a) - 4] + b + "_raw"
    return col


def _smooth(block: pd.DataFrame, window: int, face: np.ndarray) -> pd.DataFrame:
    if window <= 1:
        return block
    masked = block.where(pd.Series(face, index=block.index), np.nan)
    out = masked.rolling(window, center=True, min_periods=1).mean()
    return out.where(pd.Series(face, index=block.index), np.nan)


def _scale(raw: pd.DataFrame, mask: np.ndarray, options: VideoOptions, source: str) -> tuple[Calibration, float, np.ndarray]:
    """Rest scale, reference inner-canthal distance, and per-frame mm_per_px."""
    icd = raw["inner_canthal_px"].to_numpy(dtype=float)
    icd_ref = float(np.nanmedian(icd[mask]))
    iris_r, iris_l = (raw[c].to_numpy(dtype=float) * icd_ref / icd for c in ("iris_right_px", "iris_left_px"))
    diam_r, diam_l = float(np.nanmedian(iris_r[mask])), float(np.nanmedian(iris_l[mask]))
    mean = (diam_r + diam_l) / 2.0
    if options.mm_per_px is not None:
        cal = Calibration(options.mm_per_px, 0.0, ScaleSource.MANUAL, {"right": diam_r, "left": diam_l}, options.iris_mm,
                          iris_method=None)
    else:
        if not (math.isfinite(mean) and mean >= MIN_IRIS_PX):
            raise FaceTooSmallError(
                source,
                f"face too small: iris is {mean:.1f} px wide, under the {MIN_IRIS_PX:.0f} px minimum; "
                "use a closer or higher-resolution video",
            )
        rel = abs(diam_r - diam_l) / 2.0 / mean
        mm = options.iris_mm / mean
        flags = ("iris_mismatch",) if abs(diam_r - diam_l) / mean > 0.10 else ()
        cal = Calibration(mm, mm * rel, ScaleSource.IRIS, {"right": diam_r, "left": diam_l}, options.iris_mm, flags)
    return cal, icd_ref, cal.mm_per_px * icd_ref / icd


def _ratio_names() -> frozenset[str]:
    probe = [Measure(n, s, 1.0, UNITS[n]) for n in STATIC_MEASURES + MOVEMENT_MEASURES for s in ("left", "right")]
    return frozenset(m.name[: -len("_ratio")] for m in asymmetry_measures(probe, "left") if m.name.endswith("_ratio"))


_RATIO_NAMES = _ratio_names()


def _derived(static_mm: pd.DataFrame, baseline: dict[str, float], affected: str | None) -> pd.DataFrame:
    """Movement, asymmetry and ratio columns of a static block."""
    move = movement_series(static_mm, baseline)
    both = pd.concat([static_mm, move], axis=1)
    cols: dict[str, np.ndarray] = {}
    for name in STATIC_MEASURES + MOVEMENT_MEASURES:
        left, right = both[f"{name}_left"].to_numpy(), both[f"{name}_right"].to_numpy()
        cols[f"{name}_asymmetry"] = np.abs(left - right)
        if affected is not None and name in _RATIO_NAMES:
            a, h = (left, right) if affected == "left" else (right, left)
            with np.errstate(invalid="ignore", divide="ignore"):
                cols[f"{name}_ratio"] = np.where(np.abs(h) > 1e-9, a / h, np.nan)
    return pd.concat([move, pd.DataFrame(cols, index=static_mm.index)], axis=1)


def _build_series(
    raw: _RawSeries,
    info: VideoInfo,
    options: VideoOptions,
    spans: Sequence[EventSpan] | None,
) -> FrameSeries:
    source = info.source
    n = len(raw.time_s)
    values = pd.DataFrame(raw.values, columns=[*_STATIC_COLS, *_EXTRA, *(f"bs_{b}" for b in BLENDSHAPE_NAMES)])
    face = np.isfinite(values[_STATIC_COLS[0]].to_numpy())
    if not face.any():
        raise NoFaceError(source, f"no face found in any of the {n} analysed frames")
    if options.mirrored:
        values = values.rename(columns={c: _swap_name(c) for c in _STATIC_COLS + ["iris_right_px", "iris_left_px"]})
        values = values[[*_STATIC_COLS, *_EXTRA, *(f"bs_{b}" for b in BLENDSHAPE_NAMES)]]
    step = options.frame_stride / info.fps
    window = int(round(options.smoothing_s / step)) if options.smoothing_s > 0 else 1
    window += 1 - window % 2  # odd: centred
    smoothed = _smooth(values, window, face) if window > 1 else values

    base = pd.DataFrame({
        "frame_index": np.rint(raw.time_s * info.fps).astype(np.int64),
        "time_s": raw.time_s,
        "timestamp_ms": np.rint(raw.time_s * 1000.0).astype(np.int64),
        "face_found": face,
    })

    def static_in_mm(block: pd.DataFrame, mm_per_px: np.ndarray) -> pd.DataFrame:
        x = block[_STATIC_COLS].to_numpy(dtype=float).copy()
        x[:, _MM_STATIC] *= mm_per_px[:, None]
        return pd.DataFrame(x, columns=_STATIC_COLS)

    def table(mm_per_px: np.ndarray) -> pd.DataFrame:
        return pd.concat(
            [base, static_in_mm(smoothed, mm_per_px), smoothed[["yaw_deg", "pitch_deg"]],
             smoothed[[c for c in smoothed.columns if c.startswith("bs_")]]],
            axis=1,
        )

    # provisional scale from every face frame, then the rest frames' scale
    _, _, mpp = _scale(smoothed, face, options, source)
    seg0 = segment(table(mpp), spans=spans)
    calibration, _, mpp = _scale(smoothed, seg0.rest_mask & face, options, source)
    seg = segment(table(mpp), spans=spans, rest_mask=seg0.rest_mask)
    seg.warnings = list(dict.fromkeys(seg0.warnings + seg.warnings))
    baseline = seg.baseline

    static_mm = static_in_mm(smoothed, mpp)
    derived = _derived(static_mm, baseline, options.affected_side)
    phase = np.full(n, "", dtype=object)
    phase[seg.rest_mask] = "rest"
    for ev in seg.events:
        t = raw.time_s
        phase[(t >= ev.start_s) & (t <= ev.end_s)] = ev.expression
    parts = [
        base,
        pd.DataFrame({"phase": phase, "mm_per_px": mpp}),
        smoothed[["iris_right_px", "iris_left_px", "inner_canthal_px", "yaw_deg", "pitch_deg", "roll_deg"]],
        static_mm,
        derived,
        smoothed[[f"bs_{b}" for b in BLENDSHAPE_NAMES]],
    ]
    if window > 1:
        raw_static = static_in_mm(values, mpp)
        raw_derived = _derived(raw_static, baseline, options.affected_side)
        raw_block = pd.concat([raw_static, raw_derived, values[[c for c in values.columns if c not in _STATIC_COLS]]], axis=1)
        parts.append(raw_block.add_suffix("_raw"))
    frames = pd.concat(parts, axis=1)
    frames.attrs["units"] = {**{f"{n}_{s}": UNITS[n] for n in STATIC_MEASURES + MOVEMENT_MEASURES for s in ("right", "left")}}

    warnings = list(seg.warnings)
    low_res = low_resolution_warning(float(np.mean(list(calibration.iris_diameter_px.values()))), "video")
    if low_res:
        warnings.append(low_res)
    if "iris_mismatch" in calibration.flags:
        warnings.append("the two irises differ by over 10% in width at rest: scale is uncertain")
    missing = int((~face).sum())
    if missing:
        warnings.append(f"{missing} of {n} analysed frames had no face")
    yaw = np.abs(frames["yaw_deg"].to_numpy(dtype=float))
    turned = int(np.sum(yaw > _YAW_LIMIT_DEG))
    if turned:
        warnings.append(f"{turned} frames with head yaw beyond {_YAW_LIMIT_DEG:.0f} deg: frontal measures unreliable there")
    return FrameSeries(source, info, frames, raw.points, calibration, seg, raw.decoded, warnings)


# --------------------------------------------------------------------------- second pass
def _frames_at(info: VideoInfo, times: Sequence[float]) -> Iterator[tuple[float, np.ndarray]]:
    """Yield (time, rgb) of the frames at the given (sorted) times, seeking only for long gaps."""
    source = info.source
    tol = 0.5 / info.fps
    with _open(source) as container:
        stream = container.streams.video[0]
        # one decoding thread: each seek decodes a few dozen frames to its target, and frame threads
        # add latency to every one of them (154 peaks of a 10-minute clip: 5.0 s with, 2.7 s without);
        # the default slice threads cost half again as much CPU per frame on single-slice streams
        # (1.5 against 1.0 ms at 720p), and the callers already run one decoder per core
        stream.codec_context.thread_count = 1
        it: Iterator[tuple[float, Any]] | None = None
        last_t = -math.inf
        cached: tuple[float, np.ndarray] | None = None
        for target in times:
            if cached is not None and abs(cached[0] - target) <= tol:
                yield target, cached[1]
                continue
            if it is None or target < last_t - tol or target - last_t > _SEEK_GAP_S:
                it = _decoded_from(container, stream, source, max(target - 0.05, 0.0))
                last_t = -math.inf
            found = None
            prev = None
            for t, frame in it:
                last_t = t
                if t >= target - tol:
                    found = frame if (abs(t - target) <= tol or prev is None) else prev[1]
                    found_t = t if found is frame else prev[0]
                    break
                prev = (t, frame)
            if found is None and prev is not None:
                found, found_t = prev[1], prev[0]
            if found is None:
                continue
            cached = (found_t, _to_rgb(found, info.rotation_deg))
            yield target, cached[1]


def _icd_px(points_px: np.ndarray) -> float:
    return float(np.hypot(*(points_px[_INNER_CANTHI[1], :2] - points_px[_INNER_CANTHI[0], :2])))


def _swap_sides(measures: list[Measure]) -> list[Measure]:
    swap = {"left": "right", "right": "left"}
    return [Measure(m.name, swap.get(m.side, m.side), m.value, m.unit) for m in measures]


def _pose_warnings(face: FaceLandmarks) -> list[str]:
    pose = face.head_pose_deg
    if abs(pose.get("yaw", 0.0)) > _YAW_LIMIT_DEG:
        return [f"head yaw {pose['yaw']:.0f} deg exceeds {_YAW_LIMIT_DEG:.0f} deg: frontal measures unreliable"]
    return []


@dataclass
class VideoEvent:
    """One expression event of a video and its peak measures.

    Attributes
    ----------
    expression : str
        Expression key (``smile_open``, ``eye_closure``, ``lower_teeth``, ...).
    start_s, end_s, peak_s : float
    measures : list of Measure
        Photo-contract rows at the peak: static, movement against the rest
        frame, ``_asymmetry`` and ``_ratio`` rows.
    refined : list of str
        Point groups tracked from the rest frame (empty: model landmarks only).
    origin : str
        ``auto`` (detected) or ``csv`` (given).
    photo : PhotoResult or None
        The peak frame measured as a photo against the rest frame (for drawing).
    warnings : list of str
        What to know about the peak measures (e.g. mouth corners not tracked from the rest frame).
    """

    expression: str
    start_s: float
    end_s: float
    peak_s: float
    measures: list[Measure]
    refined: list[str] = field(default_factory=list)
    origin: str = "auto"
    photo: Any = None
    warnings: list[str] = field(default_factory=list)

    def value(self, name: str, side: str) -> float:
        return value_of(self.measures, name, side)

    def to_dict(self) -> dict[str, Any]:
        return {
            "expression": self.expression,
            "start_s": round(self.start_s, 3),
            "end_s": round(self.end_s, 3),
            "peak_s": round(self.peak_s, 3),
            "origin": self.origin,
            "refined_points": list(self.refined),
            "warnings": list(self.warnings),
            "measures": [m.to_dict() for m in self.measures],
        }


@dataclass
class VideoResult:
    """The summary of one clinic video (the JSON contract of ``symmetry measure VIDEO``).

    Attributes
    ----------
    series : FrameSeries
        The per-frame series (``series.frames`` is the DataFrame).
    rest : list of Measure
        Baseline static measures (median over the rest frames) and their asymmetry.
    rest_s : float
        Time of the rest frame the event peaks were measured against.
    events : list of VideoEvent
    indicators : list of Measure
        Synkinesis and oral-competence indicators (see :func:`symmetry.events.indicators`).
    warnings : list of str
    """

    series: FrameSeries
    rest: list[Measure]
    rest_s: float
    events: list[VideoEvent]
    indicators: list[Measure]
    affected_side: str | None = None
    mirrored: bool = False
    warnings: list[str] = field(default_factory=list)

    @property
    def source(self) -> str:
        return self.series.source

    @property
    def info(self) -> VideoInfo:
        return self.series.info

    @property
    def duration_s(self) -> float:
        d = self.info.duration_s
        if math.isfinite(d):
            return d
        t = self.series.frames["time_s"]
        return float(t.iloc[-1] + 1.0 / self.info.fps) if len(t) else 0.0

    @property
    def fps(self) -> float:
        return self.info.fps

    @property
    def mm_per_px(self) -> float:
        return self.series.calibration.mm_per_px

    @property
    def rest_periods(self) -> list[tuple[float, float]]:
        return self.series.segmentation.rest_periods

    def indicator(self, name: str, side: str) -> float:
        """The value of one indicator (NaN when absent)."""
        for m in self.indicators:
            if m.name == name and m.side == side:
                return m.value
        return float("nan")

    def to_dict(self) -> dict[str, Any]:
        """The JSON contract: ``source``, ``duration_s``, ``fps``, ``mm_per_px``, ``rest``,
        ``events`` and ``indicators``, plus frame counts, rest periods and warnings."""
        cal = self.series.calibration
        return {
            "source": self.source,
            "duration_s": round(self.duration_s, 3),
            "fps": round(self.fps, 3),
            "mm_per_px": cal.mm_per_px,
            "mm_per_px_uncertainty": cal.mm_per_px_uncertainty,
            "scale_source": cal.source.value,
            "width": self.info.width,
            "height": self.info.height,
            "rotation_deg": self.info.rotation_deg,
            "n_frames": self.series.n_frames,
            "frames_without_face": self.series.frames_without_face,
            "mirrored": self.mirrored,
            "affected_side": self.affected_side,
            "rest_periods": [[round(a, 3), round(b, 3)] for a, b in self.rest_periods],
            "rest_s": round(self.rest_s, 3),
            "rest": [m.to_dict() for m in self.rest],
            "events": [e.to_dict() for e in self.events],
            "indicators": [m.to_dict() for m in self.indicators],
            "warnings": list(self.warnings),
        }

    def to_frame(self) -> pd.DataFrame:
        """Tidy rows: ``source, section, expression, start_s, end_s, peak_s, name, side, value, unit``."""
        cols = ["source", "section", "expression", "start_s", "end_s", "peak_s", "name", "side", "value", "unit"]
        rows: list[dict[str, Any]] = []
        nan = float("nan")
        for m in self.rest:
            rows.append({"section": "rest", "expression": "rest", "start_s": nan, "end_s": nan,
                         "peak_s": self.rest_s, **m.to_dict()})
        for e in self.events:
            for m in e.measures:
                rows.append({"section": "event", "expression": e.expression, "start_s": e.start_s,
                             "end_s": e.end_s, "peak_s": e.peak_s, **m.to_dict()})
        for m in self.indicators:
            rows.append({"section": "indicator", "expression": "", "start_s": nan, "end_s": nan,
                         "peak_s": nan, **m.to_dict()})
        frame = pd.DataFrame(rows, columns=cols[1:])
        frame.insert(0, "source", self.source)
        return frame


# --------------------------------------------------------------------------- analyser
class VideoAnalyser:
    """Analyses clinic videos (options, runner, result, as in MediaPipe Tasks).

    Use as a context manager::

        with VideoAnalyser(VideoOptions(affected_side="left")) as va:
            result = va.measure("visit.mp4")
        result.to_dict()

    The landmarkers are created per call (VIDEO-mode landmarkers hold tracking
    state), so one analyser can measure several videos in turn; it is not
    meant to be shared between threads.
    """

    def __init__(self, options: VideoOptions | None = None) -> None:
        self.options = options or VideoOptions()
        self._image_lm: Landmarker | None = None
        self._load_lock = threading.Lock()

    def __enter__(self) -> "VideoAnalyser":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self._image_lm is not None:
            self._image_lm.close()
            self._image_lm = None

    def _image_landmarker(self) -> Landmarker:
        with self._load_lock:
            if self._image_lm is None:
                self._image_lm = Landmarker(LandmarkerOptions(model_path=self.options.model_path))
            return self._image_lm

    def _finder(self) -> Callable[[np.ndarray], FaceLandmarks | None]:
        """The largest face of an RGB frame, or ``None``; safe to call from several threads.

        With the tracker (``options.uses_tracker()``): :meth:`FaceTracker.find
        <symmetry.tracking.FaceTracker.find>`, one tracker per thread (the same
        detector and models as the Face Landmarker, without loading it);
        otherwise the still-image Face Landmarker (which serialises its calls).
        """
        if not self.options.uses_tracker():
            lm = self._image_landmarker()
            return lambda rgb: _detect(lm, rgb)
        local = threading.local()

        def find(rgb: np.ndarray) -> FaceLandmarks | None:
            tracker = getattr(local, "tracker", None)
            if tracker is None:
                tracker = local.tracker = FaceTracker(TrackerOptions(self.options.model_path))
            return tracker.find(rgb)

        return find

    def _preload(self) -> None:
        """Load the still-image landmarker (in a background thread); a failure shows when it is used."""
        try:
            self._image_landmarker()
        except Exception:
            pass

    def frames(
        self,
        path: str | os.PathLike[str],
        *,
        events: str | os.PathLike[str] | Sequence[EventSpan] | None = None,
        progress: Progress | bool | None = None,
    ) -> FrameSeries:
        """The per-frame series of a video (one streaming pass), with rest and events found.

        Parameters
        ----------
        path : path
        events : path or sequence of EventSpan, optional
            A ``start_s,end_s,expression`` CSV (or its rows) overriding the
            automatic events and, with ``rest`` rows, the rest periods.
        progress : callable, bool or None
            ``callable(n_frames_done_increment)``; ``True`` shows a progress bar
            on stderr when it is a terminal.

        Raises
        ------
        VideoReadError
            Missing, unreadable, zero-frame or corrupt video.
        NoFaceError
            No frame has a face.
        FaceTooSmallError
            The iris is under 4 px at rest.
        InputError
            A bad events file.
        """
        spans = _spans(events)
        info = probe_video(path)
        with _progress(progress, info, total=info.n_frames // self.options.frame_stride) as tick:
            loading = None
            if not self.options.uses_tracker():
                # the still-image landmarker (several faces, the summary's rest and peak frames) loads meanwhile
                loading = threading.Thread(target=self._preload, name="symmetry-load", daemon=True)
                loading.start()
            raw = _landmark_pass(info, self.options, tick)
            if loading is not None:
                loading.join()
        series = _build_series(raw, info, self.options, spans)
        short = _ends_early(info, raw.time_s, self.options.frame_stride)
        if short:
            series.warnings.insert(0, short)
        if raw.faces is not None:
            series.warnings.extend(_several_faces_warning(sum(n > 1 for n, _ in raw.faces),
                                                          sum(n > 1 and not largest for n, largest in raw.faces),
                                                          len(raw.faces)))
        else:
            series.warnings.extend(_several_faces(series, self._finder()))
        return series

    def measure(
        self,
        path: str | os.PathLike[str],
        *,
        events: str | os.PathLike[str] | Sequence[EventSpan] | None = None,
        keyframes_dir: str | os.PathLike[str] | None = None,
        progress: Progress | bool | None = None,
    ) -> VideoResult:
        """Analyse a clinic video: series, rest baseline, events with peak measures, indicators.

        Parameters
        ----------
        keyframes_dir : path, optional
            Write the annotated rest frame and each event's peak frame there (PNG).

        Other parameters and Raises are those of :meth:`frames`.
        """
        series = self.frames(path, events=events, progress=progress)
        return self._summarise(series, keyframes_dir)

    # -- events ---------------------------------------------------------
    def _summarise(self, series: FrameSeries, keyframes_dir: str | os.PathLike[str] | None) -> VideoResult:
        opts = self.options
        seg = series.segmentation
        frames = series.frames
        t = frames["time_s"].to_numpy()
        rest_t = float(t[seg.rest_row])
        warnings = list(series.warnings)
        kdir = Path(keyframes_dir) if keyframes_dir is not None else None
        if kdir is not None:
            kdir.mkdir(parents=True, exist_ok=True)
        stem = Path(series.source).stem
        find = self._finder()

        with contextlib.closing(_frames_at(series.info, [rest_t])) as grab:
            rest_rgb = next(grab, (rest_t, None))[1]
        rest_photo = None
        if rest_rgb is not None:
            rest_face = find(rest_rgb)
            if rest_face is not None:
                rest_photo = self._rest_photo(series, rest_rgb, rest_face, rest_t)
        if rest_photo is None:
            warnings.append("no face in the rest frame as a still image: event measures use the series, untracked")
        elif kdir is not None:
            _save_keyframe(kdir / f"{stem}_rest_{rest_t:.2f}s.png", rest_rgb, rest_photo)

        events: list[VideoEvent] = []
        peaks = sorted(range(len(seg.events)), key=lambda k: seg.events[k].peak_s)
        measured: dict[int, VideoEvent] = {}
        by_time: dict[float, list[int]] = {}
        for k in peaks:
            by_time.setdefault(seg.events[k].peak_s, []).append(k)
        def peak(target: float, rgb: np.ndarray) -> dict[int, VideoEvent]:
            """The events peaking at ``target``, measured on its frame (runs in a pool thread)."""
            face = find(rgb)
            if face is None:
                return {}
            out = {}
            for k in by_time.get(target, []):
                ev = seg.events[k]
                photo, untracked = self._peak_photo(series, rest_rgb, rest_photo, rgb, face, ev.expression, ev.peak_s)
                out[k] = VideoEvent(ev.expression, ev.start_s, ev.end_s, ev.peak_s, photo.measures,
                                    photo.refined, ev.origin, photo, [untracked] if untracked else [])
                if kdir is not None:
                    name = f"{stem}_{k + 1:02d}_{ev.expression}_{ev.peak_s:.2f}s.png"
                    _save_keyframe(kdir / name, rgb, photo)
            return out

        if rest_photo is not None and by_time:
            # Each thread decodes its share of the peak frames (a run of consecutive peaks: one seek
            # serves the peaks close together) and measures each as it comes; decoding and
            # measuring release the GIL, so the threads keep the cores busy. One frame per thread
            # is held at a time.
            targets = list(by_time)
            n_threads = max(1, min(opts.n_workers(), len(targets)))
            shares = [targets[len(targets) * k // n_threads : len(targets) * (k + 1) // n_threads] for k in range(n_threads)]
            stop = threading.Event()

            def measure_share(share: list[float]) -> dict[int, VideoEvent]:
                out: dict[int, VideoEvent] = {}
                with contextlib.closing(_frames_at(series.info, share)) as grabbed:
                    for target, rgb in grabbed:
                        if stop.is_set():
                            break
                        out.update(peak(target, rgb))
                return out

            with ThreadPoolExecutor(n_threads, thread_name_prefix="symmetry-peaks") as pool:
                futures = [pool.submit(measure_share, share) for share in shares if share]
                try:
                    for f in futures:
                        measured.update(f.result())
                finally:
                    stop.set()
        for k, ev in enumerate(seg.events):
            if k not in measured:
                measured[k] = VideoEvent(ev.expression, ev.start_s, ev.end_s, ev.peak_s,
                                         _series_measures(frames, ev.peak_row, opts.affected_side), [], ev.origin)
        events = [measured[k] for k in range(len(seg.events))]
        warnings += [f"{ev.expression} peak at {ev.peak_s:.2f} s: {w}" for ev in events for w in ev.warnings]

        rest = rest_measures_from_baseline(seg.baseline, opts.affected_side)
        inds = indicators(events, frames, seg,
                          rest_measures=rest_photo.measures if rest_photo is not None else (),
                          affected_side=opts.affected_side)
        if not events:
            warnings.append("no expression event found; give an events CSV (start_s,end_s,expression)")
        return VideoResult(series, rest, rest_t, events, inds, opts.affected_side, opts.mirrored, warnings)

    def _rest_photo(self, series: FrameSeries, rgb: np.ndarray, face: FaceLandmarks, rest_t: float) -> Any:
        from .photo import PhotoResult

        cal0 = series.calibration
        icd_ref = float(np.nanmedian(series.frames.loc[series.segmentation.rest_mask, "inner_canthal_px"]))
        mm = cal0.mm_per_px * icd_ref / _icd_px(face.points_px)
        cal = replace(cal0, mm_per_px=mm, mm_per_px_uncertainty=cal0.mm_per_px_uncertainty * mm / cal0.mm_per_px)
        frame = pupil_frame(face.points_px, mm)
        measures = static_measures(frame.to_mm(face.points_px))
        if self.options.mirrored:
            measures = _swap_sides(measures)
        measures += asymmetry_measures(measures, self.options.affected_side)
        return PhotoResult(
            source=f"{series.source}@{rest_t:.3f}s", expression="rest", calibration=cal, frame=frame, face=face,
            points_px=face.points_px.copy(), measures=measures, mirrored=self.options.mirrored,
            affected_side=self.options.affected_side, warnings=_pose_warnings(face),
        )

    def _peak_photo(self, series: FrameSeries, rest_rgb: np.ndarray, rest: Any, rgb: np.ndarray,
                    face: FaceLandmarks, expression: str, peak_t: float) -> tuple[Any, str | None]:
        """The peak frame measured against the rest frame, and the warning naming features not tracked."""
        from .photo import PhotoResult
        from .refine import track_points

        pts = face.points_px.copy()
        refined: list[str] = []
        untracked = None
        if self.options.refine:
            tracked = track_points(rest_rgb, rest.points_px, rgb, pts)
            pts = tracked.points_px
            refined = tracked.refined_groups()
            untracked = tracked.untracked_warning(self.options.mirrored, "rest frame")
        cal = session_calibration(rest.calibration, inter_pupil_px(rest.points_px), inter_pupil_px(pts))
        frame = pupil_frame(pts, cal.mm_per_px)
        mm = frame.to_mm(pts)
        measures = static_measures(mm) + movement_measures(rest.frame.to_mm(rest.points_px), mm)
        if self.options.mirrored:
            measures = _swap_sides(measures)
        measures += asymmetry_measures(measures, self.options.affected_side)
        return PhotoResult(
            source=f"{series.source}@{peak_t:.3f}s", expression=expression, calibration=cal, frame=frame,
            face=face, points_px=pts, measures=measures, mirrored=self.options.mirrored,
            affected_side=self.options.affected_side, refined=refined, warnings=_pose_warnings(face),
            rest_source=rest.source,
        ), untracked


#: Frames sampled (evenly over the frames with a face; with the tracker, evenly over the video during
#: the pass) to look for other faces in the picture.
_FACE_SAMPLES = 5


def _several_faces(series: FrameSeries, find: Callable[[np.ndarray], FaceLandmarks | None]) -> list[str]:
    """Warnings when other faces share the picture, from a few sampled frames.

    The streaming pass tracks one face. A few frames are decoded again and
    searched for every face (``find``, the largest first); the warning says how
    many showed several faces and whether the series followed the largest.
    """
    f = series.frames
    rows = np.flatnonzero(f["face_found"].to_numpy())
    if not len(rows):
        return []
    picks = sorted({int(rows[round(k)]) for k in np.linspace(0, len(rows) - 1, min(_FACE_SAMPLES, len(rows)))})
    times = [float(f["time_s"].iat[r]) for r in picks]
    by_time = dict(zip(times, picks))
    ir, il = POINT_IDS.index(int(LM.RIGHT_IRIS_CENTER)), POINT_IDS.index(int(LM.LEFT_IRIS_CENTER))
    several = other = 0
    with contextlib.closing(_frames_at(series.info, times)) as grabbed:
        for t, rgb in grabbed:
            face = find(rgb)
            if face is None or face.n_faces < 2:
                continue
            several += 1
            pts = series.points_px[by_time[t]]
            mid = (pts[ir] + pts[il]) / 2.0
            big = (face.points_px[LM.RIGHT_IRIS_CENTER, :2] + face.points_px[LM.LEFT_IRIS_CENTER, :2]) / 2.0
            if float(np.hypot(*(mid - big))) > 0.5 * max(inter_pupil_px(face.points_px), 1.0):
                other += 1
    return _several_faces_warning(several, other, len(times))


def _several_faces_warning(several: int, other: int, sampled: int) -> list[str]:
    """The warning of :func:`_several_faces`: ``several`` of the ``sampled`` frames showed several faces,
    and in ``other`` of those the series followed a face that is not the largest."""
    if not several:
        return []
    text = f"several faces in the picture ({several} of {sampled} sampled frames)"
    if other:
        return [f"{text}: in {other} of them the series follows a smaller face, not the largest; "
                "crop the video to the patient"]
    return [f"{text}: the largest face is measured"]


def _detect(lm: Landmarker, rgb: np.ndarray) -> FaceLandmarks | None:
    try:
        return lm.detect(rgb)
    except NoFaceError:
        return None


def _save_keyframe(path: Path, rgb: np.ndarray, photo: Any) -> None:
    from .annotate import save_annotated

    save_annotated(path, rgb, photo)


def _series_measures(frames: pd.DataFrame, row: int, affected: str | None) -> list[Measure]:
    """Photo-contract rows from one row of the series (model landmarks, untracked)."""
    out = []
    for name in STATIC_MEASURES + MOVEMENT_MEASURES:
        for side in ("right", "left"):
            out.append(Measure(name, side, float(frames[f"{name}_{side}"].iat[row]), UNITS[name]))
    return out + asymmetry_measures(out, affected)


def _spans(events: str | os.PathLike[str] | Sequence[EventSpan] | None) -> list[EventSpan] | None:
    if events is None:
        return None
    if isinstance(events, (str, os.PathLike)):
        return read_events_csv(events)
    spans = list(events)
    for s in spans:
        if s.expression not in EXPRESSIONS:
            raise ValueError(f"`events`: unknown expression {s.expression!r}; use one of {', '.join(EXPRESSIONS)}")
    return spans


class _progress:
    """A tqdm bar on stderr (only on a terminal) or a user callback, thread-safe."""

    def __init__(self, progress: Progress | bool | None, info: VideoInfo, total: int | None = None) -> None:
        self._bar = None
        self._callback: Progress | None = None
        self._lock = threading.Lock()
        if callable(progress):
            self._callback = progress
        elif progress:
            from tqdm import tqdm

            stream = sys.stderr
            if stream is not None and hasattr(stream, "isatty") and stream.isatty():
                self._bar = tqdm(total=(info.n_frames if total is None else total) or None, desc=Path(info.source).name, unit="frame",
                                 file=stream, leave=False, dynamic_ncols=True, mininterval=0.5)

    def __enter__(self) -> Progress | None:
        if self._bar is None and self._callback is None:
            return None

        def tick(n: int) -> None:
            with self._lock:
                if self._bar is not None:
                    self._bar.update(n)
                if self._callback is not None:
                    self._callback(n)

        return tick

    def __exit__(self, *exc: object) -> None:
        if self._bar is not None:
            self._bar.close()


def video_frames(
    path: str | os.PathLike[str],
    *,
    options: VideoOptions | None = None,
    events: str | os.PathLike[str] | Sequence[EventSpan] | None = None,
    progress: Progress | bool | None = None,
) -> FrameSeries:
    """The per-frame series of a video; see :meth:`VideoAnalyser.frames`."""
    with VideoAnalyser(options) as va:
        return va.frames(path, events=events, progress=progress)


def measure_video(
    path: str | os.PathLike[str],
    *,
    options: VideoOptions | None = None,
    events: str | os.PathLike[str] | Sequence[EventSpan] | None = None,
    keyframes_dir: str | os.PathLike[str] | None = None,
    progress: Progress | bool | None = None,
) -> VideoResult:
    """Analyse one clinic video; see :meth:`VideoAnalyser.measure`.

    Examples
    --------
    >>> result = measure_video("visit.mp4", options=VideoOptions(affected_side="left"))  # doctest: +SKIP
    >>> [(e.expression, e.peak_s) for e in result.events]  # doctest: +SKIP
    """
    with VideoAnalyser(options) as va:
        return va.measure(path, events=events, keyframes_dir=keyframes_dir, progress=progress)


# --------------------------------------------------------------------------- annotated video
_SIDE_RGB = {Side.RIGHT: (255, 140, 0), Side.LEFT: (0, 200, 255)}
_EVENT_RGB = {"rest": (120, 120, 120)}
_PALETTE = [(230, 80, 80), (80, 180, 80), (200, 120, 220), (240, 200, 40), (60, 140, 240), (240, 120, 40)]


def _event_colour(expression: str) -> tuple[int, int, int]:
    if expression in _EVENT_RGB:
        return _EVENT_RGB[expression]
    return _PALETTE[EXPRESSIONS.index(expression) % len(_PALETTE)] if expression in EXPRESSIONS else (200, 200, 200)


def write_annotated_video(
    result: VideoResult | FrameSeries,
    out_path: str | os.PathLike[str],
    *,
    progress: Progress | bool | None = None,
) -> Path:
    """Write the video with the measured contours, per-side values and a timeline drawn on it.

    H.264 in MP4 (or by suffix: ``.mkv``, ``.mov``); audio is not copied.
    Frames between analysed frames (with a frame stride) show the nearest analysed one.

    Raises
    ------
    VideoReadError
        The source video cannot be read again.
    OSError
        The output cannot be written.
    """
    import av
    import cv2

    series = result.series if isinstance(result, VideoResult) else result
    info = series.info
    frames = series.frames
    t_rows = frames["time_s"].to_numpy()
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    mirrored = result.mirrored if isinstance(result, VideoResult) else False
    spans = [(a, b, "rest") for a, b in series.segmentation.rest_periods]
    spans += [(e.start_s, e.end_s, e.expression) for e in series.segmentation.events]
    duration = max(float(t_rows[-1]) if len(t_rows) else 0.0, 1e-6)
    idx = {pid: k for k, pid in enumerate(POINT_IDS)}
    w, h = info.width - info.width % 2, info.height - info.height % 2
    try:
        out = av.open(str(out_path), mode="w")
    except Exception as exc:
        raise OSError(f"{out_path}: cannot write video ({_reason(exc)})") from None
    with out, _open(info.source) as src, _progress(progress, info) as tick:
        rate = Fraction(info.fps).limit_denominator(1001)
        codec = "libx264" if "libx264" in av.codecs_available else "mpeg4"
        vs = out.add_stream(codec, rate=rate)
        vs.width, vs.height, vs.pix_fmt = w, h, "yuv420p"
        if codec == "libx264":
            vs.options = {"preset": "veryfast", "crf": "23"}
        stream = src.streams.video[0]
        stream.thread_type = "AUTO"
        n_out = 0
        for t, frame in _decoded(src, stream, info.source):
            rgb = np.ascontiguousarray(_to_rgb(frame, info.rotation_deg)[:h, :w])
            row = int(np.clip(np.searchsorted(t_rows, t), 0, len(t_rows) - 1)) if len(t_rows) else -1
            if row > 0 and abs(t_rows[row - 1] - t) < abs(t_rows[row] - t):
                row -= 1
            if row >= 0:
                _draw_overlay(cv2, rgb, series, row, idx, spans, duration, t, mirrored)
            vf = av.VideoFrame.from_ndarray(rgb, format="rgb24")
            vf.pts = n_out
            vf.time_base = Fraction(1) / rate
            for packet in vs.encode(vf):
                out.mux(packet)
            n_out += 1
            if tick is not None:
                tick(1)
        for packet in vs.encode():
            out.mux(packet)
    return out_path


def _draw_overlay(cv2: Any, img: np.ndarray, series: FrameSeries, row: int, idx: dict[int, int],
                  spans: list[tuple[float, float, str]], duration: float, t: float, mirrored: bool) -> None:
    h, w = img.shape[:2]
    th = max(1, int(round(w / 640)))
    fs = 0.45 * th
    f = series.frames
    pts = series.points_px[row]
    if bool(f["face_found"].iat[row]) and np.isfinite(pts).all():
        for side in (Side.RIGHT, Side.LEFT):
            c = CONTOURS[side]
            colour = _SIDE_RGB[side if not mirrored else side.other]
            for chain in (c.upper_lid, c.lower_lid, c.brow, c.outer_upper_lip, c.outer_lower_lip,
                          c.inner_upper_lip, c.inner_lower_lip):
                poly = np.round(pts[[idx[i] for i in chain]] * 16).astype(np.int32)
                cv2.polylines(img, [poly], False, colour, th, cv2.LINE_AA, shift=4)
            centre = pts[idx[c.iris_center]]
            radius = float(np.hypot(*(pts[idx[c.iris_lateral]] - pts[idx[c.iris_medial]]))) / 2
            cv2.circle(img, tuple(np.round(centre * 16).astype(int)), int(round(radius * 16)), colour, th, cv2.LINE_AA, shift=4)
            cv2.circle(img, tuple(np.round(pts[idx[c.commissure]] * 16).astype(int)), (th + 2) * 16, (255, 40, 40), -1,
                       cv2.LINE_AA, shift=4)
    phase = str(f["phase"].iat[row]) or "-"
    lines = [f"t {t:6.2f} s   {phase}"]
    if bool(f["face_found"].iat[row]):
        def pair(col: str) -> str:
            return f"R {f[col + '_right'].iat[row]:5.1f}  L {f[col + '_left'].iat[row]:5.1f}"
        lines += [f"fissure    {pair('palpebral_fissure_height')} mm",
                  f"corner mvt {pair('commissure_movement')} mm",
                  f"brow mvt   {pair('brow_movement')} mm"]
    else:
        lines.append("no face")
    y = int(22 * th)
    for line in lines:
        (tw, tht), base = cv2.getTextSize(line, cv2.FONT_HERSHEY_SIMPLEX, fs, th)
        cv2.rectangle(img, (6, y - tht - 4), (10 + tw, y + base), (20, 20, 20), -1)
        cv2.putText(img, line, (8, y), cv2.FONT_HERSHEY_SIMPLEX, fs, (255, 255, 255), th, cv2.LINE_AA)
        y += int(20 * th)
    # timeline: rest and events as blocks, the current time as a cursor
    bar_h = max(8, h // 60)
    y0 = h - bar_h - 4
    cv2.rectangle(img, (0, y0), (w - 1, h - 1), (30, 30, 30), -1)
    for a, b, name in spans:
        x0, x1 = int(a / duration * (w - 1)), max(int(b / duration * (w - 1)), int(a / duration * (w - 1)) + 1)
        cv2.rectangle(img, (x0, y0 + 2), (x1, h - 3), _event_colour(name), -1)
    xc = int(min(t / duration, 1.0) * (w - 1))
    cv2.line(img, (xc, y0 - 4), (xc, h - 1), (255, 255, 255), max(1, th))

