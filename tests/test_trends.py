"""Per-patient outcomes on hand-built measurement rows: phases, deltas, noise, thresholds, eFACE, oral competence."""

from __future__ import annotations

import datetime as dt
import math

import pandas as pd
import pytest

from symmetry.trends import (
    NOISE_MM,
    approximate_eface,
    baseline_deltas,
    measure_region,
    oral_competence,
    patient_outcomes,
    perception_threshold_mm,
    phase_for_days,
    relative_sides,
    visit_timeline,
    visit_values,
)

PROC = dt.date(2024, 3, 1)


def rows(patient: str, days: int, expression: str, values: dict[tuple[str, str], float], *, affected="left", unit="mm"):
    """Tidy measurement rows of one photo taken ``days`` after PROC."""
    date = PROC + dt.timedelta(days=days)
    out = []
    for (measure, side), v in values.items():
        out.append(
            {
                "patient": patient, "cohort": "sd", "visit_date": date, "days_from_procedure": days,
                "phase": phase_for_days(days), "expression": expression, "measure": measure, "side": side,
                "value": v, "unit": "%" if measure == "palpebral_fissure_change" else "ratio" if measure.endswith("_ratio") else unit,
                "affected_side": affected, "aetiology": "bells_palsy",
            }
        )
    return out


@pytest.mark.parametrize(
    "days, phase",
    [(-30, "pre-op"), (0, "pre-op"), (1, "early"), (21, "early"), (22, "settling"), (122, "settling"), (123, "late"),
     (400, "late"), (None, None), (float("nan"), None)],
)
def test_phase_boundaries(days, phase):
    assert phase_for_days(days) == phase


def test_visit_timeline_uses_the_latest_procedure_before_else_the_first():
    procs = [dt.date(2024, 6, 1), dt.date(2024, 1, 10)]
    assert visit_timeline(dt.date(2024, 1, 1), procs) == (1, -9, "pre-op")
    assert visit_timeline(dt.date(2024, 1, 20), procs) == (1, 10, "early")
    assert visit_timeline(dt.date(2024, 5, 31), procs) == (1, 142, "late")
    assert visit_timeline(dt.date(2024, 6, 1), procs) == (0, 0, "pre-op")  # revision day: pre-op photos
    assert visit_timeline(dt.date(2024, 7, 1), procs) == (0, 30, "settling")
    assert visit_timeline(dt.date(2024, 7, 1), []) == (None, None, None)


def test_regions_and_perception_thresholds():
    assert measure_region("palpebral_fissure_height_asymmetry") == "eye"
    assert perception_threshold_mm("mrd1") == 2.0
    assert perception_threshold_mm("commissure_excursion_asymmetry") == 3.0
    assert perception_threshold_mm("brow_height") is None
    assert measure_region("smile_angle") is None


def test_relative_sides_per_patient():
    f = pd.DataFrame(
        rows("A", -5, "rest", {("brow_height", "left"): 1, ("brow_height", "right"): 2, ("brow_height_asymmetry", "midline"): 1})
        + rows("B", -5, "rest", {("brow_height", "left"): 1, ("brow_height", "right"): 2}, affected="right")
        + rows("C", -5, "rest", {("brow_height", "left"): 1}, affected=None)
    )
    r = relative_sides(f)
    assert r["side"].tolist() == ["affected", "healthy", "midline", "healthy", "affected", "left"]


def test_deltas_baseline_noise_perception_direction_and_swelling():
    f = pd.DataFrame(
        rows("A", -40, "rest", {("commissure_y_asymmetry", "midline"): 9.0, ("palpebral_fissure_height_asymmetry", "midline"): 9.0})
        # the baseline is the last pre-op visit
        + rows("A", -3, "rest", {("commissure_y_asymmetry", "midline"): 4.0, ("palpebral_fissure_height_asymmetry", "midline"): 3.0})
        + rows("A", 10, "rest", {("commissure_y_asymmetry", "midline"): 5.0, ("palpebral_fissure_height_asymmetry", "midline"): 3.5})
        + rows("A", 200, "rest", {("commissure_y_asymmetry", "midline"): 0.8, ("palpebral_fissure_height_asymmetry", "midline"): 0.9})
        + rows("A", 200, "rest", {("palpebral_fissure_change", "affected"): -20.0})
    )
    d = baseline_deltas(visit_values(f)).set_index(["visit_date", "measure"])
    early = d.loc[(PROC + dt.timedelta(days=10), "commissure_y_asymmetry")]
    assert early["baseline"] == 4.0 and early["delta"] == pytest.approx(1.0)
    assert early["within_noise"] is True or bool(early["within_noise"]) is True
    assert early["direction"] == "within noise" and bool(early["swelling_biased"])
    late = d.loc[(PROC + dt.timedelta(days=200), "commissure_y_asymmetry")]
    assert late["delta"] == pytest.approx(-3.2) and not late["within_noise"]
    assert late["perception_threshold_mm"] == 3.0 and bool(late["beyond_perception"])
    assert late["direction"] == "more symmetric" and not late["swelling_biased"]
    eye = d.loc[(PROC + dt.timedelta(days=200), "palpebral_fissure_height_asymmetry")]
    assert eye["delta"] == pytest.approx(-2.1) and eye["perception_threshold_mm"] == 2.0 and bool(eye["beyond_perception"])
    # no baseline for the % measure: nothing to compare
    assert "palpebral_fissure_change" not in d.index.get_level_values("measure")


