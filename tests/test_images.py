"""Tests for symmetry.images.read_image / image_size.

The corpus is generated in tmp_path at test time with Pillow, pillow-heif, OpenCV
and a tiny hand-written PNG encoder; no binary fixtures are committed.
"""

from __future__ import annotations

import io
import os
import re
import struct
import sys
import warnings
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image, ImageFile, ImageOps

from symmetry.errors import ImageReadError, InputError
from symmetry.images import MAX_PIXELS, MIN_SIDE, image_size, read_image

H, W = 48, 64  # above MIN_SIDE, not square, so orientation mistakes show


# ------------------------------------------------------------------ helpers


def gradient(h: int = H, w: int = W) -> np.ndarray:
    """Smooth RGB test pattern: R ramps along x, G along y, B along the diagonal."""
    y, x = np.mgrid[0:h, 0:w]
    r = np.rint(x * 255 / (w - 1))
    g = np.rint(y * 255 / (h - 1))
    b = np.rint((x + y) * 255 / (w + h - 2))
    return np.stack([r, g, b], axis=-1).astype(np.uint8)


def scale16(v: np.ndarray) -> np.ndarray:
    """Reference 16-bit -> 8-bit mapping: round(v * 255 / 65535)."""
    return np.rint(np.asarray(v, dtype=np.float64) * 255 / 65535).astype(np.uint8)


def png_bytes(width: int, height: int, bit_depth: int, color_type: int, rows: bytes) -> bytes:
    """Minimal PNG encoder: one IHDR, one IDAT (rows must include filter bytes), IEND."""

    def chunk(tag: bytes, data: bytes) -> bytes:
        crc = zlib.crc32(tag + data) & 0xFFFFFFFF
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", crc)

    ihdr = struct.pack(">IIBBBBB", width, height, bit_depth, color_type, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + chunk(b"IDAT", zlib.compress(rows))
        + chunk(b"IEND", b"")
    )


def save(tmp_path: Path, name: str, image: Image.Image, fmt: str | None = None, **kw) -> Path:
    path = tmp_path / name
    image.save(path, fmt, **kw)
    return path


def exif_with_orientation(value: int) -> bytes:
    exif = Image.Exif()
    exif[0x0112] = value
    return exif.tobytes()


def check_array(arr: np.ndarray, shape: tuple[int, int]) -> None:
    assert isinstance(arr, np.ndarray)
    assert arr.dtype == np.uint8
    assert arr.shape == (*shape, 3)
    assert arr.flags.c_contiguous
    assert arr.flags.writeable


def err_match(path: Path, reason_regex: str) -> str:
    """Regex for ImageReadError's message: '<path>: <reason>'."""
    return re.escape(path.name) + ": " + reason_regex


def heif_can_encode() -> bool:
    try:
        import pillow_heif

        pillow_heif.register_heif_opener()
        Image.new("RGB", (64, 64)).save(io.BytesIO(), "HEIF")
        return True
    except Exception:
        return False


needs_heif = pytest.mark.skipif(not heif_can_encode(), reason="pillow-heif cannot encode HEIF here")


# ------------------------------------------------------------ formats, RGB


@pytest.mark.parametrize(
    ("name", "fmt", "kw"),
    [
        ("g.png", "PNG", {}),
        ("g.bmp", "BMP", {}),
        ("g.tif", "TIFF", {}),
        ("g_lzw.tif", "TIFF", {"compression": "tiff_lzw"}),
        ("g_deflate.tiff", "TIFF", {"compression": "tiff_adobe_deflate"}),
        ("g_lossless.webp", "WEBP", {"lossless": True}),
    ],
)
def test_lossless_formats_round_trip_exactly(tmp_path, name, fmt, kw):
    src = gradient()
    path = save(tmp_path, name, Image.fromarray(src), fmt, **kw)
    out = read_image(path)
    check_array(out, (H, W))
    np.testing.assert_array_equal(out, src)


@pytest.mark.parametrize(
    ("name", "fmt", "kw"),
    [
        ("g.jpg", "JPEG", {"quality": 95}),
        ("g.jpeg", "JPEG", {"quality": 95, "subsampling": 0}),
        ("g.webp", "WEBP", {"quality": 95}),
    ],
)
def test_lossy_formats_round_trip_within_tolerance(tmp_path, name, fmt, kw):
    src = gradient()
    path = save(tmp_path, name, Image.fromarray(src), fmt, **kw)
    out = read_image(path)
    check_array(out, (H, W))
    diff = np.abs(out.astype(int) - src.astype(int))
    assert diff.mean() < 3
    assert diff.max() < 24


