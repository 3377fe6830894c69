"""Video page: the annotated video, eye-aperture and mouth-corner time series with events, key frames."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pandas as pd
import streamlit as st

from app_pages import _common as c

INDICATOR_LABELS = {
    "smile_eye_narrowing": "Smile → eye narrowing",
    "pucker_eye_narrowing": "Pucker → eye narrowing",
    "eye_closure_commissure_movement": "Eye closure → mouth corner movement",
    "eye_aperture_commissure_correlation": "Eye aperture vs mouth corner: correlation",
    "eye_aperture_commissure_lag": "Eye aperture vs mouth corner: lag",
    "eee_lower_lip_depression": "Lower-lip depression on “eee”",
    "eee_lower_lip_depression_ratio": "Lower-lip depression on “eee”: affected ÷ healthy",
    "rest_interlabial_gap": "Lip gap at rest",
    "bilabial_interlabial_gap": "Lip gap during “papa, baby” closures",
    "pucker_commissure_shortening": "Pucker: mouth corner toward the midline",
    "pucker_commissure_shortening_ratio": "Pucker shortening: affected ÷ healthy",
    "pucker_symmetry": "Pucker symmetry (smaller ÷ larger side)",
}

st.title("Analyse a clinic video")
problem = c.video_available()
if problem:
    st.info(f"{problem[0].upper()}{problem[1:]}. Photos can still be measured on the Measure page.", icon=":material/info:")
    st.stop()

st.caption(
    "The face is tracked in every analysed frame; rest periods and expression events (smile, eye closure, brow "
    "raise, pucker, “eee”) are found automatically, and each event is measured at its peak against the rest frame, "
    "as a photo pair would be."
)

UPLOAD, DEMO = "Upload a video", "The bundled demo video (demo patient, pre-op)"
handed = st.session_state.get("video_from_measure")
if handed and not Path(handed["path"]).exists():
    handed = None
FROM_MEASURE = f"The video from the Measure page ({handed['name']})" if handed else None
sources = [UPLOAD] + ([FROM_MEASURE] if handed else []) + ([DEMO] if c.DEMO_VIDEO.exists() else [])
source = st.radio("Video", sources, horizontal=True, index=1 if handed else 0)
if source == FROM_MEASURE:
    name, path = handed["name"], handed["path"]
    data = Path(path).read_bytes()
elif source == UPLOAD:
    f = st.file_uploader("Clinic video", type=c.VIDEO_TYPES, key="video_upload",
                         help=f"{', '.join(c.VIDEO_TYPES)}; at most {c.max_upload_mb()} MB.")
    if f is None:
        st.info("Drop a clinic video (rest, brows, eyes, smiles, “eee”, pucker...) to analyse it.")
        st.stop()
    ok, refused = c.too_large([f])
    for message in refused:
        st.error(message, icon=":material/block:")
    if not ok:
        st.stop()
    data = f.getvalue()
    name = f.name
    path = str(c.spool(data, name))
else:
    data = c.DEMO_VIDEO.read_bytes()
    name = c.DEMO_VIDEO.name
    path = str(c.DEMO_VIDEO)
sha = c.file_sha256(data)

o1, o2, o3, o4 = st.columns(4)
side_label = o1.radio("Affected side (patient's)", ["not known", "left", "right"], horizontal=True,
                      index=1 if source == DEMO else 0,
                      help="The demo patient's affected side is the left.")
affected = None if side_label == "not known" else side_label
mirrored = o2.toggle("Selfie camera (mirrored)", value=False)
stride = o3.selectbox("Frames analysed", [1, 2, 3], index=1,
                      format_func=lambda k: "every frame (slowest)" if k == 1 else f"every {k}nd frame" if k == 2 else f"every {k}rd frame")
mm_per_px = o4.number_input("Scale by hand (mm per pixel)", value=None, min_value=0.0001, max_value=10.0,
                            format="%.4f", placeholder="automatic: iris at rest")

try:
    total = -(-c.video_frame_count(path) // stride)
    analysis = c.run_with_progress(
        lambda tick: c.analyse_video(path, sha, affected, mirrored, mm_per_px, stride, _progress=tick),
        total=total, label=f"Analysing {name}",
    )
except Exception as exc:  # noqa: BLE001 - a readable message, not a traceback
    from symmetry.errors import SymmetryError

    if isinstance(exc, (SymmetryError, ValueError)):
        st.error(f"Could not analyse {name}: {getattr(exc, 'reason', exc)}", icon=":material/warning:")
    else:
        st.error(f"Could not analyse {name}: unexpected {type(exc).__name__}: {exc}", icon=":material/warning:")
    st.stop()
res = analysis.result

m1, m2, m3, m4, m5 = st.columns(5)
m1.metric("Duration", f"{res.duration_s:.1f} s")
m2.metric("Frame rate", f"{res.fps:.0f} fps")
m3.metric("Scale at rest (mm/px)", f"{res.mm_per_px:.4f}")
m4.metric("Frames without a face", f"{res.series.frames_without_face} of {res.series.n_frames}")
m5.metric("Expression events", len(res.events))
for w in res.warnings:
    st.warning(w)

video_box = st.container()

st.markdown("#### Eye aperture and mouth-corner movement over time")
from symmetry.plotting import video_series_figure  # noqa: E402 - only when video analysis is available

fig = video_series_figure(res)
fig.update_layout(height=560, margin=dict(l=10, r=10, t=60, b=10))
st.plotly_chart(fig, width="stretch", key="series")
st.caption("Orange: patient's right; blue: patient's left. Grey bands: rest periods; coloured bands: detected "
           "events, dashed line at each event's peak (where it is measured).")

st.markdown("#### Events, measured at their peak against the rest frame")
def _pair(e, name: str) -> str:
    r, l = e.value(name, "right"), e.value(name, "left")
    return f"{c.fmt(r)} / {c.fmt(l)}"


rows = []
for e in res.events:
    rows.append({
        "Event": e.expression.replace("_", " "),
        "Peak (s)": round(e.peak_s, 2),
        "From – to (s)": f"{e.start_s:.1f} – {e.end_s:.1f}",
        "Corner movement R / L (mm)": _pair(e, "commissure_movement"),
        "Eye opening change R / L (%)": _pair(e, "palpebral_fissure_change"),
        "Brow movement R / L (mm)": _pair(e, "brow_movement"),
        "Lower lip movement R / L (mm)": _pair(e, "lower_lip_movement"),
        "Tracked from rest": "yes" if e.refined else "no",
    })
if rows:
    st.dataframe(pd.DataFrame(rows), hide_index=True, width="stretch", height="content")
    st.caption("R / L: the patient's right and left. Movement is measured from the rest frame; eye opening change "
               "is negative when the eye narrows; “tracked”: the rest frame's points were followed into the peak "
               "frame (image evidence) rather than taken from the face model alone.")
else:
    st.info("No expression event was found in this video.")

st.markdown("#### Synkinesis and oral-competence indicators")
ind = [m for m in res.indicators if not (isinstance(m.value, float) and math.isnan(m.value))]
if ind:
    side_col = {"right": "Patient's right", "left": "Patient's left", "midline": "Both sides"}
    if affected:
        side_col[affected] += " (affected)"
    rows_by: dict[str, dict[str, object]] = {}
    for m in ind:
        label = INDICATOR_LABELS.get(m.name, m.name.replace("_", " "))
        row = rows_by.setdefault(label, {"Indicator": label, "Unit": m.unit})
        row[side_col[m.side]] = round(m.value, 2)
    it = pd.DataFrame(list(rows_by.values()))
    it = it[["Indicator"] + [col for col in side_col.values() if col in it.columns] + ["Unit"]]
    st.dataframe(it.style.format(precision=2, na_rep=""), hide_index=True, width="stretch", height="content")
    st.caption("Eye narrowing is positive when the eye narrows. Normal faces narrow about 22% when smiling; "
               "synkinesis about 33%.")
else:
    st.info("No indicator: the video has no smile, pucker, eye closure or “eee” event.")

st.markdown("#### Key frames")
if analysis.keyframes:
    cols = st.columns(min(len(analysis.keyframes), 4))
    for k, (caption, png) in enumerate(analysis.keyframes):
        cols[k % len(cols)].image(png, caption=caption, width="stretch")
else:
    st.info("No key frame (no face in the rest frame as a still image).")

d1, d2 = st.columns(2)
d1.download_button("Per-frame series (CSV)", lambda: res.series.frames.to_csv(index=False, float_format="%.6g"),
                   f"{Path(name).stem}_frames.csv", "text/csv")
d2.download_button("Summary (JSON)", json.dumps(res.to_dict(), indent=1, default=str),
                   f"{Path(name).stem}_summary.json", "application/json")

with video_box:
    st.markdown("#### Annotated video")
    want_key = f"annotated_{sha}_{affected}_{mirrored}_{mm_per_px}_{stride}"
    n_frames = c.video_frame_count(path)
    if not st.session_state.get(want_key):
        st.caption(f"The video with the measured contours, per-side values and the event timeline drawn on it "
                   f"(about {max(n_frames / 15, 1):.0f} s to draw here).")
        st.button("Draw the annotated video", on_click=st.session_state.__setitem__, args=(want_key, True))
    if st.session_state.get(want_key):
        try:
            mp4 = c.run_with_progress(
                lambda tick: c.annotated_video(path, sha, affected, mirrored, mm_per_px, stride, _analysis=analysis,
                                               _progress=tick),
                total=n_frames, label="Drawing the annotated video",
            )
        except Exception as exc:  # noqa: BLE001 - the rest of the page is still useful
            st.error(f"Could not draw the annotated video: {exc}", icon=":material/warning:")
        else:
            v1, v2 = st.columns([2, 1])
            v1.video(mp4, format="video/mp4")
            v2.markdown(
                "Contours: orange = patient's right, cyan = patient's left; red dots = mouth corners. Top left: "
                "time, phase and per-side values. Bottom: the timeline (grey rest, coloured events) with the "
                "current time."
            )
            v2.download_button("Download the annotated video (MP4)", mp4, f"{Path(name).stem}_annotated.mp4",
                               "video/mp4")
