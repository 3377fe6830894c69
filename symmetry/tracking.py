"""Faces in video frames: MediaPipe's own detector, landmark and blendshape models, run directly.

:class:`FaceTracker` runs the three models that the FaceLandmarker bundle holds
(``face_detector.tflite``: BlazeFace short range, face boxes from a 128 x 128
image; ``face_landmarks_detector.tflite``: 478 points from a 256 x 256 face
crop; ``face_blendshapes.tflite``: 52 scores from 146 of the points) through
LiteRT, Google's runtime for them, as MediaPipe's FaceLandmarker does: a face
is found with the detector (:meth:`FaceTracker.find`, :meth:`FaceTracker.detect`)
and from the next frame on followed on the face region the previous frame's
points give (:meth:`FaceTracker.track`, :meth:`FaceTracker.landmarks`). That
skips the FaceLandmarker graph's overhead (about a third of its time per frame
on the machines seen here), which is what the video pass spends most of its
time in. The video pass hands it the decoder's planes (:class:`YUV420Image`):
only the face crop is converted to RGB.

Conventions follow :mod:`symmetry.landmarks`: points in image pixels (MediaPipe's
edge-based coordinates, ``x_norm * width``), ``z`` on the scale of ``x``.
The face region is MediaPipe's: the landmarks' bounding box, turned so the
line between the eye corners (landmarks 33 and 263) is level, a square 1.5
times its longer side. Head pose comes from a weighted Procrustes fit of
MediaPipe's canonical face (the bundle's geometry metadata, the landmarks
and weights MediaPipe's geometry pipeline uses) to the points, orthographic
where MediaPipe's is perspective (on two clips the angles differed from
MediaPipe's by up to 2 degrees yaw, 3 degrees pitch, under 1 degree roll).
Points are not smoothed across frames (MediaPipe's VIDEO mode filters them).
"""

from __future__ import annotations

import functools
import io
import struct
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from .errors import ModelError
from .landmarks import FaceLandmarks, _resolve_model, head_pose_from_matrix

__all__ = ["BLENDSHAPE_MODEL_NAMES", "FaceTracker", "TrackerOptions", "YUV420Image", "tracker_available"]

#: The 146 landmarks the blendshape model reads, in its input order (MediaPipe's
#: ``face_blendshapes_graph.cc``, ``kLandmarksSubsetIdxs``).
_BLENDSHAPE_INPUT = (
    0, 1, 4, 5, 6, 7, 8, 10, 13, 14, 17, 21, 33, 37, 39, 40, 46, 52, 53, 54, 55, 58, 61, 63, 65, 66, 67, 70, 78, 80,
    81, 82, 84, 87, 88, 91, 93, 95, 103, 105, 107, 109, 127, 132, 133, 136, 144, 145, 146, 148, 149, 150, 152, 153,
    154, 155, 157, 158, 159, 160, 161, 162, 163, 168, 172, 173, 176, 178, 181, 185, 191, 195, 197, 234, 246, 249,
    251, 263, 267, 269, 270, 276, 282, 283, 284, 285, 288, 291, 293, 295, 296, 297, 300, 308, 310, 311, 312, 314,
    317, 318, 321, 323, 324, 332, 334, 336, 338, 356, 361, 362, 365, 373, 374, 375, 377, 378, 379, 380, 381, 382,
    384, 385, 386, 387, 388, 389, 390, 397, 398, 400, 402, 405, 409, 415, 454, 466, 468, 469, 470, 471, 472, 473,
    474, 475, 476, 477,
)

_BLENDSHAPE_INDEX = np.array(_BLENDSHAPE_INPUT)

