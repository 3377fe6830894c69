"""What the app's pages share: the database, the face model, cached readers, labels, errors.

Pages are layout: they call the library (:mod:`symmetry.photo`,
:mod:`symmetry.ingest`, :mod:`symmetry.trends`, :mod:`symmetry.stats`,
:mod:`symmetry.report`, :mod:`symmetry.video`) through the helpers here, so
that a rerun (every widget change reruns the page) recomputes nothing it need
not:

* ``st.cache_resource``: the open store (one SQLAlchemy engine per database)
  and one IMAGE-mode landmarker, shared by every session behind a lock (a
  :class:`symmetry.Landmarker` is not thread-safe; VIDEO-mode landmarkers hold
  tracking state and are never shared: :mod:`symmetry.video` makes its own).
* ``st.cache_data``: the DataFrames read from the database (a short TTL, and
  cleared when this app writes, so that a CLI ingest shows up within a minute),
  photo measurements keyed by the photo's bytes and options, outcomes and
  statistics keyed by their input frames, video analyses keyed by content hash.

Database location: ``SYMMETRY_DATABASE_URL``, else SQLite under
``SYMMETRY_HOME`` (as for the CLI; see :func:`symmetry.store.open_store`).
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import logging
import math
import re
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import numpy as np
import pandas as pd
import streamlit as st

from symmetry.errors import InputError, SymmetryError

_log = logging.getLogger("symmetry.app")

ROOT = Path(__file__).resolve().parents[1]
SAMPLE_MEDIA = ROOT / "sample_media"
DEMO_VIDEO = SAMPLE_MEDIA / "demo" / "clinic_video_preop.mp4"

#: Seconds the database readers are cached (this app's own writes clear them at once).
DATA_TTL_S = 60

PHOTO_TYPES = ["jpg", "jpeg", "png", "webp", "tif", "tiff", "bmp", "heic", "heif"]
VIDEO_TYPES = ["mp4", "mov", "avi", "webm", "mkv", "m4v"]

# --------------------------------------------------------------------------- vocabulary

#: Expression keys accepted by the database (symmetry.ingest.EXPRESSIONS), with clinic names.
EXPRESSION_LABELS: dict[str, str] = {
    "rest": "Rest (face relaxed)",
    "brow_raise": "Brow raise",
    "eye_closure_gentle": "Gentle eye closure",
    "eye_closure_tight": "Tight eye closure",
    "smile_closed": "Closed-mouth smile",
    "smile_open": "Big smile (teeth)",
    "pucker": "Pucker (“ooo”)",
    "lower_teeth": "Show lower teeth (“eee”)",
    "snarl": "Snarl (wrinkle nose)",
}
EXPRESSIONS: tuple[str, ...] = tuple(EXPRESSION_LABELS)
#: Short names, for tables and plot titles.
EXPRESSION_SHORT: dict[str, str] = {
    "rest": "Rest",
    "brow_raise": "Brow raise",
    "eye_closure_gentle": "Gentle eye closure",
    "eye_closure_tight": "Tight eye closure",
    "smile_closed": "Closed smile",
    "smile_open": "Big smile",
    "pucker": "Pucker",
    "lower_teeth": "“eee”",
    "snarl": "Snarl",
}

#: Readable names of the measures (the README's table, in clinic words).
MEASURE_LABELS: dict[str, str] = {
    "commissure_x": "Mouth corner: distance from midline",
    "commissure_y": "Mouth corner: height (+ up)",
    "commissure_excursion": "Mouth corner excursion (lower-lip centre → corner)",
    "smile_angle": "Smile angle",
    "palpebral_fissure_height": "Eye opening (palpebral fissure)",
    "mrd1": "MRD1 (pupil → upper lid)",
    "mrd2": "MRD2 (pupil → lower lid)",
    "brow_height": "Brow height (pupil → brow)",
    "upper_lip_height": "Upper lip height (+ up)",
    "lower_lip_height": "Lower lip height (+ up)",
    "interlabial_gap": "Lip gap (interlabial)",
    "commissure_movement": "Mouth corner movement from rest",
    "commissure_movement_angle": "Direction of corner movement (0° out, 90° up)",
    "palpebral_fissure_change": "Eye opening change from rest",
    "brow_movement": "Brow movement from rest (+ up)",
    "lower_lip_movement": "Lower lip movement from rest (+ up)",
}
STATIC_ORDER = tuple(list(MEASURE_LABELS)[:11])
MOVEMENT_ORDER = tuple(list(MEASURE_LABELS)[11:])

PHASE_LABELS = {
    "pre-op": "pre-op",
    "early": "early (≤ 3 weeks, swelling)",
    "settling": "settling (≤ 4 months, residual swelling)",
    "late": "late (> 4 months)",
}


AETIOLOGY_LABELS = {
    "bells_palsy": "Bell's palsy",
    "ramsay_hunt": "Ramsay Hunt",
    "acoustic_neuroma": "acoustic neuroma",
    "nerve_repair": "nerve repair",
    "trauma": "trauma",
    "other": "other",
}


def aetiology_label(key: Any) -> str:
    if not key or (isinstance(key, float) and math.isnan(key)):
        return "—"
    return AETIOLOGY_LABELS.get(str(key), str(key).replace("_", " "))


def expression_label(key: str | None) -> str:
    if not key:
        return "—"
    return EXPRESSION_LABELS.get(str(key), str(key).replace("_", " "))


def measure_label(name: str) -> str:
    """Clinic name of a measure, including ``_asymmetry`` (|L − R|) and ``_ratio`` rows."""
    if name.endswith("_asymmetry"):
        return f"{measure_label(name.removesuffix('_asymmetry'))}: |L − R|"
    if name.endswith("_ratio"):
        return f"{measure_label(name.removesuffix('_ratio'))}: affected ÷ healthy"
    return MEASURE_LABELS.get(name, name.replace("_", " "))


def key_measure_label(expression: str, measure: str, side: str) -> str:
    """``Big smile · Mouth corner movement from rest (affected side)``."""
    where = "" if side == "midline" else f" ({side} side)"
    return f"{EXPRESSION_SHORT.get(expression, expression_label(expression))} · {measure_label(measure)}{where}"


def perception_threshold(name: str) -> float | None:
    """The perception threshold (mm) of a mm measure (2 mm eyelids, 3 mm mouth), else None."""
    from symmetry.trends import perception_threshold_mm

    return perception_threshold_mm(name)


def fmt(value: Any, digits: int = 1) -> str:
    try:
        v = float(value)
    except (TypeError, ValueError):
        return "—"
    return "—" if math.isnan(v) else f"{v:.{digits}f}"


# --------------------------------------------------------------------------- errors


@contextlib.contextmanager
def readable_errors(what: str) -> Iterator[None]:
    """Show a failure as a readable message (``st.error``) instead of a traceback.

    A :class:`~symmetry.errors.SymmetryError` or ``ValueError`` carries a message written
    for the user; anything else is a bug, shown briefly and logged in full.
    """
    try:
        yield
    except (SymmetryError, ValueError) as exc:
        st.error(f"Could not {what}: {exc}", icon=":material/warning:")
    except Exception as exc:  # noqa: BLE001 - the user gets a message, the log the traceback
        _log.exception("unexpected error while trying to %s", what)
        st.error(f"Could not {what}: unexpected {type(exc).__name__}: {exc}", icon=":material/warning:")


def input_reason(exc: InputError, name: str) -> str:
    """``name: reason`` for an input error raised on a temporary copy of an upload."""
    return f"{name}: {exc.reason}"


# --------------------------------------------------------------------------- uploads


def max_upload_mb() -> int:
    """The configured upload limit per file, MB (``server.maxUploadSize``)."""
    try:
        return int(st.get_option("server.maxUploadSize"))
    except Exception:  # noqa: BLE001 - option missing in an odd runtime
        return 200


def too_large(files: Sequence[Any]) -> tuple[list[Any], list[str]]:
    """Split uploads into those within the size limit and messages for those over it.

    The browser already refuses a file over ``server.maxUploadSize``; this is the
    server-side check, for clients that do not.
    """
    limit = max_upload_mb()
    ok, refused = [], []
    for f in files:
        size = int(getattr(f, "size", 0) or len(f.getvalue()))
        if size > limit * 1024 * 1024:
            refused.append(
                f"{f.name} is {size / 1024 / 1024:.1f} MB, over the upload limit of {limit} MB per file; "
                "it was not read. Export a smaller copy (a photo needs only a few MB), or ask whoever runs "
                "the app to raise server.maxUploadSize in .streamlit/config.toml."
            )
        else:
            ok.append(f)
    return ok, refused


def is_video_name(name: str) -> bool:
    return Path(name).suffix.lower().lstrip(".") in VIDEO_TYPES


_ALIASES = (
    ("eye_closure_gentle", ("gentle", "eyes_closed", "eye_closure", "closed_eyes", "blink")),
    ("eye_closure_tight", ("tight", "squeeze")),
    ("smile_closed", ("closed_smile", "small_smile", "smile_closed")),
    ("smile_open", ("smile", "big_smile", "teeth_smile")),
    ("lower_teeth", ("eee", "lower_teeth", "teeth")),
    ("pucker", ("ooo", "pucker", "kiss")),
    ("brow_raise", ("brow", "eyebrow", "forehead")),
    ("snarl", ("snarl", "nose")),
    ("rest", ("rest", "neutral", "relaxed", "repose")),
)


def suggest_expression(filename: str) -> str | None:
    """The expression a file name suggests (``IMG_12_smile_open.jpg`` -> ``smile_open``), else None."""
    stem = re.sub(r"[^a-z0-9]+", "_", Path(filename).stem.lower()).strip("_")
    padded = f"_{stem}_"
    for key in sorted(EXPRESSIONS, key=len, reverse=True):
        if f"_{key}_" in padded:
            return key
    for key, words in _ALIASES:
        if any(f"_{w}_" in padded or (len(w) > 4 and w in stem) for w in words):
            return key
    return None


def file_sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


_TMP = Path(tempfile.gettempdir()) / "symmetry-app"


def spool(data: bytes, name: str) -> Path:
    """Write upload bytes to a temporary file named as the upload, in a folder per content.

    Same content, same path (so caches keyed by the path stay valid); the file keeps
    its name so that messages and plot titles show what the user uploaded.
    """
    sha = file_sha256(data)
    safe = re.sub(r"[^A-Za-z0-9._-]+", "_", Path(name).name).strip("._") or "upload"
    path = _TMP / sha[:32] / safe[-120:]
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + f".{threading.get_ident()}.part")
        tmp.write_bytes(data)
        tmp.replace(path)
    return path


# --------------------------------------------------------------------------- database


def store_location() -> tuple[str, str]:
    """``(database URL, SYMMETRY_HOME)`` as the CLI resolves them from the environment."""
    from symmetry.store import resolve_database_url, symmetry_home

    home = symmetry_home()
    url = resolve_database_url(None, home=home)
    return url.render_as_string(hide_password=False), str(home)


@st.cache_resource(show_spinner="Opening the database…")
def _open_store(url: str, home: str) -> Any:
    from symmetry.store import open_store

    return open_store(url, home=home)


def get_store() -> Any:
    """The open :class:`symmetry.store.Store` (one per database, shared by all sessions)."""
    return _open_store(*store_location())


def display_url() -> str:
    from sqlalchemy.engine import make_url

    url, _home = store_location()
    return make_url(url).render_as_string(hide_password=True)


@st.cache_data(ttl=DATA_TTL_S, show_spinner=False)
def _read(url: str, home: str, what: str, patient: str | None) -> pd.DataFrame:
    store = _open_store(url, home)
    if what == "patients":
        return store.patients()
    return getattr(store, what)(patient)


def read(what: str, patient: str | None = None) -> pd.DataFrame:
    """A cached store reader: ``patients``, ``visits``, ``recordings``, ``measurements``, ``scores``, ``procedures``."""
    return _read(*store_location(), what, patient)


def read_or_stop(what: str, patient: str | None = None) -> pd.DataFrame:
    """:func:`read`, or a readable error and the end of the page when the database cannot be read."""
    try:
        return read(what, patient)
    except Exception as exc:  # noqa: BLE001 - shown to the user
        _log.exception("cannot read %s", what)
        st.error(f"Cannot read the database ({display_url_safe()}): {exc}", icon=":material/warning:")
        st.stop()
        raise  # unreachable: st.stop() raises


def display_url_safe() -> str:
    try:
        return display_url()
    except Exception:  # noqa: BLE001
        return "database not usable"


def data_changed() -> None:
    """Forget cached database reads (after this app wrote to the database)."""
    _read.clear()


# --------------------------------------------------------------------------- the face model


class SharedLandmarker:
    """One IMAGE-mode :class:`symmetry.Landmarker` shared by all sessions, one caller at a time."""

    def __init__(self) -> None:
        from symmetry.landmarks import Landmarker, LandmarkerOptions

        self._lm = Landmarker(LandmarkerOptions())
        self._lock = threading.Lock()

    @contextlib.contextmanager
    def use(self) -> Iterator[Any]:
        with self._lock:
            yield self._lm


@st.cache_resource(show_spinner="Loading the face model…")
def landmarker() -> SharedLandmarker:
    return SharedLandmarker()


# --------------------------------------------------------------------------- measuring photos


@dataclass
class MeasuredPhoto:
    """What the Measure page shows for one photo (plain data, so that it caches)."""

    name: str
    expression: str | None
    table: pd.DataFrame  # tidy: name, side, value, unit
    overlay: np.ndarray  # annotated RGB
    mm_per_px: float
    mm_per_px_uncertainty: float
    scale_source: str
    head_pose_deg: dict[str, float]
    warnings: list[str] = field(default_factory=list)
    refined: list[str] = field(default_factory=list)
    rest_name: str | None = None
    mirrored: bool = False
    affected_side: str | None = None


def _rgb_of(data: bytes, name: str) -> np.ndarray:
    from symmetry.images import read_image

    path = spool(data, name)
    try:
        return read_image(path)
    except InputError as exc:
        raise type(exc)(name, exc.reason) from None


@st.cache_data(show_spinner=False, max_entries=256)
def thumbnail(data: bytes, name: str, size_px: int = 240) -> bytes | None:
    """A small PNG of an uploaded photo (any supported format, orientation applied); None if unreadable."""
    from PIL import Image

    try:
        rgb = _rgb_of(data, name)
    except InputError:
        return None
    img = Image.fromarray(rgb)
    img.thumbnail((size_px, size_px))
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


@st.cache_data(show_spinner=False, max_entries=128)
def measure_photo_bytes(
    data: bytes,
    name: str,
    expression: str | None,
    affected_side: str | None,
    mirrored: bool,
    mm_per_px: float | None,
    rest: tuple[bytes, str, bool] | None = None,
) -> MeasuredPhoto:
    """Measure an uploaded photo (against an uploaded or stored rest photo) and draw the overlay.

    ``rest`` is ``(bytes, name, mirrored)`` of the rest photo. Raises the library's
    :class:`~symmetry.errors.InputError` (naming the upload) when the photo cannot be measured.
    """
    from symmetry.annotate import annotate
    from symmetry.photo import PhotoOptions, measure_photo

    rgb = _rgb_of(data, name)
    rest_rgb = None
    if rest is not None:
        rest_rgb = _rgb_of(rest[0], rest[1])
        if bool(rest[2]) != bool(mirrored):  # bring the rest photo to this photo's orientation
            rest_rgb = np.ascontiguousarray(rest_rgb[:, ::-1])
    options = PhotoOptions(expression=expression, affected_side=affected_side, mirrored=mirrored, mm_per_px=mm_per_px)
    with landmarker().use() as lm:
        try:
            result = measure_photo(rgb, rest=rest_rgb, options=options, landmarker=lm)
        except InputError as exc:
            who = name
            if rest_rgb is not None:  # which of the two photos failed?
                try:
                    lm.detect(rest_rgb)
                except InputError:
                    who = f"rest photo {rest[1]}"
            raise type(exc)(who, exc.reason) from None
    cal = result.calibration
    return MeasuredPhoto(
        name=name,
        expression=expression,
        table=result.to_frame()[["name", "side", "value", "unit"]],
        overlay=annotate(rgb, result, min_height=700),
        mm_per_px=float(cal.mm_per_px),
        mm_per_px_uncertainty=float(getattr(cal, "mm_per_px_uncertainty", math.nan) or 0.0),
        scale_source=str(getattr(cal.source, "value", cal.source)),
        head_pose_deg={k: float(v) for k, v in result.head_pose_deg.items()},
        warnings=list(result.warnings),
        refined=list(result.refined),
        rest_name=rest[1] if rest is not None else None,
        mirrored=mirrored,
        affected_side=affected_side,
    )


@st.cache_data(show_spinner=False, max_entries=64)
def stored_overlay(file: str, rest_file: str | None, expression: str, affected_side: str | None,
                   mirrored: bool, rest_mirrored: bool) -> np.ndarray:
    """The annotated overlay of a stored photo, re-measured against its visit's rest photo.

    Stored copies are named by content hash, so the path identifies the pixels.
    """
    from symmetry.annotate import annotate
    from symmetry.images import read_image
    from symmetry.photo import PhotoOptions, measure_photo

    rgb = read_image(file)
    rest_rgb = None
    if rest_file and expression != "rest":
        rest_rgb = read_image(rest_file)
        if rest_mirrored != mirrored:
            rest_rgb = np.ascontiguousarray(rest_rgb[:, ::-1])
    options = PhotoOptions(expression=expression, affected_side=affected_side, mirrored=mirrored)
    with landmarker().use() as lm:
        result = measure_photo(rgb, rest=rest_rgb, options=options, landmarker=lm)
    return annotate(rgb, result, min_height=600)


def side_table(table: pd.DataFrame, affected_side: str | None) -> pd.DataFrame:
    """Per-side view of a photo's tidy rows: one row per measure, right, left, |L − R|, ratio.

    Columns: ``Measure, Unit, Patient's right, Patient's left, |L − R|, Affected ÷ healthy,
    Visible?`` (|L − R| at or beyond the perception threshold: 2 mm eye, 3 mm mouth).
    """
    from symmetry.trends import perception_threshold_mm

    values = {(n, s): v for n, s, v in zip(table["name"], table["side"], table["value"])}
    units = dict(zip(table["name"], table["unit"]))
    rows = []
    for name in STATIC_ORDER + MOVEMENT_ORDER:
        if (name, "left") not in values and (name, "right") not in values:
            continue
        asym = values.get((f"{name}_asymmetry", "midline"), math.nan)
        ratio = values.get((f"{name}_ratio", "midline"), math.nan)
        thr = perception_threshold_mm(name) if units.get(name) == "mm" else None
        visible = "" if thr is None or math.isnan(asym) else (f"yes (≥ {thr:g} mm)" if asym >= thr else "no")
        rows.append(
            {
                "Measure": measure_label(name),
                "Unit": units.get(name, ""),
                "Patient's right": values.get((name, "right"), math.nan),
                "Patient's left": values.get((name, "left"), math.nan),
                "|L − R|": asym,
                "Affected ÷ healthy": ratio,
                "Visible asymmetry?": visible,
            }
        )
    out = pd.DataFrame(rows)
    if affected_side in ("left", "right") and not out.empty:
        col = f"Patient's {affected_side}"
        out = out.rename(columns={col: f"{col} (affected)"})
    return out


# --------------------------------------------------------------------------- background work


def run_with_progress(
    work: Callable[[Callable[[int], None]], Any],
    *,
    total: int,
    label: str,
    unit: str = "frames",
    show_after_s: float = 0.3,
) -> Any:
    """Run ``work(tick)`` in a worker thread while a progress bar follows ``tick(n)`` calls.

    Returns what ``work`` returns; re-raises what it raised. The bar appears only
    if the work takes longer than ``show_after_s`` (a cache hit shows nothing).
    """
    from streamlit.runtime.scriptrunner import add_script_run_ctx, get_script_run_ctx

    done = [0]
    lock = threading.Lock()
    box: dict[str, Any] = {}

    def tick(n: int = 1) -> None:
        with lock:
            done[0] += int(n)

    def target() -> None:
        try:
            box["result"] = work(tick)
        except BaseException as exc:  # noqa: BLE001 - handed to the script thread
            box["error"] = exc

    thread = threading.Thread(target=target, name="symmetry-app-work", daemon=True)
    add_script_run_ctx(thread, get_script_run_ctx())
    t0 = time.monotonic()
    thread.start()
    bar = None
    while thread.is_alive():
        thread.join(0.25)
        if bar is None and time.monotonic() - t0 >= show_after_s:
            bar = st.progress(0.0, text=label)
        if bar is not None:
            with lock:
                n = done[0]
            frac = min(n / total, 1.0) if total else 0.0
            elapsed = time.monotonic() - t0
            eta = f", about {elapsed / frac * (1 - frac):.0f} s left" if 0.05 < frac < 1 else ""
            bar.progress(frac, text=f"{label}: {n} of {total} {unit}{eta}" if total else f"{label}…")
    if bar is not None:
        bar.empty()
    if "error" in box:
        raise box["error"]
    return box.get("result")


# --------------------------------------------------------------------------- video


def video_available() -> str | None:
    """None when video analysis can run here, else the reason it cannot."""
    try:
        import av  # noqa: F401

        import symmetry.plotting  # noqa: F401
        import symmetry.video  # noqa: F401
    except ImportError as exc:
        return f"video analysis is not available in this version ({exc})"
    return None


#: Video event labels (symmetry.events) -> database expression keys; None: not stored.
VIDEO_TO_PHOTO_EXPRESSION: dict[str, str | None] = {
    "eye_closure": "eye_closure_gentle",
    "bilabial": None,
}
NOT_SAVED = "(do not save)"


@dataclass
class VideoAnalysis:
    """A video's summary plus its annotated key frames (PNG bytes), as plain data."""

    result: Any  # symmetry.video.VideoResult
    keyframes: list[tuple[str, bytes]]  # (caption, png)


