"""Patient page: visit timeline, trends, before/after pairs, synkinesis, oral competence, scores, report."""

from __future__ import annotations

import datetime as dt

import pandas as pd
import streamlit as st

from app_pages import _charts as charts
from app_pages import _common as c
from symmetry.trends import KEY_MEASURES, NOISE_MM, PERCEPTION_MM

st.title("Follow a patient")

patients = c.read_or_stop("patients")
if patients.empty:
    st.info("No patients in the database yet. Measure and save a visit on the Measure page, or run "
            "`symmetry ingest manifest.csv`.")
    st.stop()

codes = list(patients["patient"])
focus = st.session_state.get("focus_patient")
default = codes.index(focus) if focus in codes else (codes.index("DEMO") if "DEMO" in codes else 0)
code = st.selectbox("Patient", codes, index=default, key="patient_select")
st.session_state["focus_patient"] = code
info = patients[patients["patient"] == code].iloc[0]

m = c.read_or_stop("measurements", code)
visits = c.read_or_stop("visits", code)
procedures = c.read_or_stop("procedures", code)
if m.empty:
    st.info(f"{code} has no measurements yet.")
    st.stop()
try:
    o = c.outcomes(m, code)
except ValueError as exc:
    st.error(f"Cannot work out the outcomes of {code}: {exc}", icon=":material/warning:")
    st.stop()

h1, h2, h3, h4 = st.columns(4)
h1.metric("Affected side", o.affected_side or "not known")
h2.metric("Aetiology", c.aetiology_label(info["aetiology"]))
h3.metric("Cohort", info["cohort"] or "—")
proc = "; ".join(f"{r['kind']} on {r['date']}" for _, r in procedures.iterrows()) or "none recorded"
h4.metric("Visits", int(info["n_visits"]), help=f"Procedure: {proc}")
st.caption(f"Procedure: **{proc}**. Sides are relative to the palsy: *affected* and *healthy*.")
for note in o.notes:
    if "oral-competence" not in note:
        st.info(note)

tab_trend, tab_pairs, tab_synk, tab_scores, tab_report = st.tabs(
    ["Timeline and trends", "Before / after", "Synkinesis and oral competence", "Clinician scores", "Report"]
)

# --------------------------------------------------------------------------- timeline and trends
with tab_trend:
    st.plotly_chart(charts.timeline_figure(visits), width="stretch", key="timeline")
    vt = visits.assign(
        phase=visits["phase"].map(lambda p: c.PHASE_LABELS.get(p, p or "—")),
    )[["visit_date", "days_from_procedure", "phase", "n_recordings"]]
    vt.columns = ["Visit", "Days from surgery", "Phase", "Photos"]
    st.dataframe(vt, hide_index=True, width="content")

    st.markdown("#### Change from pre-op (key measures)")
    kd = o.key_deltas()
    if kd.empty:
        st.info("No pre-op and post-op visits to compare yet.")
    else:
        kd = kd.assign(
            what=[c.key_measure_label(e, n, s) for e, n, s in zip(kd["expression"], kd["measure"], kd["side"])],
            cell=[f"{d:+.1f} {u}  {c.delta_marks(r)}".strip() for d, u, (_, r) in zip(kd["delta"], kd["unit"], kd.iterrows())],
            visit=[f"{v} (day {int(d)})" for v, d in zip(kd["visit_date"], kd["days_from_procedure"])],
        )
        base = kd.drop_duplicates("what").set_index("what")[["baseline", "unit"]]
        table = kd.pivot_table(index="what", columns="visit", values="cell", aggfunc="first", sort=False)
        table.insert(0, "Pre-op", [f"{base.loc[w, 'baseline']:.1f} {base.loc[w, 'unit']}" for w in table.index])
        table.index.name = "Measure"
        st.dataframe(table.reset_index(), hide_index=True, width="stretch", height="content")
        st.caption(
            f"Each cell: change from the pre-op value. ≈ noise: under {NOISE_MM:g} mm, within test-retest noise. "
            f"◆ visible: at or beyond the perception threshold ({PERCEPTION_MM['eye']:g} mm eyelids, "
            f"{PERCEPTION_MM['mouth']:g} mm mouth). For |L − R| rows a negative change is more symmetric. "
            "swelling: visit within 4 months of surgery, biased by swelling."
        )

    st.markdown("#### Trends")
    s = o.series
    pairs = sorted({(e, n) for e, n in zip(s["expression"], s["measure"])},
                   key=lambda p: (c.EXPRESSIONS.index(p[0]) if p[0] in c.EXPRESSIONS else 99, p[1]))
    key_pairs = [(e, n) for e, n, _ in KEY_MEASURES if (e, n) in pairs]
    chosen = st.multiselect(
        "Measures to plot", pairs, default=list(dict.fromkeys(key_pairs))[:6],
        format_func=lambda p: f"{c.EXPRESSION_SHORT.get(p[0], p[0])} · {c.measure_label(p[1])}",
    )
    st.caption(
        "Shaded: swelling (first 3 weeks) and settling (to 4 months) after surgery. Blue band: the pre-op value "
        f"± {NOISE_MM:g} mm (measurement noise). Dashed red: the smallest change an observer sees "
        f"({PERCEPTION_MM['eye']:g} mm eyelids, {PERCEPTION_MM['mouth']:g} mm mouth). Open markers: visits biased "
        "by swelling."
    )
    cols = st.columns(2)
    for k, (e, n) in enumerate(chosen):
        present = set(s.loc[(s["expression"] == e) & (s["measure"] == n), "side"])
        sides = [x for x in ("affected", "healthy", "right", "left", "midline") if x in present]
        with cols[k % 2]:
            st.plotly_chart(charts.trend_figure(s, e, n, sides), width="stretch", key=f"trend_{e}_{n}")

