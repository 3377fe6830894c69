"""Stimulation page: what each stimulated facial-nerve branch moves (selective denervation; decision support only)."""

from __future__ import annotations

import datetime as dt
import json
import math
from pathlib import Path
from typing import Any, Callable

import pandas as pd
import streamlit as st

from app_pages import _common as c

CLASS_LABELS = {
    "smile_agonist": "Smile agonist",
    "smile_antagonist": "Smile antagonist / depressor",
    "ocular": "Ocular (periocular)",
    "lower_lip": "Lower lip (oral competence)",
    "mixed": "Mixed",
    "none": "No movement",
}
VIDEO_MODE, CLIP_MODE = "One video with its stimulation log", "One clip per branch"


@st.cache_data(show_spinner=False, max_entries=8)
def _analyse(paths: tuple[str, ...], shas: tuple[str, ...], log: str | None, log_sha: str | None, side: str,
             mirrored: bool, one_video: bool, _progress: Callable[[int], None] | None = None) -> Any:
    """The branch table with key frames (cached by content and options). See :mod:`symmetry.stim`."""
    from symmetry.stim import StimOptions, analyse_clips, analyse_stimulation

    options = StimOptions(side=side, mirrored=mirrored)
    if one_video:
        return analyse_stimulation(paths[0], log, options, keyframes=True, progress=_progress)
    return analyse_clips(list(paths), options, log=log, keyframes=True, progress=_progress)


def _f(v: float, digits: int = 1) -> float | None:
    return None if v is None or not math.isfinite(v) else round(float(v), digits)


def _table(result: Any) -> pd.DataFrame:
    rows = []
    for b in result.ranked():
        sv = b.movement("smile_vector")
        rows.append({
            "Rank": b.rank,
            "Branch": b.branch,
            "Class": CLASS_LABELS[b.movement_class],
            "Smile vector (mm)": _f(b.value("smile_vector")),
            "Smile direction (°)": _f(sv.direction_deg, 0) if sv is not None else None,
            "Corner down (mm)": _f(b.value("commissure_depression")),
            "Eye closure (%)": _f(b.value("eye_closure"), 0),
            "Brow (mm)": _f(b.value("brow_elevation")),
            "Lower lip down (mm)": _f(b.value("lower_lip_depression")),
            "Chin (mm)": _f(b.value("chin_motion")),
            "Onset (ms)": _f(b.onset_latency_ms, 0),
            "Quality": b.quality,
            "Preserve (oral competence)": "yes" if b.preserve else "",
            "Explanation": b.explanation,
        })
    return pd.DataFrame(rows)


st.title("Stimulation mapping")
problem = c.video_available()
if problem:
    st.info(f"{problem[0].upper()}{problem[1:]}.", icon=":material/info:")
    st.stop()
st.caption(
    "For selective denervation: the movement each stimulated facial-nerve branch elicits on the operated side, "
    "measured against the still face just before the stimulation, with the head's own motion removed. "
    "**Decision support only**: the table ranks the branches (by smile vector) and explains the numbers; it never "
    "says which branch to cut or keep."
)

mode = st.radio("Input", [VIDEO_MODE, CLIP_MODE], horizontal=True)
o1, o2 = st.columns(2)
side = o1.radio("Operated side (the patient's)", ["left", "right"], horizontal=True, index=None,
                help="The patient's side: left is the image's right in an unmirrored video.")
mirrored = o2.toggle("Selfie camera (mirrored)", value=False)

if mode == VIDEO_MODE:
    u1, u2 = st.columns(2)
    video = u1.file_uploader("Session video", type=c.VIDEO_TYPES, key="stim_video")
    log_file = u2.file_uploader("Stimulation log (CSV: branch,time_s or branch,start_s,end_s)", type=["csv"],
                                key="stim_log")
    uploads = [video] if video is not None else []
else:
    u1, u2 = st.columns(2)
    uploads = u1.file_uploader("One clip per branch (the file name is the branch)", type=c.VIDEO_TYPES,
                               accept_multiple_files=True, key="stim_clips") or []
    log_file = u2.file_uploader("Stimulation log, optional (branch,time_s; a clip column names each clip)",
                                type=["csv"], key="stim_clip_log")

if not uploads or (mode == VIDEO_MODE and log_file is None):
    st.info("Upload the session video and its stimulation log (or one clip per branch) to map the branches.",
            icon=":material/upload:")
    result = None
elif side is None:
    st.info("Choose the operated side.", icon=":material/info:")
    result = None
