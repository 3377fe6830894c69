"""The landmark model wrapper: bundled model, modes, conversion, mirror map, head pose."""

from __future__ import annotations

import hashlib

import cv2
import numpy as np
import pytest

from symmetry._mirror import MIRROR
from symmetry.errors import ModelError
from symmetry.landmarks import (
    CONTOURS,
    MODEL_SHA256,
    Landmarker,
    LandmarkerOptions,
    RunningMode,
    Side,
    bundled_model_path,
    head_pose_from_matrix,
)


def test_bundled_model_hash():
    assert hashlib.sha256(bundled_model_path().read_bytes()).hexdigest() == MODEL_SHA256


def test_missing_and_corrupt_model_files_raise_model_error(tmp_path):
    with pytest.raises(ModelError, match="model file not found"):
        Landmarker(LandmarkerOptions(model_path=tmp_path / "none.task"))
    bad = tmp_path / "bad.task"
    bad.write_bytes(b"not a model")
    with pytest.raises(ModelError, match="cannot load landmark model"):
        Landmarker(LandmarkerOptions(model_path=bad))


def test_user_model_file_is_accepted(tmp_path):
    copy = tmp_path / "copy.task"
    copy.write_bytes(bundled_model_path().read_bytes())
    with Landmarker(LandmarkerOptions(model_path=copy)):
        pass


def test_detect_returns_478_points_blendshapes_and_pose(portraits, landmarker):
    face = landmarker.detect(portraits["obama"])
    assert face.points_px.shape == (478, 3)
    assert len(face.blendshapes) == 52 and "mouthSmileLeft" in face.blendshapes
    assert set(face.head_pose_deg) == {"yaw", "pitch", "roll"}
    h, w = portraits["obama"].shape[:2]
    assert face.image_size == (w, h)
    # anatomical labels: the patient's right iris is on the image's left
    assert face.points_px[468, 0] < face.points_px[473, 0]
    # obama is smiling broadly in this portrait
    assert face.blendshapes["mouthSmileLeft"] > 0.5 and face.blendshapes["mouthSmileRight"] > 0.5


def test_mode_mismatch_is_a_clear_error(portraits):
    with Landmarker(LandmarkerOptions(running_mode=RunningMode.VIDEO)) as video:
        with pytest.raises(ValueError, match="not in IMAGE mode"):
            video.detect(portraits["obama"])
        assert video.detect_for_video(portraits["obama"], 0) is not None
    with Landmarker() as image:
        with pytest.raises(ValueError, match="not in VIDEO mode"):
            image.detect_for_video(portraits["obama"], 0)


def test_mirror_map_is_an_involution_matching_the_named_pairs():
    assert MIRROR.shape == (478,)
    assert np.array_equal(MIRROR[MIRROR], np.arange(478))
    r, l = CONTOURS[Side.RIGHT], CONTOURS[Side.LEFT]
    for field in r.__dataclass_fields__:
        a, b = np.atleast_1d(getattr(r, field)), np.atleast_1d(getattr(l, field))
        assert np.array_equal(MIRROR[a], b), field
    for midline in (0, 4, 10, 13, 14, 17, 152, 168):
        assert MIRROR[midline] == midline


def test_mirror_map_matches_flipped_detection(portraits, landmarker):
    img = portraits["obama"]
    a = landmarker.detect(img).points_px
    b = landmarker.detect(np.ascontiguousarray(img[:, ::-1])).points_px.copy()
    b[:, 0] = img.shape[1] - b[:, 0]
    ipd = np.hypot(*(a[473, :2] - a[468, :2]))
    err = np.hypot(*(b[MIRROR, :2] - a[:, :2]).T) / ipd
    assert np.median(err) < 0.03


def test_head_pose_roll_follows_image_rotation(portraits, landmarker):
    img = portraits["obama"]
    h, w = img.shape[:2]
    base = landmarker.detect(img).head_pose_deg["roll"]
    for angle in (-15.0, 15.0):
        m = cv2.getRotationMatrix2D((w / 2, h / 2), angle, 1.0)  # positive: counter-clockwise on screen
        rot = cv2.warpAffine(img, m, (w, h), borderMode=cv2.BORDER_REFLECT)
        roll = landmarker.detect(rot).head_pose_deg["roll"]
        assert abs(roll - base) == pytest.approx(15.0, abs=3.0)


def test_head_pose_from_matrix_by_hand():
    yaw, pitch, roll = np.radians([20.0, -10.0, 5.0])
    ry = np.array([[np.cos(yaw), 0, np.sin(yaw)], [0, 1, 0], [-np.sin(yaw), 0, np.cos(yaw)]])
    rx = np.array([[1, 0, 0], [0, np.cos(pitch), -np.sin(pitch)], [0, np.sin(pitch), np.cos(pitch)]])
    rz = np.array([[np.cos(roll), -np.sin(roll), 0], [np.sin(roll), np.cos(roll), 0], [0, 0, 1]])
    m = np.eye(4)
    m[:3, :3] = 2.5 * (ry @ rx @ rz)  # with a scale, as MediaPipe's matrix may carry
    pose = head_pose_from_matrix(m)
    assert pose == pytest.approx({"yaw": 20.0, "pitch": -10.0, "roll": 5.0}, abs=1e-6)


@pytest.mark.parametrize("face", ["astronaut", "obama"])
@pytest.mark.parametrize("face_px", [None, 256.0])  # at the photo's size, and on a shrunk copy (obama)
def test_averaged_detection_is_exactly_mirror_consistent(face, face_px, portraits, landmarker):
    img = portraits[face]
    kw = {"face_px": face_px, "passes": ((-5.0, 0.9), (0.0, 1.0), (5.0, 0.9))}
    a = landmarker.detect_averaged(img, **kw).points_px
    b = landmarker.detect_averaged(np.ascontiguousarray(img[:, ::-1]), **kw).points_px.copy()
    b[:, 0] = img.shape[1] - b[:, 0]
    assert np.abs(b[MIRROR, :2] - a[:, :2]).max() < 0.05  # px


@pytest.mark.parametrize("mode", [RunningMode.IMAGE, RunningMode.VIDEO])
def test_fast_result_reader_matches_mediapipe_public_api(portraits, monkeypatch, mode):
    """The numpy reader of MediaPipe's C result gives exactly what the public API gives."""
    import symmetry.landmarks as landmarks

    big = portraits["obama"]
    small = cv2.resize(big, None, fx=0.8, fy=0.8, interpolation=cv2.INTER_AREA)
    panel = np.full_like(big, 128)
    panel[: small.shape[0], : small.shape[1]] = small
    two = np.ascontiguousarray(np.concatenate([big, panel], axis=1))  # a face and a smaller one
    results = {}
    for fast in (True, False):
        monkeypatch.setattr(landmarks, "_FAST_PATH", fast)
        with Landmarker(LandmarkerOptions(running_mode=mode, num_faces=2)) as lm:
            face = lm.detect(two) if mode is RunningMode.IMAGE else lm.detect_for_video(two, 0)
        results[fast] = face
    fast, public = results[True], results[False]
    assert fast is not None and public is not None
    assert fast.n_faces == public.n_faces == 2
    np.testing.assert_array_equal(fast.points_px, public.points_px)
    assert fast.blendshapes == public.blendshapes and len(fast.blendshapes) == 52
    np.testing.assert_array_equal(fast.transform, public.transform)
    assert fast.head_pose_deg == public.head_pose_deg
    # the largest face is the one returned: its points lie in the left half
    assert fast.points_px[:, 0].max() < portraits["obama"].shape[1]
