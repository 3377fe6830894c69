"""Bad and awkward video inputs (issue 9), generated here with PyAV from the bundled portrait.

Each clip gets the right result or one line ``error: FILE: reason`` (exit 2, no traceback):
truncated MP4s (index missing; cut with the index in front), zero-frame and zero-byte files,
a variable-frame-rate clip (real timestamps, events in real seconds), phone videos with
rotation metadata (upright frames, the patient's sides kept), a face that leaves the picture,
several faces (the largest measured, a warning) and a turned head (flagged).
"""

from __future__ import annotations

import json
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest

av = pytest.importorskip("av")
cv2 = pytest.importorskip("cv2")

from corpus import turned  # noqa: E402
from symmetry import cli  # noqa: E402
from symmetry.calibration import calibrate_from_iris  # noqa: E402
from symmetry.frame import lateral_sign, pupil_frame  # noqa: E402
from symmetry.landmarks import CONTOURS, LM, Side  # noqa: E402
from symmetry.phantom import warp_landmarks  # noqa: E402
from symmetry.video import POINT_IDS, VideoOptions, VideoReadError, measure_video, probe_video, video_frames  # noqa: E402

#: The patient's left commissure is raised by this much (pupil-frame mm) in the asymmetric face.
LIFT_MM = 3.0
#: Commissure movement of the smile in the variable-frame-rate clip, (lateral, up) mm per side.
SMILE_MM = (3.0, 3.0)


def encode(path: Path, frames, *, fps: int = 30, pts_ms=None, rotation: int | None = None,  # type: ignore[no-untyped-def]
           faststart: bool = False, gop: int = 15) -> Path:
    """H.264 in MP4/MOV. ``pts_ms``: real presentation times (ms) for a variable frame rate."""
    out = av.open(str(path), "w", options={"movflags": "faststart"} if faststart else {})
    stream = out.add_stream("libx264", rate=fps)
    stream.options = {"crf": "20", "preset": "veryfast", "g": str(gop)}
    if pts_ms is not None:
        stream.codec_context.time_base = Fraction(1, 1000)
    for k, img in enumerate(frames):
        if k == 0:
            stream.height, stream.width = img.shape[:2]
            stream.pix_fmt = "yuv420p"
            if rotation is not None:
                stream.set_display_rotation(rotation)
        vf = av.VideoFrame.from_ndarray(np.ascontiguousarray(img), format="rgb24")
        if pts_ms is not None:
            vf.pts, vf.time_base = int(pts_ms[k]), Fraction(1, 1000)
        for packet in stream.encode(vf):
            out.mux(packet)
    for packet in stream.encode():
        out.mux(packet)
    out.close()
    return path


def run_cli(argv: list[str], capsys) -> tuple[int, str, str]:  # type: ignore[no-untyped-def]
    code = cli.main(argv)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def assert_one_error_line(err: str, name: str, reason: str) -> None:
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("error: ") and name in lines[0] and reason in lines[0], lines[0]
    assert "Traceback" not in err


@pytest.fixture(scope="module")
def face(portraits, landmarker):  # type: ignore[no-untyped-def]
    """The portrait at 640x360 (iris about 15 px), its landmarks and pupil frame."""
    rgb = cv2.resize(portraits["obama"][19:531, :910], (640, 360), interpolation=cv2.INTER_AREA)
    points = landmarker.detect(rgb).points_px
    return rgb, points, pupil_frame(points, calibrate_from_iris(points).mm_per_px)


def _commissures(face, moves: dict[str, tuple[float, float]]) -> np.ndarray:  # type: ignore[no-untyped-def]
    rgb, points, frame = face
    mm = {CONTOURS[Side(side)].commissure: (lateral_sign(Side(side)) * dx, dy) for side, (dx, dy) in moves.items()}
    return warp_landmarks(rgb, points, frame, mm, sigma_mm=8.0).image


@pytest.fixture(scope="module")
def noisy(face):  # type: ignore[no-untyped-def]
    """90 frames (3 s at 30 fps) of the face with a little sensor noise, so packets are of similar size."""
    rng = np.random.default_rng(9)
    base = face[0].astype(np.int16)
    return [np.clip(base + rng.integers(-5, 6, base.shape), 0, 255).astype(np.uint8) for _ in range(90)]


