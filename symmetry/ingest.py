"""Ingest a manifest of visit photos into the store: validate, copy (metadata stripped), measure.

Manifest
--------
A CSV file (UTF-8, an Excel BOM is fine) with a header row. Required columns:

``patient``
    Pseudonymous code: letters, digits, ``.``, ``_`` or ``-`` (no names).
``visit_date``
    ``YYYY-MM-DD``.
``expression``
    One of :data:`EXPRESSIONS` (``rest``, ``smile_open``, ...).
``path``
    The photo; relative paths are relative to the manifest's folder.

Optional columns: ``procedure_date`` (``YYYY-MM-DD``) and ``procedure`` (its
kind, e.g. ``selective denervation``; defaults to ``unspecified`` when only a
date is given), ``affected_side`` (``left``/``right``), ``aetiology`` (see
:class:`symmetry.store.Aetiology`; ``Bell's palsy`` and the like are
accepted), ``cohort`` (labels separated by ``;``) and ``mirrored``
(``true``/``false``, for selfie-camera photos). Patient fields may be given on
any of the patient's rows; rows that contradict each other or the database are
reported and skipped (the database is never silently changed, except that a
field it does not have yet is filled in and new cohort labels are added).

Guarantees
----------
* **Idempotent**: a file whose content (SHA-256) is already stored is not
  stored again, whatever its name; a second ingest of the same manifest adds
  nothing.
* **One transaction per recording**: a recording and all its measurement rows
  (and the visit they create) are committed together or not at all. The
  stored copy is written (temporary file, fsync, atomic rename) *before* the
  commit, and named by the content hash, so a crash leaves at most an
  unreferenced file that the next ingest of that photo reuses.
* **A bad file is reported and skipped**; the other rows go on.
* **Movement measures**: within a visit, expression photos are measured
  against the visit's rest photo (rest photos are ingested first). A rest
  photo that arrives later, or an affected side that becomes known later,
  re-measures the visit's (the patient's) recordings, each in its own
  transaction.

Privacy
-------
The stored copy keeps the pixels and drops location and device metadata.
JPEG files are stripped losslessly (the compressed image data are copied
byte for byte; EXIF, XMP, IPTC, maker notes, comments and embedded previews
are dropped, and only the EXIF orientation is written back), and so are PNG
files (text, EXIF and time chunks dropped); every other format (and any file
whose stripped copy would not decode to the same pixels) is stored as a PNG
of the decoded RGB pixels, orientation applied.
Either way the stored copy decodes to exactly the pixels that were measured.
"""

from __future__ import annotations

import csv
import datetime as dt
import hashlib
import io
import json
import os
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

import numpy as np
from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from . import ALGORITHM_VERSION
from .expressions import EXPRESSIONS, REST
from .errors import ImageReadError, InputError, SymmetryError
from .images import read_image
from .video import VIDEO_SUFFIXES
from .store import (
    COHORT_SEPARATOR,
    Measurement,
    Patient,
    PatientCohort,
    Procedure,
    Recording,
    RecordingKind,
    Store,
    Visit,
    get_or_create_visit,
    normalise_aetiology,
    refresh_timeline,
)

__all__ = [
    "EXPRESSIONS",
    "REQUIRED_COLUMNS",
    "OPTIONAL_COLUMNS",
    "ManifestRow",
    "RowProblem",
    "IngestReport",
    "ManifestError",
    "read_manifest",
    "ingest_manifest",
    "ingest_rows",
    "remeasure",
    "file_sha256",
    "stripped_copy",
]

REQUIRED_COLUMNS: tuple[str, ...] = ("patient", "visit_date", "expression", "path")
OPTIONAL_COLUMNS: tuple[str, ...] = ("procedure_date", "procedure", "affected_side", "aetiology", "cohort", "mirrored")
_PATIENT_CODE = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
_TRUE = {"true", "yes", "y", "1"}
_FALSE = {"false", "no", "n", "0", ""}
_SIDES = {"left": "left", "l": "left", "right": "right", "r": "right"}
_UNSPECIFIED_PROCEDURE = "unspecified"


class ManifestError(InputError):
    """The manifest as a whole cannot be used (missing, unreadable, wrong columns)."""


