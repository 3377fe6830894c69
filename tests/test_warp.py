"""Tests of symmetry.warp: exact ground-truth warps of real and synthetic images.

Two kinds of evidence that the rendered image moves content by exactly
``displacement_at``:

* coordinate ramps: an image whose channels are the x and y coordinates is
  resampled exactly by the warp's cubic kernel, so the warped image *is* the
  backward map ``q -> p``; ``p + D(p) = q`` is then checked at every pixel;
* blobs: Gaussian spots at sub-pixel positions on a textured background are
  located in the warped image by intensity centroid.
"""

from __future__ import annotations

import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from symmetry.warp import displacement_at, warp_image

SAMPLES = Path(__file__).resolve().parents[1] / "sample_media"


# --------------------------------------------------------------------------- #
# Helpers
# --------------------------------------------------------------------------- #
def ramps(h: int, w: int) -> np.ndarray:
    """Float64 image (h, w, 2) whose channels are the pixel's x and y."""
    y, x = np.mgrid[0:h, 0:w].astype(np.float64)
    return np.stack([x, y], axis=2)


def texture(h: int, w: int, seed: int) -> np.ndarray:
    """Smooth random float64 texture in [0.25, 0.75], like skin at a few px scale."""
    rng = np.random.default_rng(seed)
    noise = cv2.GaussianBlur(rng.random((h, w)), (0, 0), 2.0)
    noise = (noise - noise.min()) / (noise.max() - noise.min())
    return 0.25 + 0.5 * noise


def blobs(h: int, w: int, centres: np.ndarray, width: float) -> np.ndarray:
    """Sum of unit Gaussian spots of std ``width`` px at sub-pixel ``centres`` (x, y)."""
    y, x = np.mgrid[0:h, 0:w].astype(np.float64)
    out = np.zeros((h, w))
    for cx, cy in centres:
        out += np.exp(-((x - cx) ** 2 + (y - cy) ** 2) / (2.0 * width**2))
    return out


def centroid(image: np.ndarray, near: np.ndarray, radius: float) -> np.ndarray:
    """Intensity centroid (x, y) of ``image`` in a square of half-side ``radius`` at ``near``."""
    x0, x1 = int(np.floor(near[0] - radius)), int(np.ceil(near[0] + radius)) + 1
    y0, y1 = int(np.floor(near[1] - radius)), int(np.ceil(near[1] + radius)) + 1
    patch = image[y0:y1, x0:x1]
    y, x = np.mgrid[y0:y1, x0:x1]
    return np.array([(patch * x).sum(), (patch * y).sum()]) / patch.sum()


def forward_centroid(centre, width, anchors, disp, sigma, fixed) -> np.ndarray:
    """Where the centroid of a warped Gaussian spot should be, from the forward field alone.

    The warped spot's centroid is the spot's intensity-weighted mean of
    ``p + D(p)``, each source area element weighted by ``det(I + grad D)``
    (its area after the warp). Integrated on a 0.1 px grid, with the
    gradient by central differences of :func:`displacement_at`; independent
    of how warp_image inverts and resamples.
    """
    t = np.arange(-6 * width, 6 * width + 1e-9, 0.1)
    gy, gx = np.meshgrid(centre[1] + t, centre[0] + t, indexing="ij")
    p = np.column_stack([gx.ravel(), gy.ravel()])
    spot = np.exp(-((p - centre) ** 2).sum(axis=1) / (2 * width**2))

    def field(q):
        return displacement_at(q, anchors, disp, sigma, fixed_px=fixed)

    h = 1e-4
    d_dx = (field(p + [h, 0]) - field(p - [h, 0])) / (2 * h)
    d_dy = (field(p + [0, h]) - field(p - [0, h])) / (2 * h)
    det = (1 + d_dx[:, 0]) * (1 + d_dy[:, 1]) - d_dy[:, 0] * d_dx[:, 1]
    weight = spot * det
    return (weight[:, None] * (p + field(p))).sum(axis=0) / weight.sum()


