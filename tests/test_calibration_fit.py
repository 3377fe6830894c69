"""The image-based iris edge fit (calibration.fit_iris_edges) on real photos.

Bounds are from ``benchmarks/iris.py`` and the measurements in the commit
history, with some headroom: the fit is opt-in (``PhotoOptions.iris_fit``)
because it is less repeatable than the averaged model on real faces.
"""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from symmetry._mirror import MIRROR
from symmetry.calibration import (
    DEFAULT_IRIS_MM,
    calibrate_from_iris,
    fit_iris_edges,
    iris_diameters_px,
    read_irises,
)
from symmetry.errors import CalibrationError
from symmetry.landmarks import CONTOURS, Side
from symmetry.phantom import upper_lid_occlusion
from symmetry.photo import PhotoOptions, measure_photo

SIDES = (Side.RIGHT, Side.LEFT)


@pytest.fixture(scope="module")
def obama(portraits, landmarker):
    img = portraits["obama"]
    return img, landmarker.detect_averaged(img).points_px


def _draw_irises(rgb: np.ndarray, points_px: np.ndarray, diam: float, blur: float, ss: int = 8) -> np.ndarray:
    """Both irises replaced by dark disks of diameter ``diam`` px (anti-aliased by ``ss``x
    supersampling, then blurred by ``blur`` px) on a wide bright sclera, at the model's centres."""
    out = rgb.astype(float).copy()
    for side in SIDES:
        cx, cy = points_px[CONTOURS[side].iris_center, :2]
        m = int(diam)
        x0, y0 = int(cx) - m, int(cy) - m
        yy, xx = np.mgrid[0 : 2 * m * ss, 0 : 2 * m * ss]
        r = np.hypot(x0 + (xx + 0.5) / ss - cx, y0 + (yy + 0.5) / ss - cy)  # edge-based px, like the landmarks
        fine = np.where(r <= diam / 2, 50.0, 210.0)
        out[y0 : y0 + 2 * m, x0 : x0 + 2 * m] = cv2.resize(fine, (2 * m, 2 * m), interpolation=cv2.INTER_AREA)[..., None]
    out = np.clip(np.rint(out), 0, 255).astype(np.uint8)
    return cv2.GaussianBlur(out, (0, 0), blur)


def _open_lids(points_px: np.ndarray, px: float) -> np.ndarray:
    pts = points_px.copy()
    for side in SIDES:
        c = CONTOURS[side]
        pts[list(c.upper_lid[1:-1]), 1] -= px
        pts[list(c.lower_lid[1:-1]), 1] += px
    return pts


@pytest.mark.parametrize("diam", [19.5, 22.0])
def test_fit_recovers_a_drawn_iris_of_known_diameter(obama, diam):
    img, pts = obama
    pts = _open_lids(pts, 15.0)  # the drawn sclera is wide open: no lid in the way
    drawn = _draw_irises(img, pts, diam, blur=0.7)
    for side, fit in fit_iris_edges(drawn, pts).items():
        assert fit.accepted, fit.reason
        assert abs(fit.diameter_px - diam) < 0.25, (side, fit.diameter_px)  # measured <= 0.2 px
        assert fit.n_medial >= 12 and fit.n_lateral >= 12
        # the edge points lie on the drawn circle, and the medial/lateral points on its horizontal diameter
        centre = pts[CONTOURS[side].iris_center, :2]
        # single edge points scatter more than the diameter (measured up to 0.32 px)
        assert np.abs(np.hypot(*(fit.edge_points_px - centre).T) - diam / 2).max() < 0.4
        assert np.hypot(*(fit.lateral_px - fit.medial_px)) == pytest.approx(fit.diameter_px)


def test_fit_is_mirror_consistent_on_a_real_photo(obama, landmarker):
    img, pts = obama
    flipped = np.ascontiguousarray(img[:, ::-1])
    pts_f = landmarker.detect_averaged(flipped).points_px
    a, b = fit_iris_edges(img, pts), fit_iris_edges(flipped, pts_f)
    for side in SIDES:
        assert a[side].accepted and b[side.other].accepted
        assert abs(a[side].diameter_px - b[side.other].diameter_px) < 0.05  # measured 0.007 px


def test_fit_scales_with_the_photo(obama, landmarker):
    img, pts = obama
    small = cv2.resize(img, None, fx=0.75, fy=0.75, interpolation=cv2.INTER_AREA)
    full = read_irises(pts, img, method="edge")
    part = read_irises(landmarker.detect_averaged(small).points_px, small, method="edge")
    assert full.method == part.method == "edge"
    mean = lambda r: np.mean(list(r.diameter_px.values()))  # noqa: E731
    assert mean(part) / 0.75 == pytest.approx(mean(full), rel=0.025)  # measured 0.7%