def _video_options(affected_side: str | None, mirrored: bool, mm_per_px: float | None, stride: int) -> Any:
    from symmetry.video import VideoOptions

    return VideoOptions(affected_side=affected_side, mirrored=mirrored, mm_per_px=mm_per_px, frame_stride=stride)


def video_frame_count(path: str) -> int:
    """Frames the container declares (or its duration implies); 0 when unknown."""
    from symmetry.video import probe_video

    info = probe_video(path)
    if info.n_frames:
        return int(info.n_frames)
    return int(round(info.duration_s * info.fps)) if math.isfinite(info.duration_s) else 0


@st.cache_data(show_spinner=False, max_entries=8)
def analyse_video(path: str, sha: str, affected_side: str | None, mirrored: bool, mm_per_px: float | None,
                  stride: int, _progress: Callable[[int], None] | None = None) -> VideoAnalysis:
    """Analyse a clinic video (cached by content hash and options). See :func:`symmetry.video.measure_video`."""
    from symmetry.video import measure_video

    options = _video_options(affected_side, mirrored, mm_per_px, stride)
    with tempfile.TemporaryDirectory(prefix="symmetry-keyframes-") as kdir:
        result = measure_video(path, options=options, keyframes_dir=kdir, progress=_progress)
        frames = []
        for png in sorted(Path(kdir).glob("*.png"), key=lambda p: _keyframe_time(p.name)):
            frames.append((_keyframe_caption(png.name), png.read_bytes()))
    return VideoAnalysis(result, frames)


