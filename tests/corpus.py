"""The bad-input corpus and the real-face manipulations shared by the hardening tests.

Every file is made at test time from the sample portraits (nothing binary is committed):
``bad_photos`` is what the CLI, the app and a batch must each refuse with the file's name
and a reason; ``turned`` and ``closed_eyes`` are real faces that must be flagged or
measured with the session's scale.
"""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

from conftest import PORTRAITS

OBAMA = PORTRAITS["obama"]

#: bad photo file name -> the words its one-line reason must contain
BAD_PHOTO_REASONS = {
    "empty.jpg": "empty",
    "notes.jpg": "not an image",
    "truncated.jpg": "truncated",
    "bomb.png": "too large",
    "one_pixel.png": "too small",
    "wall.png": "no face",
    "small_face.png": "face too small",
}


def png_declaring(width: int, height: int) -> bytes:
    """A tiny PNG whose header declares width x height (a decompression bomb)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\x00" * 64)) + chunk(b"IEND", b"")


def bad_photos(folder: Path) -> dict[str, Path]:
    """Write the bad-photo corpus (:data:`BAD_PHOTO_REASONS`) into ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    files = {
        "empty.jpg": b"",
        "notes.jpg": b"these are clinic notes, not a photo\n",
        "truncated.jpg": OBAMA.read_bytes()[: OBAMA.stat().st_size // 2],
        "bomb.png": png_declaring(60000, 60000),
    }
    out = {}
    for name, data in files.items():
        path = folder / name
        path.write_bytes(data)
        out[name] = path
    tiny = folder / "one_pixel.png"
    Image.new("RGB", (1, 1)).save(tiny)
    out["one_pixel.png"] = tiny
    noface = folder / "wall.png"
    cv2.imwrite(str(noface), np.full((480, 640, 3), 180, np.uint8))
    out["wall.png"] = noface
    small = folder / "small_face.png"
    img = cv2.imread(str(OBAMA))
    cv2.imwrite(str(small), cv2.resize(img, None, fx=0.22, fy=0.22, interpolation=cv2.INTER_AREA))
    out["small_face.png"] = small
    return out


def turned(rgb: np.ndarray, points: np.ndarray, degrees: float) -> np.ndarray:
    """The face turned about the vertical axis by ``degrees`` (its 3-D landmarks rotated, the image
    warped piecewise-affinely from the old to the new landmark positions; background fixed)."""
    from scipy.spatial import Delaunay

    h, w = rgb.shape[:2]
    a = np.radians(degrees)
    c, z0 = points[:, :2].mean(axis=0), points[:, 2].mean()
    x, z = points[:, 0] - c[0], points[:, 2] - z0
    moved = np.c_[x * np.cos(a) + z * np.sin(a) + c[0], points[:, 1]]
    border = np.array([[0, 0], [w - 1, 0], [w - 1, h - 1], [0, h - 1], [w / 2, 0], [w / 2, h - 1], [0, h / 2], [w - 1, h / 2]])
    src, dst = np.vstack([points[:, :2], border]), np.vstack([moved, border])
    tri = Delaunay(dst)
    yy, xx = np.mgrid[0:h, 0:w]
    q = np.c_[xx.ravel(), yy.ravel()].astype(float)
    s = tri.find_simplex(q)
    t = tri.transform[s]
    b = np.einsum("nij,nj->ni", t[:, :2], q - t[:, 2])
    back = np.einsum("ni,nij->nj", np.c_[b, 1 - b.sum(axis=1)], src[tri.simplices[s]])
    maps = back.reshape(h, w, 2).astype(np.float32)
    return cv2.remap(rgb, maps[..., 0], maps[..., 1], cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)


def closed_eyes(rgb: np.ndarray, rest, sides=("left", "right")) -> np.ndarray:  # type: ignore[no-untyped-def]
    """The photo with the upper lids of ``sides`` slid down over the eyes to 95% of the fissure
    (:func:`symmetry.phantom.upper_lid_occlusion`): the iris is hidden, as in eye closure.
    ``rest`` is the photo's :class:`~symmetry.photo.PhotoResult`."""
    from symmetry.landmarks import Side
    from symmetry.phantom import upper_lid_occlusion

    out = rgb
    for side in sides:
        drop = 0.95 * rest.value("palpebral_fissure_height", side)
        out = upper_lid_occlusion(out, rest.points_px, rest.frame, Side(side), drop, spread_mm=8.0).image
    return out