@pytest.mark.parametrize("side", SIDES)
def test_an_occluding_lid_is_fitted_through_or_flagged(portraits, landmarker, side):
    """The iris does not change under a sliding lid: the edge scale stays within 3% (measured
    <= 1.9% on this face), or the calibration says it fell back to the model."""
    img = portraits["obama"]
    rest = measure_photo(img, landmarker=landmarker)
    base = calibrate_from_iris(rest.points_px, rgb=img, method="edge")
    assert base.iris_method == "edge" and base.flags == ()
    used = 0
    for drop in (1.0, 2.0, 3.0):
        occ = upper_lid_occlusion(img, rest.points_px, rest.frame, side, drop)
        cal = calibrate_from_iris(landmarker.detect_averaged(occ.image).points_px, rgb=occ.image, method="edge")
        if cal.iris_method == "edge":
            used += 1
            assert cal.mm_per_px == pytest.approx(base.mm_per_px, rel=0.03), drop
        else:
            assert "iris_edge_fallback" in cal.flags
    assert used >= 1  # the 1 mm lid leaves the iris's horizontal edges clear


def test_a_hidden_iris_edge_falls_back_to_the_model_with_its_flag(obama):
    img, pts = obama
    hidden = img.copy()
    c = CONTOURS[Side.LEFT]
    cx, cy = pts[c.iris_center, :2].astype(int)
    r = int(iris_diameters_px(pts)[Side.LEFT])
    hidden[cy - r : cy + r, cx - 2 * r : cx + 2 * r] = np.median(img[cy + 2 * r : cy + 3 * r, cx - r : cx + r], axis=(0, 1))
    fits = fit_iris_edges(hidden, pts)
    assert fits[Side.RIGHT].accepted and not fits[Side.LEFT].accepted
    cal = calibrate_from_iris(pts, rgb=hidden, method="edge")
    assert "iris_edge_fallback" in cal.flags and cal.iris_method == "model"
    assert cal.mm_per_px == pytest.approx(calibrate_from_iris(pts).mm_per_px)


def test_a_closed_eye_is_not_fitted(obama):
    img, pts = obama
    closed = pts.copy()
    c = CONTOURS[Side.RIGHT]
    closed[list(c.upper_lid), 1] = closed[list(c.lower_lid), 1]  # right lids together: eye shut
    reading = read_irises(closed, img, method="edge", sides=(Side.LEFT,))
    assert set(reading.fits) == {Side.LEFT}
    cal = calibrate_from_iris(closed, rgb=img, method="edge")
    assert "one_iris_hidden" in cal.flags and np.isnan(cal.iris_diameter_px["right"])
    assert cal.iris_method == "edge"
    assert cal.mm_per_px == pytest.approx(DEFAULT_IRIS_MM / reading.diameter_px[Side.LEFT])


def test_edge_uncertainty_includes_the_fits_own_error(obama):
    img, pts = obama
    cal = calibrate_from_iris(pts, rgb=img, method="edge")
    d = [cal.iris_diameter_px[s.value] for s in SIDES]
    pair_only = abs(d[0] - d[1]) / 2 / np.mean(d) * cal.mm_per_px
    assert cal.mm_per_px_uncertainty > pair_only
    assert cal.to_dict()["iris_method"] == "edge"


def test_photo_option_switches_the_method_and_says_so(portraits, landmarker):
    img = portraits["obama"]
    default = measure_photo(img, landmarker=landmarker)
    fitted = measure_photo(img, landmarker=landmarker, options=PhotoOptions(iris_fit=True))
    assert default.to_dict()["iris_method"] == "model" and fitted.to_dict()["iris_method"] == "edge"
    assert default.mm_per_px == pytest.approx(calibrate_from_iris(default.points_px).mm_per_px)
    edge = read_irises(fitted.points_px, img, method="edge").diameter_px
    assert fitted.mm_per_px == pytest.approx(DEFAULT_IRIS_MM / np.mean(list(edge.values())))


def test_bad_method_and_missing_image_are_refused(obama):
    _, pts = obama
    with pytest.raises(CalibrationError):
        calibrate_from_iris(pts, method="hough")
    with pytest.raises(CalibrationError):
        calibrate_from_iris(pts, method="edge")


def test_mirror_map_is_an_involution():
    # the mirror test above relies on MIRROR mapping each side's iris to the other's
    assert (MIRROR[MIRROR] == np.arange(len(MIRROR))).all()
    assert MIRROR[CONTOURS[Side.LEFT].iris_center] == CONTOURS[Side.RIGHT].iris_center