def _keyframe_time(name: str) -> float:
    m = re.search(r"_(\d+(?:\.\d+)?)s\.png$", name)
    return float(m.group(1)) if m else 0.0


def _keyframe_caption(name: str) -> str:
    t = _keyframe_time(name)
    m = re.search(r"_(?:\d\d_)?([a-z_]+?)_\d+(?:\.\d+)?s\.png$", name)
    expr = m.group(1) if m else ""
    if expr.endswith("rest") or "_rest_" in name:
        expr = "rest"
    return f"{expr.replace('_', ' ')} at {t:.2f} s"


@st.cache_data(show_spinner=False, max_entries=4)
def annotated_video(path: str, sha: str, affected_side: str | None, mirrored: bool, mm_per_px: float | None,
                    stride: int, _analysis: VideoAnalysis | None = None,
                    _progress: Callable[[int], None] | None = None) -> bytes:
    """The annotated video (H.264 MP4 bytes) of an analysis (cached like it)."""
    from symmetry.video import write_annotated_video

    with tempfile.TemporaryDirectory(prefix="symmetry-video-") as tmp:
        out = write_annotated_video(_analysis.result, Path(tmp) / "annotated.mp4", progress=_progress)
        return out.read_bytes()


def video_still(path: str, time_s: float) -> np.ndarray:
    """The RGB frame of a video nearest ``time_s``."""
    from symmetry.video import iter_frames, probe_video

    info = probe_video(path)
    half = 0.5 / max(info.fps, 1.0)
    best = None
    for frame in iter_frames(path, start_s=max(time_s - half, 0.0), end_s=time_s + 3 * half):
        if best is None or abs(frame.time_s - time_s) < abs(best.time_s - time_s):
            best = frame
    if best is None:
        raise InputError(Path(path).name, f"no frame at {time_s:.2f} s")
    return best.rgb