def random_displacements(rng: np.random.Generator, k: int, lo: float = 2.0, hi: float = 12.0):
    """``k`` displacements of magnitude in [lo, hi] px in uniformly random directions."""
    angle = rng.uniform(0, 2 * np.pi, k)
    size = rng.uniform(lo, hi, k)
    return np.column_stack([size * np.cos(angle), size * np.sin(angle)])


def lattice_scene(seed: int):
    """5 anchors (sub-pixel, >= 60 px apart) moving 2-12 px, 1 fixed point; for a 320x240 image."""
    rng = np.random.default_rng(seed)
    anchors = np.array([[100, 80], [170, 80], [240, 80], [100, 160], [240, 160]], float)
    anchors += rng.uniform(-0.5, 0.5, anchors.shape)
    disp = random_displacements(rng, len(anchors))
    fixed = np.array([[170.0, 160.0]]) + rng.uniform(-0.5, 0.5, (1, 2))
    return anchors, disp, fixed


# --------------------------------------------------------------------------- #
# displacement_at: the ground truth itself
# --------------------------------------------------------------------------- #
def _configs():
    rng = np.random.default_rng(7)
    anchors = rng.uniform(0, 400, (6, 2))
    fixed = rng.uniform(0, 400, (3, 2))
    return {
        "one anchor": ([[50.3, 60.7]], [[4.0, -2.5]], None, 10.0),
        "anchors and fixed": (
            [[100, 100], [140, 100], [120, 150]],
            [[-3, 1], [3, 1], [0, 6]],
            [[120, 100], [120, 60]],
            15.0,
        ),
        "per-point sigma": (
            [[100, 100], [140, 100.5]],
            [[-3, 1], [12, 0]],
            [[120, 130]],
            np.array([8.0, 20.0, 12.0]),
        ),
        "lids 8 px apart": ([[200, 100]], [[0, 3]], [[200, 108], [200, 104], [260, 100]], 6.0),
        "random": (anchors, random_displacements(rng, 6), fixed, 40.0),
    }


@pytest.mark.parametrize("name", list(_configs()))
def test_displacement_exact_at_anchors_and_zero_at_fixed(name):
    anchors, disp, fixed, sigma = _configs()[name]
    at_anchors = displacement_at(anchors, anchors, disp, sigma, fixed_px=fixed)
    np.testing.assert_allclose(at_anchors, np.asarray(disp, float), rtol=0, atol=1e-9)
    if fixed is not None:
        at_fixed = displacement_at(fixed, anchors, disp, sigma, fixed_px=fixed)
        assert np.abs(at_fixed).max() < 1e-9


def test_single_anchor_is_a_gaussian_bump():
    a = np.array([[30.0, 40.0]])
    d = np.array([[5.0, -2.0]])
    p = np.array([[30.0, 40.0], [40.0, 40.0], [30.0, 20.0], [130.0, 40.0], [-500.0, 7.0]])
    r2 = ((p - a) ** 2).sum(axis=1)
    expected = d * np.exp(-r2 / (2 * 10.0**2))[:, None]
    np.testing.assert_allclose(displacement_at(p, a, d, 10.0), expected, rtol=1e-12, atol=1e-300)


def test_displacement_at_shapes():
    out = displacement_at(np.zeros((0, 2)), [[1.0, 2.0]], [[1.0, 0.0]], 5.0)
    assert out.shape == (0, 2) and out.dtype == np.float64
    out = displacement_at([[1, 2], [3, 4], [5, 6]], [[1.0, 2.0]], [[1.0, 0.0]], 5.0)
    assert out.shape == (3, 2)


