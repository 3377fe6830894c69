"""Cohort page: filters, paired pre/post statistics, cohort comparison, distributions, trajectories, exports."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from app_pages import _charts as charts
from app_pages import _common as c
from symmetry.stats import POST_CHOICES, group_labels
from symmetry.store import EXPORT_COLUMNS
from symmetry.trends import KEY_MEASURES, NOISE_MM, relative_sides, visit_values

st.title("Compare cohorts")
st.caption(
    "Pre-op against post-op, per measure, over the patients chosen below. Sides are relative to the palsy "
    "(affected, healthy) so that left- and right-sided patients pool; |L − R| rows are the midline."
)

m_all = c.read_or_stop("measurements")
if m_all.empty:
    st.info("No measurements in the database yet. Measure and save visits on the Measure page, or run "
            "`symmetry ingest manifest.csv`.")
    st.stop()
procedures = c.read_or_stop("procedures")

NONE = "(none)"
labels = sorted({lab.strip() or NONE for text in m_all["cohort"].fillna("") for lab in (str(text).split(";") or [""])})
aetiologies = sorted({a or NONE for a in m_all["aetiology"].fillna("")})
kinds = sorted(set(procedures["kind"].dropna())) + ([NONE] if m_all["procedure"].isna().any() else [])

# --------------------------------------------------------------------------- filters
f1, f2, f3 = st.columns(3)
sel_cohorts = f1.multiselect("Cohort", labels, default=[x for x in labels if x != NONE] or labels)
sel_aet = f2.multiselect("Aetiology", aetiologies, default=aetiologies, format_func=lambda a: a if a == NONE else c.aetiology_label(a))
sel_kinds = f3.multiselect("Procedure", kinds, default=kinds)
g1, g2 = st.columns([1, 2])
post = g1.selectbox("Compare pre-op with the", POST_CHOICES, format_func=lambda p: c.POST_LABELS.get(p, p),
                    help="Cohort statistics use late visits by default: earlier ones are biased by swelling.")
days = m_all["days_from_procedure"].dropna()
max_days = int(days.max()) if not days.empty and int(days.max()) > 1 else 2
day_range = g2.slider("Post-op visits between (days from surgery)", 1, max_days, (1, max_days),
                      help="Pre-op visits are always kept. Visits outside this range are left out.")

patient_cohorts = m_all.groupby("patient")["cohort"].first().fillna("")
patient_aet = m_all.groupby("patient")["aetiology"].first().fillna("")
patient_kinds = procedures.groupby("patient")["kind"].apply(set).to_dict()


def _keep(patient: str) -> bool:
    labs = {x.strip() for x in str(patient_cohorts.get(patient, "")).split(";") if x.strip()} or {NONE}
    kinds_of = patient_kinds.get(patient, set()) or {NONE}
    return bool(labs & set(sel_cohorts)) and (patient_aet.get(patient) or NONE) in sel_aet and bool(kinds_of & set(sel_kinds))


chosen = [p for p in patient_cohorts.index if _keep(p)]
m = m_all[m_all["patient"].isin(chosen)]
d = m["days_from_procedure"]
in_range = (m["phase"] == "pre-op") | (d.notna() & (d.astype("Float64") >= day_range[0]) & (d.astype("Float64") <= day_range[1])).fillna(False)
m = m[in_range.astype(bool)]

if m.empty:
    st.warning("No patient matches these filters.")
    st.stop()

try:
    pairs, tests = c.paired_statistics(m, post)
except ValueError as exc:
    st.error(f"Cannot compute the paired statistics: {exc}", icon=":material/warning:")
    st.stop()

k1, k2, k3, k4 = st.columns(4)
k1.metric("Patients chosen", len(chosen))
k2.metric("With a pre-op and a post-op visit", pairs["patient"].nunique() if not pairs.empty else 0)
k3.metric("Visits", m.groupby(["patient", "visit_date"]).ngroups)
k4.metric("Measurement rows", f"{len(m):,}")

tab_stats, tab_plots, tab_models, tab_export = st.tabs(
    ["Pre/post statistics", "Distributions and trajectories", "Mixed-effects trajectories", "Download data"]
)

# --------------------------------------------------------------------------- statistics
with tab_stats:
    st.markdown(f"#### Paired pre-op → {c.POST_LABELS.get(post, post)}")
    if tests.empty:
        st.info("No patient has both a pre-op visit and a visit in the chosen post-op phase.")
    else:
        order = {k: i for i, k in enumerate(KEY_MEASURES)}
        t = tests.assign(_o=[order.get(k, 99) for k in zip(tests["expression"], tests["measure"], tests["side"])])
        t = t.sort_values("_o")
        table = pd.DataFrame({
            "Measure": [f"{c.key_measure_label(e, n, s)} ({u})"
                        for e, n, s, u in zip(t["expression"], t["measure"], t["side"], t["unit"])],
            "n": t["n"],
            "Mean pre → post": [f"{a:.2f} → {b:.2f}" for a, b in zip(t["mean_pre"], t["mean_post"])],
            "Mean change (95% CI)": [f"{x:+.2f} ({lo:.2f} to {hi:.2f})" if pd.notna(lo) else f"{x:+.2f}"
                                     for x, lo, hi in zip(t["mean_change"], t["ci_low"], t["ci_high"])],
            "p paired t": [c.p_text(p) for p in t["p_t_holm"]],
            "p Wilcoxon": [c.p_text(p) for p in t["p_wilcoxon_holm"]],
            "Hedges g": t["hedges_g"].round(2),
            "Beyond noise": ["yes" if u == "mm" and abs(x) >= NOISE_MM else ("no" if u == "mm" else "")
                             for u, x in zip(t["unit"], t["mean_change"])],
        })
        st.dataframe(table, hide_index=True, width="stretch", height="content")
        st.caption(
            "Change = post − pre. For |L − R| rows a negative change means more symmetric; eye opening change "
            "(%) closer to 0 means less eye narrowing. p-values (paired t-test, Wilcoxon signed-rank) are "
            "Holm-adjusted across the measures; the CI is a bootstrap (BCa) interval. Beyond noise: mean change of "
            f"at least {NOISE_MM:g} mm."
        )
        st.download_button("Statistics as CSV", tests.to_csv(index=False).encode(), "paired_tests.csv", "text/csv")

    cohorts_in_pairs = sorted({g for g in group_labels(pairs, "cohort")["group"]}) if not pairs.empty else []
    groups = [g for g in cohorts_in_pairs if g in sel_cohorts]
    st.markdown("#### Between cohorts: is the change different?")
    if len(groups) < 2:
        st.info("Choose at least two cohorts with pre/post pairs to compare them.")
    else:
        try:
            comparison, summary = c.cohort_comparison(pairs, tuple(groups))
        except ValueError as exc:
            st.warning(f"Cannot compare these cohorts: {exc}")
        else:
            means = summary.pivot_table(index=["expression", "measure", "side"], columns="group",
                                        values="mean_change", aggfunc="first")
            cmp = comparison.assign(_o=[order.get(k, 99) for k in zip(comparison["expression"], comparison["measure"],
                                                                       comparison["side"])]).sort_values("_o")
            out = pd.DataFrame({
                "Measure": [f"{c.key_measure_label(e, n, s)} ({u})"
                            for e, n, s, u in zip(cmp["expression"], cmp["measure"], cmp["side"], cmp["unit"])],
                "Patients": cmp["n"],
            })
            for g in groups:
                out[f"Change {g}"] = [round(float(means.loc[k, g]), 2) if k in means.index and g in means.columns
                                      and pd.notna(means.loc[k, g]) else None
                                      for k in zip(cmp["expression"], cmp["measure"], cmp["side"])]
            two = len(groups) == 2
            out["p Welch t" if two else "p Welch ANOVA"] = [c.p_text(p) for p in cmp["p_parametric_holm"]]
            out["p Mann-Whitney" if two else "p Kruskal-Wallis"] = [c.p_text(p) for p in cmp["p_rank_holm"]]
            out["Hedges g" if two else "partial η²"] = cmp["effect_size"].round(2)
            if cmp["note"].astype(bool).any():
                out["Note"] = cmp["note"]
            st.dataframe(out, hide_index=True, width="stretch", height="content")
            st.caption("Change: mean post − pre per cohort. Two cohorts: Welch's t-test and Mann-Whitney U, effect "
                       "size Hedges' g; more cohorts: Welch's ANOVA and Kruskal-Wallis, partial eta squared. "
                       "p-values Holm-adjusted across the measures.")

# --------------------------------------------------------------------------- plots
with tab_plots:
    keys = sorted({(e, n, s) for e, n, s in zip(pairs["expression"], pairs["measure"], pairs["side"])},
                  key=lambda k: KEY_MEASURES.index(k) if k in KEY_MEASURES else 99) if not pairs.empty else list(KEY_MEASURES)
    default_key = ("smile_open", "commissure_movement", "affected")
    key = st.selectbox("Measure", keys, index=keys.index(default_key) if default_key in keys else 0,
                       format_func=lambda k: c.key_measure_label(*k))
    e, n, s = key
    if not pairs.empty:
        sel = group_labels(pairs[(pairs["expression"] == e) & (pairs["measure"] == n) & (pairs["side"] == s)], "cohort")
        sel = sel[sel["group"].isin(sel_cohorts)] if not sel.empty else sel
    else:
        sel = pd.DataFrame()
    if sel.empty:
        st.info("No pre/post pairs of this measure.")
    else:
        unit = str(sel["unit"].iloc[0])
        p1, p2 = st.columns(2)
        p1.plotly_chart(charts.change_distribution_figure(sel, unit, "Change from pre-op, per patient"),
                        width="stretch", key="dist")
        p2.plotly_chart(charts.prepost_figure(sel, unit, "Pre-op and post-op, each line a patient"),
                        width="stretch", key="prepost")
    rel = relative_sides(m)
    rel = rel[(rel["expression"] == e) & (rel["measure"] == n) & (rel["side"] == s)]
    vals = visit_values(rel).dropna(subset=["days_from_procedure", "value"])
    if not vals.empty:
        cohort_of = m.groupby("patient")["cohort"].first().fillna("")
        vals = vals.assign(group=vals["patient"].map(lambda p: [x.strip() for x in str(cohort_of.get(p, "")).split(";")
                                                                 if x.strip()] or [NONE])).explode("group")
        vals = vals[vals["group"].isin(sel_cohorts)]
        unit = str(vals["unit"].iloc[0]) if not vals.empty else ""
        st.plotly_chart(charts.spaghetti_figure(vals, f"Trajectories: {c.key_measure_label(e, n, s)}", unit),
                        width="stretch", key="spaghetti")
        st.caption("Thin lines: one patient each. Thick: the cohort's mean per phase (at the median day). Shaded: "
                   "swelling and settling phases after surgery.")

# --------------------------------------------------------------------------- models


def _term(term: str) -> str:
    """``phase[late]:group[b]`` -> ``late vs pre-op: extra in b`` (terms of symmetry.stats.trajectory_model)."""
    parts = []
    for part in term.split(":"):
        if part == "Intercept":
            parts.append("pre-op level")
        elif part.startswith("phase["):
            parts.append(f"{part[6:-1]} vs pre-op")
        elif part.startswith("group["):
            parts.append(f"cohort {part[6:-1]}")
        else:
            parts.append(part)
    if len(parts) == 2 and parts[1].startswith("cohort "):
        return f"{parts[0]}: extra in {parts[1][7:]}"
    return ", ".join(parts)

with tab_models:
    st.markdown(
        "One mixed-effects model per key measure: value by phase (pre-op as reference) with a random intercept "
        "per patient, so each phase coefficient is the mean change from pre-op allowing for each patient's own "
        "level. With *by cohort*, the cohort and its interaction with the phase are added."
    )
    by = st.radio("Model", ["all patients together", "by cohort"], horizontal=True)
    if st.button("Fit the models"):
        st.session_state["fit_models"] = True
    if st.session_state.get("fit_models"):
        with c.readable_errors("fit the trajectory models"):
            tm = c.trajectories(m, "cohort" if by == "by cohort" else None)
            if tm.empty:
                st.info("Not enough patients or phases to fit a model.")
            else:
                show = pd.DataFrame({
                    "Measure": [c.key_measure_label(e, n, s) for e, n, s in zip(tm["expression"], tm["measure"], tm["side"])],
                    "Term": [_term(t) for t in tm["term"]], "Coefficient": tm["coef"].round(2), "SE": tm["se"].round(2),
                    "95% CI": [f"{lo:.2f} to {hi:.2f}" for lo, hi in zip(tm["ci_low"], tm["ci_high"])],
                    "p": [c.p_text(p) for p in tm["p"]], "Patients": tm["n_patients"], "Converged": tm["converged"],
                })
                st.dataframe(show, hide_index=True, width="stretch", height="content")

# --------------------------------------------------------------------------- export
with tab_export:
    export = m[list(EXPORT_COLUMNS)].reset_index(drop=True)
    st.markdown(f"The chosen patients' measurements as tidy rows ({len(export):,} rows): "
                + ", ".join(f"`{col}`" for col in EXPORT_COLUMNS) + ".")
    e1, e2, e3 = st.columns(3)
    # the files are written when a button is clicked (deferred), not on every rerun
    e1.download_button("Download CSV", lambda: c.export_bytes(export, "csv"), "symmetry_export.csv", "text/csv",
                       width="stretch")
    e2.download_button("Download Excel", lambda: c.export_bytes(export, "xlsx"), "symmetry_export.xlsx",
                       "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet", width="stretch")
    e3.download_button("Download Parquet", lambda: c.export_bytes(export, "parquet"), "symmetry_export.parquet",
                       "application/vnd.apache.parquet", width="stretch")
    st.dataframe(export.head(200), hide_index=True, width="stretch")
