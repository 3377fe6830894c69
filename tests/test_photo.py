"""The photo engine on real portraits, against ground truth made by exact warps."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from symmetry.errors import FaceTooSmallError, NoFaceError
from symmetry.landmarks import Side
from symmetry.measures import STATIC_MEASURES
from symmetry.phantom import commissure_shift
from symmetry.photo import PhotoOptions, measure_photo

#: Vertical measures (perpendicular to the inter-pupil line), mm.
VERTICAL = (
    "commissure_y",
    "palpebral_fissure_height",
    "mrd1",
    "mrd2",
    "brow_height",
    "upper_lip_height",
    "lower_lip_height",
    "interlabial_gap",
)
SWAP = {"left": "right", "right": "left"}


@pytest.fixture(scope="module")
def baseline(portraits, landmarker):
    return {name: measure_photo(img, landmarker=landmarker) for name, img in portraits.items()}


@pytest.mark.parametrize("face", ["astronaut", "obama"])
@pytest.mark.parametrize("mm, angle_deg", [(2.0, 0.0), (3.0, 45.0), (4.0, 90.0), (3.0, -30.0)])
def test_known_commissure_displacement_is_recovered_on_its_side(face, mm, angle_deg, portraits, landmarker, baseline):
    rest = baseline[face]
    a = np.radians(angle_deg)
    warp = commissure_shift(
        portraits[face], rest.points_px, rest.frame, Side.LEFT, mm * np.cos(a), mm * np.sin(a)
    )
    r = measure_photo(warp.image, rest=portraits[face], landmarker=landmarker)
    moved = r.value("commissure_movement", "left")
    assert moved == pytest.approx(mm, rel=0.10)  # the issue asks 30%; we hold 10%
    assert r.value("commissure_movement_angle", "left") == pytest.approx(angle_deg, abs=6.0)
    assert r.value("commissure_movement", "right") < 0.3  # the untouched side stays
    assert "commissures" in r.refined
    assert not [w for w in r.warnings if "not tracked" in w], r.warnings  # the low-res one is the astronaut's


def test_without_refinement_the_model_under_reports(portraits, landmarker, baseline):
    """Documents why refinement exists: the raw model shrinks a one-sided movement."""
    rest = baseline["astronaut"]
    warp = commissure_shift(portraits["astronaut"], rest.points_px, rest.frame, Side.LEFT, 3.0, 0.0)
    raw = measure_photo(warp.image, rest=portraits["astronaut"], landmarker=landmarker,
                        options=PhotoOptions(refine=False))
    refined = measure_photo(warp.image, rest=portraits["astronaut"], landmarker=landmarker)
    err_raw = abs(raw.value("commissure_movement", "left") - 3.0)
    err_ref = abs(refined.value("commissure_movement", "left") - 3.0)
    assert err_ref < 0.5 * err_raw


@pytest.mark.parametrize("face", ["astronaut", "obama"])
def test_mirrored_photo_swaps_left_and_right(face, portraits, landmarker, baseline):
    flipped = np.ascontiguousarray(portraits[face][:, ::-1])
    r = measure_photo(flipped, landmarker=landmarker)
    a = baseline[face]
    for name in STATIC_MEASURES:
        for side in ("left", "right"):
            assert r.value(name, SWAP[side]) == pytest.approx(a.value(name, side), abs=0.5), (name, side)
    # told it is mirrored, the flipped photo gives the original's labels back
    told = measure_photo(flipped, landmarker=landmarker, options=PhotoOptions(mirrored=True))
    assert told.value("commissure_y", "left") == pytest.approx(a.value("commissure_y", "left"), abs=0.5)
    assert told.value("brow_height", "right") == pytest.approx(a.value("brow_height", "right"), abs=0.5)


def test_halving_resolution_changes_mm_measures_by_under_5_percent(portraits, landmarker, baseline):
    img = portraits["obama"]
    half = cv2.resize(img, None, fx=0.5, fy=0.5, interpolation=cv2.INTER_AREA)
    r = measure_photo(half, landmarker=landmarker)
    a = baseline["obama"]
    assert r.mm_per_px == pytest.approx(2 * a.mm_per_px, rel=0.05)
    for name in STATIC_MEASURES:
        for side in ("left", "right"):
            if name == "smile_angle":
                assert r.value(name, side) == pytest.approx(a.value(name, side), abs=2.0)
            else:
                assert r.value(name, side) == pytest.approx(a.value(name, side), rel=0.05), (name, side)


@pytest.mark.parametrize("dx, dy", [(2.0, 2.0), (3.0, 0.0), (0.5, 3.0)])
def test_halving_both_photos_changes_the_commissure_movement_by_under_2_percent(dx, dy, portraits, landmarker, baseline):
    from symmetry.phantom import commissure_shift

    img, rest = portraits["obama"], baseline["obama"]
    smile = commissure_shift(img, rest.points_px, rest.frame, Side.LEFT, dx, dy, sigma_mm=8.0).image
    half = lambda a: cv2.resize(a, None, fx=0.5, fy=0.5, interpolation=cv2.INTER_AREA)  # noqa: E731
    full = measure_photo(smile, rest=img, landmarker=landmarker).value("commissure_movement", "left")
    small = measure_photo(half(smile), rest=half(img), landmarker=landmarker).value("commissure_movement", "left")
    assert small == pytest.approx(full, rel=0.02)


def test_face_below_the_minimum_iris_size_is_refused_with_the_reason(portraits, landmarker):
    # the astronaut's iris is 8.6 px; halved it is 4.3 px, under the 6 px minimum
    half = cv2.resize(portraits["astronaut"], None, fx=0.5, fy=0.5, interpolation=cv2.INTER_AREA)
    with pytest.raises(FaceTooSmallError, match=r"face too small: iris is 4\.\d px wide"):
        measure_photo(half, landmarker=landmarker)


def test_a_face_too_small_for_lid_tracking_is_measured_with_a_low_resolution_warning(portraits, landmarker, baseline):
    # astronaut: 8.6 px iris; obama: 20.9 px, and 10.4 px at half size, 9.4 px at 0.45x
    def low_res(result) -> list[str]:
        return [w for w in result.warnings if w.startswith("low resolution")]

    (warning,) = low_res(baseline["astronaut"])
    assert "iris 8.6 px wide" in warning and "under 10 px" in warning and "eyelid changes" in warning
    assert not low_res(baseline["obama"])
    for fx, warned in ((0.5, False), (0.45, True)):
        small = cv2.resize(portraits["obama"], None, fx=fx, fy=fx, interpolation=cv2.INTER_AREA)
        assert bool(low_res(measure_photo(small, landmarker=landmarker))) is warned, fx
    # an expression photo of a low-resolution session carries its own and its rest photo's warning
    both = measure_photo(portraits["astronaut"], rest=portraits["astronaut"], landmarker=landmarker)
    assert len(low_res(both)) == 1 and any(w.startswith("rest photo: low resolution") for w in both.warnings)


@pytest.mark.parametrize("face", ["astronaut", "obama"])
@pytest.mark.parametrize("angle", [10.0, -10.0])
def test_in_plane_rotation_changes_vertical_measures_by_under_half_a_millimetre(face, angle, portraits, landmarker, baseline):
    img = portraits[face]
    h, w = img.shape[:2]
    m = cv2.getRotationMatrix2D((w / 2, h / 2), angle, 1.0)
    rotated = cv2.warpAffine(img, m, (w, h), flags=cv2.INTER_CUBIC, borderMode=cv2.BORDER_REFLECT)
    r = measure_photo(rotated, landmarker=landmarker)
    a = baseline[face]
    assert abs(r.head_pose_deg["roll"] - a.head_pose_deg["roll"]) == pytest.approx(abs(angle), abs=3.0)
    for name in VERTICAL:
        for side in ("left", "right"):
            assert r.value(name, side) == pytest.approx(a.value(name, side), abs=0.5), (name, side)


def test_same_photo_as_rest_has_not_moved(portraits, landmarker):
    r = measure_photo(portraits["obama"], rest=portraits["obama"], landmarker=landmarker)
    for side in ("left", "right"):
        assert r.value("commissure_movement", side) < 0.05
        assert abs(r.value("palpebral_fissure_change", side)) < 1.0
        assert abs(r.value("brow_movement", side)) < 0.05
    assert r.calibration.source.value == "session"


def test_session_scale_follows_the_rest_photo(portraits, landmarker):
    img = portraits["obama"]
    rest = measure_photo(img, landmarker=landmarker)
    small = cv2.resize(img, None, fx=0.75, fy=0.75, interpolation=cv2.INTER_AREA)
    r = measure_photo(small, rest=img, landmarker=landmarker)
    assert r.mm_per_px == pytest.approx(rest.mm_per_px / 0.75, rel=0.01)
    assert r.value("commissure_movement", "left") < 0.3


def test_manual_scale_overrides(portraits, landmarker):
    r = measure_photo(portraits["obama"], landmarker=landmarker, options=PhotoOptions(mm_per_px=0.5))
    assert r.mm_per_px == 0.5 and r.calibration.source.value == "manual"


def test_plausible_anatomy(baseline):
    for r in baseline.values():
        for side in ("left", "right"):
            assert 3.0 < r.value("palpebral_fissure_height", side) < 14.0
            assert 10.0 < r.value("brow_height", side) < 30.0
            assert r.value("commissure_y", side) < -30.0
            assert 20.0 < r.value("commissure_x", side) < 45.0
        assert 0.3 < r.mm_per_px < 2.0


def test_faceless_photo_raises_no_face(landmarker):
    rng = np.random.default_rng(0)
    noise = rng.integers(0, 255, size=(300, 300, 3), dtype=np.uint8)
    with pytest.raises(NoFaceError, match="no face"):
        measure_photo(noise, landmarker=landmarker)


def test_tidy_frame_and_json(baseline):
    r = baseline["obama"]
    df = r.to_frame()
    assert list(df.columns) == ["source", "expression", "name", "side", "value", "unit"]
    assert set(df["side"]) == {"left", "right", "midline"}
    d = r.to_dict()
    assert d["mm_per_px"] == r.mm_per_px and d["mm_per_px_uncertainty"] >= 0


@pytest.mark.parametrize(
    "face, side, drop_mm",
    [
        # obama's fissure is narrow in this smiling portrait (MRD1 2.6 mm): 1 mm is what
        # the warp can do without folding the lid onto the fixed iris
        ("obama", "left", 1.0),
        ("obama", "right", 1.0),
        ("astronaut", "left", 1.5),
        ("astronaut", "right", 1.5),
        ("astronaut", "left", 2.0),
        ("astronaut", "right", 2.0),  # 8.6 px iris
    ],
)
def test_unilateral_upper_lid_drop_shows_on_its_side_only(face, side, drop_mm, portraits, landmarker, baseline):
    from symmetry.measures import side_geometry
    from symmetry.phantom import upper_lid_drop

    rest = baseline[face]
    s = Side(side)
    warp = upper_lid_drop(portraits[face], rest.points_px, rest.frame, s, drop_mm)
    # exact truth: the warp's displacement at the lid point measured (at the pupil's x)
    lid = rest.frame.to_px(side_geometry(rest.frame.to_mm(rest.points_px), s).upper_lid_at_pupil)
    true_drop_mm = -float(warp.displacement_px(lid[None])[0] @ rest.frame.up_axis) * rest.mm_per_px
    r = measure_photo(warp.image, rest=portraits[face], landmarker=landmarker)
    pfh0 = rest.value("palpebral_fissure_height", side)
    measured_drop = -r.value("palpebral_fissure_change", side) / 100 * pfh0
    other = r.value("palpebral_fissure_change", s.other.value) / 100 * rest.value("palpebral_fissure_height", s.other.value)
    assert abs(other) <= 0.3
    # issue 3's target: every case recovers >= 85% (and does not overshoot by more than 20%)
    assert 0.85 * true_drop_mm <= measured_drop <= 1.2 * true_drop_mm


@pytest.mark.parametrize("side, drop_mm", [("left", 1.0), ("left", 2.0), ("left", 3.0), ("right", 1.0), ("right", 3.0)])
def test_lid_sliding_over_the_eye_is_recovered(side, drop_mm, portraits, landmarker, baseline):
    """A realistic ptosis: the lid slides down over the eye and hides the top of the iris (no smooth
    warp can do this); the centred margin window locks onto the still eye, the lid tissue does not."""
    from symmetry.measures import side_geometry
    from symmetry.phantom import upper_lid_occlusion

    rest = baseline["obama"]
    s = Side(side)
    occ = upper_lid_occlusion(portraits["obama"], rest.points_px, rest.frame, s, drop_mm)
    pupil_x = side_geometry(rest.frame.to_mm(rest.points_px), s).upper_lid_at_pupil[0]
    truth = float(occ.drop_at(pupil_x))
    r = measure_photo(occ.image, rest=portraits["obama"], landmarker=landmarker)
    measured = rest.value("palpebral_fissure_height", side) - r.value("palpebral_fissure_height", side)
    other = r.value("palpebral_fissure_height", s.other.value) - rest.value("palpebral_fissure_height", s.other.value)
    assert abs(other) <= 0.3
    assert 0.85 * truth <= measured <= 1.2 * truth
    # the iris stays put, so MRD1 (lid to pupil, the ptosis measure) drops by the lid's drop: the
    # sliding lid once dragged the pupil down with it, and MRD1 showed 21-69% of the drop
    _assert_pupil_held(r, rest, s)
    mrd1 = rest.value("mrd1", side) - r.value("mrd1", side)
    assert 0.85 * truth <= mrd1 <= 1.2 * truth, (mrd1, truth)


@pytest.mark.parametrize("side, drop_mm", [("right", 1.0), ("right", 2.0), ("left", 1.5)])
def test_lid_sliding_over_the_eye_is_recovered_at_low_resolution(side, drop_mm, portraits, landmarker, baseline):
    """The astronaut's 8.6 px iris: the lid's tissue window is one of an upper lid's estimates at any
    resolution (it once was left out under 10 px, and these slides showed 46-78% of the drop)."""
    from symmetry.measures import side_geometry
    from symmetry.phantom import upper_lid_occlusion

    rest = baseline["astronaut"]
    s = Side(side)
    occ = upper_lid_occlusion(portraits["astronaut"], rest.points_px, rest.frame, s, drop_mm)
    truth = float(occ.drop_at(side_geometry(rest.frame.to_mm(rest.points_px), s).upper_lid_at_pupil[0]))
    r = measure_photo(occ.image, rest=portraits["astronaut"], landmarker=landmarker)
    measured = rest.value("palpebral_fissure_height", side) - r.value("palpebral_fissure_height", side)
    other = r.value("palpebral_fissure_height", s.other.value) - rest.value("palpebral_fissure_height", s.other.value)
    assert abs(other) <= 0.3
    assert 0.85 * truth <= measured <= 1.2 * truth, (measured, truth)


def _assert_pupil_held(r, rest, side: Side) -> None:  # type: ignore[no-untyped-def]
    """Neither pupil of the phantom (the head does not move) moves up or down by over 0.3 mm.
    (Sideways a sliver of iris under the lid may still shift it: vergence keeps that from being
    judged against the other eye.)"""
    from symmetry.landmarks import CONTOURS

    for s in (side, side.other):
        i = CONTOURS[s].iris_center
        moved = float((r.points_px[i, :2] - rest.points_px[i, :2]) @ rest.frame.up_axis) * rest.mm_per_px
        assert abs(moved) <= 0.3, (s.value, moved)


@pytest.mark.parametrize("face", ["biden", "obama3"])
@pytest.mark.parametrize("side", ["left", "right"])
def test_unseen_faces_lid_slide_keeps_the_pupil_and_mrd1(face, side, unseen_portraits, landmarker):
    """A 2 mm one-sided lid slide on portraits nobody here made: the pupil stays (it moved 0.7-1.2 mm
    with the lid before), so MRD1 recovers the drop (34-56% before)."""
    from symmetry.measures import side_geometry
    from symmetry.phantom import upper_lid_occlusion

    img = unseen_portraits[face]
    rest = measure_photo(img, landmarker=landmarker)
    s = Side(side)
    occ = upper_lid_occlusion(img, rest.points_px, rest.frame, s, 2.0)
    truth = float(occ.drop_at(side_geometry(rest.frame.to_mm(rest.points_px), s).upper_lid_at_pupil[0]))
    r = measure_photo(occ.image, rest=img, landmarker=landmarker)
    _assert_pupil_held(r, rest, s)
    assert 0.8 * truth <= rest.value("mrd1", side) - r.value("mrd1", side) <= 1.2 * truth


@pytest.mark.parametrize("side, fraction", [("left", 0.5), ("right", 0.5), ("left", 0.9), ("right", 0.9)])
def test_eye_closure_is_measured_on_its_side(side, fraction, portraits, landmarker, baseline):
    """Eye closure (the lid slides down over half or nine tenths of the fissure, the iris vanishing
    under it): the lid is found by searching for its own tissue over a full closure's range; the
    model alone reports about a third of it, and a hidden pupil does not move the frame."""
    from symmetry.measures import side_geometry
    from symmetry.phantom import upper_lid_occlusion

    rest = baseline["obama"]
    s = Side(side)
    pfh = rest.value("palpebral_fissure_height", side)
    occ = upper_lid_occlusion(portraits["obama"], rest.points_px, rest.frame, s, fraction * pfh, spread_mm=8.0)
    pupil_x = side_geometry(rest.frame.to_mm(rest.points_px), s).upper_lid_at_pupil[0]
    truth = 100.0 * float(occ.drop_at(pupil_x)) / pfh  # % closure
    r = measure_photo(occ.image, rest=portraits["obama"], landmarker=landmarker)
    closure = -r.value("palpebral_fissure_change", side)
    other = r.value("palpebral_fissure_height", s.other.value) - rest.value("palpebral_fissure_height", s.other.value)
    assert abs(other) <= 0.3
    assert 0.85 * truth <= closure <= 1.15 * truth, (closure, truth)
    assert r.mm_per_px == pytest.approx(rest.mm_per_px, rel=0.02)
    raw = measure_photo(occ.image, rest=portraits["obama"], landmarker=landmarker, options=PhotoOptions(refine=False))
    assert -raw.value("palpebral_fissure_change", side) < 0.8 * truth  # the model alone under-reports


def test_lid_occlusion_phantom_moves_only_the_lid(portraits, baseline):
    from symmetry.landmarks import CONTOURS
    from symmetry.phantom import upper_lid_occlusion

    rest = baseline["obama"]
    img = portraits["obama"]
    occ = upper_lid_occlusion(img, rest.points_px, rest.frame, Side.LEFT, 2.0)
    changed = np.abs(occ.image.astype(int) - img.astype(int)).max(axis=2) > 0
    ys, xs = np.nonzero(changed)
    lid = rest.points_px[list(CONTOURS[Side.LEFT].upper_lid), :2]
    # only between the canthi of that eye, and nothing of the other eye or below the lower lid
    assert xs.min() >= lid[:, 0].min() - 2 and xs.max() <= lid[:, 0].max() + 2
    lower = rest.points_px[list(CONTOURS[Side.LEFT].lower_lid), 1].max()
    assert ys.max() < lower
    x0, x1 = occ.x_range_mm
    assert occ.drop_at(x0) == pytest.approx(0.0, abs=1e-12) and occ.drop_at(x1 + 3.0) == pytest.approx(0.0, abs=1e-12)
    assert occ.drop_at((x0 + x1) / 2) == pytest.approx(2.0)
    with pytest.raises(ValueError):
        upper_lid_occlusion(img, rest.points_px, rest.frame, Side.LEFT, 6.5)


@pytest.mark.parametrize("face, least", [("biden", 0.85), ("obama2", None), ("obama3", 0.85)])
def test_unseen_faces_eye_closure_stays_on_its_side(face, least, unseen_portraits, landmarker):
    """90% closure of the right eye on portraits nobody here made. A sliver of iris under the lid
    once dragged the tracked pupil sideways (obama2: scale 15% off, the other eye's fissure 1.6 mm);
    a hidden or straying pupil now keeps its rest position relative to the stable points."""
    from symmetry.phantom import upper_lid_occlusion

    img = unseen_portraits[face]
    rest = measure_photo(img, landmarker=landmarker)
    pfh = rest.value("palpebral_fissure_height", "right")
    occ = upper_lid_occlusion(img, rest.points_px, rest.frame, Side.RIGHT, 0.9 * pfh, spread_mm=8.0)
    r = measure_photo(occ.image, rest=img, landmarker=landmarker)
    assert r.mm_per_px == pytest.approx(rest.mm_per_px, rel=0.02)
    other = r.value("palpebral_fissure_height", "left") - rest.value("palpebral_fissure_height", "left")
    assert abs(other) <= 0.3
    # the closure itself: issue 3's 85% on the frontal faces. obama2's head is turned 15 deg, and there
    # a near-full closure is recovered erratically (a known limit, not a target met): 86-88% at a 7.5 mm
    # slide, 22-30% at 8.0 and 9.3 mm, 64-67% between; the margin search finds the lid at two points
    # only, and the model, at a ninth of the truth, vetoes them
    if least is None:
        return
    from symmetry.measures import side_geometry

    pupil_x = side_geometry(rest.frame.to_mm(rest.points_px), Side.RIGHT).upper_lid_at_pupil[0]
    truth = 100.0 * float(occ.drop_at(pupil_x)) / pfh
    closure = -r.value("palpebral_fissure_change", "right")
    assert least * truth <= closure <= 1.15 * truth, (closure, truth)