@dataclass(frozen=True)
class ManifestRow:
    """One validated manifest row. ``line`` is the 1-based line number in the file."""

    line: int
    patient: str
    visit_date: dt.date
    expression: str
    path: Path
    procedure_date: dt.date | None = None
    procedure: str | None = None
    affected_side: str | None = None
    aetiology: str | None = None
    cohorts: tuple[str, ...] = ()
    mirrored: bool = False


@dataclass(frozen=True)
class RowProblem:
    """A row that was skipped, and why."""

    source: str  # "manifest.csv:7"
    reason: str

    def __str__(self) -> str:
        return f"{self.source}: {self.reason}"


@dataclass
class IngestReport:
    """What an ingest did.

    Attributes
    ----------
    added : int
        New recordings stored.
    already_present : int
        Rows whose file (by content) was already stored for the same visit and expression.
    remeasured : int
        Stored recordings measured again (a rest photo or the affected side arrived).
    measurement_rows : int
        Measurement rows written (new and re-measured recordings).
    problems : list of RowProblem
        Rows skipped, with the reason.
    seconds : float
    measure_seconds : float
        Time spent measuring (landmarks and measures), summed over photos.
    """

    added: int = 0
    already_present: int = 0
    remeasured: int = 0
    measurement_rows: int = 0
    problems: list[RowProblem] = field(default_factory=list)
    seconds: float = 0.0
    measure_seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return not self.problems

    def summary(self) -> str:
        n = self.added + self.remeasured
        per = f", {1000 * self.seconds / n:.0f} ms per photo" if n else ""
        return (
            f"{self.added} recording(s) added ({self.measurement_rows} measurement rows), "
            f"{self.already_present} already present, {self.remeasured} re-measured, "
            f"{len(self.problems)} skipped; {self.seconds:.1f} s{per}"
        )


# --------------------------------------------------------------------------- manifest


def _parse_date(text: str, column: str) -> dt.date:
    try:
        return dt.date.fromisoformat(text.strip())
    except ValueError:
        raise ValueError(f"{column} {text!r} is not a date in YYYY-MM-DD form") from None


def _parse_row(raw: dict[str, str], line: int, base: Path) -> ManifestRow:
    get = lambda k: (raw.get(k) or "").strip()  # noqa: E731
    missing = [c for c in REQUIRED_COLUMNS if not get(c)]
    if missing:
        raise ValueError(f"empty {', '.join(missing)}")
    patient = get("patient")
    if not _PATIENT_CODE.match(patient):
        raise ValueError(
            "patient must be a pseudonymous code: 1-64 letters, digits, '.', '_' or '-' "
            "(the value is not repeated here in case it is a name)"
        )
    expression = get("expression").lower()
    if expression not in EXPRESSIONS:
        raise ValueError(f"unknown expression {get('expression')!r}; use one of {', '.join(EXPRESSIONS)}")
    visit_date = _parse_date(get("visit_date"), "visit_date")
    path = Path(get("path")).expanduser()
    if not path.is_absolute():
        path = base / path
    if path.suffix.lower() in VIDEO_SUFFIXES:
        raise ValueError(
            "is a video: the database stores photos; measure videos with "
            "`symmetry measure VIDEO` (or `symmetry stim` for a stimulation session)"
        )
    procedure_date = _parse_date(get("procedure_date"), "procedure_date") if get("procedure_date") else None
    procedure = get("procedure") or None
    if procedure and procedure_date is None:
        raise ValueError(f"procedure {procedure!r} needs a procedure_date")
    if procedure_date is not None and not procedure:
        procedure = _UNSPECIFIED_PROCEDURE
    if procedure and len(procedure) > 64:
        raise ValueError("procedure must be at most 64 characters")
    side = get("affected_side").lower()
    if side and side not in _SIDES:
        raise ValueError(f"affected_side {get('affected_side')!r} must be left or right (the patient's side)")
    aetiology = normalise_aetiology(get("aetiology")).value if get("aetiology") else None
    cohorts = tuple(sorted({c.strip() for c in get("cohort").split(COHORT_SEPARATOR) if c.strip()}))
    for c in cohorts:
        if len(c) > 64:
            raise ValueError(f"cohort label {c[:20]!r}... is longer than 64 characters")
    mirrored_text = get("mirrored").lower()
    if mirrored_text not in _TRUE | _FALSE:
        raise ValueError(f"mirrored {get('mirrored')!r} must be true or false")
    return ManifestRow(
        line=line,
        patient=patient,
        visit_date=visit_date,
        expression=expression,
        path=path,
        procedure_date=procedure_date,
        procedure=procedure,
        affected_side=_SIDES[side] if side else None,
        aetiology=aetiology,
        cohorts=cohorts,
        mirrored=mirrored_text in _TRUE,
    )