# --------------------------------------------------------------------------- before / after
with tab_pairs:
    rec = c.read_or_stop("recordings", code)
    rec = rec[rec["kind"] == "photo"]
    vdates = sorted(rec["visit_date"].unique())
    if len(vdates) < 2:
        st.info("Before/after pairs need photos from two visits.")
    else:
        phase_of = dict(zip(visits["visit_date"], visits["phase"]))
        days_of = dict(zip(visits["visit_date"], visits["days_from_procedure"]))

        def visit_label(d: dt.date) -> str:
            days = days_of.get(d)
            return f"{d} · {c.PHASE_LABELS.get(phase_of.get(d), '—')}" + ("" if pd.isna(days) else f" · day {int(days)}")

        pre = [d for d in vdates if phase_of.get(d) == "pre-op"]
        b1, b2, b3 = st.columns(3)
        before = b1.selectbox("Before", vdates, index=vdates.index(pre[-1]) if pre else 0, format_func=visit_label)
        after = b2.selectbox("After", vdates, index=len(vdates) - 1, format_func=visit_label)
        common = [e for e in c.EXPRESSIONS
                  if ((rec["visit_date"] == before) & (rec["expression"] == e)).any()
                  and ((rec["visit_date"] == after) & (rec["expression"] == e)).any()]
        if not common:
            st.info("These two visits share no expression.")
        else:
            expr = b3.selectbox("Expression", common, format_func=c.expression_label,
                                index=common.index("smile_open") if "smile_open" in common else 0)
            shown = st.columns(2)
            for col, d in zip(shown, (before, after)):
                r = rec[(rec["visit_date"] == d) & (rec["expression"] == expr)].iloc[0]
                rest = rec[(rec["visit_date"] == d) & (rec["expression"] == "rest")]
                rest_file = rest["file"].iloc[0] if not rest.empty else None
                rest_mirrored = bool(rest["mirrored"].iloc[0]) if not rest.empty else False
                with col:
                    st.markdown(f"**{visit_label(d)}**")
                    with c.readable_errors(f"draw the {expr} photo of {d}"), st.spinner("Measuring…"):
                        img = c.stored_overlay(r["file"], rest_file, expr, o.affected_side, bool(r["mirrored"]),
                                               rest_mirrored)
                        st.image(img, width="stretch")
            d = o.deltas
            d = d[(d["expression"] == expr) & (d["visit_date"] == after) & (d["side"] != "midline")] if not d.empty else d
            if before in pre and not d.empty:
                order = list(c.MOVEMENT_ORDER + c.STATIC_ORDER)
                rows = []
                for name in sorted(set(d["measure"]), key=lambda n: order.index(n) if n in order else 99):
                    row = {"Measure": c.measure_label(name), "Unit": d.loc[d["measure"] == name, "unit"].iloc[0]}
                    for side in ("affected", "healthy", "left", "right"):
                        r = d[(d["measure"] == name) & (d["side"] == side)]
                        if r.empty:
                            continue
                        r = r.iloc[0]
                        row[f"{side.capitalize()}: before"] = round(float(r["baseline"]), 1)
                        row[f"{side.capitalize()}: after"] = round(float(r["value"]), 1)
                        row[f"{side.capitalize()}: change"] = f"{r['delta']:+.1f} {c.delta_marks(r)}".strip()
                    rows.append(row)
                st.dataframe(pd.DataFrame(rows), hide_index=True, width="stretch", height="content")
                st.caption("Change = after − before. ≈ noise: under the 1.5 mm noise band; ◆ visible: at or beyond "
                           "the perception threshold.")
            elif before not in pre:
                st.caption("Changes are listed when *Before* is the pre-op visit.")