# --------------------------------------------------------------------------- #
# Rendering: coordinate ramps (the backward map, exactly)
# --------------------------------------------------------------------------- #
@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("sigma", [12.0, 25.0, "per-point"])
def test_rendered_map_inverts_displacement_at(seed, sigma):
    anchors, disp, fixed = lattice_scene(seed)
    if sigma == "per-point":
        sigma = np.random.default_rng(seed).uniform(10, 30, len(anchors) + len(fixed))
    h, w = 240, 320
    warped = warp_image(ramps(h, w), anchors, disp, sigma, fixed_px=fixed)
    # keep 3 px from the border, where the reflected ramp is no longer linear
    src = warped[3:-3, 3:-3].reshape(-1, 2)  # p for every output pixel q
    q = ramps(h, w)[3:-3, 3:-3].reshape(-1, 2)
    forward = src + displacement_at(src, anchors, disp, sigma, fixed_px=fixed)
    residual = np.abs(forward - q).max(axis=1)
    moved = np.abs(displacement_at(q, anchors, disp, sigma, fixed_px=fixed)).max(axis=1) > 2e-3
    assert moved.sum() > 1000
    # exact where the warp acts; outside it, only the documented 1e-3 px truncation
    assert residual[moved].max() < 1e-7
    assert residual.max() < 1e-3


@pytest.mark.parametrize(
    "anchors, disp, fixed",
    [
        # upper lid margin 3 px down; lower lid (8 px below), iris centre between, other eye fixed
        ([[160, 100]], [[0, 3]], [[160, 108], [160, 70], [260, 100]]),
        # opposite displacements of two margins 8 px apart: upper down 2, lower up 2
        ([[160, 100], [160, 108]], [[0, 2], [0, -2]], [[160, 70], [260, 100]]),
        # oblique, sub-pixel
        ([[160.25, 100.5], [167.0, 104.0]], [[1.5, 2.5], [-1.0, -2.0]], [[152.0, 107.0]]),
    ],
    ids=["lid down, other lid fixed", "lids toward each other", "oblique"],
)
def test_exact_at_two_nearby_points(anchors, disp, fixed):
    anchors, disp, fixed = (np.asarray(v, float) for v in (anchors, disp, fixed))
    sigma = 6.0
    np.testing.assert_allclose(
        displacement_at(anchors, anchors, disp, sigma, fixed_px=fixed), disp, rtol=0, atol=1e-9
    )
    assert np.abs(displacement_at(fixed, anchors, disp, sigma, fixed_px=fixed)).max() < 1e-9

    warped = warp_image(ramps(240, 320), anchors, disp, sigma, fixed_px=fixed)
    # the content now at anchor + d came from the anchor; at a fixed point, from itself
    for target, origin in [*zip(anchors + disp, anchors), *zip(fixed, fixed)]:
        if np.allclose(target, np.round(target)):  # a pixel centre: read the map directly
            col, row = np.round(target).astype(int)
            np.testing.assert_allclose(warped[row, col], origin, rtol=0, atol=1e-7)
    # everywhere the warp acts (|D| > 2e-3 px), the map is the exact inverse of the field
    q = ramps(240, 320)[60:140, 120:200].reshape(-1, 2)
    p = warped[60:140, 120:200].reshape(-1, 2)
    residual = np.abs(p + displacement_at(p, anchors, disp, sigma, fixed_px=fixed) - q).max(axis=1)
    moved = np.abs(displacement_at(q, anchors, disp, sigma, fixed_px=fixed)).max(axis=1) > 2e-3
    assert moved.sum() > 300
    assert residual[moved].max() < 1e-7
    assert residual.max() < 1e-3


