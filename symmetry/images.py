"""Reading patient photos: the one place where image files are decoded.

Every photo the tool measures goes through :func:`read_image`, which returns an
RGB ``uint8`` array of shape ``(H, W, 3)`` with the EXIF orientation applied,
whatever the file format, colour mode or bit depth, or raises
:class:`~symmetry.errors.ImageReadError` with a short reason a clinician can act
on. No other exception type escapes for a bad file.

Supported formats
    JPEG (including multi-picture MPO JPEGs; the first picture is used), PNG,
    WebP, TIFF (first page), BMP, and HEIC/HEIF (primary image, through
    pillow-heif, whose opener is registered with Pillow on first use).

Colour handling
    * RGB is returned as is.
    * Grayscale (``1``, ``L``, ``I;16``, ``I``, ``F``) is replicated to three
      channels.
    * Integer data deeper than 8 bits is scaled by its bit depth, rounded, never
      clipped: for 16 bits, ``v -> round(v * 255 / 65535)`` (65535 -> 255,
      32768 -> 128). 32-bit integer data is scaled the same way by its 32-bit
      range. 16-bit colour PNG/TIFF files are decoded at full precision with
      OpenCV, because Pillow keeps only their high byte.
    * Floating-point grayscale (mode ``F``) has no declared range; values are
      taken as ``0..1`` if they all fit there, else ``0..255``, else ``0..65535``;
      negatives and NaN become 0; larger values are refused.
    * Transparency (RGBA, LA, PA, palette or single-colour transparency) is
      composited on white.
    * CMYK and YCbCr are converted to RGB by Pillow (no ICC colour management).

Limits
    :data:`MAX_PIXELS` (100 megapixels) guards against decompression bombs: the
    size declared in the file header is checked before any pixel is decoded.
    :data:`MIN_SIDE` (32 px) rejects images too small to hold a measurable face.

Privacy: this module never prints or logs pixel content; error messages carry
only the file name, sizes and the kind of failure.

Truncated files are detected through Pillow's default
``PIL.ImageFile.LOAD_TRUNCATED_IMAGES = False``, which this module never changes.
If other code in the same process sets it to ``True``, Pillow will pad truncated
files instead of failing and they can no longer be told apart.
"""

from __future__ import annotations

import logging
import os
import re
import stat
import threading
import warnings
from typing import IO

import numpy as np
from PIL import Image, UnidentifiedImageError

from .errors import ImageReadError

# Pillow logs the values of metadata tags at DEBUG (EXIF Artist, ImageDescription, GPS, comments:
# a patient's name or whereabouts). Keep its loggers at INFO or above, whatever the root level.
_PIL_LOG = logging.getLogger("PIL")
if _PIL_LOG.level < logging.INFO:  # NOTSET (0) would follow a root logger set to DEBUG
    _PIL_LOG.setLevel(logging.INFO)

__all__ = ["read_image", "image_size", "MAX_PIXELS", "MIN_SIDE", "SUPPORTED_FORMATS"]

MAX_PIXELS: int = 100_000_000
"""Largest accepted image, in pixels (width x height) as declared in the file header."""

MIN_SIDE: int = 32
"""Smallest accepted width and height, in pixels."""

SUPPORTED_FORMATS: str = "JPEG, PNG, WebP, TIFF, BMP, HEIC/HEIF"
"""Human-readable list of the accepted formats, as used in error messages."""

# Pillow format identifiers handed to Image.open(formats=...). Restricting the
# list keeps Pillow's more exotic parsers (EPS via Ghostscript, PSD, ...) away
# from files we are given. JPEG's opener also yields MPO files.
_PILLOW_FORMATS: tuple[str, ...] = ("JPEG", "PNG", "WEBP", "TIFF", "BMP")

_ORIENTATION_TAG = 0x0112

_heif_lock = threading.Lock()
_heif_available: bool | None = None


# --------------------------------------------------------------------------- API