def read_manifest(path: str | os.PathLike[str]) -> tuple[list[ManifestRow], list[RowProblem]]:
    """Read and validate a manifest.

    Returns
    -------
    rows : list of ManifestRow
        The valid rows.
    problems : list of RowProblem
        One per invalid row, naming the line, the file and the reason.

    Raises
    ------
    ManifestError
        The manifest cannot be read, or lacks a required column or has an
        unknown one (the message lists the expected columns).
    """
    path = Path(path)
    name = path.name
    try:
        text = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise ManifestError(path, "manifest not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ManifestError(path, f"cannot read the manifest ({exc.__class__.__name__}: {exc}); save it as UTF-8 CSV") from None
    reader = csv.DictReader(io.StringIO(text))
    header = [h.strip().lower() for h in (reader.fieldnames or [])]
    if not header:
        raise ManifestError(path, "empty manifest: expected a header row " + ",".join(REQUIRED_COLUMNS))
    reader.fieldnames = header
    missing = [c for c in REQUIRED_COLUMNS if c not in header]
    unknown = [c for c in header if c not in REQUIRED_COLUMNS + OPTIONAL_COLUMNS]
    if missing or unknown:
        parts = []
        if missing:
            parts.append(f"missing column(s) {', '.join(missing)}")
        if unknown:
            parts.append(f"unknown column(s) {', '.join(repr(u) for u in unknown)}")
        raise ManifestError(
            path,
            "; ".join(parts)
            + f". Required: {', '.join(REQUIRED_COLUMNS)}; optional: {', '.join(OPTIONAL_COLUMNS)}",
        )
    rows: list[ManifestRow] = []
    problems: list[RowProblem] = []
    base = path.resolve().parent
    for raw in reader:
        line = reader.line_num
        if None in raw:  # more fields than the header
            problems.append(RowProblem(f"{name}:{line}", f"{len(header) + len(raw[None])} fields, the header has {len(header)}"))  # type: ignore[index]
            continue
        if not any((v or "").strip() for v in raw.values()):
            continue  # blank line
        try:
            rows.append(_parse_row(raw, line, base))
        except ValueError as exc:
            file = (raw.get("path") or "").strip()
            problems.append(RowProblem(f"{name}:{line}", f"{file}: {exc}" if file else str(exc)))
    return rows, problems


def _patient_conflicts(rows: Sequence[ManifestRow], manifest_name: str) -> dict[str, str]:
    """Patients whose rows disagree on affected side or aetiology -> reason."""
    out: dict[str, str] = {}
    for attr in ("affected_side", "aetiology"):
        seen: dict[str, dict[str, int]] = {}
        for r in rows:
            value = getattr(r, attr)
            if value is not None:
                seen.setdefault(r.patient, {}).setdefault(value, r.line)
        for patient, values in seen.items():
            if len(values) > 1:
                desc = " and ".join(f"{v} (line {ln})" for v, ln in values.items())
                out.setdefault(patient, f"patient {patient}: {attr} given as {desc} in {manifest_name}")
    return out


# --------------------------------------------------------------------------- files


def file_sha256(path: str | os.PathLike[str]) -> str:
    """Hex SHA-256 of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


_KEEP_APP = {0xE0: b"JFIF\x00", 0xE2: b"ICC_PROFILE\x00", 0xEE: b"Adobe"}


def _strip_jpeg(data: bytes, orientation: int) -> bytes | None:
    """Drop metadata segments of a JPEG, copying the image data byte for byte.

    Keeps JFIF (APP0), ICC profile (APP2) and Adobe colour-transform (APP14)
    segments and every non-APP segment; drops other APPn (EXIF, XMP, IPTC,
    MPF, maker notes), comments and anything after the first image's EOI
    (e.g. the second picture of an MPO). Writes back a minimal EXIF with only
    the orientation when it is not 1. Returns None when the file does not
    parse as a baseline/progressive JPEG.
    """
    from PIL import Image

    n = len(data)
    if data[:2] != b"\xff\xd8":
        return None
    out = [b"\xff\xd8"]
    if orientation != 1:
        exif = Image.Exif()
        exif[0x0112] = orientation
        payload = exif.tobytes()
        if not payload.startswith(b"Exif\x00\x00"):
            payload = b"Exif\x00\x00" + payload
        out.append(b"\xff\xe1" + (len(payload) + 2).to_bytes(2, "big") + payload)
    i = 2
    while i < n:
        if data[i] != 0xFF:
            return None
        while i < n and data[i] == 0xFF:  # fill bytes
            i += 1
        if i >= n:
            return None
        marker = data[i]
        i += 1
        if marker == 0xD9:
            out.append(b"\xff\xd9")
            return b"".join(out)
        if 0xD0 <= marker <= 0xD7 or marker == 0x01:
            out.append(bytes((0xFF, marker)))
            continue
        if i + 2 > n:
            return None
        length = int.from_bytes(data[i : i + 2], "big")
        if length < 2 or i + length > n:
            return None
        payload = data[i + 2 : i + length]
        is_meta = 0xE0 <= marker <= 0xEF or marker == 0xFE
        keep = not is_meta or (marker in _KEEP_APP and payload.startswith(_KEEP_APP[marker]))
        if keep:
            out.append(bytes((0xFF, marker)) + data[i : i + length])
        i += length
        if marker == 0xDA:  # start of scan: entropy-coded data up to the next real marker
            j = i
            while True:
                j = data.find(b"\xff", j)
                if j < 0 or j + 1 >= n:
                    return None
                nxt = data[j + 1]
                if nxt == 0x00 or 0xD0 <= nxt <= 0xD7:
                    j += 2
                elif nxt == 0xFF:
                    j += 1
                else:
                    break
            out.append(data[i:j])
            i = j
    return None


#: PNG chunks kept: image data, transparency and colour; dropped: text (tEXt,
#: zTXt, iTXt), EXIF (eXIf), time stamps and anything private.
_KEEP_PNG = {b"IHDR", b"PLTE", b"IDAT", b"IEND", b"tRNS", b"gAMA", b"cHRM", b"sRGB", b"iCCP", b"sBIT", b"pHYs"}
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _strip_png(data: bytes) -> bytes | None:
    """Drop a PNG's metadata chunks, copying image chunks byte for byte (None if it does not parse)."""
    if not data.startswith(_PNG_SIGNATURE):
        return None
    out = [_PNG_SIGNATURE]
    i, n = len(_PNG_SIGNATURE), len(data)
    while i + 12 <= n:
        length = int.from_bytes(data[i : i + 4], "big")
        kind = data[i + 4 : i + 8]
        end = i + 12 + length
        if end > n:
            return None
        if kind in _KEEP_PNG:
            out.append(data[i:end])
        i = end
        if kind == b"IEND":
            return b"".join(out)
    return None


def stripped_copy(data: bytes, rgb: np.ndarray, source: str = "<bytes>") -> tuple[bytes, str]:
    """The bytes to store for a photo, without location or device metadata.

    Parameters
    ----------
    data : bytes
        The original file.
    rgb : ndarray of shape (H, W, 3), uint8
        ``read_image`` of the original (what was measured).
    source : str
        For messages.

    Returns
    -------
    (bytes, extension)
        A losslessly stripped JPEG (``"jpg"``) when the original is a JPEG that
        strips cleanly; otherwise a PNG (``"png"``) of ``rgb``. Both decode to
        exactly ``rgb``.
    """
    from PIL import Image

    try:
        with Image.open(io.BytesIO(data)) as img:
            fmt = img.format
            orientation = int(img.getexif().get(0x0112, 1) or 1) if fmt in ("JPEG", "MPO") else 1
    except Exception:
        fmt, orientation = None, 1
    if fmt in ("JPEG", "MPO"):
        stripped = _strip_jpeg(data, orientation if 1 <= orientation <= 8 else 1)
        if stripped is not None and _decodes_to(stripped, rgb, ".jpg"):
            return stripped, "jpg"
    if fmt == "PNG":  # lossless already; an EXIF orientation makes the check below fail
        stripped = _strip_png(data)
        if stripped is not None and _decodes_to(stripped, rgb, ".png"):
            return stripped, "png"
    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(rgb)).save(buf, format="PNG", compress_level=3)
    return buf.getvalue(), "png"


