"""The sample-media generator and the bundled sample media (issue 7).

Two kinds of test:

* the generator: deterministic, the truth agrees with what was applied, the
  visit trajectory and the cohort design have the effects they promise;
* the committed media in ``sample_media/``: complete, ingestable, within the
  size budget, and an **accuracy regression test**: measuring the demo
  patient's photos (and two frames of the clinic video) recovers the truth.
  The figures reached when the media were generated are in
  ``sample_media/README.md``; the tolerances below are looser, named, and
  stated in relative terms where the issue asks for it.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest

from symmetry import sample_data as sd
from symmetry.landmarks import Side
from symmetry.photo import PhotoOptions, measure_photo

from conftest import SAMPLES

#: Commissure movement must be recovered within this relative error (issue 7) ...
COMMISSURE_REL_TOL = 0.30
#: ... and the median relative error over the demo photos must stay under this.
COMMISSURE_MEDIAN_REL_TOL = 0.15
#: Movements under the commissure perception threshold (3 mm, Hohman et al. 2014) are
#: judged in absolute terms: a relative error means little on a 1-2 mm movement.
RELATIVE_FROM_MM = 3.0
COMMISSURE_ABS_TOL_MM = 1.0
#: Pucker: the tracker can lock onto the compressed lip texture (a known weakness:
#: 44% short on one demo photo when the media were generated); judged in mm.
PUCKER_ABS_TOL_MM = 1.5
#: A side that should not narrow must stay within this palpebral-fissure change (%).
NO_NARROWING_PCT = 10.0
#: Size budget of sample_media/ (bytes).
SIZE_BUDGET = 15_000_000

MANIFEST = SAMPLES / "manifest.csv"
TRUTH = SAMPLES / "truth.csv"
PATIENTS = SAMPLES / "truth_patients.csv"
VIDEO = SAMPLES / "demo" / "clinic_video_preop.mp4"
VIDEO_TRUTH = SAMPLES / "demo" / "clinic_video_preop_truth.csv"
VIDEO_EVENTS = SAMPLES / "demo" / "clinic_video_preop_truth_events.csv"


# --------------------------------------------------------------------------- #
# Generator
# --------------------------------------------------------------------------- #
@pytest.fixture(scope="module")
def astronaut_face(portraits, landmarker) -> sd.Face:
    return sd.prepare_face(portraits["astronaut"], name="astronaut", landmarker=landmarker)


def _state(**left: float) -> sd.FaceState:
    return sd.FaceState(right=sd.SideMovement(smile_mm=6.0), left=sd.SideMovement(**left))


def _value(truth: pd.DataFrame, kind: str, name: str, side: str) -> float:
    rows = truth[(truth.kind == kind) & (truth.name == name) & (truth.side == side)]
    assert len(rows) == 1, (kind, name, side)
    return float(rows.value.iloc[0])


def test_expression_set_is_deterministic(astronaut_face):
    state = _state(smile_mm=3.0, smile_eye_narrowing_pct=30.0)
    kw = dict(expressions=("smile_open", "lower_teeth"), render=sd.RenderSpec())
    a = sd.make_expression_set(astronaut_face, state, seed=3, **kw)
    b = sd.make_expression_set(astronaut_face, state, seed=3, **kw)
    c = sd.make_expression_set(astronaut_face, state, seed=4, **kw)
    assert list(a) == ["rest", "smile_open", "lower_teeth"]
    for e in a:
        assert a[e].image.shape == (400, 320, 3) and a[e].image.dtype == np.uint8
        np.testing.assert_array_equal(a[e].image, b[e].image)
        pd.testing.assert_frame_equal(a[e].truth, b[e].truth)
        assert not np.array_equal(a[e].image, c[e].image)  # camera jitter and noise follow the seed


def test_truth_is_what_was_applied(astronaut_face):
    """The commissure is an anchor: its true movement is exactly the applied vector."""
    state = _state(smile_mm=5.0, smile_angle_deg=40.0, smile_eye_narrowing_pct=30.0)
    photos = sd.make_expression_set(
        astronaut_face, state, seed=0, expressions=("smile_open",), render=sd.RenderSpec(size=None), effort_sd=0.0
    )
    t = photos["smile_open"].truth
    assert _value(t, "applied", "commissure_dx", "left") == pytest.approx(5.0 * np.cos(np.radians(40)))
    assert _value(t, "measure", "commissure_movement", "left") == pytest.approx(5.0, abs=1e-6)
    assert _value(t, "measure", "commissure_movement_angle", "left") == pytest.approx(40.0, abs=1e-4)
    assert _value(t, "measure", "commissure_movement", "right") == pytest.approx(6.0, abs=1e-6)
    # the lids: the synkinetic (left) eye narrows by about what was asked, the other not at all
    assert _value(t, "measure", "palpebral_fissure_change", "left") == pytest.approx(-30.0, abs=2.0)
    assert _value(t, "measure", "palpebral_fissure_change", "right") == pytest.approx(0.0, abs=1e-6)
    # the rest photo of a state without rest changes is the portrait itself
    np.testing.assert_array_equal(photos["rest"].image, astronaut_face.rgb)
    assert photos["rest"].truth.empty


def test_eye_closure_truth_follows_the_applied_closure(portraits, landmarker):
    """Large closures may be shrunk so the warp does not fold; the truth reports what was applied."""
    face = sd.prepare_face(portraits["obama"], name="obama", landmarker=landmarker)
    state = sd.FaceState(right=sd.SideMovement(eye_closure_pct=65.0), left=sd.SideMovement(eye_closure_pct=30.0))
    photos = sd.make_expression_set(
        face, state, seed=0, expressions=("eye_closure_tight",), render=sd.RenderSpec(size=None), effort_sd=0.0
    )
    t = photos["eye_closure_tight"].truth
    for side in ("left", "right"):
        closing = _value(t, "applied", "fissure_closing", side)
        assert 0 < closing <= 65.0
        assert _value(t, "measure", "palpebral_fissure_change", side) == pytest.approx(-closing, abs=4.0)


def test_video_truth_follows_the_script(astronaut_face):
    state = _state(smile_mm=3.0, smile_eye_narrowing_pct=20.0)
    script = (sd.ScriptEvent("smile_open", onset_s=0.5, rise_s=0.5, hold_s=0.5, fall_s=0.5),)
    vt = sd.make_clinic_video(astronaut_face, state, None, seed=0, fps=20, script=script, duration_s=2.5)
    f = vt.frames
    assert len(f) == 50 and list(f.frame) == list(range(50))
    assert vt.events.iloc[0].to_dict() == {
        "expression": "smile_open", "onset_s": 0.5, "apex_start_s": 1.0, "apex_end_s": 1.5, "offset_s": 2.0
    }
    photo = sd.make_expression_set(
        astronaut_face, state, seed=0, expressions=("smile_open",), render=sd.RenderSpec(size=None), effort_sd=0.0
    )["smile_open"].truth
    apex = f[f.time_s == 1.2].iloc[0]
    assert apex.envelope == 1.0 and apex.expression == "smile_open"
    for side in ("left", "right"):
        for name in ("commissure_movement", "palpebral_fissure_change"):
            assert apex[f"{name}_{side}"] == pytest.approx(_value(photo, "measure", name, side), abs=1e-6)
        assert f[f"commissure_movement_{side}"].iloc[0] == 0.0  # rest
    half = f[f.time_s == 0.75].iloc[0]  # halfway up the raised-cosine onset
    assert half.envelope == pytest.approx(0.5)
    assert half.commissure_movement_left == pytest.approx(0.5 * apex.commissure_movement_left, rel=0.01)


def test_visit_trajectory_of_the_demo_patient():
    p = sd.demo_patient()
    states = {v.label: sd.visit_state(p, v) for v in sd.VISITS}
    aff = {k: s.side(Side.LEFT) for k, s in states.items()}
    # smile: dips with swelling at 2 weeks, then improves beyond pre-op
    assert aff["2w"].smile_mm < aff["preop"].smile_mm < aff["3m"].smile_mm < aff["12m"].smile_mm
    # synkinesis: reduced from surgery on
    assert aff["12m"].smile_eye_narrowing_pct == pytest.approx(0.4 * aff["preop"].smile_eye_narrowing_pct)
    # swelling: 2 weeks, a little at 3 months, gone at 12 months
    assert [aff[v].swelling_mm > 0 for v in ("preop", "2w", "3m", "12m")] == [False, True, True, False]
    # the oral-competence risk: lower lip weaker after surgery, partly recovering
    assert aff["2w"].lower_lip_mm < aff["3m"].lower_lip_mm < aff["12m"].lower_lip_mm < aff["preop"].lower_lip_mm
    # the healthy side does not change
    assert all(s.side(Side.RIGHT) == p.healthy for s in states.values())
    with pytest.raises(ValueError, match="visit"):
        sd.visit_state(p, "6w")


def test_cohort_design():
    patients = sd.cohort_design(seed=sd.DEFAULT_SEED)
    assert patients == sd.cohort_design(seed=sd.DEFAULT_SEED)
    assert len(patients) >= 20
    arms = {c: [p for p in patients if p.cohort == c] for c, _ in sd.COHORTS}
    assert all(len(v) >= 10 for v in arms.values())
    a, b = arms["neurectomy"], arms["myectomy"]
    assert all(p.outcome.synkinesis_reduction > 0 for p in a)
    assert all(p.outcome.synkinesis_reduction == 0 for p in b)  # the null effect
    gain = lambda ps: np.mean([p.outcome.smile_gain_mm for p in ps])  # noqa: E731
    assert gain(a) == pytest.approx(gain(b), abs=0.8)  # same smile gain: no between-arm difference
    assert 1 <= sum(p.lower_lip_weakness for p in a) <= len(a) // 2
    assert {sd.FACE_VARIANTS[p.face].portrait for p in patients} == {"astronaut.png", "obama.jpg"}
    assert any(sd.FACE_VARIANTS[p.face].mirror for p in patients)
    assert any(p.selfie for p in patients)
    assert {p.affected_side for p in patients} == {"left", "right"}
    assert len({p.patient for p in patients}) == len(patients)


def test_invalid_inputs_are_named():
    with pytest.raises(ValueError, match="smile_eye_narrowing_pct"):
        sd.SideMovement(smile_eye_narrowing_pct=80.0)
    with pytest.raises(ValueError, match="expression"):
        sd.expression_movement(None, sd.FaceState(), "frown")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="face"):
        sd.PatientSpec("X", "nobody", "left", sd.SideMovement(), sd.SideMovement(), sd.SurgeryOutcome(), sd.demo_patient().procedure_date)


# --------------------------------------------------------------------------- #
# The committed sample media
# --------------------------------------------------------------------------- #
@pytest.fixture(scope="module")
def manifest() -> pd.DataFrame:
    return pd.read_csv(MANIFEST, dtype=str, keep_default_na=False)


@pytest.fixture(scope="module")
def truth() -> pd.DataFrame:
    return pd.read_csv(TRUTH, dtype={"visit_date": str}, keep_default_na=False)


def test_sample_media_is_complete(manifest, truth):
    assert list(manifest.columns) == [
        "patient", "visit_date", "expression", "path", "procedure_date", "procedure", "affected_side",
        "aetiology", "cohort", "mirrored",
    ]
    assert all((SAMPLES / p).is_file() for p in manifest.path)
    assert set(manifest.expression) <= set(sd.EXPRESSIONS)
    visits = manifest.groupby(["patient", "visit_date"]).expression.apply(set)
    assert all("rest" in v for v in visits)
    demo = manifest[manifest.patient == "DEMO"]
    assert set(demo.expression) == set(sd.EXPRESSIONS) and demo.visit_date.nunique() == len(sd.VISITS)
    cohort = manifest[manifest.cohort != ""]
    assert cohort.patient.nunique() >= 20 and cohort.cohort.nunique() == 2
    assert set(manifest.mirrored) == {"true", "false"}
    # every non-rest photo has its measure truth
    measured = truth[truth.kind == "measure"][["path"]].drop_duplicates()
    assert set(manifest[manifest.expression != "rest"].path) == set(measured.path)
    for f in (TRUTH, PATIENTS, VIDEO_TRUTH, VIDEO_EVENTS):
        assert "truth" in f.name and f.is_file()
    for portrait in ("astronaut.png", "obama.jpg"):
        assert (SAMPLES / portrait).is_file()
    total = sum(p.stat().st_size for p in SAMPLES.rglob("*") if p.is_file())
    assert total <= SIZE_BUDGET, f"sample_media/ is {total / 1e6:.1f} MB, over the {SIZE_BUDGET / 1e6:.0f} MB budget"


def test_manifest_is_ingestable():
    ingest = pytest.importorskip("symmetry.ingest")
    rows, problems = ingest.read_manifest(MANIFEST)
    assert problems == []
    assert len(rows) == len(pd.read_csv(MANIFEST))


def test_committed_truth_uses_the_pipelines_current_scale(portraits, landmarker):
    """If the calibration changes, the committed millimetres are stale: regenerate the media."""
    patients = pd.read_csv(PATIENTS)
    for face_name, portrait in (("obama", "obama"), ("astronaut", "astronaut")):
        committed = patients[patients.face == face_name].mm_per_px.iloc[0]
        rgb = sd.variant_image(portraits[portrait], sd.FACE_VARIANTS[face_name])
        now = sd.prepare_face(rgb, landmarker=landmarker).mm_per_px
        assert now == pytest.approx(committed, rel=0.01), (
            f"{face_name}: the pipeline's scale changed ({committed:.4f} -> {now:.4f} mm/px); "
            "run `python -m symmetry.sample_data --out sample_media`"
        )


def test_clinic_video_matches_its_truth():
    frames = pd.read_csv(VIDEO_TRUTH)
    events = pd.read_csv(VIDEO_EVENTS)
    cap = cv2.VideoCapture(str(VIDEO))
    try:
        assert cap.isOpened()
        assert (cap.get(cv2.CAP_PROP_FRAME_WIDTH), cap.get(cv2.CAP_PROP_FRAME_HEIGHT)) == (1280, 720)
        assert cap.get(cv2.CAP_PROP_FPS) == pytest.approx(30.0)
        assert int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) == len(frames)
    finally:
        cap.release()
    assert 12.0 <= len(frames) / 30.0 <= 20.0
    assert list(events.expression) == [e.expression for e in sd.CLINIC_SCRIPT]
    assert (events.onset_s.diff().dropna() > 0).all()


# --------------------------------------------------------------------------- #
# Accuracy regression: measure the demo patient, compare with the truth
# --------------------------------------------------------------------------- #
_DEMO_JUDGED = {
    "preop": ("smile_open", "smile_closed", "pucker", "lower_teeth", "eye_closure_gentle"),
    "2w": ("smile_open", "pucker", "lower_teeth"),
    "3m": ("smile_open", "pucker", "lower_teeth"),
    "12m": ("smile_open", "pucker", "lower_teeth"),
}


@pytest.fixture(scope="module")
def demo_measured(manifest, truth, landmarker) -> pd.DataFrame:
    """Measured vs true movement measures of the demo photos: visit, expression, name, side, true, measured."""
    demo = manifest[manifest.patient == "DEMO"]
    t = truth[(truth.patient == "DEMO") & (truth.kind == "measure")]
    rows = []
    for visit, expressions in _DEMO_JUDGED.items():
        at = demo[demo.path.str.contains(f"_{visit}/")]
        rest = SAMPLES / at[at.expression == "rest"].path.iloc[0]
        for expression in expressions:
            path = at[at.expression == expression].path.iloc[0]
            res = measure_photo(SAMPLES / path, rest=rest, landmarker=landmarker, options=PhotoOptions(affected_side="left"))
            for _, row in t[t.path == path].iterrows():
                rows.append((visit, expression, row["name"], row.side, float(row.value), res.value(row["name"], row.side)))
    return pd.DataFrame(rows, columns=["visit", "expression", "name", "side", "true", "measured"])


def _pick(df: pd.DataFrame, visit: str, expression: str, name: str, side: str) -> pd.Series:
    return df[(df.visit == visit) & (df.expression == expression) & (df.name == name) & (df.side == side)].iloc[0]


def test_demo_commissure_movement_within_tolerance(demo_measured):
    d = demo_measured[
        (demo_measured.name == "commissure_movement")
        & demo_measured.expression.isin(["smile_open", "smile_closed", "eye_closure_gentle"])
        & (demo_measured.true > 0.5)
    ]
    big = d[d.true >= RELATIVE_FROM_MM]
    assert len(big) >= 8
    rel = (big.measured - big.true).abs() / big.true
    worst = big.assign(rel=rel).sort_values("rel").iloc[-1]
    assert rel.max() <= COMMISSURE_REL_TOL, f"worst: {worst.to_dict()}"
    assert rel.median() <= COMMISSURE_MEDIAN_REL_TOL
    small = d[d.true < RELATIVE_FROM_MM]
    assert (small.measured - small.true).abs().max() <= COMMISSURE_ABS_TOL_MM


def test_demo_pucker_commissure_movement(demo_measured):
    d = demo_measured[(demo_measured.name == "commissure_movement") & (demo_measured.expression == "pucker")]
    assert len(d) == 8
    assert (d.measured - d.true).abs().max() <= PUCKER_ABS_TOL_MM


def test_demo_weak_side_is_the_left(demo_measured):
    for visit in _DEMO_JUDGED:
        left = _pick(demo_measured, visit, "smile_open", "commissure_movement", "left")
        right = _pick(demo_measured, visit, "smile_open", "commissure_movement", "right")
        assert left.true < right.true
        assert left.measured < right.measured, visit


def test_demo_smile_eye_synkinesis_on_the_left_only(demo_measured):
    pre_left = _pick(demo_measured, "preop", "smile_open", "palpebral_fissure_change", "left")
    pre_right = _pick(demo_measured, "preop", "smile_open", "palpebral_fissure_change", "right")
    assert pre_left.true < -25.0 and pre_right.true == 0.0
    assert pre_left.measured == pytest.approx(pre_left.true, rel=0.3)
    assert abs(pre_right.measured) < NO_NARROWING_PCT
    for visit in _DEMO_JUDGED:  # the synkinetic eye narrows more than the other at every visit
        left = _pick(demo_measured, visit, "smile_open", "palpebral_fissure_change", "left")
        right = _pick(demo_measured, visit, "smile_open", "palpebral_fissure_change", "right")
        assert left.measured < right.measured, visit
        assert abs(right.measured) < NO_NARROWING_PCT, visit
    # and the neurectomy reduced it
    post = _pick(demo_measured, "12m", "smile_open", "palpebral_fissure_change", "left")
    assert post.true > pre_left.true and post.measured > pre_left.measured


def test_demo_lower_lip_on_eee(demo_measured):
    for visit in _DEMO_JUDGED:
        left = _pick(demo_measured, visit, "lower_teeth", "lower_lip_movement", "left")
        right = _pick(demo_measured, visit, "lower_teeth", "lower_lip_movement", "right")
        assert left.measured < 0 and right.measured < 0, visit  # depression on both sides
        assert left.true / right.true < 0.9  # the affected (left) lip depresses less ...
        assert left.measured / right.measured < 1.0, visit  # ... and is measured so


def test_demo_video_frames_recover_the_truth(landmarker):
    frames = pd.read_csv(VIDEO_TRUTH)
    events = pd.read_csv(VIDEO_EVENTS).set_index("expression")
    wanted = {}
    for expression in ("smile_open", "lower_teeth"):
        e = events.loc[expression]
        wanted[expression] = int(round((e.apex_start_s + e.apex_end_s) / 2 * 30.0))
    images: dict[int, np.ndarray] = {}
    cap = cv2.VideoCapture(str(VIDEO))
    try:
        for i in range(max(wanted.values()) + 1):
            ok, bgr = cap.read()
            assert ok
            if i == 0 or i in wanted.values():
                images[i] = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
    finally:
        cap.release()
    smile = measure_photo(images[wanted["smile_open"]], rest=images[0], landmarker=landmarker)
    truth = frames.iloc[wanted["smile_open"]]
    for side in ("left", "right"):
        true = truth[f"commissure_movement_{side}"]
        assert smile.value("commissure_movement", side) == pytest.approx(true, rel=COMMISSURE_REL_TOL)
    eee = measure_photo(images[wanted["lower_teeth"]], rest=images[0], landmarker=landmarker)
    truth = frames.iloc[wanted["lower_teeth"]]
    for side in ("left", "right"):
        assert truth[f"lower_lip_movement_{side}"] < 0
        assert eee.value("lower_lip_movement", side) == pytest.approx(truth[f"lower_lip_movement_{side}"], abs=1.0)
