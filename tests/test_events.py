"""Events, rest, indicators: pure computations on synthetic per-frame series with known answers."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from symmetry.errors import InputError
from symmetry.events import (
    EventSpan,
    bilabial_closures,
    expression_scores,
    eye_commissure_coupling,
    indicators,
    movement_series,
    normalise_expression,
    read_events_csv,
    segment,
    static_columns,
)
from symmetry.frame import pupil_frame
from symmetry.measures import Measure, movement_measures, static_measures

from synthetic import MM_PER_PX, synthetic_face

FPS = 30.0
_REST = {
    "commissure_x": 25.0, "commissure_y": -55.0, "commissure_excursion": 30.0, "smile_angle": 10.0,
    "palpebral_fissure_height": 10.0, "mrd1": 4.0, "mrd2": 6.0, "brow_height": 20.0,
    "upper_lip_height": -50.0, "lower_lip_height": -62.0, "interlabial_gap": 0.0,
}


def _series(seconds: float = 12.0, seed: int = 0) -> pd.DataFrame:
    """A resting face (mm) with 0.05 mm noise; events are painted on by the tests."""
    rng = np.random.default_rng(seed)
    n = int(seconds * FPS)
    data: dict[str, np.ndarray] = {"time_s": np.arange(n) / FPS, "face_found": np.ones(n, bool), "yaw_deg": np.zeros(n)}
    for name, value in _REST.items():
        for side in ("right", "left"):
            data[f"{name}_{side}"] = value + rng.normal(0, 0.05, n)
    for bs in ("mouthSmileLeft", "mouthSmileRight", "eyeBlinkLeft", "eyeBlinkRight", "browInnerUp", "mouthPucker"):
        data[f"bs_{bs}"] = np.full(n, 0.02)
    return pd.DataFrame(data)


def _paint(frames: pd.DataFrame, a: float, b: float, column: str, delta: float, ramp: float = 0.15) -> None:
    """Add ``delta`` to ``column`` from a to b seconds, with linear ramps."""
    t = frames["time_s"].to_numpy()
    w = np.clip(np.minimum((t - a) / ramp, (b - t) / ramp), 0, 1)
    frames[column] = frames[column] + delta * w


def _with_movement(frames: pd.DataFrame, seg) -> pd.DataFrame:  # type: ignore[no-untyped-def]
    return pd.concat([frames, movement_series(frames, seg.baseline)], axis=1)


# ----------------------------------------------------------------- movement_series
@pytest.mark.parametrize("seed", range(5))
def test_movement_series_matches_photo_movement_measures(seed: int) -> None:
    rng = np.random.default_rng(seed)
    rest_px = synthetic_face()
    expr_px = synthetic_face({"right": tuple(rng.normal(0, 8, 2)), "left": tuple(rng.normal(0, 8, 2))})
    expr_px[:, :2] += rng.normal(0, 0.5, (478, 2))
    rest_mm = pupil_frame(rest_px, MM_PER_PX).to_mm(rest_px)
    expr_mm = pupil_frame(expr_px, MM_PER_PX * 1.03).to_mm(expr_px)

    def row(points_mm: np.ndarray) -> dict[str, float]:
        return {f"{m.name}_{m.side}": m.value for m in static_measures(points_mm)}

    series = movement_series(pd.DataFrame([row(expr_mm)]), row(rest_mm))
    for m in movement_measures(rest_mm, expr_mm):
        assert series[f"{m.name}_{m.side}"].iat[0] == pytest.approx(m.value, abs=1e-9), m.name


# ----------------------------------------------------------------- segmentation
@pytest.fixture
def script() -> pd.DataFrame:
    f = _series(12.0)
    # a blink at 1.0 s (0.1 s): not an event
    for side in ("right", "left"):
        _paint(f, 1.0, 1.1, f"palpebral_fissure_height_{side}", -9.0, ramp=0.03)
    # smile 3-5 s: right commissure 4 mm up and 3 out, left 1 up 0.5 out (weak left);
    # right eye narrows 30% (synkinesis); a blink at 4.0 s during the smile
    _paint(f, 3.0, 5.0, "commissure_y_right", 4.0)
    _paint(f, 3.0, 5.0, "commissure_x_right", 3.0)
    _paint(f, 3.0, 5.0, "commissure_y_left", 1.0)
    _paint(f, 3.0, 5.0, "commissure_x_left", 0.5)
    _paint(f, 3.0, 5.0, "palpebral_fissure_height_right", -3.0)
    for side in ("right", "left"):
        _paint(f, 4.0, 4.12, f"palpebral_fissure_height_{side}", -6.0, ramp=0.03)
    # eye closure 7-8.5 s with the right commissure pulled 2 mm up
    for side in ("right", "left"):
        _paint(f, 7.0, 8.5, f"palpebral_fissure_height_{side}", -9.0)
    _paint(f, 7.0, 8.5, "commissure_y_right", 2.0)
    # brow raise 10-11 s
    for side in ("right", "left"):
        _paint(f, 10.0, 11.0, f"brow_height_{side}", 5.0)
    return f


def test_segment_finds_rest_events_and_drops_blinks(script: pd.DataFrame) -> None:
    seg = segment(script)
    labels = [e.expression for e in seg.events]
    assert labels == ["smile_closed", "eye_closure", "brow_raise"]
    smile, closure, brow = seg.events
    assert 2.9 <= smile.start_s <= 3.2 and 4.8 <= smile.end_s <= 5.1
    # the peak is on the plateau and not on the blink at 4.0-4.12 s
    assert 3.2 <= smile.peak_s <= 4.85 and not 3.97 <= smile.peak_s <= 4.15
    assert 7.1 <= closure.peak_s <= 8.4 and 10.1 <= brow.peak_s <= 10.9
    assert seg.rest_periods[0][0] < 0.5 and any(a < 6.0 < b for a, b in seg.rest_periods)
    assert seg.baseline["palpebral_fissure_height_right"] == pytest.approx(10.0, abs=0.1)
    assert seg.rest_mask[int(6.0 * FPS)] and not seg.rest_mask[int(4.0 * FPS)]


def test_raised_brows_of_a_face_that_frowns_at_rest_are_not_taken_for_rest() -> None:
    """A resting face often holds some browDown (the benchmark clip's portrait: 0.08-0.12, with other
    resting blendshapes); raising the brows takes it to 0. With a brow raise a third of the time (a
    1.5 mm raise, as the landmark model reads the clip's 3 mm), ranking frames toward rest by every
    non-neutral blendshape took the raised brows for the rest and lost every brow raise."""
    f = _series(24.0)
    for bs in ("browDownLeft", "browDownRight"):
        f[f"bs_{bs}"] = 0.2
    for start in (1.0, 7.0, 13.0, 19.0):
        for side in ("right", "left"):
            _paint(f, start, start + 2.0, f"brow_height_{side}", 1.5)
        for bs in ("browDownLeft", "browDownRight"):
            _paint(f, start, start + 2.0, f"bs_{bs}", -0.2)
    seg = segment(f)
    assert [e.expression for e in seg.events] == ["brow_raise"] * 4
    assert seg.baseline["brow_height_right"] == pytest.approx(20.0, abs=0.1)


def test_open_smile_when_lips_part(script: pd.DataFrame) -> None:
    for side in ("right", "left"):
        _paint(script, 3.0, 5.0, f"interlabial_gap_{side}", 4.0)
    assert segment(script).events[0].expression == "smile_open"


def test_scores_are_zero_at_rest_and_about_one_at_full_movement(script: pd.DataFrame) -> None:
    seg = segment(script)
    scores = expression_scores(script, seg.baseline)
    rest = scores.iloc[int(6 * FPS)]
    assert (rest < 0.2).all()
    assert scores["smile"].iat[int(3.5 * FPS)] == pytest.approx((4 + 0.5 * 3) / 4, rel=0.1)
    assert scores["eye_closure"].iat[int(7.75 * FPS)] == pytest.approx(90 / 60, rel=0.1)


def test_csv_spans_override_events_and_rest(script: pd.DataFrame) -> None:
    spans = [EventSpan("rest", 5.5, 6.5), EventSpan("pucker", 3.0, 5.0)]
    seg = segment(script, spans=spans)
    assert [(e.expression, e.origin) for e in seg.events] == [("pucker", "csv")]
    assert seg.rest_periods == [(pytest.approx(5.5, abs=0.04), pytest.approx(6.5, abs=0.04))]


def test_no_rest_falls_back_with_a_warning() -> None:
    f = _series(3.0)
    t = f["time_s"].to_numpy()
    f["commissure_y_right"] += 3.0 * np.abs(np.sin(2 * np.pi * 1.5 * t))  # never still for 0.4 s
    seg = segment(f)
    assert any("no rest period" in w for w in seg.warnings)
    assert seg.rest_mask.any()


def test_segment_needs_a_face() -> None:
    f = _series(1.0)
    f["face_found"] = False
    with pytest.raises(ValueError, match="no frame has a face"):
        segment(f)


# ----------------------------------------------------------------- bilabial words
def test_bilabial_words_found_and_closures_measured() -> None:
    f = _series(8.0)
    t = f["time_s"].to_numpy()
    speech = (t >= 3.0) & (t < 5.0)
    opening = np.where(speech, 6.0 * np.sin(np.pi * 2.5 * (t - 3.0)) ** 2, 0.0)
    f["interlabial_gap_right"] = np.clip(opening, 0, None)
    f["interlabial_gap_left"] = np.clip(opening, 0, None) + np.where(speech, 0.8, 0.0)  # left leaks
    f["lower_lip_height_right"] -= 0.5 * opening
    f["lower_lip_height_left"] -= 0.5 * opening
    seg = segment(f)
    bilabial = [e for e in seg.events if e.expression == "bilabial"]
    assert len(bilabial) == 1 and len(bilabial[0].closure_rows) >= 3
    assert not [e for e in seg.events if e.expression == "lower_teeth"]
    rows = indicators([], _with_movement(f, seg), seg)
    gap = {m.side: m.value for m in rows if m.name == "bilabial_interlabial_gap"}
    assert gap["right"] == pytest.approx(0.0, abs=0.3) and gap["left"] == pytest.approx(0.8, abs=0.3)
    assert bilabial_closures(f, 3.0, 5.0)


def test_find_peaks_matches_scipy() -> None:
    signal = pytest.importorskip("scipy.signal")
    from symmetry.events import _find_peaks

    rng = np.random.default_rng(3)
    x = np.cumsum(rng.normal(0, 1, 400)) + 4 * np.sin(np.arange(400) / 5)
    ours = _find_peaks(x, 3.0, window=40)
    ref, _ = signal.find_peaks(x, prominence=3.0, wlen=81)
    assert ours.tolist() == ref.tolist()


# ----------------------------------------------------------------- coupling
def test_eye_commissure_coupling_recovers_sign_and_lag() -> None:
    t = np.arange(int(20 * FPS)) / FPS
    com = sum(np.exp(-((t - c) ** 2) / (2 * 0.3**2)) for c in (3, 8, 13, 17)) * 5.0
    lag = 0.2
    eye = 10.0 - 0.6 * np.interp(t - lag, t, com)  # the eye narrows 0.2 s after the corner moves
    f = pd.DataFrame({"time_s": t, "palpebral_fissure_height_right": eye, "commissure_movement_right": com})
    r, lag_s = eye_commissure_coupling(f, "right")
    assert r < -0.95
    assert lag_s == pytest.approx(lag, abs=1.5 / FPS)


def test_eye_commissure_coupling_is_nan_without_variation() -> None:
    t = np.arange(60) / FPS
    f = pd.DataFrame({"time_s": t, "palpebral_fissure_height_left": 10.0, "commissure_movement_left": np.sin(t)})
    assert all(np.isnan(eye_commissure_coupling(f, "left")))


# ----------------------------------------------------------------- indicators
class _Event:
    def __init__(self, expression: str, **values: tuple[float, float]) -> None:
        self.expression = expression
        self.measures = [
            Measure(name, side, v, "x") for name, pair in values.items() for side, v in zip(("right", "left"), pair)
        ]


def test_indicators_from_event_peaks(script: pd.DataFrame) -> None:
    seg = segment(script)
    frames = _with_movement(script, seg)
    events = [
        _Event("smile_open", palpebral_fissure_change=(-30.0, -2.0), commissure_movement=(5.0, 1.0)),
        _Event("smile_closed", palpebral_fissure_change=(-20.0, 0.0), commissure_movement=(3.0, 1.0)),
        _Event("eye_closure", commissure_movement=(2.0, 0.2)),
        _Event("pucker", palpebral_fissure_change=(-10.0, 0.0), commissure_x=(20.0, 23.0)),
        _Event("lower_teeth", lower_lip_movement=(-1.0, -4.0)),
    ]
    rest = [Measure("commissure_x", s, 25.0, "mm") for s in ("right", "left")]
    rows = indicators(events, frames, seg, rest_measures=rest, affected_side="right")
    got = {(m.name, m.side): m.value for m in rows}
    units = {m.name: m.unit for m in rows}
    assert got[("smile_eye_narrowing", "right")] == pytest.approx(25.0)
    assert got[("smile_eye_narrowing", "left")] == pytest.approx(1.0)
    assert got[("pucker_eye_narrowing", "right")] == pytest.approx(10.0)
    assert got[("eye_closure_commissure_movement", "right")] == pytest.approx(2.0)
    assert got[("eee_lower_lip_depression", "left")] == pytest.approx(4.0)
    assert got[("eee_lower_lip_depression_ratio", "midline")] == pytest.approx(0.25)
    assert got[("pucker_commissure_shortening", "right")] == pytest.approx(5.0)
    assert got[("pucker_symmetry", "midline")] == pytest.approx(2.0 / 5.0)
    assert got[("pucker_commissure_shortening_ratio", "midline")] == pytest.approx(5.0 / 2.0)
    assert got[("rest_interlabial_gap", "right")] == pytest.approx(0.0, abs=0.1)
    # the whole-video coupling sees the synkinetic right eye narrowing with the right commissure
    assert got[("eye_aperture_commissure_correlation", "right")] < -0.5
    assert units["smile_eye_narrowing"] == "%" and units["eye_aperture_commissure_lag"] == "s"


def test_indicators_absent_without_their_trigger(script: pd.DataFrame) -> None:
    seg = segment(script)
    names = {m.name for m in indicators([], _with_movement(script, seg), seg)}
    assert "smile_eye_narrowing" not in names and "eee_lower_lip_depression" not in names


# ----------------------------------------------------------------- events CSV
def test_read_events_csv(tmp_path) -> None:  # type: ignore[no-untyped-def]
    path = tmp_path / "events.csv"
    path.write_text("start_s,end_s,expression,note\n2.0,3.5,Smile,big\n0,1.5,rest,\n4,5,eee,\n")
    spans = read_events_csv(path)
    assert spans == [EventSpan("rest", 0.0, 1.5), EventSpan("smile_open", 2.0, 3.5), EventSpan("lower_teeth", 4.0, 5.0)]


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("start,end,expression\n1,2,smile\n", "lacks column"),
        ("start_s,end_s,expression\n1,x,smile\n", "line 2: start_s and end_s must be numbers"),
        ("start_s,end_s,expression\n3,2,smile\n", "line 2: need 0 <= start_s < end_s"),
        ("start_s,end_s,expression\n1,2,frown\n", "line 2: unknown expression 'frown'"),
        ("", "no rows"),
    ],
)
def test_read_events_csv_errors(tmp_path, text: str, match: str) -> None:  # type: ignore[no-untyped-def]
    path = tmp_path / "events.csv"
    path.write_text(text)
    with pytest.raises(InputError, match=match):
        read_events_csv(path)


def test_read_events_csv_missing(tmp_path) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(InputError, match="events file not found"):
        read_events_csv(tmp_path / "nope.csv")


def test_normalise_expression() -> None:
    assert normalise_expression(" Eye closure ") == "eye_closure"
    assert normalise_expression("papa") == "bilabial"
    with pytest.raises(ValueError, match="use one of"):
        normalise_expression("wink")


def test_static_columns_order() -> None:
    cols = static_columns()
    assert cols[:2] == ["commissure_x_right", "commissure_x_left"] and len(cols) == 22