def test_noise_band_edge():
    f = pd.DataFrame(
        rows("A", -1, "rest", {("commissure_y_asymmetry", "midline"): 2.0})
        + rows("A", 150, "rest", {("commissure_y_asymmetry", "midline"): 2.0 + NOISE_MM})
        + rows("A", 160, "rest", {("commissure_y_asymmetry", "midline"): 2.0 + NOISE_MM - 0.01})
    )
    d = baseline_deltas(visit_values(f))
    assert d["within_noise"].tolist() == [False, True]
    assert d["direction"].tolist() == ["less symmetric", "within noise"]


def test_approximate_eface_items_and_scores():
    vals = {
        ("rest", "brow_height"): (9.0, 10.0),  # balance 90
        ("rest", "palpebral_fissure_height"): (12.0, 10.0),  # wider: balance 80
        ("smile_open", "commissure_movement"): (3.0, 6.0),  # 50
        ("smile_open", "palpebral_fissure_height"): (8.0, 10.0),  # ratio 0.8
        ("pucker", "palpebral_fissure_height"): (9.0, 10.0),  # ratio 0.9 -> ocular = 80
        ("lower_teeth", "lower_lip_movement"): (-5.0, -4.0),  # more than healthy: capped at 100
    }
    f = []
    for (expr, measure), (a, h) in vals.items():
        f += rows("A", 200, expr, {(measure, "left"): a, (measure, "right"): h})
    e = approximate_eface(visit_values(relative_sides(pd.DataFrame(f)))).set_index("item")["score"]
    assert e["brow_rest"] == pytest.approx(90)
    assert e["palpebral_fissure_rest"] == pytest.approx(80)
    assert e["oral_commissure_smile"] == pytest.approx(50)
    assert e["lower_lip_eee"] == pytest.approx(100)
    assert e["ocular_synkinesis"] == pytest.approx(80)
    assert "brow_elevation" not in e.index  # no brow_raise photo
    assert e["static_score"] == pytest.approx(85)
    assert e["dynamic_score"] == pytest.approx(75)
    assert e["synkinesis_score"] == pytest.approx(80)
    assert e["total"] == pytest.approx((90 + 80 + 50 + 100 + 80) / 5)
    full = approximate_eface(visit_values(relative_sides(pd.DataFrame(f))))
    assert full["label"].str.contains("approximation").all()
    # without an affected side there is no approximation
    assert approximate_eface(visit_values(pd.DataFrame(f))).empty


def test_oral_competence_flags_worsening_beyond_noise():
    f = pd.DataFrame(
        rows("A", -5, "lower_teeth", {("lower_lip_movement", "left"): -4.0, ("lower_lip_movement", "right"): -4.5})
        + rows("A", -5, "rest", {("interlabial_gap", "left"): 0.0, ("interlabial_gap", "right"): 0.2})
        + rows("A", 14, "lower_teeth", {("lower_lip_movement", "left"): -1.0, ("lower_lip_movement", "right"): -4.4})
        + rows("A", 14, "rest", {("interlabial_gap", "left"): 1.0, ("interlabial_gap", "right"): 1.2})
        + rows("A", 300, "lower_teeth", {("lower_lip_movement", "left"): -3.5, ("lower_lip_movement", "right"): -4.4})
        + rows("A", 300, "rest", {("interlabial_gap", "left"): 0.1, ("interlabial_gap", "right"): 0.3})
    )
    oc = oral_competence(visit_values(relative_sides(f))).set_index(["proxy", "phase"])
    dep = oc.loc[("lower_lip_depression_on_eee", "early")]
    assert dep["worsening_mm"] == pytest.approx(3.0) and dep["flagged"] and dep["swelling_biased"]
    assert not oc.loc[("lower_lip_depression_on_eee", "late"), "flagged"]
    gap = oc.loc[("interlabial_gap_at_rest", "early")]
    assert gap["baseline"] == pytest.approx(0.1) and gap["value"] == pytest.approx(1.1) and not gap["flagged"]
    o = patient_outcomes(f, "A")
    assert o.oral_competence_flag and not o.oral_competence_persistent
    assert any("not at a late visit" in n for n in o.notes)
    # the same loss still there at the late visit is persistent
    g = f.copy()
    late = (g["days_from_procedure"] == 300) & (g["measure"] == "lower_lip_movement") & (g["side"] == "left")
    g.loc[late, "value"] = -1.5
    o = patient_outcomes(g, "A")
    assert o.oral_competence_flag and o.oral_competence_persistent


def test_patient_outcomes_notes_and_errors():
    f = pd.DataFrame(rows("A", 200, "rest", {("commissure_y_asymmetry", "midline"): 1.0}, affected=None))
    o = patient_outcomes(f, "A")
    assert o.affected_side is None and o.deltas.empty and o.eface.empty
    assert any("affected side unknown" in n for n in o.notes)
    assert any("no pre-op visit" in n for n in o.notes)
    with pytest.raises(ValueError, match="no measurements for patient 'B'; patients with measurements: A"):
        patient_outcomes(f, "B")


def test_repeated_photos_of_a_visit_are_averaged():
    f = pd.DataFrame(
        rows("A", -5, "rest", {("commissure_y_asymmetry", "midline"): 1.0})
        + rows("A", -5, "rest", {("commissure_y_asymmetry", "midline"): 2.0})
    )
    v = visit_values(f)
    assert len(v) == 1 and v["value"].iloc[0] == 1.5 and v["n_recordings"].iloc[0] == 2
    assert math.isnan(visit_values(pd.DataFrame(rows("A", -5, "rest", {("mrd1", "left"): float("nan")})))["value"].iloc[0])