def read_image(path: str | os.PathLike[str]) -> np.ndarray:
    """Read a photo as an RGB uint8 array of shape (H, W, 3), C-contiguous, EXIF orientation applied.

    Parameters
    ----------
    path : str or os.PathLike
        The image file: JPEG, PNG, WebP, TIFF, BMP or HEIC/HEIF.

    Returns
    -------
    numpy.ndarray
        A new, writeable, C-contiguous ``uint8`` array of shape ``(H, W, 3)`` in
        RGB order, rotated/flipped as the EXIF orientation says (so ``H`` and
        ``W`` are the displayed height and width). See the module docstring for
        how grayscale, 16-bit, transparent and CMYK images are converted.

    Raises
    ------
    ImageReadError
        If the file is missing, a directory, empty, unreadable, not an image or
        not a supported format, truncated or corrupt, declares more than
        :data:`MAX_PIXELS` pixels, is smaller than :data:`MIN_SIDE` on a side, or
        cannot be decoded. ``str(error)`` is ``"<path>: <reason>"``.
    TypeError
        If `path` is not a path at all (a programming error, not a bad file).
    """
    name = _check_file(path)
    try:
        with open(name, "rb") as fp:
            img = _open_checked(fp, path)
            with img:
                rgb = _decode_rgb(img, fp, path)
                # After load(), as in ImageOps.exif_transpose: PNG may keep EXIF after the pixels.
                orientation = _orientation(img)
    except ImageReadError:
        raise
    except PermissionError as exc:
        raise ImageReadError(path, "permission denied") from exc
    except MemoryError as exc:
        raise ImageReadError(path, "not enough memory to decode the image") from exc
    except Exception as exc:  # last resort: the contract is ImageReadError only
        raise ImageReadError(path, f"cannot read image ({type(exc).__name__})") from exc
    return _apply_orientation(rgb, orientation)


def image_size(path: str | os.PathLike[str]) -> tuple[int, int]:
    """Return the displayed ``(width, height)`` of a photo, read from its header.

    The size is taken after the EXIF orientation, so it matches
    ``read_image(path).shape[1::-1]``. Pixels are not decoded, except that
    Pillow decodes a PNG to look for an EXIF chunk placed after its pixel data.

    Parameters
    ----------
    path : str or os.PathLike
        The image file.

    Returns
    -------
    tuple of int
        ``(width, height)`` in pixels, as displayed.

    Raises
    ------
    ImageReadError
        For everything :func:`read_image` detects from the file header alone
        (missing, directory, empty, not a supported image, too large, too
        small). Truncated or corrupt pixel data is *not* detected here.
    TypeError
        If `path` is not a path.
    """
    name = _check_file(path)
    try:
        with open(name, "rb") as fp:
            img = _open_checked(fp, path)
            with img:
                width, height = img.size
                orientation = _orientation(img)
    except ImageReadError:
        raise
    except PermissionError as exc:
        raise ImageReadError(path, "permission denied") from exc
    except Exception as exc:
        raise ImageReadError(path, f"cannot read image ({type(exc).__name__})") from exc
    return (height, width) if orientation in (5, 6, 7, 8) else (width, height)


# ------------------------------------------------------------------ file checks


def _check_file(path: str | os.PathLike[str]) -> str | bytes:
    """Check that `path` names a non-empty regular file; return it as accepted by ``open``."""
    try:
        name = os.fspath(path)
    except TypeError:
        raise TypeError(
            f"path must be a str or os.PathLike, not {type(path).__name__}"
        ) from None
    try:
        st = os.stat(name)
    except (FileNotFoundError, NotADirectoryError) as exc:
        raise ImageReadError(path, "file not found") from exc
    except PermissionError as exc:
        raise ImageReadError(path, "permission denied") from exc
    except ValueError as exc:  # e.g. an embedded NUL character
        raise ImageReadError(path, "invalid file name") from exc
    except OSError as exc:
        raise ImageReadError(path, f"cannot access file ({exc.strerror or exc})") from exc
    if stat.S_ISDIR(st.st_mode):
        raise ImageReadError(path, "is a directory, not an image file")
    if not stat.S_ISREG(st.st_mode):
        raise ImageReadError(path, "not a regular file")
    if st.st_size == 0:
        raise ImageReadError(path, "file is empty (0 bytes)")
    return name


# -------------------------------------------------------------------- opening


def _pillow_formats() -> tuple[str, ...]:
    """Pillow format ids to try, registering pillow-heif's opener on first call."""
    global _heif_available
    if _heif_available is None:
        with _heif_lock:
            if _heif_available is None:
                try:
                    from pillow_heif import register_heif_opener

                    register_heif_opener()
                    _heif_available = True
                except Exception:  # not installed or broken: HEIC files become unsupported
                    _heif_available = False
    return _PILLOW_FORMATS + (("HEIF",) if _heif_available else ())


