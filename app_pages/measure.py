"""Measure page: upload a visit's photos and videos, tag expressions, see the measures, save them."""

from __future__ import annotations

import contextlib
import csv
import datetime as dt
import tempfile
from pathlib import Path

import pandas as pd
import streamlit as st

from app_pages import _common as c
from symmetry.errors import SymmetryError

NEW = "New patient…"
SIDES = {"not known": None, "left": "left", "right": "right"}

st.title("Measure photos and videos")
st.caption(
    "Drop a visit's photos (and clinic videos) below, check the expression of each, and see the per-side "
    "measures in millimetres. Nothing leaves this computer. Movement measures (e.g. mouth corner movement in a "
    "smile) need a **rest** photo of the same visit, uploaded here or already saved."
)

patients = c.read_or_stop("patients")

# --------------------------------------------------------------------------- patient and visit
st.subheader("1 · Patient and visit")
codes = list(patients["patient"])
col_p, col_d, col_s = st.columns([2, 1, 1.3])
choice = col_p.selectbox("Patient", [NEW, *codes], index=0, help="Pseudonymous codes only: never names.")
is_new = choice == NEW
stored_side = None
if is_new:
    code = col_p.text_input("New patient code", placeholder="e.g. P014 (letters, digits, . _ -; no names)").strip()
else:
    code = choice
    row = patients[patients["patient"] == code].iloc[0]
    stored_side = row["affected_side"] if row["affected_side"] in ("left", "right") else None
    col_p.caption(
        f"Stored: affected side **{stored_side or 'not known'}**, aetiology {c.aetiology_label(row['aetiology'])}, "
        f"cohort {row['cohort'] or '—'}, {row['n_visits']} visit(s)."
    )
visit_date = col_d.date_input("Visit date", value=dt.date.today(), format="YYYY-MM-DD")
side_names = list(SIDES)
affected_label = col_s.radio(
    "Affected side (patient's)", side_names, index=side_names.index(stored_side or "not known"), horizontal=True,
    help="Needed for the affected ÷ healthy ratios. The patient's side, not the side of the picture.",
)
affected = SIDES[affected_label]
if stored_side and affected != stored_side:
    st.warning(f"{code} is stored with the affected side {stored_side}; saving with another side will be refused.")

procedure_date = procedure = aetiology = cohort = None
if is_new:
    from symmetry.store import Aetiology

    with st.expander("Surgery, aetiology and cohort of the new patient (optional)"):
        e1, e2, e3, e4 = st.columns(4)
        procedure_date = e1.date_input("Surgery date", value=None, format="YYYY-MM-DD",
                                       help="Visits are timed from this date (pre-op, swelling, settling, late).")
        procedure = e2.text_input("Procedure", placeholder="e.g. selective neurectomy").strip() or None
        aet_values = [""] + [a.value for a in Aetiology]
        aetiology = e3.selectbox("Aetiology", aet_values, format_func=c.aetiology_label) or None
        cohort = e4.text_input("Cohort label(s)", placeholder="e.g. neurectomy; separate several with ;").strip() or None

# --------------------------------------------------------------------------- uploads
st.subheader("2 · Photos and videos")
uploads = st.file_uploader(
    "Drag and drop the visit's photos and videos here (several at once)",
    type=c.PHOTO_TYPES + c.VIDEO_TYPES,
    accept_multiple_files=True,
    key="uploads",
    help=f"Photos: {', '.join(c.PHOTO_TYPES)}. Videos: {', '.join(c.VIDEO_TYPES)}. "
         f"At most {c.max_upload_mb()} MB per file.",
)
o1, o2 = st.columns([1, 1])
mirrored = o1.toggle("Selfie camera (mirrored photos)", value=False,
                     help="Front cameras of phones mirror the picture; sides are then swapped back.")
mm_per_px = o2.number_input(
    "Scale by hand (mm per pixel)", value=None, min_value=0.0001, max_value=10.0, format="%.4f",
    placeholder="automatic: iris = 11.77 mm",
    help="Leave empty to take the scale from the iris. Used for the measures shown on this page.",
)

files, refused = c.too_large(uploads or [])
for message in refused:
    st.error(message, icon=":material/block:")