def _decodes_to(data: bytes, rgb: np.ndarray, suffix: str) -> bool:
    import tempfile

    with tempfile.NamedTemporaryFile(suffix=suffix) as tmp:
        tmp.write(data)
        tmp.flush()
        try:
            decoded = read_image(tmp.name)
        except ImageReadError:
            return False
    return decoded.shape == rgb.shape and bool(np.array_equal(decoded, rgb))


def _write_media(store: Store, sha: str, data: bytes, ext: str) -> str:
    """Write the stored copy atomically; returns its path relative to the media folder."""
    rel = f"{sha[:2]}/{sha}.{ext}"
    final = store.media_path(rel)
    if final.is_file() and final.stat().st_size == len(data):
        return rel  # left by an earlier run (e.g. one that crashed before its commit)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = final.with_name(f".{final.name}.{os.getpid()}.tmp")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, final)
    try:
        dfd = os.open(final.parent, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)
    except OSError:  # pragma: no cover - directories cannot be fsynced on some platforms
        pass
    return rel


# --------------------------------------------------------------------------- measuring


@dataclass
class _Measured:
    rows: list[tuple[str, str, float | None, str]]
    mm_per_px: float
    mm_per_px_uncertainty: float | None
    scale_source: str
    pose: dict[str, float]
    warnings: list[str]
    refined: list[str]
    #: The photo's model landmarks (FaceLandmarks), kept when asked (a rest photo whose expression
    #: photos are measured elsewhere: a batch worker then need not detect it again).
    face: Any = None