# --------------------------------------------------------------------------- #
# Rendering: blobs on a textured background
# --------------------------------------------------------------------------- #
@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_blob_centroids_move_by_displacement_at(seed):
    anchors, disp, fixed = lattice_scene(seed)
    sigma, width = 30.0, 1.0
    h, w = 240, 320
    centres = np.vstack([anchors, fixed])
    background = texture(h, w, seed)
    spotted = background + blobs(h, w, centres, width)
    with_blobs = warp_image(spotted, anchors, disp, sigma, fixed_px=fixed)
    without = warp_image(background, anchors, disp, sigma, fixed_px=fixed)
    truth = displacement_at(centres, anchors, disp, sigma, fixed_px=fixed)

    found = with_blobs - without  # the warped blobs alone
    moved = np.array([centroid(found, c + d, 6 * width) for c, d in zip(centres, truth)])
    error = np.abs(moved - (centres + truth)).max(axis=1)
    assert error[: len(anchors)].max() < 0.05  # anchors: moved by exactly d_i (2-12 px)
    assert np.abs(moved[len(anchors) :] - fixed).max() < 0.05  # fixed point: did not move
    # the blobs did move (the test can fail)
    assert np.linalg.norm(moved[: len(anchors)] - anchors, axis=1).min() > 1.5


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("sigma", [15.0, 25.0])
def test_blob_centroids_match_forward_model(seed, sigma):
    """Tighter: compare with the centroid the forward field predicts, stretch included."""
    anchors, disp, fixed = lattice_scene(seed)
    width = 2.0
    h, w = 240, 320
    centres = np.vstack([anchors, fixed])
    warped = warp_image(blobs(h, w, centres, width), anchors, disp, sigma, fixed_px=fixed)
    for c in centres:
        expected = forward_centroid(c, width, anchors, disp, sigma, fixed)
        assert np.abs(centroid(warped, expected, 6 * width) - expected).max() < 0.01


def test_far_from_control_points_image_is_unchanged():
    h, w = 400, 600
    image = (texture(h, w, 5) * 255).astype(np.uint8)
    anchors = np.array([[150.0, 120.0], [190.5, 125.25]])
    disp = np.array([[8.0, -3.0], [-4.0, 6.0]])
    fixed = np.array([[170.0, 160.0]])
    sigma = 15.0
    out = warp_image(image, anchors, disp, sigma, fixed_px=fixed)
    y, x = np.mgrid[0:h, 0:w]
    controls = np.vstack([anchors, fixed])
    dist = np.min(np.hypot(x[..., None] - controls[:, 0], y[..., None] - controls[:, 1]), axis=2)
    far = dist > 5 * sigma
    assert far.mean() > 0.5
    np.testing.assert_array_equal(out[far], image[far])
    near = dist < sigma
    assert np.mean(out[near] != image[near]) > 0.5


def test_moves_content_in_from_outside_and_handles_borders():
    image = texture(120, 160, 3)
    # an anchor in the corner: content is pulled in from beyond the border (reflected)
    out = warp_image(image, [[2.0, 3.0]], [[5.0, 4.0]], 6.0)
    assert out.shape == image.shape and np.isfinite(out).all()
    assert not np.array_equal(out, image)
    # a control point whose field cannot reach the image changes nothing
    out = warp_image(image, [[-200.0, 50.0]], [[5.0, 4.0]], 6.0)
    np.testing.assert_array_equal(out, image)


# --------------------------------------------------------------------------- #
# dtype, shape, identity
# --------------------------------------------------------------------------- #
def _image(kind: str) -> np.ndarray:
    base = texture(120, 160, 11)
    rgb = np.stack([base, base[::-1], base[:, ::-1]], axis=2)
    return {
        "uint8 gray": (base * 255).round().astype(np.uint8),
        "uint8 rgb": (rgb * 255).round().astype(np.uint8),
        "uint8 rgba": (np.dstack([rgb, base]) * 255).round().astype(np.uint8),
        "uint16 rgb": (rgb * 65535).round().astype(np.uint16),
        "float32 rgb": rgb.astype(np.float32),
        "float64 gray": base,
        "int16 gray": (base * 1000 - 500).round().astype(np.int16),
    }[kind]


KINDS = [
    "uint8 gray",
    "uint8 rgb",
    "uint8 rgba",
    "uint16 rgb",
    "float32 rgb",
    "float64 gray",
    "int16 gray",
]