# --------------------------------------------------------------------------- synkinesis and oral competence
with tab_synk:
    st.markdown("#### Synkinesis")
    st.plotly_chart(charts.synkinesis_figure(o.series), width="stretch", key="synkinesis")
    st.caption(
        "Smile → eye: eye narrowing while smiling (normal faces narrow about 22%, synkinesis about 33%). "
        "Pucker → eye: the same during a pucker. Eye closure → mouth: the mouth corner moving while the eyes "
        "close (about 4 mm in synkinesis). Read affected against healthy side."
    )
    rows = []
    for label, e, n in (("Smile → eye narrowing (%)", "smile_open", "palpebral_fissure_change"),
                        ("Pucker → eye narrowing (%)", "pucker", "palpebral_fissure_change"),
                        ("Eye closure → mouth corner movement (mm)", "eye_closure_gentle", "commissure_movement")):
        d = o.series[(o.series["expression"] == e) & (o.series["measure"] == n) & o.series["side"].isin(["affected", "healthy"])]
        for _, r in d.iterrows():
            value = -r["value"] if n == "palpebral_fissure_change" else r["value"]
            rows.append({"Indicator": label, "Side": r["side"], "Visit": f"{r['visit_date']} ({r['phase']})",
                         "Value": round(float(value), 1)})
    if rows:
        t = pd.DataFrame(rows).pivot_table(index=["Indicator", "Side"], columns="Visit", values="Value",
                                            aggfunc="first", sort=False)
        st.dataframe(t.reset_index(), hide_index=True, width="stretch", height="content")

    st.markdown("#### Oral competence")
    oc = o.oral_competence
    if oc.empty:
        st.info("No pre-op and post-op “eee” or rest photos to compare.")
    elif o.oral_competence_flag:
        flagged = oc[oc["flagged"]]
        worst = flagged.loc[flagged["worsening_mm"].idxmax()]
        msg = (f"**Post-op decline in oral competence**: {c.ORAL_PROXY_LABELS.get(worst['proxy'], worst['proxy'])} "
               f"worse by {worst['worsening_mm']:.1f} mm at {worst['visit_date']} ({worst['phase']}), beyond the "
               f"{NOISE_MM:g} mm noise band.")
        if o.oral_competence_persistent:
            st.error(msg + " It persists at the last late visit.", icon=":material/flag:")
        else:
            st.warning(msg + " Not at a late visit: swelling may explain it.", icon=":material/warning:")
    else:
        st.success(f"No oral-competence proxy worsened beyond the {NOISE_MM:g} mm noise band after surgery.")
    if not oc.empty:
        t = pd.DataFrame({
            "Proxy": [c.ORAL_PROXY_LABELS.get(p, p) for p in oc["proxy"]],
            "Visit": [f"{v} ({p})" for v, p in zip(oc["visit_date"], oc["phase"])],
            "Pre-op (mm)": oc["baseline"].round(2),
            "Visit (mm)": oc["value"].round(2),
            "Worse by (mm)": oc["worsening_mm"].round(2),
            "Flag": ["FLAG: beyond noise" if f else "" for f in oc["flagged"]],
        })
        st.dataframe(t, hide_index=True, width="stretch", height="content")

    st.markdown("#### eFACE-style scores (approximation)")
    st.plotly_chart(charts.eface_figure(o.eface), width="stretch", key="eface")
    st.caption("Computed from photos as affected ÷ healthy ratios (Auto-eFACE style): an approximation, "
               "not a clinician's eFACE. Enter the clinician's scores in the next tab.")