#: The blendshape model's 52 outputs, in order (MediaPipe's ``kBlendshapeNames``).
BLENDSHAPE_MODEL_NAMES = (
    "_neutral", "browDownLeft", "browDownRight", "browInnerUp", "browOuterUpLeft", "browOuterUpRight", "cheekPuff",
    "cheekSquintLeft", "cheekSquintRight", "eyeBlinkLeft", "eyeBlinkRight", "eyeLookDownLeft", "eyeLookDownRight",
    "eyeLookInLeft", "eyeLookInRight", "eyeLookOutLeft", "eyeLookOutRight", "eyeLookUpLeft", "eyeLookUpRight",
    "eyeSquintLeft", "eyeSquintRight", "eyeWideLeft", "eyeWideRight", "jawForward", "jawLeft", "jawOpen", "jawRight",
    "mouthClose", "mouthDimpleLeft", "mouthDimpleRight", "mouthFrownLeft", "mouthFrownRight", "mouthFunnel",
    "mouthLeft", "mouthLowerDownLeft", "mouthLowerDownRight", "mouthPressLeft", "mouthPressRight", "mouthPucker",
    "mouthRight", "mouthRollLower", "mouthRollUpper", "mouthShrugLower", "mouthShrugUpper", "mouthSmileLeft",
    "mouthSmileRight", "mouthStretchLeft", "mouthStretchRight", "mouthUpperUpLeft", "mouthUpperUpRight",
    "noseSneerLeft", "noseSneerRight",
)

#: Input size of the landmark model (px) and the face region's size against the landmarks' box.
_CROP = 256
_ROI_SCALE = 1.5

#: The face detector (BlazeFace short range, MediaPipe's ``face_detection_short_range`` graph):
#: input size (px), SSD anchor strides, score threshold, suppression overlap (IoU).
_DETECT = 128
_STRIDES = (8, 16, 16, 16)
_MIN_DETECTION = 0.5
_SUPPRESSION_IOU = 0.3


def _anchors() -> np.ndarray:
    """Anchor centres (896, 2) in input units (0-1): MediaPipe's SsdAnchorsCalculator with fixed-size anchors.

    Consecutive layers of equal stride share one grid; each layer adds two anchors per cell
    (aspect ratio 1 and the interpolated scale), all of size 1.
    """
    if _ANCHORS:
        return _ANCHORS[0]
    out: list[np.ndarray] = []
    k = 0
    while k < len(_STRIDES):
        stride, n = _STRIDES[k], 0
        while k < len(_STRIDES) and _STRIDES[k] == stride:
            n += 2
            k += 1
        side = int(np.ceil(_DETECT / stride))
        y, x = np.mgrid[0:side, 0:side]
        centres = np.stack([(x.ravel() + 0.5) / side, (y.ravel() + 0.5) / side], axis=1)
        out.append(np.repeat(centres, n, axis=0))
    _ANCHORS.append(np.concatenate(out))
    return _ANCHORS[0]


_ANCHORS: list[np.ndarray] = []


def _decode_boxes(raw: np.ndarray, anchors: np.ndarray) -> np.ndarray:
    """Detector regressions (n, 16) -> (n, 16): box centre x, y, width, height, then 6 keypoints (x, y),
    in input units (0-1). MediaPipe's TensorsToDetectionsCalculator with x/y/w/h scale 128."""
    out = raw / _DETECT
    out[:, 0:2] += anchors
    out[:, 4:16] += np.tile(anchors, 6)
    return out


