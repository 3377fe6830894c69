"""Geometry of the measures on hand-built landmark arrays (answers worked out by hand)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from symmetry.calibration import calibrate_from_iris, session_calibration
from symmetry.frame import pupil_frame
from symmetry.measures import (
    MOVEMENT_MEASURES,
    STATIC_MEASURES,
    asymmetry_measures,
    movement_measures,
    static_measures,
)

from synthetic import MM_PER_PX, synthetic_face, transform


def _values(rows):
    return {(m.name, m.side): m.value for m in rows}


def _static(points):
    cal = calibrate_from_iris(points)
    frame = pupil_frame(points, cal.mm_per_px)
    return _values(static_measures(frame.to_mm(points)))


def test_scale_from_iris_by_hand():
    cal = calibrate_from_iris(synthetic_face())
    assert cal.mm_per_px == pytest.approx(MM_PER_PX)
    assert cal.mm_per_px_uncertainty == pytest.approx(0.0)
    assert cal.iris_diameter_px == {"right": pytest.approx(20.0), "left": pytest.approx(20.0)}


def test_static_measures_by_hand():
    v = _static(synthetic_face())
    s = MM_PER_PX
    for side in ("left", "right"):
        assert v[("commissure_x", side)] == pytest.approx(30 * s)
        assert v[("commissure_y", side)] == pytest.approx(-150 * s)
        assert v[("commissure_excursion", side)] == pytest.approx(math.hypot(30, 20) * s)
        assert v[("smile_angle", side)] == pytest.approx(math.degrees(math.atan2(20, 30)))
        assert v[("palpebral_fissure_height", side)] == pytest.approx(20 * s)
        assert v[("mrd1", side)] == pytest.approx(12 * s)
        assert v[("mrd2", side)] == pytest.approx(8 * s)
        assert v[("brow_height", side)] == pytest.approx(40 * s)
        # halfway between midline (x=150) and commissure: x offset 15 px
        assert v[("upper_lip_height", side)] == pytest.approx(-(245 - 100) * s)
        assert v[("lower_lip_height", side)] == pytest.approx(-(260 - 100) * s)
        t = 15 / 28  # fraction of the way from the midline to the inner corner
        gap = (258 - 8 * t) - (252 - 2 * t)
        assert v[("interlabial_gap", side)] == pytest.approx(gap * s)


def test_all_names_and_units_present():
    rows = static_measures(pupil_frame(synthetic_face(), MM_PER_PX).to_mm(synthetic_face()))
    assert [(m.name, m.side) for m in rows] == [(n, s) for n in STATIC_MEASURES for s in ("right", "left")]
    units = {m.name: m.unit for m in rows}
    assert units["smile_angle"] == "deg" and units["commissure_excursion"] == "mm"


@pytest.mark.parametrize("angle", [-25.0, -10.0, 7.5, 10.0, 30.0])
@pytest.mark.parametrize("scale", [0.5, 1.0, 3.0])
def test_invariant_to_roll_scale_and_translation(angle, scale):
    base = _static(synthetic_face({"left": (4, -6)}))
    moved = _static(transform(synthetic_face({"left": (4, -6)}), angle_deg=angle, scale=scale, shift=(37, -12)))
    for key, value in base.items():
        assert moved[key] == pytest.approx(value, abs=1e-9), key


def test_mirrored_image_swaps_sides():
    # Flip the image horizontally: anatomy is mirrored, the model's labels follow image
    # position, so the model's "left" now holds what was the right side.
    pts = synthetic_face({"left": (6, -9)})
    flipped = pts.copy()
    flipped[:, 0] = 300 - pts[:, 0]
    from symmetry.landmarks import CONTOURS, Side

    relabelled = flipped.copy()
    for a, b in zip(
        [getattr(CONTOURS[Side.RIGHT], f) for f in ("commissure", "iris_center", "iris_medial", "iris_lateral")],
        [getattr(CONTOURS[Side.LEFT], f) for f in ("commissure", "iris_center", "iris_medial", "iris_lateral")],
    ):
        relabelled[[a, b]] = flipped[[b, a]]
    for chain_name in ("upper_lid", "lower_lid", "brow", "outer_upper_lip", "outer_lower_lip", "inner_upper_lip", "inner_lower_lip", ):
        ra, la = getattr(CONTOURS[Side.RIGHT], chain_name), getattr(CONTOURS[Side.LEFT], chain_name)
        relabelled[list(ra)] = flipped[list(la)]
        relabelled[list(la)] = flipped[list(ra)]
    a, b = _static(pts), _static(relabelled)
    for name in STATIC_MEASURES:
        assert b[(name, "left")] == pytest.approx(a[(name, "right")], abs=1e-9)
        assert b[(name, "right")] == pytest.approx(a[(name, "left")], abs=1e-9)


def test_frame_up_points_to_forehead_even_when_mirrored():
    pts = synthetic_face()
    mirrored = pts.copy()
    mirrored[:, 0] = 300 - pts[:, 0]  # labels kept: x axis now points image-left
    f = pupil_frame(mirrored, 1.0)
    assert f.to_mm(mirrored[[10]])[0, 1] > 0  # forehead is up
    assert f.to_mm(mirrored[[152]])[0, 1] < 0


def test_movement_by_hand():
    rest = synthetic_face()
    smile = synthetic_face({"left": (8, -6), "right": (-3, -4)})
    f = pupil_frame(rest, MM_PER_PX)
    v = _values(movement_measures(f.to_mm(rest), f.to_mm(smile)))
    assert v[("commissure_movement", "left")] == pytest.approx(10 * MM_PER_PX)
    assert v[("commissure_movement", "right")] == pytest.approx(5 * MM_PER_PX)
    # lateral and up: atan2(6, 8) and atan2(4, 3)
    assert v[("commissure_movement_angle", "left")] == pytest.approx(math.degrees(math.atan2(6, 8)))
    assert v[("commissure_movement_angle", "right")] == pytest.approx(math.degrees(math.atan2(4, 3)))
    assert v[("palpebral_fissure_change", "left")] == pytest.approx(0.0)
    assert [m for m in MOVEMENT_MEASURES if (m, "left") not in v] == []


def test_direction_of_a_still_commissure_is_not_reported():
    rest = synthetic_face()
    f = pupil_frame(rest, MM_PER_PX)
    still = _values(movement_measures(f.to_mm(rest), f.to_mm(rest)))
    assert still[("commissure_movement", "left")] == 0.0
    assert math.isnan(still[("commissure_movement_angle", "left")])
    assert math.isnan(still[("commissure_movement_angle", "right")])
    # 0.15 mm straight up on the left: above the threshold, so it has a direction
    nudged = synthetic_face({"left": (0, -0.15 / MM_PER_PX)})
    v = _values(movement_measures(f.to_mm(rest), f.to_mm(nudged)))
    assert v[("commissure_movement_angle", "left")] == pytest.approx(90.0)
    assert math.isnan(v[("commissure_movement_angle", "right")])


def test_eyelid_drop_changes_fissure_on_its_side_only():
    rest = synthetic_face()
    drop = rest.copy()
    from symmetry.landmarks import CONTOURS, Side

    drop[list(CONTOURS[Side.LEFT].upper_lid[1:-1]), 1] += 5  # lid margin 5 px down
    f = pupil_frame(rest, MM_PER_PX)
    v = _values(movement_measures(f.to_mm(rest), f.to_mm(drop)))
    assert v[("palpebral_fissure_change", "left")] == pytest.approx(-25.0)
    assert v[("palpebral_fissure_change", "right")] == pytest.approx(0.0)


def test_asymmetry_and_ratio():
    v = _static(synthetic_face({"left": (0, 10)}))  # left corner 10 px lower
    from symmetry.measures import Measure

    rows = [Measure(n, s, val, "mm") for (n, s), val in v.items()]
    asym = _values(asymmetry_measures(rows, "left"))
    assert asym[("commissure_y_asymmetry", "midline")] == pytest.approx(10 * MM_PER_PX)
    ratio = asym[("commissure_excursion_ratio", "midline")]
    assert ratio == pytest.approx(math.hypot(30, 10) / math.hypot(30, 20))
    assert ("commissure_y_ratio", "midline") not in asym  # signed position: no ratio
    assert ("commissure_excursion_ratio", "midline") not in _values(asymmetry_measures(rows, None))


def test_session_scale_follows_inter_pupil_distance():
    pts = synthetic_face()
    ref = calibrate_from_iris(pts)
    half = session_calibration(ref, 100.0, 50.0)  # same face at half the pixel size
    assert half.mm_per_px == pytest.approx(2 * ref.mm_per_px)
    assert half.source.value == "session"


def test_tiny_iris_is_refused():
    from symmetry.errors import FaceTooSmallError

    with pytest.raises(FaceTooSmallError, match="face too small"):
        calibrate_from_iris(transform(synthetic_face(), scale=0.1), source="tiny.jpg")


def _close_eye(points, side, gap_px):
    from symmetry.landmarks import CONTOURS, Side

    out = points.copy()
    c = CONTOURS[Side(side)]
    # upper lid margin down to gap_px above the lower lid along the whole eye
    for u, l in zip(c.upper_lid[1:-1], c.lower_lid[1:-1]):
        out[u, 1] = out[l, 1] - gap_px
    return out


def test_both_eyes_closed_give_no_scale():
    from symmetry.errors import IrisHiddenError

    pts = _close_eye(_close_eye(synthetic_face(), "left", 2.0), "right", 2.0)
    with pytest.raises(IrisHiddenError, match="eyes closed"):
        calibrate_from_iris(pts, source="closed.jpg")


def test_one_eye_closed_uses_the_other_iris():
    pts = synthetic_face()
    pts[[471, 469], 0] += (-2.0, 2.0)  # right iris 24 px wide, left 20 px
    closed = _close_eye(pts, "right", 2.0)
    cal = calibrate_from_iris(closed)
    assert "one_iris_hidden" in cal.flags
    assert cal.mm_per_px == pytest.approx(11.77 / 20.0)  # the open left iris alone
    assert math.isnan(cal.iris_diameter_px["right"])
    assert calibrate_from_iris(pts).mm_per_px == pytest.approx(11.77 / 22.0)


def test_the_vectorised_static_measures_equal_the_per_photo_ones(landmarker, portraits):
    """static_measure_array (the video series) is static_measures (photos) over many frames."""
    from symmetry.measures import static_measure_array

    rng = np.random.default_rng(3)
    frames = []
    for img in portraits.values():
        pts = landmarker.detect(img).points_px
        for _ in range(20):  # the real face, jittered point by point and moved as a whole
            p = pts.copy()
            p[:, :2] += rng.normal(0.0, 1.5, size=(len(p), 2))
            frames.append(transform(p, angle_deg=rng.uniform(-20, 20), scale=rng.uniform(0.5, 2), shift=(5.0, -3.0)))
    mm = np.stack([pupil_frame(p, 0.2).to_mm(p) for p in frames])
    batch = static_measure_array(mm)
    for k, p in enumerate(mm):
        one = _values(static_measures(p))
        for i, name in enumerate(STATIC_MEASURES):
            assert batch[k, i, 0] == pytest.approx(one[(name, "right")], abs=1e-9)
            assert batch[k, i, 1] == pytest.approx(one[(name, "left")], abs=1e-9)
    gone = mm.copy()
    gone[3] = np.nan  # a frame without a face
    assert np.isnan(static_measure_array(gone)[3]).all()
    assert np.isfinite(static_measure_array(gone)[[2, 4]]).all()


def test_lid_margin_between_landmarks_follows_the_arch():
    """A lid margin's highest point usually falls between two landmarks: the margin at the pupil is
    read on a smooth curve through them, not on the chord (which cuts the arch low)."""
    from symmetry.landmarks import CONTOURS, Side
    from symmetry.measures import _y_at_x_batch, side_geometry

    c = CONTOURS[Side.RIGHT]
    xs = np.array([-1.0, -0.8, -0.55, -0.2, 0.1, 0.5, 0.75, 0.9, 1.0]) * 15.0  # uneven spacing, mm
    arch = lambda x: 4.0 * np.cos(np.pi * x / 30.0)  # noqa: E731 - a lid margin 4 mm above the pupil
    p = np.zeros((478, 2))
    p[list(c.upper_lid)] = np.stack([xs, arch(xs)], axis=1)
    p[list(c.lower_lid)] = np.stack([xs, -arch(xs) / 2], axis=1)
    for pupil_x in (-5.5, -0.9, 4.4):  # between landmarks
        p[c.iris_center] = (pupil_x, 0.0)
        g = side_geometry(p, Side.RIGHT)
        chord = float(np.interp(pupil_x, xs, arch(xs)))  # what straight segments would read
        assert arch(pupil_x) - chord > 0.03
        assert abs(g.upper_lid_at_pupil[1] - arch(pupil_x)) < 0.25 * (arch(pupil_x) - chord)
        assert abs(g.lower_lid_at_pupil[1] + arch(pupil_x) / 2) < 0.25 * (arch(pupil_x) - chord) / 2
    # a straight margin stays straight, and missing points give NaN
    q = p.copy()
    q[list(c.upper_lid), 1] = 0.2 * xs + 1.0
    assert _y_at_x_batch(q[None], c.upper_lid, np.array([3.3]), smooth=True)[0] == pytest.approx(0.2 * 3.3 + 1.0)
    q[c.upper_lid[3]] = np.nan
    assert np.isnan(_y_at_x_batch(q[None], c.upper_lid, np.array([3.3]), smooth=True)[0])