# --------------------------------------------------------------------------- clinician scores
with tab_scores:
    from symmetry.store import INSTRUMENTS

    if "scores_saved" in st.session_state:
        st.success(st.session_state.pop("scores_saved"))
    scores = c.read_or_stop("scores", code)
    if scores.empty:
        st.info("No clinician scores yet.")
    else:
        t = scores.assign(Score=[f"{c.INSTRUMENT_LABELS.get(i, i).split(' (')[0]}: {it.replace('_', ' ')}"
                                 for i, it in zip(scores["instrument"], scores["item"])])
        t = t.pivot_table(index="Score", columns="visit_date", values="value", aggfunc="mean")
        t.columns = [str(x) for x in t.columns]
        st.dataframe(t.reset_index(), hide_index=True, width="stretch", height="content")

    st.markdown("#### Enter scores")
    instrument = st.selectbox("Instrument", list(INSTRUMENTS), format_func=lambda i: c.INSTRUMENT_LABELS.get(i, i))
    visit_options = [str(d) for d in visits["visit_date"]] + ["another date…"]
    with st.form(f"scores_{instrument}", clear_on_submit=False):
        f1, f2, f3 = st.columns(3)
        visit_choice = f1.selectbox("Visit", visit_options, index=max(len(visit_options) - 2, 0))
        other_date = f1.date_input("Other date", value=None, format="YYYY-MM-DD",
                                   help="Only used with “another date…”.")
        rater = f2.text_input("Rater (initials)")
        notes = f3.text_input("Note")
        items = INSTRUMENTS[instrument]
        cols = st.columns(4)
        values = {}
        for k, (item, rng) in enumerate(items.items()):
            values[item] = cols[k % 4].number_input(
                f"{item.replace('_', ' ')} ({rng.low:g}–{rng.high:g})", min_value=float(rng.low),
                max_value=float(rng.high), value=None, step=1.0 if rng.integer else 0.5,
                format="%.0f" if rng.integer else "%.1f", key=f"score_{instrument}_{item}",
            )
        submitted = st.form_submit_button("Save scores", type="primary")
    if submitted:
        entered = {(instrument, item): v for item, v in values.items() if v is not None}
        vdate = other_date if visit_choice == "another date…" else dt.date.fromisoformat(visit_choice)
        if not entered:
            st.warning("Enter at least one score.")
        elif vdate is None:
            st.warning("Choose the date of the other visit.")
        else:
            with c.readable_errors("save the scores"):
                n = c.get_store().add_scores(code, vdate, entered, rater=rater.strip(), notes=notes.strip() or None)
                c.data_changed()
                st.session_state["scores_saved"] = f"{n} score(s) saved for {code} on {vdate}."
                st.rerun()  # show them in the table above

# --------------------------------------------------------------------------- report
with tab_report:
    st.markdown(
        "A self-contained report (HTML or PDF): visit table, changes from pre-op with noise and perception "
        "marks, trend plots, eFACE approximation, oral-competence flag, clinician scores and annotated photos "
        "of the pre-op and last visits. **It contains face photos unless you leave them out: handle it as "
        "patient data.**"
    )
    r1, r2, r3 = st.columns([1, 1, 2])
    fmt = r1.radio("Format", ["pdf", "html"], horizontal=True, format_func=str.upper)
    with_photos = r2.checkbox("Include photos", value=True)
    key = f"report_{code}_{fmt}_{with_photos}"
    if r3.button("Prepare report"):
        with c.readable_errors("prepare the report"), st.spinner("Preparing the report (re-measuring the photos)…"):
            st.session_state[key] = c.build_report(code, fmt, photos=with_photos)
    if key in st.session_state:
        st.download_button(
            f"Download {code} report ({fmt.upper()})", st.session_state[key], file_name=f"{code}_report.{fmt}",
            mime="application/pdf" if fmt == "pdf" else "text/html", type="primary",
        )