def _open_checked(fp: IO[bytes], source: str | os.PathLike[str]) -> Image.Image:
    """Open (without decoding) an image of a supported format and check its declared size."""
    formats = _pillow_formats()
    prefix = fp.read(16)
    fp.seek(0)
    try:
        # Pillow warns above its own MAX_IMAGE_PIXELS (~89 Mpx), below our limit;
        # our limit is enforced just below, so that warning is noise here.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            img = Image.open(fp, formats=list(formats))
    except Image.DecompressionBombError as exc:
        # Pillow refused the header before we could look at it (> 2 x its limit).
        size = _declared_size(fp, formats)
        if size is not None and size[0] * size[1] <= MAX_PIXELS:
            reason = (
                f"image of {size[0]}x{size[1]} px exceeds Pillow's MAX_IMAGE_PIXELS"
                " limit set elsewhere in this program"
            )
        else:
            reason = _too_large_reason(size)
        raise ImageReadError(source, reason) from exc
    except UnidentifiedImageError as exc:
        raise ImageReadError(source, _unidentified_reason(fp, prefix)) from exc
    except MemoryError as exc:
        raise ImageReadError(source, "not enough memory to read the image header") from exc
    except Exception as exc:  # a plugin recognised the file but choked on its header
        kind = _format_from_signature(prefix) or "image"
        raise ImageReadError(
            source, f"corrupt or truncated {kind} file (cannot read its header)"
        ) from exc

    try:
        width, height = img.size
        if width * height > MAX_PIXELS:
            raise ImageReadError(source, _too_large_reason((width, height)))
        if min(width, height) < MIN_SIDE:
            if _orientation(img) in (5, 6, 7, 8):
                width, height = height, width
            raise ImageReadError(
                source,
                f"image too small ({width}x{height} px); "
                f"the minimum is {MIN_SIDE} px on each side",
            )
    except BaseException:
        img.close()
        raise
    return img


def _too_large_reason(size: tuple[int, int] | None) -> str:
    limit = f"the limit of {MAX_PIXELS / 1e6:g} megapixels"
    if size is None:
        return f"image too large: its declared size exceeds {limit}"
    w, h = size
    return (
        f"image too large: declared size {w}x{h} px ({w * h / 1e6:.1f} megapixels)"
        f" exceeds {limit}"
    )


def _declared_size(fp: IO[bytes], formats: tuple[str, ...]) -> tuple[int, int] | None:
    """Header size of an image Pillow refused as a decompression bomb, or None.

    Does what ``Image.open`` does, minus its decompression-bomb check, and only
    to word the error message. Reads the header only, never pixel data.
    """
    try:
        fp.seek(0)
        prefix = fp.read(16)
        for fmt in formats:
            factory, accept = Image.OPEN[fmt]
            result = accept(prefix) if accept else True
            if not result or isinstance(result, str):
                continue
            fp.seek(0)
            try:
                img = factory(fp, "")
            except Exception:
                continue
            size = img.size
            img.close()
            return int(size[0]), int(size[1])
    except Exception:
        pass
    return None


_HEIF_BRANDS = frozenset(
    {b"heic", b"heix", b"heim", b"heis", b"hevc", b"hevx", b"hevm", b"hevs", b"mif1", b"msf1"}
)