def _measure(
    rgb: np.ndarray,
    source: str,
    *,
    expression: str,
    mirrored: bool,
    affected_side: str | None,
    rest: tuple[np.ndarray, bool] | None,
    landmarker: object,
    rest_face: Any = None,
    keep_face: bool = False,
) -> _Measured:
    """Measure one decoded photo (against ``rest``: its pixels and whether it is mirrored).

    ``rest_face``: the rest photo's landmarks when they were detected already (in its own
    orientation); ``keep_face``: return this photo's landmarks in ``_Measured.face``.
    """
    from .photo import PhotoOptions, _prepare_rest, measure_photo

    rest_rgb = None
    options = PhotoOptions(expression=expression, affected_side=affected_side, mirrored=mirrored)
    if rest is not None:
        rest_rgb, rest_mirrored = rest
        if rest_mirrored != mirrored:  # bring the rest photo to this photo's orientation
            rest_rgb = np.ascontiguousarray(rest_rgb[:, ::-1])
        elif rest_face is not None:  # measured already: only the cheap part is redone
            _prepare_rest(rest_rgb, landmarker, options, face=rest_face)  # type: ignore[arg-type]
    try:
        result = measure_photo(rgb, rest=rest_rgb, options=options, landmarker=landmarker)  # type: ignore[arg-type]
    except InputError as exc:
        raise InputError(source, exc.reason) from None
    frame = result.to_frame()
    rows = [
        (str(n), str(s), None if not np.isfinite(v) else float(v), str(u))
        for n, s, v, u in zip(frame["name"], frame["side"], frame["value"], frame["unit"])
    ]
    cal = result.calibration
    unc = getattr(cal, "mm_per_px_uncertainty", None)
    return _Measured(
        rows=rows,
        mm_per_px=float(result.mm_per_px),
        mm_per_px_uncertainty=None if unc is None or not np.isfinite(unc) else float(unc),
        scale_source=str(getattr(cal.source, "value", cal.source)),
        pose={k: float(v) for k, v in result.head_pose_deg.items()},
        warnings=list(result.warnings),
        refined=list(result.refined),
        face=result.face if keep_face else None,
    )


def _recording_fields(m: _Measured, rest_id: int | None, affected_side: str | None) -> dict[str, Any]:
    """The recording columns a measurement sets (scale, pose, flags, provenance), by column name."""
    return {
        "mm_per_px": m.mm_per_px,
        "mm_per_px_uncertainty": m.mm_per_px_uncertainty,
        "scale_source": m.scale_source,
        "head_yaw_deg": m.pose.get("yaw"),
        "head_pitch_deg": m.pose.get("pitch"),
        "head_roll_deg": m.pose.get("roll"),
        "warnings": json.dumps(m.warnings),
        "refined_points": json.dumps(m.refined),
        "rest_recording_id": rest_id,
        "measured_affected_side": affected_side,
        "algorithm_version": ALGORITHM_VERSION,
        "measured_at": dt.datetime.now(dt.timezone.utc),
    }


