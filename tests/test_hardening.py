"""Bad input, odd formats, several or tiny faces, privacy, and property-based geometry."""

from __future__ import annotations

import socket
import struct
import zlib

import cv2
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from symmetry.cli import main
from symmetry.photo import measure_photo

from conftest import PORTRAITS
from synthetic import synthetic_face, transform

OBAMA = PORTRAITS["obama"]


def _png_declaring(width: int, height: int) -> bytes:
    """A tiny PNG whose header declares width x height (a decompression bomb)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\x00" * 64)) + chunk(b"IEND", b"")


def _bad_files(tmp_path):
    files = {}
    files["empty.jpg"] = b""
    files["notes.jpg"] = b"these are clinic notes, not a photo\n"
    files["truncated.jpg"] = OBAMA.read_bytes()[: OBAMA.stat().st_size // 2]
    files["bomb.png"] = _png_declaring(60000, 60000)
    out = {}
    for name, data in files.items():
        path = tmp_path / name
        path.write_bytes(data)
        out[name] = path
    tiny = tmp_path / "one_pixel.png"
    Image.new("RGB", (1, 1)).save(tiny)
    out["one_pixel.png"] = tiny
    noface = tmp_path / "wall.png"
    cv2.imwrite(str(noface), np.full((480, 640, 3), 180, np.uint8))
    out["wall.png"] = noface
    small = tmp_path / "small_face.png"
    img = cv2.imread(str(OBAMA))
    cv2.imwrite(str(small), cv2.resize(img, None, fx=0.22, fy=0.22, interpolation=cv2.INTER_AREA))
    out["small_face.png"] = small
    return out


@pytest.mark.parametrize(
    "name, reason",
    [
        ("empty.jpg", "empty"),
        ("notes.jpg", "not an image"),
        ("truncated.jpg", "truncated"),
        ("bomb.png", "too large"),
        ("one_pixel.png", "too small"),
        ("wall.png", "no face"),
        ("small_face.png", "face too small"),
    ],
)
def test_bad_input_gives_one_line_naming_file_and_reason_exit_2(name, reason, tmp_path, capsys):
    path = _bad_files(tmp_path)[name]
    code = main(["measure", str(path), "--format", "json"])
    err = capsys.readouterr().err
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert name in lines[0] and reason in lines[0]
    assert "Traceback" not in err


@pytest.mark.parametrize("variant", ["cmyk", "gray16", "rgba", "gray", "rgb16"])
def test_odd_formats_measure_like_the_rgb_photo(variant, tmp_path, landmarker):
    img = Image.open(OBAMA).convert("RGB")
    path = tmp_path / f"obama_{variant}"
    if variant == "cmyk":
        path = path.with_suffix(".jpg")
        img.convert("CMYK").save(path, quality=95)
    elif variant == "gray16":
        path = path.with_suffix(".png")
        arr = (np.asarray(img.convert("L"), dtype=np.uint16) * 257)
        cv2.imwrite(str(path), arr)
    elif variant == "rgb16":
        path = path.with_suffix(".png")
        arr = np.asarray(img, dtype=np.uint16) * 257
        cv2.imwrite(str(path), arr[..., ::-1].copy())
    elif variant == "rgba":
        path = path.with_suffix(".png")
        img.convert("RGBA").save(path)
    else:
        path = path.with_suffix(".png")
        img.convert("L").save(path)
    ref = measure_photo(OBAMA, landmarker=landmarker)
    r = measure_photo(path, landmarker=landmarker)
    for name in ("commissure_excursion", "palpebral_fissure_height", "brow_height"):
        for side in ("left", "right"):
            assert r.value(name, side) == pytest.approx(ref.value(name, side), abs=0.6), (variant, name, side)


def test_several_faces_measure_the_largest_and_warn(portraits, landmarker):
    big = portraits["obama"]
    small = cv2.resize(big[:, ::-1], None, fx=0.7, fy=0.7, interpolation=cv2.INTER_AREA)
    canvas = np.full((big.shape[0], big.shape[1] + small.shape[1], 3), 255, np.uint8)
    canvas[:, : big.shape[1]] = big
    canvas[: small.shape[0], big.shape[1]:] = small
    r = measure_photo(canvas, landmarker=landmarker)
    assert any("2 faces" in w for w in r.warnings)
    assert r.frame.origin_px[0] < big.shape[1]  # the larger face, on the left
    ref = measure_photo(big, landmarker=landmarker)
    assert r.value("brow_height", "left") == pytest.approx(ref.value("brow_height", "left"), abs=0.5)


def test_measuring_opens_no_socket(monkeypatch, portraits, landmarker):
    def refuse(*args, **kwargs):
        raise AssertionError("symmetry tried to open a network connection")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    r = measure_photo(OBAMA, rest=OBAMA, landmarker=landmarker)
    assert r.measures


# -- property-based geometry ---------------------------------------------------------------

_angles = st.floats(min_value=-40, max_value=40, allow_nan=False)
_scales = st.floats(min_value=0.35, max_value=5.0, allow_nan=False)
_shifts = st.tuples(st.floats(-500, 500, allow_nan=False), st.floats(-500, 500, allow_nan=False))
_moves = st.tuples(st.floats(-15, 15, allow_nan=False), st.floats(-15, 15, allow_nan=False))


def _static(points):
    from symmetry.calibration import calibrate_from_iris
    from symmetry.frame import pupil_frame
    from symmetry.measures import static_measures

    cal = calibrate_from_iris(points)
    return {(m.name, m.side): m.value for m in static_measures(pupil_frame(points, cal.mm_per_px).to_mm(points))}


@settings(max_examples=60, deadline=None)
@given(angle=_angles, scale=_scales, shift=_shifts, left=_moves, right=_moves)
def test_static_measures_are_similarity_invariant(angle, scale, shift, left, right):
    pts = synthetic_face({"left": left, "right": right})
    base = _static(pts)
    moved = _static(transform(pts, angle_deg=angle, scale=scale, shift=shift))
    for key, value in base.items():
        assert moved[key] == pytest.approx(value, abs=1e-6)


@settings(max_examples=60, deadline=None)
@given(left=_moves, right=_moves, angle=_angles)
def test_movement_is_the_commissure_displacement(left, right, angle):
    from symmetry.frame import pupil_frame
    from symmetry.measures import movement_measures

    rest = transform(synthetic_face(), angle_deg=angle)
    smile = transform(synthetic_face({"left": left, "right": right}), angle_deg=angle)
    f = pupil_frame(rest, 0.5)
    v = {(m.name, m.side): m.value for m in movement_measures(f.to_mm(rest), f.to_mm(smile))}
    assert v[("commissure_movement", "left")] == pytest.approx(0.5 * np.hypot(*left), abs=1e-6)
    assert v[("commissure_movement", "right")] == pytest.approx(0.5 * np.hypot(*right), abs=1e-6)


@settings(max_examples=40, deadline=None)
@given(left=_moves)
def test_asymmetry_grows_with_one_sided_displacement(left):
    a = _static(synthetic_face({"left": left}))
    b = _static(synthetic_face({"left": (2 * left[0], 2 * left[1])}))
    assume_nonzero = abs(left[1]) > 0.5
    if assume_nonzero:
        assert abs(b[("commissure_y", "left")] - b[("commissure_y", "right")]) > abs(
            a[("commissure_y", "left")] - a[("commissure_y", "right")]
        )