def _format_from_signature(prefix: bytes) -> str | None:
    """Name of the supported format whose magic bytes start `prefix`, if any."""
    if prefix.startswith(b"\xff\xd8\xff"):
        return "JPEG"
    if prefix.startswith(b"\x89PNG\r\n\x1a\n"):
        return "PNG"
    if prefix[:4] == b"RIFF" and prefix[8:12] == b"WEBP":
        return "WebP"
    if prefix[:4] in (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+"):
        return "TIFF"
    if prefix.startswith(b"BM"):
        return "BMP"
    if prefix[4:8] == b"ftyp" and prefix[8:12] in _HEIF_BRANDS:
        return "HEIC/HEIF"
    return None


def _unidentified_reason(fp: IO[bytes], prefix: bytes) -> str:
    """Reason for a file none of the supported format readers accepted."""
    kind = _format_from_signature(prefix)
    if kind is not None:
        return f"corrupt or truncated {kind} file (cannot read its header)"
    other = _identify_any_format(fp)
    if other is not None:
        return f"unsupported image format {other} (supported: {SUPPORTED_FORMATS})"
    return f"not an image file, or not a supported format ({SUPPORTED_FORMATS})"


def _identify_any_format(fp: IO[bytes]) -> str | None:
    """Name the format of an image Pillow knows but we do not accept (header only)."""
    try:
        fp.seek(0)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with Image.open(fp) as other:
                return other.format
    except Exception:
        return None


def _orientation(img: Image.Image) -> int:
    """EXIF orientation (1..8), read as ``ImageOps.exif_transpose`` does; 1 if absent/invalid."""
    try:
        value = img.getexif().get(_ORIENTATION_TAG, 1)
        value = int(value)
    except Exception:
        return 1
    return value if 1 <= value <= 8 else 1


def _apply_orientation(rgb: np.ndarray, orientation: int) -> np.ndarray:
    """Rotate/flip an (H, W, C) array as ``ImageOps.exif_transpose`` would; C-contiguous result."""
    if orientation == 2:  # FLIP_LEFT_RIGHT
        rgb = rgb[:, ::-1]
    elif orientation == 3:  # ROTATE_180
        rgb = rgb[::-1, ::-1]
    elif orientation == 4:  # FLIP_TOP_BOTTOM
        rgb = rgb[::-1]
    elif orientation == 5:  # TRANSPOSE
        rgb = rgb.transpose(1, 0, 2)
    elif orientation == 6:  # ROTATE_270 (90 degrees clockwise)
        rgb = np.rot90(rgb, k=-1)
    elif orientation == 7:  # TRANSVERSE
        rgb = rgb[::-1, ::-1].transpose(1, 0, 2)
    elif orientation == 8:  # ROTATE_90 (90 degrees counter-clockwise)
        rgb = np.rot90(rgb, k=1)
    out = np.ascontiguousarray(rgb)
    return out if out.flags.writeable else out.copy()


# ------------------------------------------------------------------- decoding


def _tile_rawmode(img: Image.Image) -> str:
    """The raw pixel layout the decoder will read (e.g. ``"RGB;16B"``), or ``""``.

    Must be called before ``load()``, which clears ``img.tile``.
    """
    try:
        args = img.tile[0].args if hasattr(img.tile[0], "args") else img.tile[0][3]
    except Exception:
        return ""
    if isinstance(args, tuple):
        args = args[0] if args else ""
    return args if isinstance(args, str) else ""


def _rawmode_depth(rawmode: str) -> tuple[int, bool] | None:
    """``(bits per sample, signed)`` declared by a rawmode like ``"I;16B"`` or ``"I;32S"``."""
    m = re.match(r"[A-Za-z]+;(\d+)([A-Z]*)", rawmode)
    if m is None:
        return None
    return int(m.group(1)), "S" in m.group(2)


def _decode_rgb(img: Image.Image, fp: IO[bytes], source: str | os.PathLike[str]) -> np.ndarray:
    """Decode the opened image to an (H, W, 3) uint8 RGB array, not yet oriented."""
    rawmode = _tile_rawmode(img)
    try:
        img.load()
    except MemoryError as exc:
        raise ImageReadError(source, "not enough memory to decode the image") from exc
    except OSError as exc:
        if "truncated" in str(exc):
            raise ImageReadError(source, "image file is truncated") from exc
        raise ImageReadError(source, "corrupt image data (cannot be decoded)") from exc
    except Exception as exc:
        raise ImageReadError(source, "corrupt image data (cannot be decoded)") from exc

    mode = img.mode
    depth = _rawmode_depth(rawmode)

    if (
        mode in ("RGB", "RGBA")
        and depth is not None
        and depth[0] == 16
        and img.format in ("PNG", "TIFF")
        and "transparency" not in img.info
    ):
        # 16-bit colour: Pillow kept only the high byte of each sample.
        full = _decode_16bit_colour(img, fp)
        if full is not None:
            return full

    if mode == "RGB" and "transparency" not in img.info:
        return np.array(img, dtype=np.uint8)
    if mode in ("1", "L") and "transparency" not in img.info:
        return np.array(img.convert("RGB"), dtype=np.uint8)
    if mode.startswith("I;16"):
        gray = _scale_to_uint8(np.asarray(img), 65535)
        return _gray_to_rgb(gray)
    if mode == "I":
        bits, signed = depth if depth is not None else (32, True)
        maxval = 2 ** (bits - 1) - 1 if signed else 2**bits - 1
        gray = _scale_to_uint8(np.asarray(img), maxval)
        return _gray_to_rgb(gray)
    if mode == "F":
        return _gray_to_rgb(_float_to_uint8(np.asarray(img), source))
    if _has_transparency(img):
        rgba = np.asarray(img.convert("RGBA"))
        return _composite_on_white(rgba[..., :3], rgba[..., 3], 255)
    try:
        converted = img.convert("RGB")
    except Exception as exc:
        raise ImageReadError(source, f"unsupported colour mode {mode}") from exc
    return np.array(converted, dtype=np.uint8)


def _has_transparency(img: Image.Image) -> bool:
    if img.mode in ("RGBA", "RGBa", "LA", "La", "PA"):
        return True
    if "transparency" in img.info:
        return True
    if img.mode == "P" and img.palette is not None and img.palette.mode == "RGBA":
        return True
    return False


def _decode_16bit_colour(img: Image.Image, fp: IO[bytes]) -> np.ndarray | None:
    """Full-precision RGB(A) decode of a 16-bit colour PNG/TIFF with OpenCV.

    Returns None (so Pillow's 8-bit result is used instead) unless OpenCV's
    result agrees exactly with Pillow's in its high bytes: same size, same
    orientation, same channel order.
    """
    try:
        import cv2

        fp.seek(0)
        buf = np.frombuffer(fp.read(), dtype=np.uint8)
        arr = cv2.imdecode(buf, cv2.IMREAD_UNCHANGED | cv2.IMREAD_ANYDEPTH)
        if arr is None or arr.dtype != np.uint16 or arr.ndim != 3:
            return None
        pil8 = np.asarray(img)
        want_alpha = img.mode == "RGBA"
        if arr.shape[:2] != pil8.shape[:2] or arr.shape[2] != (4 if want_alpha else 3):
            return None
        rgb16 = arr[..., 2::-1]  # BGR(A) -> RGB
        if not np.array_equal(rgb16 >> 8, pil8[..., :3]):
            return None
        if want_alpha:
            alpha16 = arr[..., 3]
            if not np.array_equal(alpha16 >> 8, pil8[..., 3]):
                return None
            return _composite_on_white(rgb16, alpha16, 65535)
        return _scale_to_uint8(rgb16, 65535)
    except Exception:
        return None


def _scale_to_uint8(a: np.ndarray, maxval: int) -> np.ndarray:
    """Map integer samples ``0..maxval`` linearly onto ``0..255``, rounding to nearest."""
    if maxval == 255 and a.dtype == np.uint8:
        return np.ascontiguousarray(a)
    if maxval <= 65535:
        a32 = np.clip(a, 0, maxval).astype(np.uint32)
        return ((a32 * 255 + maxval // 2) // maxval).astype(np.uint8)
    scaled = np.rint(np.clip(a.astype(np.float64), 0, maxval) * (255.0 / maxval))
    return scaled.astype(np.uint8)


def _float_to_uint8(a: np.ndarray, source: str | os.PathLike[str]) -> np.ndarray:
    """Map floating-point gray samples to uint8 (see the module docstring for the ranges)."""
    a = np.nan_to_num(a.astype(np.float64), nan=0.0, posinf=np.inf, neginf=0.0)
    top = float(a.max()) if a.size else 0.0
    for scale in (1.0, 255.0, 65535.0):
        if top <= scale:
            return np.rint(np.clip(a, 0.0, scale) * (255.0 / scale)).astype(np.uint8)
    raise ImageReadError(source, "floating-point image with values outside 0..65535")


def _gray_to_rgb(gray: np.ndarray) -> np.ndarray:
    return np.repeat(gray[..., np.newaxis], 3, axis=2)


def _composite_on_white(rgb: np.ndarray, alpha: np.ndarray, maxval: int) -> np.ndarray:
    """Composite straight-alpha colour (``0..maxval``) on white; return uint8 RGB.

    Integer arithmetic with round-to-nearest; ``maxval`` is 255 or 65535.
    """
    a = alpha.astype(np.uint32)[..., np.newaxis]
    c = rgb.astype(np.uint32)
    # c*a + maxval*(maxval - a) <= maxval**2, which fits in uint32 for maxval <= 65535.
    over = (c * a + maxval * (maxval - a) + maxval // 2) // maxval
    return _scale_to_uint8(over, maxval)