def _apply_measured(rec: Recording, m: _Measured, rest_id: int | None, affected_side: str | None) -> None:
    for name, value in _recording_fields(m, rest_id, affected_side).items():
        setattr(rec, name, value)
    rec.measurements = [
        Measurement(name=n, side=s, value=v, unit=u, algorithm_version=ALGORITHM_VERSION) for n, s, v, u in m.rows
    ]


# --------------------------------------------------------------------------- ingest


def _rest_of_visit(s: Session, visit_id: int) -> Recording | None:
    return s.scalar(
        select(Recording)
        .where(Recording.visit_id == visit_id, Recording.expression == REST)
        .order_by(Recording.id)
        .limit(1)
    )


def _apply_patient_fields(s: Session, code: str, rows: Sequence[ManifestRow]) -> Patient:
    """Create/update one patient from its manifest rows (fields, cohort labels, procedures).

    Raises ValueError on a contradiction with the database. A changed affected
    side is picked up by :func:`remeasure` afterwards.
    """
    pat = s.scalar(select(Patient).where(Patient.code == code))
    side = next((r.affected_side for r in rows if r.affected_side), None)
    aet = next((r.aetiology for r in rows if r.aetiology), None)
    if pat is None:
        pat = Patient(code=code, affected_side=side, aetiology=aet)
        s.add(pat)
        s.flush()
    else:
        if side and pat.affected_side and pat.affected_side != side:
            raise ValueError(f"patient {code} is stored with affected side {pat.affected_side}; the manifest says {side}")
        if aet and pat.aetiology and pat.aetiology != aet:
            raise ValueError(f"patient {code} is stored with aetiology {pat.aetiology}; the manifest says {aet}")
        if side and not pat.affected_side:
            pat.affected_side = side
        if aet and not pat.aetiology:
            pat.aetiology = aet
    labels = {c.label for c in pat.cohorts}
    for label in sorted({c for r in rows for c in r.cohorts} - labels):
        pat.cohorts.append(PatientCohort(label=label))
    have = {(p.kind, p.date) for p in pat.procedures}
    new = sorted({(r.procedure, r.procedure_date) for r in rows if r.procedure and r.procedure_date} - have, key=lambda t: (t[1], t[0]))
    for kind, date in new:
        pat.procedures.append(Procedure(kind=kind, date=date))
    if new:
        s.flush()
        refresh_timeline(s, pat)
    return pat


def ingest_manifest(
    store: Store,
    manifest: str | os.PathLike[str],
    *,
    landmarker: object | None = None,
    on_row: Callable[[str], None] | None = None,
) -> IngestReport:
    """Validate a manifest and ingest its rows (see the module docstring).

    Parameters
    ----------
    store : Store
    manifest : path
    landmarker : Landmarker, optional
        A reusable IMAGE-mode landmarker (one is opened and closed otherwise).
    on_row : callable, optional
        Called with one line of progress per row (``added``, ``present``, ...).

    Returns
    -------
    IngestReport
        Invalid rows and unusable files are in ``problems``.

    Raises
    ------
    ManifestError
        The manifest as a whole is unusable.
    """
    t0 = time.perf_counter()
    rows, problems = read_manifest(manifest)
    report = ingest_rows(store, rows, landmarker=landmarker, on_row=on_row, manifest_name=Path(manifest).name)
    report.problems[:0] = problems
    report.seconds = time.perf_counter() - t0
    return report