photos = [f for f in files if not c.is_video_name(f.name)]
videos = [f for f in files if c.is_video_name(f.name)]
if not files:
    st.info(
        "No photos yet. Tip: name files after the expression (`rest.jpg`, `smile_open.jpg`, `eee.jpg`...) and "
        "the expression tags fill themselves in. Expressions: "
        + ", ".join(f"*{c.expression_label(e)}*" for e in c.EXPRESSIONS) + "."
    )
    st.stop()

# --------------------------------------------------------------------------- tags
tags: dict[str, str] = {}
if photos:
    st.markdown("**Expression of each photo** (suggested from the file name; please check)")
    labels = [c.expression_label(e) for e in c.EXPRESSIONS]
    ncols = min(len(photos), 4)
    cols = st.columns(ncols)
    for k, f in enumerate(photos):
        with cols[k % ncols]:
            suggested = c.suggest_expression(f.name) or "rest"
            thumb = c.thumbnail(f.getvalue(), f.name)
            if thumb is not None:
                st.image(thumb, width=140)
            else:
                st.caption("(cannot be shown: see the message below)")
            label = st.selectbox(f.name, labels, index=c.EXPRESSIONS.index(suggested), key=f"tag_{f.file_id}")
            tags[f.file_id] = c.EXPRESSIONS[labels.index(label)]

# The visit's rest photo: an uploaded one, else the one already saved for this patient and visit.
rest_arg = None
rest_uploads = [f for f in photos if tags.get(f.file_id) == "rest"]
if rest_uploads:
    rest_arg = (rest_uploads[0].getvalue(), rest_uploads[0].name, mirrored)
elif code and not is_new:
    rec = c.read("recordings", code)
    rec = rec[(rec["visit_date"] == visit_date) & (rec["expression"] == "rest")]
    if not rec.empty:
        r = rec.iloc[0]
        try:
            rest_arg = (Path(r["file"]).read_bytes(), f"saved rest photo of {visit_date}", bool(r["mirrored"]))
        except OSError:
            rest_arg = None
if photos and rest_arg is None and any(t != "rest" for t in tags.values()):
    st.info("No rest photo for this visit: the expression photos get static measures only (no movement from rest).")

# --------------------------------------------------------------------------- measure
results: dict[str, c.MeasuredPhoto] = {}
errors: dict[str, str] = {}
if photos:
    st.subheader("3 · Measures")
    bar = st.progress(0.0, text="Measuring…") if len(photos) > 1 else None
    for k, f in enumerate(photos):
        expr = tags[f.file_id]
        try:
            with st.spinner(f"Measuring {f.name}…") if bar is None else contextlib.nullcontext():
                results[f.file_id] = c.measure_photo_bytes(
                    f.getvalue(), f.name, expr, affected, mirrored, mm_per_px,
                    rest_arg if expr != "rest" else None,
                )
        except SymmetryError as exc:
            errors[f.file_id] = str(exc)
        except Exception as exc:  # noqa: BLE001 - shown, not raised
            errors[f.file_id] = f"{f.name}: unexpected {type(exc).__name__}: {exc}"
        if bar is not None:
            bar.progress((k + 1) / len(photos), text=f"Measured {k + 1} of {len(photos)} photos")
    if bar is not None:
        bar.empty()

    tabs = st.tabs([f"{c.expression_label(tags[f.file_id])} · {f.name}" + (" (not measured)" if f.file_id in errors else "")
                    for f in photos])
    for tab, f in zip(tabs, photos):
        with tab:
            if f.file_id in errors:
                st.error(f"Could not measure {errors[f.file_id]}", icon=":material/warning:")
                continue
            m = results[f.file_id]
            left, right = st.columns([1, 1.4])
            with left:
                st.image(m.overlay, width="stretch",
                         caption="Orange: patient's right, cyan: patient's left; green: inter-pupil line and midline"
                                 + ("; red arrow: mouth-corner movement from rest." if m.rest_name else "."))
            with right:
                headline = [("commissure_y_asymmetry", "Mouth corner height"),
                            ("palpebral_fissure_height_asymmetry", "Eye opening"),
                            ("brow_height_asymmetry", "Brow height")]
                if m.rest_name and m.expression != "rest":
                    headline.insert(0, ("commissure_movement_asymmetry", "Corner movement"))
                values = dict(zip(zip(m.table["name"], m.table["side"]), m.table["value"]))
                st.markdown("**Difference between the sides, |L − R|**")
                for col, (name, label) in zip(st.columns(len(headline)), headline):
                    v = values.get((name, "midline"), float("nan"))
                    thr = c.perception_threshold(name)
                    visible = thr is not None and v == v and v >= thr
                    col.metric(label, f"{c.fmt(v)} mm", delta=f"visible (≥ {thr:g} mm)" if visible else None,
                               delta_color="inverse", delta_arrow="off", border=True)
                pose = m.head_pose_deg
                unc = f" ± {m.mm_per_px_uncertainty:.4f}" if m.mm_per_px_uncertainty else ""
                st.markdown(
                    f"**Scale** {m.mm_per_px:.4f}{unc} mm per pixel (from the {m.scale_source}). "
                    f"**Head pose** turn {pose.get('yaw', 0):.0f}°, nod {pose.get('pitch', 0):.0f}°, "
                    f"tilt {pose.get('roll', 0):.0f}° (measures are unreliable beyond 10° of turn)."
                )
                if m.rest_name and m.expression != "rest":
                    st.markdown(f"Movement measured against the rest photo *{m.rest_name}*.")
                for w in m.warnings:
                    st.warning(w)
                st.download_button("Measures as CSV", m.table.to_csv(index=False).encode(),
                                   file_name=f"{Path(f.name).stem}_measures.csv", mime="text/csv",
                                   key=f"csv_{f.file_id}")
            table = c.side_table(m.table, affected)
            if table["Affected ÷ healthy"].isna().all():
                table = table.drop(columns="Affected ÷ healthy")
            st.dataframe(table.style.format(precision=2, na_rep="—"), hide_index=True, width="stretch",
                         height="content")
            st.caption(
                "|L − R|: difference between the sides. Affected ÷ healthy: 1 = symmetric (shown when the affected "
                "side is known). Visible asymmetry: |L − R| at or beyond what an observer perceives (2 mm eyelids, "
                "3 mm mouth; Hohman et al. 2014). Normal faces differ by 0.5–2.3 mm during expressions."
            )