def _suppress(boxes: np.ndarray, scores: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
    """Weighted non-maximum suppression (MediaPipe's WEIGHTED mode): ((cx, cy, w, h), keypoints (6, 2))
    per face, each the score-weighted mean of the detections overlapping it."""
    keep = scores >= _MIN_DETECTION
    boxes, scores = boxes[keep], scores[keep]
    order = np.argsort(-scores)
    boxes, scores = boxes[order], scores[order]
    lo, hi = boxes[:, 0:2] - boxes[:, 2:4] / 2, boxes[:, 0:2] + boxes[:, 2:4] / 2
    area = np.prod(boxes[:, 2:4], axis=1)
    left = np.ones(len(boxes), dtype=bool)
    faces = []
    for i in range(len(boxes)):
        if not left[i]:
            continue
        inter = np.prod(np.clip(np.minimum(hi[i], hi) - np.maximum(lo[i], lo), 0.0, None), axis=1)
        group = left & (inter / np.maximum(area[i] + area - inter, 1e-12) > _SUPPRESSION_IOU)
        group[i] = True
        w = scores[group] / scores[group].sum()
        mean = w @ boxes[group]
        faces.append((mean[:4], mean[4:16].reshape(6, 2)))
        left &= ~group
    return faces


def tracker_available() -> bool:
    """Whether LiteRT (``ai-edge-litert``), which :class:`FaceTracker` runs the models on, is installed."""
    try:
        import ai_edge_litert.interpreter  # noqa: F401
    except ImportError:
        return False
    return True


@dataclass(frozen=True)
class TrackerOptions:
    """Options of :class:`FaceTracker`.

    Attributes
    ----------
    model_path : path or None
        A ``face_landmarker.task`` bundle (default: the bundled, verified one).
    min_presence : float
        Below this face-presence score (0-1) of the landmark model the face is
        lost and :meth:`FaceTracker.track` returns ``None`` (MediaPipe's
        default tracking confidence).
    """

    model_path: str | Path | None = None
    min_presence: float = 0.5


#: Limited-range black (Y, Cb, Cr): what the crop shows outside the image, as RGB (0, 0, 0) would.
_BLACK_YUV = (16.0, 128.0, 128.0)


@functools.lru_cache(maxsize=16)
def _upright(w: int, h: int, rotation_deg: int) -> np.ndarray:
    """Upright image px -> stored px (2 x 3) for a stored (w, h) image shown turned by ``rotation_deg``."""
    m = {
        0: [[1, 0, 0], [0, 1, 0]],
        90: [[0, -1, w - 1], [1, 0, 0]],
        180: [[-1, 0, w - 1], [0, -1, h - 1]],
        270: [[0, 1, 0], [-1, 0, h - 1]],
    }[rotation_deg]
    out = np.asarray(m, dtype=np.float64)
    out.flags.writeable = False
    return out


@dataclass(frozen=True)
class YUV420Image:
    """A decoded video frame as its 8-bit 4:2:0 planes, read where it lies (no whole-frame conversion).

    The video pass gives :meth:`FaceTracker.track` this instead of an RGB frame:
    the tracker samples only its 256 x 256 face crop from the planes and converts
    that to RGB as ``cv2.COLOR_YUV2RGB_I420`` converts a whole frame (BT.601,
    limited range; each chroma sample covers a 2 x 2 block of luma pixels), which
    saves the decoder's output a conversion (and a copy) of every pixel.

    Attributes
    ----------
    y, u, v : ndarray of uint8
        Luma (H, W) and chroma (H/2, W/2) planes as stored (rows may be padded views).
    upright : ndarray of shape (2, 3)
        Affine map from the upright image's pixels (after the video's rotation
        metadata) to the stored luma pixels; pixel centres at integers, as OpenCV's.
    size : (width, height)
        Size of the upright image (px).
    """

    y: np.ndarray
    u: np.ndarray
    v: np.ndarray
    upright: np.ndarray
    size: tuple[int, int]

    @classmethod
    def from_planes(cls, y: np.ndarray, u: np.ndarray, v: np.ndarray, rotation_deg: int = 0) -> YUV420Image:
        """Planes as stored, and the clockwise rotation (0, 90, 180, 270 degrees) that makes them upright.

        ``rotation_deg`` follows :func:`symmetry.video._to_rgb`: 90 turns the stored
        image counter-clockwise, 270 clockwise.
        """
        h, w = y.shape[:2]
        size = (h, w) if rotation_deg % 180 else (w, h)
        return cls(y, u, v, _upright(w, h, rotation_deg % 360), size)

    def crop(self, m: np.ndarray, side: int) -> np.ndarray:
        """RGB (side, side, 3) uint8 sampled at ``m @ (u, v, 1)`` of the upright image (bilinear, even ``side``)."""
        import cv2

        to_raw = self.upright[:, :2] @ m
        to_raw[:, 2] += self.upright[:, 2]  # crop px -> stored luma px
        # a chroma crop pixel (p, q) covers luma crop pixels 2p..2p+1: centre 2p + 0.5; stored chroma
        # sample j covers luma 2j..2j+1, so the chroma plane coordinate of luma x is (x - 0.5) / 2
        to_chroma = np.empty((2, 3))
        to_chroma[:, :2] = to_raw[:, :2]
        to_chroma[:, 2] = 0.25 * (to_raw[:, 0] + to_raw[:, 1]) + 0.5 * to_raw[:, 2] - 0.25
        flags = cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP
        half = side // 2
        i420 = np.empty((side * 3 // 2, side), dtype=np.uint8)
        cv2.warpAffine(self.y, to_raw, (side, side), dst=i420[:side], flags=flags,
                       borderMode=cv2.BORDER_CONSTANT, borderValue=_BLACK_YUV[0])
        for k, plane in enumerate((self.u, self.v)):
            out = cv2.warpAffine(plane, to_chroma, (half, half), flags=flags, borderMode=cv2.BORDER_CONSTANT,
                                 borderValue=_BLACK_YUV[1 + k])
            start = side + k * side // 4
            i420[start : start + side // 4] = out.reshape(side // 4, side)
        return cv2.cvtColor(i420, cv2.COLOR_YUV2RGB_I420)


def _size(image: np.ndarray | YUV420Image) -> tuple[int, int]:
    """(width, height) of an upright image, px."""
    return image.size if isinstance(image, YUV420Image) else (int(image.shape[1]), int(image.shape[0]))


def _fields(buf: bytes) -> Iterator[tuple[int, int, Any]]:
    """(field number, wire type, value) of a protobuf message (the four wire types the metadata uses)."""
    i = 0
    while i < len(buf):
        key, i = _varint(buf, i)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, i = _varint(buf, i)
        elif wire == 5:
            value = struct.unpack_from("<f", buf, i)[0]
            i += 4
        elif wire == 1:
            value = struct.unpack_from("<d", buf, i)[0]
            i += 8
        elif wire == 2:
            n, i = _varint(buf, i)
            value = buf[i : i + n]
            i += n
        else:
            raise ValueError(f"unsupported protobuf wire type {wire}")
        yield number, wire, value


def _varint(buf: bytes, i: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        byte = buf[i]
        i += 1
        result |= (byte & 0x7F) << shift
        shift += 7
        if not byte & 0x80:
            return result, i


def _canonical_face(metadata: bytes) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """MediaPipe's geometry metadata -> landmark ids, weights (summing to 1), canonical positions (n, 3; cm).

    ``GeometryPipelineMetadata``: 1 canonical mesh (``Mesh3d``: 3 vertex buffer,
    5 floats per vertex: x, y, z, u, v), 2 Procrustes landmark basis
    (``WeightedLandmarkRef``: 1 landmark id, 2 weight).
    """
    basis: list[tuple[int, float]] = []
    vertices: list[float] = []
    for number, wire, value in _fields(metadata):
        if number == 1 and wire == 2:
            for n2, w2, v2 in _fields(value):
                if n2 == 3:
                    vertices.extend(struct.unpack(f"<{len(v2) // 4}f", v2) if w2 == 2 else [v2])
        elif number == 2 and wire == 2:
            ref = {n2: v2 for n2, _, v2 in _fields(value)}
            basis.append((int(ref.get(1, 0)), float(ref.get(2, 0.0))))
    mesh = np.asarray(vertices, dtype=np.float64).reshape(-1, 5)[:, :3]
    ids = np.array([b[0] for b in basis], dtype=int)
    weights = np.array([b[1] for b in basis], dtype=np.float64)
    if not len(ids) or ids.max() >= len(mesh) or not weights.sum() > 0:
        raise ValueError("no canonical face in the geometry metadata")
    return ids, weights / weights.sum(), mesh[ids]


def _bundle_members(path: Path) -> dict[str, bytes]:
    """The files of a FaceLandmarker ``.task`` bundle (a zip; older bundles nest the landmark part)."""
    out: dict[str, bytes] = {}
    with zipfile.ZipFile(path) as z:
        for name in z.namelist():
            data = z.read(name)
            if name.endswith(".task"):
                with zipfile.ZipFile(io.BytesIO(data)) as inner:
                    out.update({n: inner.read(n) for n in inner.namelist()})
            else:
                out[name] = data
    return out


class FaceTracker:
    """Landmarks, blendshapes and head pose of a face from its previous frame's points.

    One instance is not thread-safe; create one per thread.

    Raises
    ------
    ModelError
        If LiteRT is not installed or the bundle lacks the models.
    """

    def __init__(self, options: TrackerOptions | None = None) -> None:
        self.options = options or TrackerOptions()
        try:
            from ai_edge_litert.interpreter import Interpreter
        except ImportError as exc:
            raise ModelError("face tracking needs LiteRT: pip install ai-edge-litert") from exc
        path = _resolve_model(self.options.model_path)
        try:
            members = _bundle_members(path)
            self._lmk = Interpreter(model_content=members["face_landmarks_detector.tflite"], num_threads=1)
            self._bs = Interpreter(model_content=members["face_blendshapes.tflite"], num_threads=1)
            self._det = Interpreter(model_content=members["face_detector.tflite"], num_threads=1)
            self._ids, self._weights, self._canonical = _canonical_face(members["geometry_pipeline_metadata_landmarks.binarypb"])
        except (KeyError, ValueError, zipfile.BadZipFile) as exc:
            raise ModelError(f"{path}: not a FaceLandmarker bundle with landmark, blendshape and geometry models ({exc})") from exc
        self._lmk.allocate_tensors()
        self._bs.allocate_tensors()
        self._det.allocate_tensors()
        self._det_in = self._det.get_input_details()[0]["index"]
        det_out = {int(np.prod(d["shape"])): d["index"] for d in self._det.get_output_details()}
        self._det_boxes, self._det_scores = det_out[len(_anchors()) * 16], det_out[len(_anchors())]
        self._lmk_in = self._lmk.get_input_details()[0]["index"]
        out = self._lmk.get_output_details()
        # outputs: the 478 x 3 points (1434 values) and the face-presence logit (1 value)
        self._lmk_points = next(d["index"] for d in out if int(np.prod(d["shape"])) == 478 * 3)
        flags = [d for d in out if int(np.prod(d["shape"])) == 1]
        self._lmk_presence = next((d["index"] for d in flags if d["name"] == "Identity_1"), flags[0]["index"])
        self._bs_in = self._bs.get_input_details()[0]["index"]
        self._bs_out = self._bs.get_output_details()[0]["index"]

    def __enter__(self) -> FaceTracker:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Release the interpreters."""
        self._lmk = self._bs = self._det = None  # type: ignore[assignment]

    def track(self, image: np.ndarray | YUV420Image, previous_px: np.ndarray) -> FaceLandmarks | None:
        """The face in ``image`` near ``previous_px`` ((478, 2+) px), or ``None`` if lost.

        ``image`` is RGB (H, W, 3) uint8, or a decoded frame's planes (:class:`YUV420Image`).
        :meth:`landmarks`, :meth:`blendshapes` and :meth:`head_pose` in one call.
        """
        points = self.landmarks(image, previous_px)
        if points is None:
            return None
        scores = self.blendshapes(points)
        transform = self.head_pose(points)
        return FaceLandmarks(
            points_px=points,
            image_size=_size(image),
            blendshapes={name: float(s) for name, s in zip(BLENDSHAPE_MODEL_NAMES, scores)},
            transform=transform,
            head_pose_deg=head_pose_from_matrix(transform),
            n_faces=1,
        )

    def landmarks(self, image: np.ndarray | YUV420Image, previous_px: np.ndarray) -> np.ndarray | None:
        """The 478 points (478, 3; px) of the face in ``image`` near ``previous_px``, or ``None`` if lost.

        The video pass calls this per frame and :meth:`blendshapes` and
        :meth:`head_pose` on batches of frames (each model's weights then stay
        in the cache while it runs).
        """
        prev = np.asarray(previous_px, dtype=np.float64)[:, :2]
        lo, hi = prev.min(axis=0), prev.max(axis=0)
        d = prev[263] - prev[33]
        # the region turns with the eye line
        return self._landmarks_in(image, (lo + hi) / 2.0, float(max(hi - lo)) * _ROI_SCALE, float(np.arctan2(d[1], d[0])))

    def find(self, image: np.ndarray | YUV420Image) -> FaceLandmarks | None:
        """The largest face in the whole ``image`` with its blendshapes and head pose, or ``None``
        (:meth:`detect`, :meth:`blendshapes` and :meth:`head_pose`; ``n_faces`` counts the faces found)."""
        faces = self.faces(image)
        points = self._landmarks_on(image, faces[0]) if faces else None
        if points is None:
            return None
        transform = self.head_pose(points)
        return FaceLandmarks(
            points_px=points,
            image_size=_size(image),
            blendshapes={name: float(s) for name, s in zip(BLENDSHAPE_MODEL_NAMES, self.blendshapes(points))},
            transform=transform,
            head_pose_deg=head_pose_from_matrix(transform),
            n_faces=len(faces),
        )

    def detect(self, image: np.ndarray | YUV420Image) -> np.ndarray | None:
        """The 478 points (478, 3; px) of the largest face in the whole ``image``, or ``None``.

        How MediaPipe's FaceLandmarker finds a face in IMAGE mode: the face box
        of :meth:`faces`, turned level with the eyes and enlarged 1.5 times
        (square), goes to the landmark model.
        """
        faces = self.faces(image)
        return self._landmarks_on(image, faces[0]) if faces else None

    def faces(self, image: np.ndarray | YUV420Image) -> list[tuple[np.ndarray, np.ndarray]]:
        """The faces in ``image``, largest first: (box (centre x, centre y, width, height), eyes (2, 2)), px.

        The bundle's face detector (``face_detector.tflite``, BlazeFace short
        range, as MediaPipe's FaceLandmarker runs it): the image letterboxed to
        128 x 128, the SSD anchors decoded, weighted non-maximum suppression.
        ``eyes`` holds the eye on the image's left first.
        """
        w, h = _size(image)
        scale = max(w, h) / _DETECT
        m = np.array([[scale, 0.0, w / 2.0 - scale * _DETECT / 2], [0.0, scale, h / 2.0 - scale * _DETECT / 2]])
        crop = self._crop(image, m, _DETECT)
        np.subtract(np.multiply(crop, np.float32(1.0 / 127.5), dtype=np.float32), np.float32(1.0),
                    out=self._det.tensor(self._det_in)()[0])
        self._det.invoke()
        raw = self._det.get_tensor(self._det_boxes).reshape(-1, 16).astype(np.float64)
        logits = np.clip(self._det.get_tensor(self._det_scores).reshape(-1).astype(np.float64), -100.0, 100.0)
        out = []
        for box, keypoints in _suppress(_decode_boxes(raw, _anchors()), 1.0 / (1.0 + np.exp(-logits))):
            # input units (0-1) -> image px
            centre = box[:2] * _DETECT @ m[:, :2].T + m[:, 2]
            eyes = keypoints[:2] * _DETECT @ m[:, :2].T + m[:, 2]
            out.append((np.concatenate([centre, box[2:4] * _DETECT * scale]), eyes))
        return sorted(out, key=lambda f: -f[0][2] * f[0][3])

    def _landmarks_on(self, image: np.ndarray | YUV420Image, face: tuple[np.ndarray, np.ndarray]) -> np.ndarray | None:
        box, eyes = face
        d = eyes[1] - eyes[0]
        return self._landmarks_in(image, box[:2], _ROI_SCALE * float(max(box[2:4])), float(np.arctan2(d[1], d[0])))

    @staticmethod
    def _crop(image: np.ndarray | YUV420Image, m: np.ndarray, side: int) -> np.ndarray:
        import cv2

        if isinstance(image, YUV420Image):
            return image.crop(m, side)
        return cv2.warpAffine(image, m, (side, side), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                              borderMode=cv2.BORDER_CONSTANT)

    def _landmarks_in(self, image: np.ndarray | YUV420Image, centre: np.ndarray, size: float,
                      angle: float) -> np.ndarray | None:
        """The landmark model on the square region of side ``size`` px about ``centre``, turned by ``angle`` (rad)."""
        if not (np.isfinite(size) and size > 1.0 and np.isfinite(centre).all() and np.isfinite(angle)):
            return None
        rot = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
        a = size / _CROP * rot
        # crop pixel (u, v) samples the image at centre + a @ ((u, v) - 128), and the model's points (crop
        # pixels) map back by the same affine: against MediaPipe's VIDEO mode on two clips this left no
        # offset (0.04 px; half-pixel shifts either way left 0.5-0.9 px)
        m = np.empty((2, 3))
        m[:, :2] = a
        m[:, 2] = centre - a @ np.array([_CROP / 2, _CROP / 2])
        crop = self._crop(image, m, _CROP)
        # written straight into the model's input (the view is dropped before it runs)
        np.multiply(crop, np.float32(1.0 / 255.0), out=self._lmk.tensor(self._lmk_in)()[0], casting="unsafe")
        self._lmk.invoke()
        logit = float(np.ravel(self._lmk.get_tensor(self._lmk_presence))[0])
        if 1.0 / (1.0 + np.exp(-logit)) < self.options.min_presence:
            return None
        raw = self._lmk.get_tensor(self._lmk_points).reshape(478, 3).astype(np.float64)
        points = np.empty((478, 3))
        points[:, :2] = (raw[:, :2] - _CROP / 2) @ a.T + centre
        points[:, 2] = raw[:, 2] * size / _CROP
        return points

    def blendshapes(self, points: np.ndarray) -> np.ndarray:
        """The 52 blendshape scores (0-1, :data:`BLENDSHAPE_MODEL_NAMES` order) of (478, 2+) points, or of
        a batch (n, 478, 2+) -> (n, 52)."""
        pts = np.asarray(points)
        batch = pts.reshape(-1, *pts.shape[-2:])[:, _BLENDSHAPE_INDEX, :2].astype(np.float32)
        out = np.empty((len(batch), len(BLENDSHAPE_MODEL_NAMES)))
        for k, x in enumerate(batch):
            self._bs.set_tensor(self._bs_in, x[None])
            self._bs.invoke()
            out[k] = np.ravel(self._bs.get_tensor(self._bs_out))
        return out[0] if pts.ndim == 2 else out

    def head_pose(self, points: np.ndarray) -> np.ndarray:
        """Canonical face -> camera rotation (4 x 4; x right, y up, z toward the viewer), a weighted
        Procrustes fit to (478, 3) points, or to a batch (n, 478, 3) -> (n, 4, 4)."""
        pts = np.asarray(points, dtype=np.float64)
        sel = pts.reshape(-1, *pts.shape[-2:])[:, self._ids, :3] * np.array([1.0, -1.0, -1.0])
        w = self._weights
        pc = sel - np.einsum("k,nkj->nj", w, sel)[:, None, :]
        mc = self._canonical - w @ self._canonical
        u, _, vt = np.linalg.svd(np.einsum("ki,nkj->nij", mc * w[:, None], pc))
        v_ut = np.swapaxes(vt, 1, 2) @ np.swapaxes(u, 1, 2)
        sign = np.where(np.linalg.det(v_ut) < 0, -1.0, 1.0)
        fix = np.tile(np.eye(3), (len(sel), 1, 1))
        fix[:, 2, 2] = sign
        out = np.tile(np.eye(4), (len(sel), 1, 1))
        out[:, :3, :3] = np.swapaxes(vt, 1, 2) @ fix @ np.swapaxes(u, 1, 2)
        return out[0] if pts.ndim == 2 else out