@needs_heif
def test_heic_round_trip(tmp_path):
    src = gradient()
    path = save(tmp_path, "g.heic", Image.fromarray(src), "HEIF", quality=95)
    out = read_image(path)
    check_array(out, (H, W))
    diff = np.abs(out.astype(int) - src.astype(int))
    assert diff.mean() < 3
    assert diff.max() < 24
    assert image_size(path) == (W, H)


@needs_heif
def test_heic_orientation_applied_once(tmp_path):
    # pillow-heif applies the transform itself and resets the EXIF orientation;
    # the image must come out rotated once, not twice.
    src = np.zeros((H, W, 3), np.uint8)
    src[:8, :8] = (255, 0, 0)  # red in the stored top-left corner
    path = save(tmp_path, "rot.heic", Image.fromarray(src), "HEIF",
                quality=95, exif=exif_with_orientation(6))
    out = read_image(path)
    check_array(out, (W, H))
    assert out[3, -4, 0] > 200 and out[3, -4, 1] < 60  # now top-right
    assert out[3, 3].max() < 60
    assert image_size(path) == (H, W)


def test_accepts_str_and_pathlike_and_non_ascii_names(tmp_path):
    src = gradient()
    path = save(tmp_path, "fotó_患者 1.png", Image.fromarray(src))
    np.testing.assert_array_equal(read_image(path), src)
    np.testing.assert_array_equal(read_image(str(path)), src)


def test_returns_fresh_arrays(tmp_path):
    path = save(tmp_path, "g.png", Image.fromarray(gradient()))
    a = read_image(path)
    a[:] = 0
    assert read_image(path).any()