def ingest_rows(
    store: Store,
    rows: Iterable[ManifestRow],
    *,
    landmarker: object | None = None,
    on_row: Callable[[str], None] | None = None,
    manifest_name: str = "manifest",
) -> IngestReport:
    """Ingest validated rows; see :func:`ingest_manifest`."""
    from .landmarks import Landmarker, LandmarkerOptions

    t0 = time.perf_counter()
    report = IngestReport()
    rows = list(rows)
    say = on_row or (lambda _msg: None)
    where = lambda r: f"{manifest_name}:{r.line}"  # noqa: E731

    conflicts = _patient_conflicts(rows, manifest_name)
    by_patient: dict[str, list[ManifestRow]] = {}
    for r in rows:
        by_patient.setdefault(r.patient, []).append(r)

    own = landmarker is None
    lm = landmarker if landmarker is not None else Landmarker(LandmarkerOptions())
    try:
        for code, prow in by_patient.items():
            if code in conflicts:
                report.problems += [RowProblem(where(r), f"{r.path}: {conflicts[code]}") for r in prow]
                continue
            try:
                _retry_on_conflict(lambda: _in_write_session(store, lambda s: _apply_patient_fields(s, code, prow)))
            except ValueError as exc:
                report.problems += [RowProblem(where(r), f"{r.path}: {exc}") for r in prow]
                continue
            # rest photos first within each visit, then the manifest's order
            ordered = sorted(prow, key=lambda r: (r.visit_date, r.expression != REST, r.line))
            for r in ordered:
                try:
                    status = _ingest_one(store, r, lm, report)
                except InputError as exc:
                    report.problems.append(RowProblem(where(r), str(exc)))
                    say(f"skipped {r.path}: {exc.reason}")
                    continue
                except (SymmetryError, OSError) as exc:
                    report.problems.append(RowProblem(where(r), f"{r.path}: {exc}"))
                    say(f"skipped {r.path}: {exc}")
                    continue
                say(f"{status} {r.path}")
            remeasure(store, code, landmarker=lm, report=report, on_row=say)
    finally:
        if own:
            lm.close()  # type: ignore[attr-defined]
    report.seconds = time.perf_counter() - t0
    return report


def _ingest_one(store: Store, r: ManifestRow, lm: object, report: IngestReport) -> str:
    try:
        data = r.path.read_bytes()
    except FileNotFoundError:
        raise ImageReadError(r.path, "file not found") from None
    except IsADirectoryError:
        raise ImageReadError(r.path, "is a directory, not a photo") from None
    except OSError as exc:
        raise ImageReadError(r.path, f"cannot read ({exc.strerror or exc})") from None
    sha = hashlib.sha256(data).hexdigest()

    with store.session() as s:
        existing = s.execute(
            select(Recording.expression, Visit.date, Patient.code)
            .join(Recording.visit)
            .join(Visit.patient)
            .where(Recording.sha256 == sha)
        ).first()
        rest_info = None
        if existing is None and r.expression != REST:
            visit_id = s.scalar(
                select(Visit.id).join(Visit.patient).where(Patient.code == r.patient, Visit.date == r.visit_date)
            )
            rest = _rest_of_visit(s, visit_id) if visit_id is not None else None
            if rest is not None:
                rest_info = (rest.id, store.media_path(rest.media_path), rest.mirrored)
        affected = s.scalar(select(Patient.affected_side).where(Patient.code == r.patient))
    if existing is not None:
        expr, vdate, code = existing
        if (expr, vdate, code) == (r.expression, r.visit_date, r.patient):
            report.already_present += 1
            return "present"
        raise InputError(r.path, f"the same photo is already stored as patient {code}, visit {vdate}, {expr}")

    rgb = _decode(data, r.path)
    rest_arg = None
    if rest_info is not None:
        rest_arg = (read_image(rest_info[1]), bool(rest_info[2]))
    t = time.perf_counter()
    measured = _measure(
        rgb, str(r.path), expression=r.expression, mirrored=r.mirrored, affected_side=affected, rest=rest_arg, landmarker=lm
    )
    report.measure_seconds += time.perf_counter() - t
    blob, ext = stripped_copy(data, rgb, str(r.path))
    rel = _write_media(store, sha, blob, ext)

    def store_recording(s: Session) -> bool:
        if s.scalar(select(Recording.id).where(Recording.sha256 == sha)) is not None:
            return False  # committed meanwhile by a concurrent ingest
        pat = s.scalar(select(Patient).where(Patient.code == r.patient))
        if pat is None:  # removed meanwhile
            raise InputError(r.path, f"patient {r.patient} vanished from the database during the ingest")
        visit = get_or_create_visit(s, pat, r.visit_date)
        rec = Recording(
            visit=visit,
            kind=RecordingKind.PHOTO.value,
            expression=r.expression,
            sha256=sha,
            mirrored=r.mirrored,
            media_path=rel,
            original_name=r.path.name[:255],
            width_px=int(rgb.shape[1]),
            height_px=int(rgb.shape[0]),
        )
        _apply_measured(rec, measured, rest_info[0] if rest_info else None, affected)
        s.add(rec)
        return True

    if not _retry_on_conflict(lambda: _in_write_session(store, store_recording)):
        report.already_present += 1
        return "present"
    report.added += 1
    report.measurement_rows += len(measured.rows)
    return "added"