def png_bytes(rgb: np.ndarray) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, format="PNG")
    return buf.getvalue()


# --------------------------------------------------------------------------- outcomes and reports

INSTRUMENT_LABELS = {
    "eface": "eFACE (clinician-graded, 100 = normal)",
    "sunnybrook": "Sunnybrook facial grading",
    "house_brackmann": "House-Brackmann grade (I–VI entered as 1–6)",
    "face": "FaCE (patient-reported, 0–100)",
    "saq": "SAQ synkinesis questionnaire",
}

ORAL_PROXY_LABELS = {
    "lower_lip_depression_on_eee": "Lower-lip depression on “eee” (affected side)",
    "lower_lip_asymmetry_on_eee": "Lower-lip |L − R| on “eee”",
    "lower_lip_height_asymmetry_at_rest": "Lower-lip height |L − R| at rest",
    "interlabial_gap_at_rest": "Lip gap at rest (lip seal)",
}


@st.cache_data(show_spinner="Working out the outcomes…", max_entries=32)
def outcomes(measurements: pd.DataFrame, patient: str) -> Any:
    """:func:`symmetry.trends.patient_outcomes` (cached by the input rows)."""
    from symmetry.trends import patient_outcomes

    return patient_outcomes(measurements, patient)


def build_report(patient: str, fmt: str, *, photos: bool = True) -> bytes:
    """The patient's report (``html`` or ``pdf``) as bytes, as ``symmetry report`` writes it."""
    from symmetry.report import ReportContext, make_overlays, write_report

    m = read("measurements", patient)
    if m.empty:
        raise ValueError(f"no measurements for patient {patient!r}")
    o = outcomes(m, patient)
    overlays = []
    if photos:
        with landmarker().use() as lm:
            overlays = make_overlays(read("recordings", patient), affected_side=o.affected_side, landmarker=lm)
    visits = read("visits", patient)
    ctx = ReportContext(
        outcomes=o,
        aetiology=m["aetiology"].iloc[0],
        cohort=m["cohort"].iloc[0],
        procedures=read("procedures", patient)[["date", "kind", "notes"]],
        visits=visits[["visit_date", "days_from_procedure", "phase", "n_recordings"]],
        scores=read("scores", patient),
        overlays=overlays,
    )
    with tempfile.TemporaryDirectory(prefix="symmetry-report-") as tmp:
        path = write_report(Path(tmp) / f"{patient}.{fmt}", ctx)
        return path.read_bytes()


