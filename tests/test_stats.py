"""Cohort statistics agree with scipy, statsmodels and pingouin on small hand-built examples."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd
import pingouin as pg
import pytest
import statsmodels.formula.api as smf
from scipy import stats as sps
from statsmodels.stats.multitest import multipletests

from symmetry import stats
from symmetry.trends import phase_for_days

PROC = dt.date(2024, 1, 1)
# eight patients, two measures; pre and post values chosen by hand (|L-R| in mm)
PRE_SMILE = [5.1, 4.2, 6.3, 3.9, 5.5, 4.8, 6.0, 4.4]
POST_SMILE = [2.0, 2.9, 3.1, 3.7, 2.2, 1.9, 4.1, 2.5]
PRE_REST = [1.0, 1.2, 0.8, 1.5, 1.1, 0.9, 1.3, 1.0]
POST_REST = [1.1, 1.0, 0.9, 1.2, 1.3, 0.7, 1.2, 1.1]


def measurement_rows(patient, days, expression, measure, side, value, *, cohort="sd", affected="left"):
    return {
        "patient": patient, "cohort": cohort, "visit_date": PROC + dt.timedelta(days=days),
        "days_from_procedure": days, "phase": phase_for_days(days), "expression": expression, "measure": measure,
        "side": side, "value": value, "unit": "mm", "affected_side": affected, "aetiology": "bells_palsy",
    }


@pytest.fixture
def cohort_rows() -> pd.DataFrame:
    rows = []
    for i in range(8):
        p, cohort = f"P{i}", "a" if i < 4 else "b"
        aff = "left" if i % 2 else "right"
        rows += [
            measurement_rows(p, -20, "smile_open", "commissure_movement_asymmetry", "midline", PRE_SMILE[i] + 9, cohort=cohort),
            measurement_rows(p, -2, "smile_open", "commissure_movement_asymmetry", "midline", PRE_SMILE[i], cohort=cohort),
            measurement_rows(p, 10, "smile_open", "commissure_movement_asymmetry", "midline", 99.0, cohort=cohort),
            measurement_rows(p, 200, "smile_open", "commissure_movement_asymmetry", "midline", POST_SMILE[i], cohort=cohort),
            measurement_rows(p, -2, "rest", "commissure_y_asymmetry", "midline", PRE_REST[i], cohort=cohort),
            measurement_rows(p, 200, "rest", "commissure_y_asymmetry", "midline", POST_REST[i], cohort=cohort),
            # per-side rows pool as affected / healthy whatever the affected side
            measurement_rows(p, -2, "smile_open", "commissure_movement", aff, 1.0 + i, cohort=cohort, affected=aff),
            measurement_rows(p, 200, "smile_open", "commissure_movement", aff, 2.0 + i * 1.1, cohort=cohort, affected=aff),
        ]
    return pd.DataFrame(rows)


def test_prepost_pairs_pick_last_preop_and_last_late_visit(cohort_rows):
    pairs = stats.prepost_pairs(cohort_rows, measures="all")
    smile = pairs[pairs["measure"] == "commissure_movement_asymmetry"].set_index("patient")
    assert smile["pre"].tolist() == PRE_SMILE and smile["post"].tolist() == POST_SMILE
    assert (smile["post_phase"] == "late").all() and (smile["post_days"] == 200).all()
    moved = pairs[pairs["measure"] == "commissure_movement"]
    assert set(moved["side"]) == {"affected"} and len(moved) == 8
    early = stats.prepost_pairs(cohort_rows, post="early", measures="all")
    assert (early.loc[early["measure"] == "commissure_movement_asymmetry", "post"] == 99.0).all()
    with pytest.raises(ValueError, match="`post` must be one of late, settling, early, last"):
        stats.prepost_pairs(cohort_rows, post="final")


def test_paired_tests_agree_with_scipy_pingouin_statsmodels(cohort_rows):
    pairs = stats.prepost_pairs(cohort_rows, measures="all")
    out = stats.paired_tests(pairs, n_boot=1000, seed=7).set_index("measure")
    for measure, pre, post in (
        ("commissure_movement_asymmetry", PRE_SMILE, POST_SMILE),
        ("commissure_y_asymmetry", PRE_REST, POST_REST),
    ):
        r = out.loc[measure]
        pre, post = np.array(pre), np.array(post)
        t = sps.ttest_rel(post, pre)
        w = sps.wilcoxon(post, pre)
        assert r["n"] == 8
        assert r["mean_change"] == pytest.approx(np.mean(post - pre))
        assert r["t"] == pytest.approx(t.statistic) and r["p_t"] == pytest.approx(t.pvalue)
        assert r["dof"] == 7
        assert r["w"] == pytest.approx(w.statistic) and r["p_wilcoxon"] == pytest.approx(w.pvalue)
        assert r["cohen_dav"] == pytest.approx(pg.compute_effsize(post, pre, paired=True, eftype="cohen"))
        ci = sps.bootstrap((post - pre,), np.mean, n_resamples=1000, method="BCa", rng=np.random.default_rng(7)).confidence_interval
        assert (r["ci_low"], r["ci_high"]) == pytest.approx((ci.low, ci.high))
        assert r["ci_low"] < r["mean_change"] < r["ci_high"]
    # the smile improved clearly, the rest did not
    assert out.loc["commissure_movement_asymmetry", "p_t"] < 0.01 < out.loc["commissure_y_asymmetry", "p_t"]
    assert out.loc["commissure_movement_asymmetry", "rbc"] == pytest.approx(-1.0)  # every patient improved
    # Holm across the three measures, as statsmodels and pingouin compute it
    raw = out["p_t"].to_numpy()
    np.testing.assert_allclose(out["p_t_holm"], multipletests(raw, method="holm")[1])
    np.testing.assert_allclose(out["p_t_holm"], pg.multicomp(raw, method="holm")[1])
    np.testing.assert_allclose(out["p_wilcoxon_holm"], multipletests(out["p_wilcoxon"].to_numpy(), method="holm")[1])


def test_paired_tests_need_enough_pairs(cohort_rows):
    pairs = stats.prepost_pairs(cohort_rows[cohort_rows["patient"].isin(["P0", "P1"])], measures="all")
    out = stats.paired_tests(pairs)
    assert (out["n"] == 2).all()
    assert out[["t", "p_t", "w", "ci_low", "p_t_holm"]].isna().all().all()
    assert out["mean_change"].notna().all()


def test_compare_two_cohorts_agrees_with_scipy(cohort_rows):
    pairs = stats.prepost_pairs(cohort_rows, measures="all")
    out = stats.compare_cohorts(pairs, by="cohort").set_index("measure")
    change = np.array(POST_SMILE) - np.array(PRE_SMILE)
    a, b = change[:4], change[4:]
    r = out.loc["commissure_movement_asymmetry"]
    assert r["groups"] == "a vs b" and r["n"] == "a=4, b=4"
    welch = sps.ttest_ind(a, b, equal_var=False)
    mwu = sps.mannwhitneyu(a, b, alternative="two-sided")
    assert r["test_parametric"] == "welch_t" and r["stat_parametric"] == pytest.approx(welch.statistic)
    assert r["p_parametric"] == pytest.approx(welch.pvalue)
    assert r["test_rank"] == "mann_whitney_u" and r["stat_rank"] == pytest.approx(mwu.statistic)
    assert r["p_rank"] == pytest.approx(mwu.pvalue)
    assert r["effect_size"] == pytest.approx(pg.compute_effsize(a, b, eftype="hedges"))
    np.testing.assert_allclose(out["p_rank_holm"], multipletests(out["p_rank"].to_numpy(), method="holm")[1])


def test_compare_three_cohorts_uses_kruskal_and_welch_anova(cohort_rows):
    rows = cohort_rows.copy()
    rows.loc[rows["patient"].isin(["P5", "P7"]), "cohort"] = "c"
    pairs = stats.prepost_pairs(rows, measures="all")
    r = stats.compare_cohorts(pairs).set_index("measure").loc["commissure_movement_asymmetry"]
    change = np.array(POST_SMILE) - np.array(PRE_SMILE)
    groups = [change[[0, 1, 2, 3]], change[[4, 6]], change[[5, 7]]]
    kw = sps.kruskal(*groups)
    assert r["groups"] == "a vs b vs c" and r["test_rank"] == "kruskal_wallis"
    assert r["stat_rank"] == pytest.approx(kw.statistic) and r["p_rank"] == pytest.approx(kw.pvalue)
    frame = pd.DataFrame({"change": np.concatenate(groups), "group": ["a"] * 4 + ["b"] * 2 + ["c"] * 2})
    welch = pg.welch_anova(frame, dv="change", between="group")
    assert r["test_parametric"] == "welch_anova" and r["effect_size_kind"] == "partial_eta_squared"
    assert r["p_parametric"] == pytest.approx(welch["p_unc"].iloc[0]) and r["note"] == ""
    # a group whose changes are all equal has no Welch weights: the rank test still runs
    rows.loc[rows["patient"].isin(["P5", "P7"]), "cohort"] = "b"
    rows.loc[rows["patient"].isin(["P6", "P7"]), "cohort"] = "c"  # changes -1.9 and -1.9
    r = stats.compare_cohorts(stats.prepost_pairs(rows, measures="all")).set_index("measure").loc["commissure_movement_asymmetry"]
    assert r["test_rank"] == "kruskal_wallis" and np.isnan(r["p_parametric"]) and "no Welch ANOVA" in r["note"]


def test_overlapping_cohorts_are_refused_naming_the_patients(cohort_rows):
    rows = cohort_rows.copy()
    rows.loc[rows["patient"] == "P0", "cohort"] = "a;b"
    pairs = stats.prepost_pairs(rows, measures="all")
    with pytest.raises(ValueError, match="patients in more than one compared cohort: P0"):
        stats.compare_cohorts(pairs)
    summary = stats.cohort_summary(pairs)
    assert summary.set_index(["measure", "group"]).loc[("commissure_movement_asymmetry", "b"), "n"] == 5
    with pytest.raises(ValueError, match="need at least two cohort groups"):
        stats.compare_cohorts(pairs, groups=["a"])


def test_trajectory_model_matches_statsmodels_and_recovers_the_phase_effects():
    rng = np.random.default_rng(3)
    effects = {-10: 0.0, 14: 1.5, 60: 0.5, 300: -2.0}  # day -> true change from pre-op
    rows = []
    for i in range(12):
        level = 5.0 + rng.normal(0, 1.0)
        for days, eff in effects.items():
            rows.append(measurement_rows(f"P{i}", days, "smile_open", "commissure_movement_asymmetry", "midline",
                                         level + eff + rng.normal(0, 0.3)))
    m = pd.DataFrame(rows)
    out = stats.trajectory_model(m, expression="smile_open", measure="commissure_movement_asymmetry", side="midline")
    assert out["term"].tolist() == ["Intercept", "phase[early]", "phase[late]", "phase[settling]"]
    assert out["n_patients"].iloc[0] == 12 and out["n_obs"].iloc[0] == 48 and out["converged"].all()
    fit = smf.mixedlm('value ~ C(phase, Treatment("pre-op"))', m, groups=m["patient"]).fit(reml=True)
    np.testing.assert_allclose(out["coef"], fit.fe_params.to_numpy())
    np.testing.assert_allclose(out["se"], fit.bse_fe.to_numpy())
    est = out.set_index("term")
    for term, truth in (("phase[early]", 1.5), ("phase[settling]", 0.5), ("phase[late]", -2.0)):
        assert est.loc[term, "ci_low"] < truth < est.loc[term, "ci_high"]
    assert est.loc["phase[late]", "p"] < 1e-6
    # by cohort: interaction terms appear
    m["cohort"] = np.where(m["patient"].isin([f"P{i}" for i in range(6)]), "a", "b")
    by = stats.trajectory_model(m, expression="smile_open", measure="commissure_movement_asymmetry", side="midline", by="cohort")
    assert "group[b]" in set(by["term"]) and "phase[late]:group[b]" in set(by["term"])


def test_trajectory_model_is_empty_without_enough_data(cohort_rows):
    one = cohort_rows[cohort_rows["patient"] == "P0"]
    assert stats.trajectory_model(one, expression="rest", measure="commissure_y_asymmetry", side="midline").empty
    assert list(stats.trajectory_models(one).columns) == list(stats.TRAJECTORY_COLUMNS)