@pytest.mark.parametrize("kind", KINDS)
def test_dtype_and_shape_preserved(kind):
    image = _image(kind)
    anchors, disp, fixed = [[70.0, 60.0]], [[6.0, -4.0]], [[100.0, 60.0]]
    out = warp_image(image, anchors, disp, 10.0, fixed_px=fixed)
    assert out.shape == image.shape and out.dtype == image.dtype
    assert not np.array_equal(out, image)
    # same result as warping in float64 and then rounding to the dtype
    reference = warp_image(image.astype(np.float64), anchors, disp, 10.0, fixed_px=fixed)
    if image.dtype.kind in "ui":
        info = np.iinfo(image.dtype)
        reference = np.clip(np.rint(reference), info.min, info.max)
        assert np.abs(out.astype(np.float64) - reference).max() <= 1  # float32 work, rounding ties
    else:
        np.testing.assert_allclose(out, reference, rtol=0, atol=1e-5)


@pytest.mark.parametrize("kind", KINDS)
def test_zero_displacement_is_identity(kind):
    image = _image(kind)
    zero = [[0.0, 0.0], [0.0, 0.0]]
    out = warp_image(image, [[70.0, 60.0], [90, 61]], zero, 10.0, fixed_px=[[80, 80]])
    assert out is not image
    np.testing.assert_array_equal(out, image)


def test_input_is_not_modified():
    image = _image("uint8 rgb")
    before = image.copy()
    warp_image(image, [[70.0, 60.0]], [[6.0, -4.0]], 10.0)
    np.testing.assert_array_equal(image, before)


# --------------------------------------------------------------------------- #
# Errors
# --------------------------------------------------------------------------- #
@pytest.mark.parametrize(
    "anchors, disp, fixed",
    [
        ([[100.0, 100.0]], [[20.0, 0.0]], None),  # 20 px shove with sigma 5: overtakes itself
        # upper lid pushed past the fixed lower lid
        ([[100.0, 100.0]], [[0.0, 10.0]], [[100.0, 108.0]]),
        ([[100.0, 100.0], [108.0, 100.0]], [[6.0, 0.0], [-6.0, 0.0]], None),  # two points cross
    ],
    ids=["too strong", "through a fixed point", "crossing"],
)
def test_fold_raises(anchors, disp, fixed):
    image = np.zeros((200, 200), np.uint8)
    with pytest.raises(ValueError, match=r"folds.*Widen `sigma_px` or reduce `displacements_px`"):
        warp_image(image, anchors, disp, 5.0, fixed_px=fixed)
    # a gentler version of the same warp is accepted
    warp_image(image, anchors, np.asarray(disp) / 8, 5.0, fixed_px=fixed)


SHAPE_K2 = r"`displacements_px` must have shape \(K, 2\) like `anchors_px`"


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"anchors_px": [1.0, 2.0]}, r"`anchors_px` must have shape \(N, 2\)"),
        (
            {"anchors_px": np.zeros((0, 2)), "displacements_px": np.zeros((0, 2))},
            "`anchors_px` must contain",
        ),
        ({"anchors_px": [[np.nan, 2.0]]}, "`anchors_px` must be finite"),
        ({"displacements_px": [[1.0, 2.0], [3.0, 4.0]]}, SHAPE_K2),
        ({"displacements_px": [[1.0, 2.0, 3.0]]}, SHAPE_K2),
        ({"displacements_px": [[np.inf, 0.0]]}, "`displacements_px` must be finite"),
        ({"fixed_px": [[1.0, 2.0, 3.0]]}, r"`fixed_px` must have shape \(N, 2\)"),
        (
            {"sigma_px": [5.0, 5.0, 5.0]},
            r"`sigma_px` must be a float or have shape \(K \+ M,\) = \(2,\)",
        ),
        ({"sigma_px": -1.0}, r"`sigma_px` must be finite and > 0"),
        ({"sigma_px": 0.0}, r"`sigma_px` must be finite and > 0"),
        ({"fixed_px": [[50.0, 60.0]]}, r"distinct: anchors_px\[0\] and fixed_px\[0\]"),
        (
            {"anchors_px": [[50.0, 60.0], [50.0, 60.0]], "displacements_px": [[1, 0], [1, 0]]},
            "distinct",
        ),
        (
            {
                "anchors_px": [[50.0, 60.0], [50.0, 60.001]],
                "displacements_px": [[1, 0], [1, 0]],
                "sigma_px": 50.0,
            },
            "too close",
        ),
    ],
)
def test_invalid_inputs_raise_naming_the_argument(kwargs, match):
    args = {
        "anchors_px": [[50.0, 60.0]],
        "displacements_px": [[3.0, 0.0]],
        "sigma_px": 5.0,
        "fixed_px": [[70.0, 60.0]],
    }
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        displacement_at([[0.0, 0.0]], **args)
    with pytest.raises(ValueError, match=match):
        warp_image(np.zeros((100, 100), np.uint8), **args)