# ----------------------------------------------------------------------------- truncated files
def test_mp4_cut_before_its_index_is_one_line_naming_the_missing_moov(noisy, tmp_path, capsys) -> None:  # type: ignore[no-untyped-def]
    whole = encode(tmp_path / "whole.mp4", noisy).read_bytes()  # the index ('moov') is written last
    cut = tmp_path / "interrupted.mp4"
    cut.write_bytes(whole[: len(whole) * 6 // 10])
    for argv in (["measure", str(cut), "--no-progress"], ["frames", str(cut), "--out", str(tmp_path / "s.csv")]):
        code, out, err = run_cli(argv, capsys)
        assert code == 2 and out == ""
        assert_one_error_line(err, "interrupted.mp4", "'moov' atom) is missing")
    assert not (tmp_path / "s.csv").exists()


def test_mp4_cut_with_its_index_in_front_measures_the_frames_before_the_cut_and_says_so(noisy, tmp_path, capsys) -> None:  # type: ignore[no-untyped-def]
    whole = encode(tmp_path / "whole.mp4", noisy, faststart=True).read_bytes()
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(whole[: len(whole) * 6 // 10])
    info = probe_video(cut)
    assert info.truncated and info.n_frames == 90 and info.duration_s == pytest.approx(3.0)
    assert not probe_video(tmp_path / "whole.mp4").truncated
    out_csv = tmp_path / "series.csv"
    code, out, err = run_cli(["frames", str(cut), "--out", str(out_csv), "--no-progress"], capsys)
    assert code == 0, err
    import pandas as pd

    series = pd.read_csv(out_csv)
    # the decodable part only, with the real times of those frames
    assert 30 <= len(series) < 75 and series["face_found"].all()
    assert np.allclose(series["time_s"], np.arange(len(series)) / 30, atol=1e-3)
    warnings = [line for line in err.splitlines() if "truncated" in line]
    assert len(warnings) == 1 and warnings[0].startswith("warning: ") and "cut.mp4" in warnings[0]
    assert f"frames stop at {series['time_s'].iloc[-1]:.2f} s of the 3.00 s" in warnings[0]
    assert "Traceback" not in err
    # cut inside the first frame: nothing to measure, one line
    first = tmp_path / "stub.mp4"
    first.write_bytes(whole[:4000])
    code, _, err = run_cli(["measure", str(first), "--no-progress"], capsys)
    assert code == 2
    assert_one_error_line(err, "stub.mp4", "truncated video")


def _zero_frame_video(path: Path) -> Path:
    out = av.open(str(path), "w")
    stream = out.add_stream("libx264", rate=30)
    stream.width, stream.height, stream.pix_fmt = 64, 64, "yuv420p"
    out.start_encoding()  # a valid header, no frame
    out.close()
    return path


@pytest.mark.parametrize("command", ["measure", "frames"])
def test_zero_frame_and_zero_byte_videos_are_one_line_errors(command, tmp_path, capsys) -> None:  # type: ignore[no-untyped-def]
    zero = _zero_frame_video(tmp_path / "no_frames.mp4")
    empty = tmp_path / "empty.mov"
    empty.write_bytes(b"")
    extra = ["--out", str(tmp_path / "s.parquet")] if command == "frames" else ["--format", "json"]
    for path, reason in ((zero, "no video frames"), (empty, "file is empty (0 bytes)")):
        code, out, err = run_cli([command, str(path), *extra, "--no-progress"], capsys)
        assert code == 2 and json.loads(out or "[]") == []  # JSON output: an empty list, nothing measured
        assert_one_error_line(err, path.name, reason)


# ----------------------------------------------------------------------------- variable frame rate
def test_variable_frame_rate_uses_the_real_timestamps(face, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """2 s of rest at 10 fps, a 1.5 s smile at 30 fps, then rest at 15 fps: events in real seconds."""
    rest = face[0]
    smile = {k: _commissures(face, {"right": (SMILE_MM[0] * k, SMILE_MM[1] * k), "left": (SMILE_MM[0] * k, SMILE_MM[1] * k)})
             for k in (0.5, 1.0)}
    times, frames = [], []
    for t in np.arange(0.0, 2.0 - 1e-9, 1 / 10):
        times.append(t), frames.append(rest)
    for t in np.arange(2.0, 3.5 - 1e-9, 1 / 30):
        ramp = t < 2.1 or t >= 3.4
        times.append(t), frames.append(smile[0.5] if ramp else smile[1.0])
    for t in np.arange(3.5, 5.5 - 1e-9, 1 / 15):
        times.append(t), frames.append(rest)
    pts_ms = [round(1000 * t) for t in times]
    path = encode(tmp_path / "vfr.mp4", frames, pts_ms=pts_ms, fps=30)
    steps = np.diff(pts_ms)
    assert steps.min() <= 34 and steps.max() == 100 and 66 <= np.median(steps) <= 67  # really variable

    result = measure_video(path, options=VideoOptions(workers=1))
    f = result.series.frames
    # one row per frame, at the frame's own presentation time
    assert len(f) == len(pts_ms)
    assert f["timestamp_ms"].tolist() == pts_ms
    assert np.allclose(f["time_s"], np.asarray(pts_ms) / 1000, atol=1e-6)
    # the smile is found where it is in real time (a frame count at the mean rate would put it at ~1.1 s)
    smiles = [e for e in result.events if e.expression.startswith("smile")]
    assert len(smiles) == 1, [(e.expression, e.start_s, e.end_s) for e in result.events]
    s = smiles[0]
    assert s.start_s == pytest.approx(2.0, abs=0.15) and s.end_s == pytest.approx(3.47, abs=0.15)
    assert 2.1 <= s.peak_s <= 3.4
    assert all(b <= 2.0 or a >= 3.47 for a, b in result.rest_periods), result.rest_periods
    truth = float(np.hypot(*SMILE_MM))
    for side in ("right", "left"):
        assert s.value("commissure_movement", side) == pytest.approx(truth, rel=0.3), side
    assert result.duration_s == pytest.approx(5.5, abs=0.1)


# ----------------------------------------------------------------------------- rotated phone videos
@pytest.mark.parametrize("rotation", [90, 270])
def test_rotated_phone_video_is_measured_upright_with_the_sides_right(rotation, face, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """A face whose left commissure sits 3 mm higher, stored sideways with display rotation metadata."""
    upright = _commissures(face, {"left": (0.0, LIFT_MM)})
    stored = cv2.rotate(upright, cv2.ROTATE_90_CLOCKWISE if rotation == 90 else cv2.ROTATE_90_COUNTERCLOCKWISE)
    path = encode(tmp_path / f"phone_{rotation}.mov", [stored] * 12, rotation=rotation)
    info = probe_video(path)
    assert (info.width, info.height, info.rotation_deg) == (640, 360, rotation)
    rotated = video_frames(path, options=VideoOptions(workers=1)).frames
    plain = video_frames(encode(tmp_path / "plain.mp4", [upright] * 12), options=VideoOptions(workers=1)).frames
    assert rotated["face_found"].all() and abs(rotated["roll_deg"].median()) < 10
    lift = rotated["commissure_y_left"] - rotated["commissure_y_right"]
    lift_plain = plain["commissure_y_left"] - plain["commissure_y_right"]
    # the raised corner is the patient's left, as in the unrotated video, by the same amount
    assert lift.median() > 1.5
    assert lift.median() == pytest.approx(lift_plain.median(), abs=0.5)


# ----------------------------------------------------------------------------- the face leaves the picture
def test_face_leaving_the_picture_is_counted_and_reported_not_fatal(face, tmp_path, capsys) -> None:  # type: ignore[no-untyped-def]
    rgb = face[0]
    empty_room = np.full_like(rgb, 150)
    frames = [rgb] * 30 + [empty_room] * 25 + [rgb] * 35  # the patient steps out for 0.83 s
    path = encode(tmp_path / "steps_out.mp4", frames)
    code, out, err = run_cli(["measure", str(path), "--format", "json", "--no-progress", "--workers", "1"], capsys)
    assert code == 0, err
    d = json.loads(out)
    assert d["n_frames"] == 90 and d["frames_without_face"] == 25
    assert "25 of 90 analysed frames had no face" in d["warnings"]
    code, out, err = run_cli(["frames", str(path), "--out", str(tmp_path / "s.parquet"), "--no-progress"], capsys)
    assert code == 0 and "90 frames (25 without a face)" in out
    import pandas as pd

    s = pd.read_parquet(tmp_path / "s.parquet")
    gone = ~s["face_found"]
    assert s.loc[gone, "time_s"].between(1.0 - 1e-6, 1.8 + 1e-6).all() and gone.sum() == 25
    assert s.loc[gone, "commissure_x_left"].isna().all() and s.loc[~gone, "commissure_x_left"].notna().all()


# ----------------------------------------------------------------------------- several faces, turned head
@pytest.mark.parametrize("big_on_left", [True, False])
def test_several_faces_in_a_video_measure_the_largest_and_warn(big_on_left, face, tmp_path) -> None:  # type: ignore[no-untyped-def]
    big = face[0]
    small = cv2.resize(big[:, ::-1], None, fx=0.7, fy=0.7, interpolation=cv2.INTER_AREA)
    canvas = np.full((big.shape[0], big.shape[1] + small.shape[1] + small.shape[1] % 2, 3), 255, np.uint8)
    canvas[:, : big.shape[1]] = big
    canvas[: small.shape[0], big.shape[1] : big.shape[1] + small.shape[1]] = small
    x0 = 0
    if not big_on_left:
        canvas, x0 = np.ascontiguousarray(canvas[:, ::-1]), canvas.shape[1] - big.shape[1]
    series = video_frames(encode(tmp_path / "two.mp4", [canvas] * 15), options=VideoOptions(workers=1))
    assert any("several faces in the picture" in w and "the largest face is measured" in w for w in series.warnings), series.warnings
    # the measured irises are the big face's
    iris = series.points_px[:, POINT_IDS.index(int(LM.LEFT_IRIS_CENTER))]
    ref = face[1][LM.LEFT_IRIS_CENTER, :2] if big_on_left else [canvas.shape[1] - face[1][LM.RIGHT_IRIS_CENTER, 0],
                                                                 face[1][LM.RIGHT_IRIS_CENTER, 1]]
    assert np.nanmedian(np.hypot(*(iris - np.asarray(ref, dtype=float)).T)) < 4.0, (x0, np.nanmedian(iris, axis=0), ref)
    single = video_frames(encode(tmp_path / "one.mp4", [big] * 15), options=VideoOptions(workers=1))
    assert not any("several faces" in w for w in single.warnings)


def _turned(face, degrees: float) -> np.ndarray:  # type: ignore[no-untyped-def]
    rgb, points, _ = face
    return turned(rgb, points, degrees)


def test_turned_head_is_flagged(face, tmp_path, capsys) -> None:  # type: ignore[no-untyped-def]
    turned = _turned(face, 30.0)
    path = encode(tmp_path / "turned.mp4", [face[0]] * 15 + [turned] * 15)
    code, out, err = run_cli(["measure", str(path), "--format", "json", "--no-progress", "--workers", "1"], capsys)
    assert code == 0, err
    d = json.loads(out)
    flagged = [w for w in d["warnings"] if "head yaw beyond 10 deg" in w]
    assert flagged, d["warnings"]
    n = int(flagged[0].split()[0])
    assert 12 <= n <= 16  # the turned half, not the frontal half
    series = video_frames(path, options=VideoOptions(workers=1)).frames
    assert (series["yaw_deg"].abs().iloc[18:] > 10).all() and (series["yaw_deg"].abs().iloc[:12] < 6).all()


def test_video_read_errors_are_input_errors_with_the_file_name(tmp_path) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(VideoReadError) as info:
        probe_video(_zero_frame_video(tmp_path / "z.mkv"))
    assert str(info.value).startswith(str(tmp_path / "z.mkv") + ": ") and "\n" not in str(info.value)


def test_a_low_resolution_video_is_measured_with_a_warning(face, tmp_path) -> None:  # type: ignore[no-untyped-def]
    small = cv2.resize(face[0], (320, 180), interpolation=cv2.INTER_AREA)  # iris about 7.5 px
    low = video_frames(encode(tmp_path / "low.mp4", [small] * 15), options=VideoOptions(workers=1))
    (warning,) = [w for w in low.warnings if w.startswith("low resolution")]
    assert "under 10 px" in warning and warning.endswith("higher-resolution video"), warning
    normal = video_frames(encode(tmp_path / "normal.mp4", [face[0]] * 15), options=VideoOptions(workers=1))
    assert not any(w.startswith("low resolution") for w in normal.warnings), normal.warnings