# --------------------------------------------------------------------------- videos
video_rows: list[tuple[str, str, str, float]] = []  # (file name, video path, expression, time s) to save
if videos:
    st.subheader("Videos")
    problem = c.video_available()
    if problem:
        st.info(f"{problem.capitalize()}. Photos can still be measured and saved.")
    for f in videos:
        with st.container(border=True):
            st.markdown(f"**{f.name}**")
            with c.readable_errors(f"analyse {f.name}"):
                if problem:
                    continue
                data = f.getvalue()
                path = str(c.spool(data, f.name))
                sha = c.file_sha256(data)
                stride = 2
                total = -(-c.video_frame_count(path) // stride)
                analysis = c.run_with_progress(
                    lambda tick: c.analyse_video(path, sha, affected, mirrored, mm_per_px, stride, _progress=tick),
                    total=total, label=f"Analysing {f.name}",
                )
                res = analysis.result
                st.caption(
                    f"{res.duration_s:.1f} s at {res.fps:.0f} fps; {len(res.events)} expression event(s) found. "
                    "Tags are suggested from the detected events: check them. The rest frame and each tagged "
                    "event's peak frame are saved as photos of this visit."
                )
                for w in res.warnings:
                    st.warning(w)
                options = [c.expression_label(e) for e in c.EXPRESSIONS] + [c.NOT_SAVED]
                rows = [{"Detected": "rest", "Peak at (s)": round(res.rest_s, 2), "Save as": c.expression_label("rest")}]
                for e in res.events:
                    key = c.VIDEO_TO_PHOTO_EXPRESSION.get(e.expression, e.expression)
                    rows.append({
                        "Detected": e.expression.replace("_", " "),
                        "Peak at (s)": round(e.peak_s, 2),
                        "Save as": c.expression_label(key) if key in c.EXPRESSIONS else c.NOT_SAVED,
                    })
                edited = st.data_editor(
                    pd.DataFrame(rows), hide_index=True, key=f"events_{sha}", disabled=["Detected", "Peak at (s)"],
                    column_config={"Save as": st.column_config.SelectboxColumn(options=options, required=True)},
                )
                if analysis.keyframes:
                    kcols = st.columns(min(len(analysis.keyframes), 5))
                    for k, (caption, png) in enumerate(analysis.keyframes):
                        kcols[k % len(kcols)].image(png, caption=caption, width="stretch")
                st.session_state["video_from_measure"] = {"name": f.name, "path": path}
                st.page_link("app_pages/video.py", label="Full video analysis (time series, annotated video)",
                             icon=":material/movie:")
                label_to_key = {c.expression_label(e): e for e in c.EXPRESSIONS}
                for _, r in edited.iterrows():
                    key = label_to_key.get(r["Save as"])
                    if key is None:
                        continue
                    t = float(r["Peak at (s)"])
                    video_rows.append((f"{Path(f.name).stem}_{key}_{t:.2f}s.png", path, key, t))

# --------------------------------------------------------------------------- save
st.subheader("4 · Save to the database")
n_photos = len([f for f in photos if f.file_id not in errors])
what = f"{n_photos} photo(s)" + (f" and {len(video_rows)} video frame(s)" if video_rows else "")
if not code:
    st.info("Enter a patient code above to save.")
else:
    st.caption(
        f"Saves {what} as patient **{code}**, visit **{visit_date}**. Stored copies have location and device "
        "metadata removed; a photo already saved is not saved twice."
        + (" The database stores measures at the iris scale: the hand-set scale applies to this page only."
           if mm_per_px else "")
    )
if st.button("Save to database", type="primary", disabled=not code or (n_photos == 0 and not video_rows)):
    from symmetry.ingest import OPTIONAL_COLUMNS, REQUIRED_COLUMNS, ingest_manifest

    with c.readable_errors("save the photos"), tempfile.TemporaryDirectory(prefix="symmetry-upload-") as tmp:
        folder = Path(tmp)
        manifest_rows = []
        used: set[str] = set()

        def _name(name: str) -> str:
            base = Path(name).name or "photo"
            out, k = base, 1
            while out.lower() in used:
                out, k = f"{Path(base).stem}_{k}{Path(base).suffix}", k + 1
            used.add(out.lower())
            return out

        def _row(path: str, expression: str) -> dict[str, str]:
            return {
                "patient": code, "visit_date": visit_date.isoformat(), "expression": expression, "path": path,
                "procedure_date": procedure_date.isoformat() if procedure_date else "",
                "procedure": (procedure or "") if procedure_date else "",
                "affected_side": affected or "", "aetiology": aetiology or "", "cohort": cohort or "",
                "mirrored": "true" if mirrored else "false",
            }

        for f in photos:
            if f.file_id in errors:
                continue
            name = _name(f.name)
            (folder / name).write_bytes(f.getvalue())
            manifest_rows.append(_row(name, tags[f.file_id]))
        for name, vpath, expression, t in video_rows:
            name = _name(name)
            (folder / name).write_bytes(c.png_bytes(c.video_still(vpath, t)))
            manifest_rows.append(_row(name, expression))
        manifest = folder / "manifest.csv"
        with open(manifest, "w", newline="", encoding="utf-8") as fh:
            writer = csv.DictWriter(fh, list(REQUIRED_COLUMNS) + list(OPTIONAL_COLUMNS))
            writer.writeheader()
            writer.writerows(manifest_rows)

        bar = st.progress(0.0, text="Saving…")
        done = [0]

        def _on_row(message: str) -> None:
            if message.split(" ", 1)[0] in ("added", "present", "skipped"):
                done[0] += 1
            bar.progress(min(done[0] / max(len(manifest_rows), 1), 1.0),
                         text=f"Saving and measuring: {done[0]} of {len(manifest_rows)}")

        with c.landmarker().use() as lm:
            report = ingest_manifest(c.get_store(), manifest, landmarker=lm, on_row=_on_row)
        bar.empty()
        c.data_changed()
        prefix = str(folder) + "/"
        for problem in report.problems:
            st.error(f"Not saved: {problem.reason.replace(prefix, '')}", icon=":material/warning:")
        if report.added or report.already_present:
            st.success(
                f"Saved for {code}, visit {visit_date}: {report.added} new, {report.already_present} already "
                f"in the database" + (f", {report.remeasured} re-measured" if report.remeasured else "") + "."
            )
            st.session_state["focus_patient"] = code
            st.page_link("app_pages/patient.py", label=f"Open {code} on the Patient page", icon=":material/monitoring:")