else:
    ok, refused = c.too_large(list(uploads) + ([log_file] if log_file is not None else []))
    for message in refused:
        st.error(message, icon=":material/block:")
    if refused:
        st.stop()
    data = [(f.name, f.getvalue()) for f in uploads]
    paths = tuple(str(c.spool(b, n)) for n, b in data)
    shas = tuple(c.file_sha256(b) for _, b in data)
    log_path = log_sha = None
    if log_file is not None:
        log_bytes = log_file.getvalue()
        log_path, log_sha = str(c.spool(log_bytes, log_file.name)), c.file_sha256(log_bytes)
    names = {p: n for p, (n, _) in zip(paths, data)}
    if log_path is not None:
        names[log_path] = log_file.name
    try:
        total = sum(c.video_frame_count(p) for p in paths)
        result = c.run_with_progress(
            lambda tick: _analyse(paths, shas, log_path, log_sha, side, mirrored, mode == VIDEO_MODE, _progress=tick),
            total=total, label="Mapping the branches",
        )
    except Exception as exc:  # noqa: BLE001 - a readable message, not a traceback
        from symmetry.errors import InputError, SymmetryError

        if isinstance(exc, InputError):
            who = names.get(exc.source or "", Path(exc.source).name if exc.source else "input")
            st.error(f"Could not map the branches: {who}: {exc.reason}", icon=":material/warning:")
        elif isinstance(exc, (SymmetryError, ValueError)):
            st.error(f"Could not map the branches: {exc}", icon=":material/warning:")
        else:
            st.error(f"Could not map the branches: unexpected {type(exc).__name__}: {exc}", icon=":material/warning:")
        st.stop()

if result is not None:
    m1, m2, m3, m4 = st.columns(4)
    m1.metric("Branches", len(result.branches))
    m2.metric("Smile agonists", sum(b.movement_class == "smile_agonist" for b in result.branches))
    m3.metric("Marked to preserve", sum(b.preserve for b in result.branches))
    m4.metric("Scale (mm/px)", f"{result.mm_per_px:.4f}")
    for w in result.warnings:
        st.warning(w)
    st.markdown("#### Branch table")
    st.dataframe(_table(result), hide_index=True, width="stretch", height="content")
    st.caption(
        "Movements on the operated side at the response's peak, mm in the pupil frame (tracked in the image from "
        "the baseline frame). Smile direction: 0° straight out, 90° straight up. Eye closure: narrowing of the "
        "eye opening. Classes: a region group counts from 1.5 mm (15% for eye closure); a group is the class "
        "when it is at least twice every other active group, otherwise *mixed*. Lower-lip branches are marked "
        "to preserve: the depressor labii inferioris serves oral competence."
    )
    st.markdown("#### Baseline | peak, per branch")
    ranked = result.ranked()
    cols = st.columns(2)
    shown = 0
    for b in ranked:
        img = result.keyframe(b)
        if img is None:
            continue
        cols[shown % 2].image(img, caption=f"{b.rank}. {b.branch}: {CLASS_LABELS[b.movement_class]}", width="stretch")
        shown += 1
    if not shown:
        st.info("No key frame could be made.")
    d1, d2 = st.columns(2)
    d1.download_button("Branch table (CSV)", result.to_frame().to_csv(index=False), "stimulation_map.csv", "text/csv")
    d2.download_button("Branch table (JSON)", json.dumps(result.to_dict(), indent=1), "stimulation_map.json",
                       "application/json")

    st.markdown("#### Store with the patient's procedure")
    with st.form("stim_store"):
        s1, s2, s3 = st.columns(3)
        code = s1.text_input("Patient code", key="stim_patient")
        pdate = s2.date_input("Procedure date", value=dt.date.today(), key="stim_procedure_date")
        kind = s3.text_input("Procedure (optional)", placeholder="the one on that date, else selective_neurectomy",
                             key="stim_procedure")
        save = st.form_submit_button("Store the branch table")
    if save:
        if not code.strip():
            st.error("Enter the patient code to store the table.", icon=":material/warning:")
        else:
            from symmetry.store import save_stimulation

            with c.readable_errors("store the branch table"):
                n = save_stimulation(c.get_store(), code.strip(), pdate, result, procedure=kind.strip() or None)
                c.data_changed()
                st.success(f"Stored {n} branch(es) for {code.strip()}, procedure of {pdate}.")

st.markdown("#### Stored stimulation maps")
patients = c.read_or_stop("patients")
if patients.empty:
    st.info("No patient in the database yet.")
else:
    who = st.selectbox("Patient", list(patients["patient"]), key="stim_stored_patient")
    stored = c.read_or_stop("stimulation", who)
    if stored.empty:
        st.info(f"No stimulation map stored for {who}.")
    else:
        for (pdate, kind, source), g in stored.groupby(["procedure_date", "procedure", "source"], sort=False):
            st.markdown(f"**{kind}, {pdate}**: {source} (operated side: patient's {g['side'].iloc[0]})")
            values = g.pivot_table(index="rank", columns="movement", values="value", aggfunc="first", sort=False)
            meta = g.drop_duplicates("rank").set_index("rank")[["branch", "class", "preserve", "onset_latency_ms",
                                                                "quality"]]
            wide = meta.join(values).reset_index()
            wide["class"] = wide["class"].map(CLASS_LABELS)
            st.dataframe(wide.round(1), hide_index=True, width="stretch", height="content")