def _in_write_session(store: Store, work: Callable[[Session], object]) -> object:
    with store.session(write=True) as s:
        return work(s)


def _retry_on_conflict(attempt: Callable[[], object], tries: int = 3) -> object:
    """Run a write transaction again when a concurrent writer made it violate a unique constraint.

    (Two ingests creating the same patient or visit at once: the second attempt finds the row.)
    """
    for i in range(tries):
        try:
            return attempt()
        except IntegrityError:
            if i == tries - 1:
                raise
    raise AssertionError("unreachable")  # pragma: no cover


def _decode(data: bytes, path: Path) -> np.ndarray:
    """read_image on the bytes already read (so hashing and measuring see the same file)."""
    import tempfile

    suffix = path.suffix if len(path.suffix) <= 6 else ""
    with tempfile.NamedTemporaryFile(suffix=suffix) as tmp:
        tmp.write(data)
        tmp.flush()
        try:
            return read_image(tmp.name)
        except ImageReadError as exc:
            raise ImageReadError(path, exc.reason) from None


def remeasure(
    store: Store,
    patient: str,
    *,
    landmarker: object | None = None,
    report: IngestReport | None = None,
    force: bool = False,
    on_row: Callable[[str], None] | None = None,
) -> IngestReport:
    """Measure a patient's stored recordings again where the stored rows are out of date.

    A recording is re-measured when its visit has a rest photo that it was not
    measured against, when the patient's affected side differs from the one
    it was measured with, or (``force``) always, e.g. after an algorithm
    change. Each recording is replaced in its own transaction.
    """
    from .landmarks import Landmarker, LandmarkerOptions

    report = report if report is not None else IngestReport()
    say = on_row or (lambda _msg: None)
    with store.session() as s:
        pat = s.scalar(select(Patient).where(Patient.code == patient))
        if pat is None:
            return report
        affected = pat.affected_side
        todo: list[tuple[int, int | None]] = []
        for visit in pat.visits:
            rest = _rest_of_visit(s, visit.id)
            for rec in visit.recordings:
                want_rest = rest.id if rest is not None and rec.expression != REST else None
                if rec.expression != REST and rec.rest_recording_id is not None:
                    want_rest = rec.rest_recording_id  # keep the rest photo it was measured against
                if force or rec.rest_recording_id != want_rest or rec.measured_affected_side != affected:
                    todo.append((rec.id, want_rest))
    if not todo:
        return report
    own = landmarker is None
    lm = landmarker if landmarker is not None else Landmarker(LandmarkerOptions())
    try:
        for rec_id, rest_id in todo:
            with store.session() as s:
                rec = s.get(Recording, rec_id)
                rest = s.get(Recording, rest_id) if rest_id is not None else None
                if rec is None:
                    continue
                path, expression, mirrored = store.media_path(rec.media_path), rec.expression, rec.mirrored
                rest_arg = (store.media_path(rest.media_path), rest.mirrored) if rest is not None else None
            try:
                rgb = read_image(path)
                rest_val = (read_image(rest_arg[0]), bool(rest_arg[1])) if rest_arg else None
                t = time.perf_counter()
                measured = _measure(
                    rgb, str(path), expression=expression, mirrored=mirrored, affected_side=affected,
                    rest=rest_val, landmarker=lm,
                )
                report.measure_seconds += time.perf_counter() - t
            except (InputError, OSError) as exc:
                report.problems.append(RowProblem(f"stored recording {rec_id}", str(exc)))
                continue
            with store.session(write=True) as s:
                rec = s.get(Recording, rec_id)
                if rec is None:
                    continue
                s.execute(delete(Measurement).where(Measurement.recording_id == rec_id))
                s.expire(rec, ["measurements"])
                _apply_measured(rec, measured, rest_id, affected)
            report.remeasured += 1
            report.measurement_rows += len(measured.rows)
            say(f"re-measured {path.name}")
    finally:
        if own:
            lm.close()  # type: ignore[attr-defined]
    return report