@pytest.mark.parametrize(
    "image, match",
    [
        (np.zeros(10, np.uint8), r"`image` must have shape \(H, W\) or \(H, W, C\)"),
        (np.zeros((10, 10, 3, 2), np.uint8), r"`image` must have shape"),
        (np.zeros((0, 10), np.uint8), r"`image` must have shape"),
        (np.zeros((10, 10), bool), "`image` must have an integer or floating dtype"),
        (np.zeros((10, 10), complex), "`image` must have an integer or floating dtype"),
    ],
)
def test_invalid_image_raises(image, match):
    with pytest.raises(ValueError, match=match):
        warp_image(image, [[5.0, 5.0]], [[1.0, 0.0]], 3.0)


def test_points_px_validated():
    with pytest.raises(ValueError, match=r"`points_px` must have shape \(N, 2\)"):
        displacement_at([1.0, 2.0, 3.0], [[5.0, 5.0]], [[1.0, 0.0]], 3.0)


def test_render_needs_sigma_of_at_least_one_pixel():
    displacement_at([[0.0, 0.0]], [[5.0, 5.0]], [[0.1, 0.0]], 0.5)  # the field itself is fine
    with pytest.raises(ValueError, match=r"`sigma_px` must be >= 1"):
        warp_image(np.zeros((20, 20)), [[5.0, 5.0]], [[0.1, 0.0]], 0.5)


# --------------------------------------------------------------------------- #
# A real portrait at 1280x720
# --------------------------------------------------------------------------- #
def test_real_photo_1280x720_runs():
    photo = cv2.imread(str(SAMPLES / "obama.jpg"), cv2.IMREAD_COLOR)
    assert photo is not None, "sample_media/obama.jpg is missing"
    photo = cv2.resize(photo, (1280, 720), interpolation=cv2.INTER_AREA)
    # rough mouth corners and upper lids of a centred face; irises and the other
    # commissure fixed
    anchors = np.array([[560.0, 520.0], [545.0, 300.0], [735.0, 300.0]])
    disp = np.array([[-6.0, -4.0], [0.0, 3.0], [0.0, -2.0]])
    fixed = np.array([[720.0, 520.0], [545.0, 318.0], [735.0, 318.0]])
    sigma = 20.0
    start = time.perf_counter()
    out = warp_image(photo, anchors, disp, sigma, fixed_px=fixed)
    elapsed = time.perf_counter() - start
    print(
        f"warp_image 1280x720x3 uint8, {len(anchors)} anchors + {len(fixed)} fixed, "
        f"sigma {sigma}: {elapsed:.3f} s"
    )
    assert out.shape == photo.shape and out.dtype == photo.dtype
    assert not np.array_equal(out[480:560, 520:600], photo[480:560, 520:600])
    np.testing.assert_array_equal(out[:150], photo[:150])  # far above the face features