def test_mpo_jpeg_reads_first_picture(tmp_path):
    path = tmp_path / "stereo.jpg"
    first = Image.new("RGB", (W, H), (200, 30, 30))
    second = Image.new("RGB", (W, H), (30, 30, 200))
    first.save(path, "MPO", save_all=True, append_images=[second], quality=95)
    out = read_image(path)
    check_array(out, (H, W))
    assert abs(int(out[H // 2, W // 2, 0]) - 200) < 6
    assert abs(int(out[H // 2, W // 2, 2]) - 30) < 6


def test_multipage_tiff_reads_first_page(tmp_path):
    path = tmp_path / "pages.tif"
    first = Image.fromarray(gradient())
    second = Image.new("RGB", (W, H), (1, 2, 3))
    first.save(path, "TIFF", save_all=True, append_images=[second])
    np.testing.assert_array_equal(read_image(path), gradient())


# -------------------------------------------------------------- orientation


def test_jpeg_exif_orientation_6_rotates_clockwise(tmp_path):
    src = np.full((H, W, 3), 20, np.uint8)
    src[:8, :8] = (255, 0, 0)  # red in the stored top-left corner
    path = save(tmp_path, "rot6.jpg", Image.fromarray(src), "JPEG",
                quality=95, exif=exif_with_orientation(6))
    out = read_image(path)
    check_array(out, (W, H))  # displayed portrait: height W, width H
    # Rotating 90 degrees clockwise moves the top-left corner to the top-right.
    assert out[3, -4, 0] > 200 and out[3, -4, 1] < 60
    assert out[3, 3].max() < 60
    assert out[-4, -4].max() < 60
    assert image_size(path) == (H, W)


@pytest.mark.parametrize("orientation", range(1, 9))
def test_every_orientation_matches_pillow_exif_transpose(tmp_path, orientation):
    src = gradient()
    path = save(tmp_path, f"o{orientation}.png", Image.fromarray(src), "PNG",
                exif=exif_with_orientation(orientation))
    with Image.open(path) as im:
        expected = np.asarray(ImageOps.exif_transpose(im).convert("RGB"))
    out = read_image(path)
    check_array(out, expected.shape[:2])
    np.testing.assert_array_equal(out, expected)
    assert image_size(path) == (expected.shape[1], expected.shape[0])


def test_orientation_on_16bit_colour_path(tmp_path):
    src16 = np.zeros((H, W, 3), np.uint16)
    src16[:8, :8, 0] = 65535  # red in the stored top-left corner
    src16[-1, -1] = (200, 200, 200)  # 1 after correct rounding, 0 from the high byte
    ok, enc = cv2.imencode(".png", src16[..., ::-1].copy())
    assert ok
    data = enc.tobytes()
    # Insert an eXIf chunk (orientation 6) right after IHDR (8 + 25 bytes).
    exif = exif_with_orientation(6)
    chunk = (struct.pack(">I", len(exif)) + b"eXIf" + exif
             + struct.pack(">I", zlib.crc32(b"eXIf" + exif) & 0xFFFFFFFF))
    path = tmp_path / "rot16.png"
    path.write_bytes(data[:33] + chunk + data[33:])
    out = read_image(path)
    check_array(out, (W, H))
    assert tuple(out[3, -4]) == (255, 0, 0)  # top-left -> top-right
    assert tuple(out[-1, 0]) == (1, 1, 1)  # bottom-right -> bottom-left, full precision
    assert image_size(path) == (H, W)


# ------------------------------------------------------------------ modes


def test_grayscale_L_is_replicated(tmp_path):
    gray = gradient()[..., 0]
    for name in ("l.png", "l.tif", "l.bmp"):
        out = read_image(save(tmp_path, name, Image.fromarray(gray, "L")))
        check_array(out, (H, W))
        for c in range(3):
            np.testing.assert_array_equal(out[..., c], gray)


def test_grayscale_jpeg(tmp_path):
    gray = gradient()[..., 1]
    out = read_image(save(tmp_path, "l.jpg", Image.fromarray(gray, "L"), quality=95))
    check_array(out, (H, W))
    assert np.abs(out[..., 0].astype(int) - gray).max() < 12
    np.testing.assert_array_equal(out[..., 0], out[..., 2])


@pytest.mark.parametrize("name", ["bw.png", "bw.bmp", "bw.tif"])
def test_one_bit(tmp_path, name):
    bits = (gradient()[..., 0] > 127)
    img = Image.fromarray(bits.astype(np.uint8) * 255).convert("1")
    out = read_image(save(tmp_path, name, img))
    check_array(out, (H, W))
    expected = np.where(bits, 255, 0).astype(np.uint8)
    for c in range(3):
        np.testing.assert_array_equal(out[..., c], expected)


@pytest.mark.parametrize("name", ["g16.png", "g16.tif"])
def test_16bit_gray_scaled_by_bit_depth(tmp_path, name):
    ramp = np.linspace(0, 65535, W).round().astype(np.uint16)
    gray16 = np.tile(ramp, (H, 1))
    gray16[0, :3] = (0, 32768, 65535)
    gray16[1, :4] = (200, 257, 1000, 65280)
    path = tmp_path / name
    Image.fromarray(gray16).save(path)  # Pillow writes mode I;16
    with Image.open(path) as im:
        assert im.mode.startswith("I;16")
    out = read_image(path)
    check_array(out, (H, W))
    assert tuple(out[0, :3, 0]) == (0, 128, 255)
    assert tuple(out[1, :4, 0]) == (1, 1, 4, 254)
    np.testing.assert_array_equal(out[..., 0], scale16(gray16))
    np.testing.assert_array_equal(out[..., 0], out[..., 1])
    np.testing.assert_array_equal(out[..., 0], out[..., 2])


def test_16bit_gray_via_opencv(tmp_path):
    gray16 = np.tile(np.linspace(0, 65535, W).astype(np.uint16), (H, 1))
    path = tmp_path / "cvgray16.png"
    assert cv2.imwrite(str(path), gray16)
    np.testing.assert_array_equal(read_image(path)[..., 1], scale16(gray16))


@pytest.mark.parametrize("ext", [".png", ".tif"])
def test_16bit_rgb_keeps_colour_order_and_precision(tmp_path, ext):
    rgb16 = np.zeros((H, W, 3), np.uint16)
    rgb16[..., 0] = 65535  # R
    rgb16[..., 1] = 32768  # G
    rgb16[..., 2] = 200  # B: 200/257 rounds to 1; keeping only the high byte gives 0
    rgb16[: H // 2, : W // 2] = (1000, 40000, 65280)
    path = tmp_path / f"rgb16{ext}"
    assert cv2.imwrite(str(path), rgb16[..., ::-1].copy())  # OpenCV wants BGR
    out = read_image(path)
    check_array(out, (H, W))
    assert tuple(out[-1, -1]) == (255, 128, 1)
    assert tuple(out[0, 0]) == (4, 156, 254)
    np.testing.assert_array_equal(out, scale16(rgb16))


def test_16bit_rgb_random_values(tmp_path):
    rng = np.random.default_rng(7)
    rgb16 = rng.integers(0, 65536, size=(H, W, 3), dtype=np.uint16)
    path = tmp_path / "noise16.png"
    assert cv2.imwrite(str(path), rgb16[..., ::-1].copy())
    np.testing.assert_array_equal(read_image(path), scale16(rgb16))


def test_16bit_rgba_composited_on_white(tmp_path):
    rgba16 = np.zeros((H, W, 4), np.uint16)
    rgba16[..., 0] = 65535  # opaque red ...
    rgba16[..., 3] = 65535
    rgba16[:, : W // 2, 3] = 0  # ... with a transparent left half
    rgba16[:4, -4:] = (0, 0, 0, 32768)  # half-transparent black corner
    path = tmp_path / "rgba16.png"
    assert cv2.imwrite(str(path), rgba16[..., [2, 1, 0, 3]].copy())
    out = read_image(path)
    check_array(out, (H, W))
    assert tuple(out[10, 2]) == (255, 255, 255)
    assert tuple(out[10, -10]) == (255, 0, 0)
    np.testing.assert_allclose(out[0, -1].astype(int), [127, 127, 127], atol=1)


def test_16bit_gray_alpha_png(tmp_path):
    px = np.zeros((H, W, 2), ">u2")
    px[..., 0] = 40000
    px[..., 1] = 65535
    px[:, : W // 2, 1] = 0
    rows = b"".join(b"\x00" + px[r].tobytes() for r in range(H))
    path = tmp_path / "la16.png"
    path.write_bytes(png_bytes(W, H, 16, 4, rows))
    out = read_image(path)
    check_array(out, (H, W))
    assert tuple(out[5, 0]) == (255, 255, 255)
    assert tuple(out[5, -1]) == (156, 156, 156)  # round(40000 * 255 / 65535) = 156


def test_rgba_transparent_area_is_white(tmp_path):
    rgba = np.zeros((H, W, 4), np.uint8)
    rgba[..., :3] = gradient()
    rgba[..., 3] = 255
    rgba[:10, :10, 3] = 0  # fully transparent
    rgba[:10, -10:] = (0, 0, 0, 128)  # half-transparent black
    for name in ("rgba.png", "rgba.tif", "rgba.webp"):
        kw = {"lossless": True} if name.endswith("webp") else {}
        out = read_image(save(tmp_path, name, Image.fromarray(rgba, "RGBA"), **kw))
        check_array(out, (H, W))
        assert (out[:10, :10] == 255).all(), name
        np.testing.assert_array_equal(out[10:], gradient()[10:])
        np.testing.assert_allclose(out[0, -1].astype(int), [127, 127, 127], atol=1)


def test_la_and_palette_transparency(tmp_path):
    la = np.zeros((H, W, 2), np.uint8)
    la[..., 0] = 60
    la[..., 1] = 255
    la[:, :5, 1] = 0
    out = read_image(save(tmp_path, "la.png", Image.fromarray(la, "LA")))
    assert tuple(out[0, 0]) == (255, 255, 255)
    assert tuple(out[0, -1]) == (60, 60, 60)

    pal = Image.new("P", (W, H), 1)
    pal.putpalette([0, 0, 0, 10, 200, 30] + [0] * 762)
    pal.paste(0, (0, 0, 5, 5))
    path = save(tmp_path, "pal.png", pal, transparency=0)
    with Image.open(path) as im:
        assert im.mode == "P" and "transparency" in im.info
    out = read_image(path)
    check_array(out, (H, W))
    assert tuple(out[0, 0]) == (255, 255, 255)
    assert tuple(out[-1, -1]) == (10, 200, 30)


def test_palette_without_transparency(tmp_path):
    src = gradient()
    pal = Image.fromarray(src).quantize(64)
    expected = np.asarray(pal.convert("RGB"))
    for name in ("p.png", "p.bmp", "p.tif"):
        np.testing.assert_array_equal(read_image(save(tmp_path, name, pal)), expected)


def test_rgb_png_with_single_colour_transparency(tmp_path):
    src = gradient()
    src[:4, :4] = (1, 2, 3)
    path = save(tmp_path, "trns.png", Image.fromarray(src), transparency=(1, 2, 3))
    out = read_image(path)
    assert (out[:4, :4] == 255).all()
    np.testing.assert_array_equal(out[10:], src[10:])


def test_cmyk_jpeg(tmp_path):
    src = gradient()
    cmyk = Image.fromarray(src).convert("CMYK")
    path = save(tmp_path, "cmyk.jpg", cmyk, "JPEG", quality=95)
    with Image.open(path) as im:
        assert im.mode == "CMYK"
    out = read_image(path)
    check_array(out, (H, W))
    diff = np.abs(out.astype(int) - src.astype(int))
    assert diff.mean() < 3
    assert diff.max() < 24


def test_cmyk_tiff(tmp_path):
    src = gradient()
    path = save(tmp_path, "cmyk.tif", Image.fromarray(src).convert("CMYK"))
    np.testing.assert_array_equal(read_image(path), src)


def test_32bit_int_and_float_gray_tiff(tmp_path):
    ramp = np.linspace(0, 1, W)
    i32 = np.tile(np.rint(ramp * (2**31 - 1)), (H, 1)).astype(np.int32)
    out = read_image(save(tmp_path, "i32.tif", Image.fromarray(i32)))
    check_array(out, (H, W))
    np.testing.assert_array_equal(out[0, :, 0], np.rint(ramp * 255).astype(np.uint8))

    f32 = np.tile(ramp, (H, 1)).astype(np.float32)
    with Image.open(save(tmp_path, "f.tif", Image.fromarray(f32))) as im:
        assert im.mode == "F"
    out = read_image(tmp_path / "f.tif")
    check_array(out, (H, W))
    np.testing.assert_array_equal(out[0, :, 1], np.rint(ramp * 255).astype(np.uint8))


# ------------------------------------------------------------------ errors


def test_error_type_is_an_input_error():
    assert issubclass(ImageReadError, InputError)


def test_missing_file(tmp_path):
    path = tmp_path / "nope.jpg"
    with pytest.raises(ImageReadError, match=err_match(path, "file not found")) as info:
        read_image(path)
    assert info.value.source == str(path)
    assert info.value.reason == "file not found"
    with pytest.raises(ImageReadError, match="file not found"):
        read_image(tmp_path / "not_a_dir.png" / "x.png")
    with pytest.raises(ImageReadError, match="file not found"):
        image_size(path)


def test_directory(tmp_path):
    path = tmp_path / "photos.jpg"
    path.mkdir()
    with pytest.raises(ImageReadError, match=err_match(path, "is a directory")):
        read_image(path)


def test_empty_file(tmp_path):
    path = tmp_path / "empty.jpg"
    path.write_bytes(b"")
    with pytest.raises(ImageReadError, match=err_match(path, re.escape("file is empty (0 bytes)"))):
        read_image(path)


@pytest.mark.parametrize(
    ("name", "content"),
    [
        ("notes.jpg", b"Patient notes, not a photo.\n" * 20),
        ("random.png", bytes(np.random.default_rng(1).integers(0, 256, 4096, dtype=np.uint8))),
        ("tiny.jpg", b"x"),
    ],
)
def test_not_an_image(tmp_path, name, content):
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(ImageReadError, match=err_match(path, "not an image file")):
        read_image(path)
    with pytest.raises(ImageReadError, match="not an image file"):
        image_size(path)


@pytest.mark.parametrize(("name", "fmt"), [("anim.gif", "GIF"), ("photo.jpg", "PPM"), ("x.ico", "ICO")])
def test_unsupported_image_format(tmp_path, name, fmt):
    path = save(tmp_path, name, Image.fromarray(gradient()), fmt)
    with pytest.raises(ImageReadError, match=err_match(path, f"unsupported image format {fmt}")):
        read_image(path)


@pytest.mark.parametrize("fraction", [0.1, 0.5, 0.9, 0.99])
def test_truncated_jpeg(tmp_path, fraction):
    rng = np.random.default_rng(3)
    noisy = np.clip(gradient(256, 320).astype(int) + rng.integers(-20, 20, (256, 320, 3)), 0, 255)
    full = io.BytesIO()
    Image.fromarray(noisy.astype(np.uint8)).save(full, "JPEG", quality=90)
    data = full.getvalue()
    path = tmp_path / "cut.jpg"
    path.write_bytes(data[: int(len(data) * fraction)])
    assert ImageFile.LOAD_TRUNCATED_IMAGES is False
    with pytest.raises(ImageReadError, match=err_match(path, "image file is truncated")):
        read_image(path)
    assert ImageFile.LOAD_TRUNCATED_IMAGES is False


def test_jpeg_missing_only_its_end_marker_is_truncated(tmp_path):
    full = io.BytesIO()
    Image.fromarray(gradient()).save(full, "JPEG")
    path = tmp_path / "noeoi.jpg"
    path.write_bytes(full.getvalue()[:-2])
    with pytest.raises(ImageReadError, match="truncated"):
        read_image(path)


@pytest.mark.filterwarnings("ignore:Corrupt EXIF data:UserWarning")
@pytest.mark.parametrize(
    ("name", "fmt", "kw"),
    [
        ("cut.png", "PNG", {}),
        ("cut.bmp", "BMP", {}),
        ("cut.tif", "TIFF", {}),
        ("cut_lzw.tif", "TIFF", {"compression": "tiff_lzw"}),
        ("cut.webp", "WEBP", {}),
        ("cut.heic", "HEIF", {}),
    ],
)
def test_truncated_other_formats(tmp_path, name, fmt, kw):
    if fmt == "HEIF" and not heif_can_encode():
        pytest.skip("pillow-heif cannot encode HEIF here")
    rng = np.random.default_rng(4)
    full = io.BytesIO()
    Image.fromarray(rng.integers(0, 256, (200, 300, 3), dtype=np.uint8)).save(full, fmt, **kw)
    data = full.getvalue()
    path = tmp_path / name
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ImageReadError, match=err_match(path, ".*(truncated|corrupt)")):
        read_image(path)


def test_corrupt_header(tmp_path):
    path = tmp_path / "broken.png"
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00\x00\x00\x0dIHDR" + b"\xff" * 40)
    with pytest.raises(ImageReadError, match=err_match(path, "corrupt or truncated PNG file")):
        read_image(path)
    path = tmp_path / "broken.jpg"
    path.write_bytes(b"\xff\xd8\xff\xe0" + b"\x00" * 100)
    with pytest.raises(ImageReadError, match=err_match(path, ".*(truncated|corrupt)")):
        read_image(path)


def test_corrupt_compressed_data(tmp_path):
    good = png_bytes(W, H, 8, 2, b"".join(b"\x00" + bytes(3 * W) for _ in range(H)))
    idat = good.index(b"IDAT")
    bad = bytearray(good)
    bad[idat + 6 : idat + 30] = b"\xa5" * 24  # scramble the zlib stream
    path = tmp_path / "scrambled.png"
    path.write_bytes(bytes(bad))
    with pytest.raises(ImageReadError, match=err_match(path, ".*(corrupt|truncated)")):
        read_image(path)


def test_decompression_bomb_refused_from_header(tmp_path, monkeypatch):
    # A few hundred bytes declaring 60000 x 60000 pixels (3.6 gigapixels).
    path = tmp_path / "bomb.png"
    path.write_bytes(png_bytes(60000, 60000, 8, 2, b""))
    assert path.stat().st_size < 200
    max_before = Image.MAX_IMAGE_PIXELS
    with pytest.raises(
        ImageReadError,
        match=err_match(path, r"image too large: declared size 60000x60000 px .*limit of 100 megapixels"),
    ):
        read_image(path)
    with pytest.raises(ImageReadError, match="image too large"):
        image_size(path)
    assert Image.MAX_IMAGE_PIXELS == max_before


def test_bomb_between_pillow_warning_and_our_limit(tmp_path, monkeypatch):
    # 12000 x 10000 = 120 Mpx: Pillow only warns on opening it, we must refuse it
    # before decoding, and without letting Pillow's warning out.
    path = tmp_path / "big.png"
    path.write_bytes(png_bytes(12000, 10000, 8, 2, b""))

    def no_decoding(self):  # pragma: no cover - must not run
        raise AssertionError("pixels decoded")

    monkeypatch.setattr(ImageFile.ImageFile, "load", no_decoding)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(
            ImageReadError,
            match=err_match(path, r"image too large: declared size 12000x10000 px \(120\.0 megapixels\)"),
        ):
            read_image(path)
    assert MAX_PIXELS == 100_000_000


def test_bomb_limit_holds_even_if_pillow_limit_is_disabled(tmp_path, monkeypatch):
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", None)
    path = tmp_path / "bomb.png"
    path.write_bytes(png_bytes(60000, 60000, 8, 2, b""))
    with pytest.raises(ImageReadError, match=r"image too large: declared size 60000x60000 px"):
        read_image(path)


def test_stricter_pillow_limit_set_elsewhere_is_reported(tmp_path, monkeypatch):
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)
    path = save(tmp_path, "g.png", Image.fromarray(gradient()))
    with pytest.raises(ImageReadError, match=rf"image of {W}x{H} px exceeds Pillow's MAX_IMAGE_PIXELS"):
        read_image(path)


def test_image_too_small(tmp_path):
    path = save(tmp_path, "dot.png", Image.new("RGB", (1, 1), "white"))
    with pytest.raises(ImageReadError, match=err_match(path, re.escape("image too small (1x1 px)"))):
        read_image(path)
    with pytest.raises(ImageReadError, match=re.escape("image too small (1x1 px)")):
        image_size(path)
    # The limit is on each side, and reported as displayed (after EXIF orientation).
    path = save(tmp_path, "strip.jpg", Image.new("RGB", (200, MIN_SIDE - 1)), "JPEG",
                exif=exif_with_orientation(6))
    with pytest.raises(ImageReadError, match=re.escape(f"image too small ({MIN_SIDE - 1}x200 px)")):
        read_image(path)
    ok = save(tmp_path, "ok.png", Image.new("RGB", (MIN_SIDE, MIN_SIDE)))
    check_array(read_image(ok), (MIN_SIDE, MIN_SIDE))


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs named pipes")
def test_not_a_regular_file(tmp_path):
    path = tmp_path / "pipe.jpg"
    os.mkfifo(path)
    with pytest.raises(ImageReadError, match=err_match(path, "not a regular file")):
        read_image(path)


@pytest.mark.skipif(
    sys.platform == "win32" or (hasattr(os, "geteuid") and os.geteuid() == 0),
    reason="permissions are not enforced for root / on Windows",
)
def test_permission_denied(tmp_path):
    path = save(tmp_path, "locked.png", Image.fromarray(gradient()))
    path.chmod(0)
    try:
        with pytest.raises(ImageReadError, match=err_match(path, "permission denied")):
            read_image(path)
    finally:
        path.chmod(0o600)


def test_not_a_path_is_a_type_error():
    with pytest.raises(TypeError):
        read_image(3)  # would otherwise be read as file descriptor 3


def test_errors_never_escape_as_other_types(tmp_path):
    # A grab-bag of damaged files: each must raise ImageReadError and nothing else.
    base = io.BytesIO()
    Image.fromarray(gradient()).save(base, "PNG")
    data = base.getvalue()
    rng = np.random.default_rng(5)
    for i in range(30):
        bad = bytearray(data)
        for pos in rng.integers(8, len(bad), 6):
            bad[pos] = int(rng.integers(0, 256))
        path = tmp_path / f"fuzz{i}.png"
        path.write_bytes(bytes(bad))
        try:
            out = read_image(path)
        except ImageReadError:
            continue
        check_array(out, (H, W))


# ------------------------------------------------------------------ privacy


def test_nothing_printed_or_logged(tmp_path, capfd, caplog):
    caplog.set_level("DEBUG")
    good16 = tmp_path / "rgb16.png"
    cv2.imwrite(str(good16), np.full((H, W, 3), 1234, np.uint16))
    read_image(good16)
    read_image(save(tmp_path, "g.jpg", Image.fromarray(gradient())))
    cut = tmp_path / "cut.jpg"
    buf = io.BytesIO()
    Image.fromarray(gradient(480, 640)).save(buf, "JPEG")
    cut.write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])
    with pytest.raises(ImageReadError) as info:
        read_image(cut)
    out, err = capfd.readouterr()
    assert out == ""
    assert err == ""
    assert not [r for r in caplog.records if r.name.startswith("symmetry")]
    assert str(info.value) == f"{cut}: image file is truncated"
