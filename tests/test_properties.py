"""Property-based tests (hypothesis) of the geometry: the pupil frame, the measures and the warps.

tests/test_hardening.py holds three more: static measures are similarity invariant, movement is the
commissure displacement, and asymmetry grows with a one-sided displacement.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from symmetry._mirror import MIRROR
from symmetry.frame import pupil_frame
from symmetry.measures import MIN_DIRECTION_MM, UNITS, movement_measures, static_measures
from symmetry.warp import displacement_at, warp_image

from synthetic import MM_PER_PX, synthetic_face, transform

_angles = st.floats(min_value=-45, max_value=45, allow_nan=False)
_scales = st.floats(min_value=0.3, max_value=6.0, allow_nan=False)
_shifts = st.tuples(st.floats(-800, 800, allow_nan=False), st.floats(-800, 800, allow_nan=False))
_moves = st.tuples(st.floats(-12, 12, allow_nan=False), st.floats(-12, 12, allow_nan=False))
_seeds = st.integers(min_value=0, max_value=2**32 - 1)


def _face(seed: int, left=(0.0, 0.0), right=(0.0, 0.0), jitter: float = 2.0) -> np.ndarray:  # type: ignore[no-untyped-def]
    """The hand-built face with every landmark jittered by up to ``jitter`` px (a lopsided real-ish face)."""
    pts = synthetic_face({"left": left, "right": right})
    pts[:, :2] += np.random.default_rng(seed).uniform(-jitter, jitter, size=(len(pts), 2))
    return pts


def _values(points: np.ndarray, mm_per_px: float = MM_PER_PX) -> dict[tuple[str, str], float]:
    return {(m.name, m.side): m.value for m in static_measures(pupil_frame(points, mm_per_px).to_mm(points))}


@settings(max_examples=80, deadline=None)
@given(seed=_seeds, angle=_angles, scale=_scales, shift=_shifts)
def test_pupil_frame_coordinates_are_invariant_to_image_similarity_transforms(seed, angle, scale, shift):
    pts = _face(seed)
    moved = transform(pts, angle_deg=angle, scale=scale, shift=shift)
    f0, f1 = pupil_frame(pts, MM_PER_PX), pupil_frame(moved, MM_PER_PX / scale)
    np.testing.assert_allclose(f1.to_mm(moved), f0.to_mm(pts), atol=1e-7)
    assert f1.roll_deg == pytest.approx(f0.roll_deg + angle, abs=1e-7)
    # and the frame maps back onto the image exactly
    np.testing.assert_allclose(f1.to_px(f1.to_mm(moved)), moved[:, :2], atol=1e-7)


@settings(max_examples=80, deadline=None)
@given(seed=_seeds, left=_moves, right=_moves, width=st.floats(200, 3000, allow_nan=False))
def test_mirroring_the_image_swaps_the_sides_of_every_measure(seed, left, right, width):
    pts = _face(seed, left=left, right=right)
    flipped = pts.copy()
    flipped[:, 0] = width - pts[:, 0]
    mirrored = flipped[MIRROR]  # landmark i of the mirror image is the mirror of landmark MIRROR[i]
    a, b = _values(pts), _values(mirrored)
    swap = {"left": "right", "right": "left"}
    assert set(a) == set(b)
    for (name, side), value in a.items():
        assert b[(name, swap.get(side, side))] == pytest.approx(value, abs=1e-7), (name, side)
    # movement too: a smile photographed in a mirror moves the other side by the same amount
    rest = _face(seed + 1)  # another jitter: the whole face moves a little, as between two photos
    rest_m = rest.copy()
    rest_m[:, 0] = width - rest[:, 0]
    rest_m = rest_m[MIRROR]
    f, fm = pupil_frame(rest, MM_PER_PX), pupil_frame(rest_m, MM_PER_PX)
    mv = {(m.name, m.side): m.value for m in movement_measures(f.to_mm(rest), f.to_mm(pts))}
    mvm = {(m.name, m.side): m.value for m in movement_measures(fm.to_mm(rest_m), fm.to_mm(mirrored))}
    for (name, side), value in mv.items():
        if name == "commissure_movement_angle" and abs(mv[("commissure_movement", side)] - MIN_DIRECTION_MM) < 1e-6:
            continue  # exactly at the threshold below which the direction is not reported
        assert mvm[(name, swap.get(side, side))] == pytest.approx(value, abs=1e-6, nan_ok=True), (name, side)


@settings(max_examples=80, deadline=None)
@given(seed=_seeds, left=_moves, right=_moves, k=st.floats(0.05, 20.0, allow_nan=False))
def test_measures_scale_linearly_with_mm_per_px_and_angles_do_not(seed, left, right, k):
    rest, smile = _face(seed), _face(seed + 1, left=left, right=right)
    base, scaled = _values(smile, MM_PER_PX), _values(smile, k * MM_PER_PX)
    for key, value in base.items():
        unit = UNITS[key[0]]
        expected = k * value if unit == "mm" else value
        assert scaled[key] == pytest.approx(expected, rel=1e-9, abs=1e-9), (key, unit)
    f1, fk = pupil_frame(rest, MM_PER_PX), pupil_frame(rest, k * MM_PER_PX)
    m1 = {(m.name, m.side): (m.value, m.unit) for m in movement_measures(f1.to_mm(rest), f1.to_mm(smile))}
    mk = {(m.name, m.side): m.value for m in movement_measures(fk.to_mm(rest), fk.to_mm(smile))}
    for key, (value, unit) in m1.items():
        if key[0] == "commissure_movement_angle":
            moved = mk[("commissure_movement", key[1])]
            if abs(moved - MIN_DIRECTION_MM) < 1e-9:
                continue  # exactly at the threshold
            if moved < MIN_DIRECTION_MM:  # too small a movement at this scale to have a direction
                assert math.isnan(mk[key]), key
                continue
            if math.isnan(value):  # the direction appears once the movement is large enough
                assert math.isfinite(mk[key]), key
                continue
        assert mk[key] == pytest.approx(k * value if unit == "mm" else value, rel=1e-9, abs=1e-9), (key, unit)


# -- warps: the ground truth of the validity tests ---------------------------------------------

_point = st.tuples(st.integers(12, 52), st.integers(12, 52))


@settings(max_examples=40, deadline=None)
@given(anchor=_point, d=st.tuples(st.integers(-3, 3), st.integers(-3, 3)), fixed=_point,
       sigma=st.floats(4.0, 9.0), slope=st.tuples(st.floats(-3, 3), st.floats(-3, 3)))
def test_warp_moves_the_anchor_content_exactly_and_holds_fixed_points(anchor, d, fixed, sigma, slope):
    """On a linear ramp (which the cubic resampling reproduces exactly) the content at the anchor is
    found at anchor + d, and the content at a fixed point stays where it was."""
    a, f = np.array([anchor], float), np.array([fixed], float)
    assume(np.hypot(*(a[0] - f[0])) >= 1.5 * sigma)  # closer control points are refused as ill-conditioned
    assume(np.hypot(*(a[0] + d - f[0])) >= 2.0)
    dd = np.array([d], float)
    # the field: exact at the control points
    field = displacement_at(np.vstack([a, f]), a, dd, sigma, fixed_px=f)
    np.testing.assert_allclose(field, np.vstack([dd, [[0.0, 0.0]]]), atol=1e-9)
    yy, xx = np.mgrid[0:64, 0:64].astype(np.float64)
    ramp = 100.0 + slope[0] * xx + slope[1] * yy
    try:
        out = warp_image(ramp, a, dd, sigma, fixed_px=f)
    except ValueError as exc:  # a field that would fold the image is refused, never applied
        assert "fold" in str(exc)
        return
    tx, ty = int(anchor[0] + d[0]), int(anchor[1] + d[1])
    assert out[ty, tx] == pytest.approx(ramp[anchor[1], anchor[0]], abs=1e-6)
    assert out[fixed[1], fixed[0]] == pytest.approx(ramp[fixed[1], fixed[0]], abs=1e-6)
    # far from every control point nothing moves
    far = np.hypot(xx - anchor[0], yy - anchor[1]) > 8 * sigma
    if far.any():
        np.testing.assert_allclose(out[far], ramp[far], atol=1e-6)