def delta_marks(row: pd.Series) -> str:
    """Short marks for one pre-op → visit change (see the legend on the Patient page)."""
    marks = []
    if is_true(row.get("within_noise")):
        marks.append("≈ noise")
    if is_true(row.get("beyond_perception")):
        marks.append("◆ visible")
    direction = row.get("direction")
    if isinstance(direction, str) and direction != "within noise":
        marks.append(direction)
    if is_true(row.get("swelling_biased")):
        marks.append("swelling")
    return ", ".join(marks)


def is_true(value: Any) -> bool:
    """True for True-like values; False for False, None, NaN and pd.NA."""
    try:
        return False if value is None or pd.isna(value) else bool(value)
    except (TypeError, ValueError):
        return False


# --------------------------------------------------------------------------- cohort statistics

POST_LABELS = {
    "late": "late visit (> 4 months)",
    "settling": "settling visit (3 weeks – 4 months)",
    "early": "early visit (≤ 3 weeks)",
    "last": "last post-op visit, any phase",
}


@st.cache_data(show_spinner="Pairing pre-op and post-op visits and testing…", max_entries=32)
def paired_statistics(measurements: pd.DataFrame, post: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    """``(pairs, tests)``: :func:`symmetry.stats.prepost_pairs` (key measures) and :func:`symmetry.stats.paired_tests`."""
    from symmetry.stats import paired_tests, prepost_pairs

    pairs = prepost_pairs(measurements, post=post)
    return pairs, paired_tests(pairs)


@st.cache_data(show_spinner="Comparing cohorts…", max_entries=32)
def cohort_comparison(pairs: pd.DataFrame, groups: tuple[str, ...]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """``(comparison, summary)``: :func:`symmetry.stats.compare_cohorts` and :func:`symmetry.stats.cohort_summary`."""
    from symmetry.stats import cohort_summary, compare_cohorts

    summary = cohort_summary(pairs, by="cohort")
    summary = summary[summary["group"].isin(groups)]
    return compare_cohorts(pairs, by="cohort", groups=list(groups)), summary


@st.cache_data(show_spinner="Fitting mixed-effects models (one per measure)…", max_entries=8)
def trajectories(measurements: pd.DataFrame, by: str | None) -> pd.DataFrame:
    """:func:`symmetry.stats.trajectory_models` of the key measures."""
    from symmetry.stats import trajectory_models

    return trajectory_models(measurements, by=by)


def export_bytes(frame: pd.DataFrame, fmt: str) -> bytes:
    """The tidy export (:func:`symmetry.store.write_export`) as bytes."""
    from symmetry.store import write_export

    buf = io.BytesIO()
    write_export(frame, fmt, buf)
    return buf.getvalue()


def p_text(p: Any) -> str:
    try:
        v = float(p)
    except (TypeError, ValueError):
        return "—"
    if math.isnan(v):
        return "—"
    return "< 0.001" if v < 0.001 else f"{v:.3f}"
