"""Ingest: manifest validation, metadata stripping, idempotence, movement against rest, crash safety."""

from __future__ import annotations

import csv
import datetime as dt
import io
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from symmetry.errors import ImageReadError
from symmetry.images import read_image
from symmetry.ingest import (
    EXPRESSIONS,
    ManifestError,
    file_sha256,
    ingest_manifest,
    read_manifest,
    stripped_copy,
)
from symmetry.store import EXPORT_COLUMNS, export_frame, open_store, read_export, write_export

ROOT = Path(__file__).resolve().parents[1]
SAMPLES = ROOT / "sample_media"
MANIFEST_COLUMNS = [
    "patient", "visit_date", "expression", "path", "procedure_date", "procedure", "affected_side", "aetiology",
    "cohort", "mirrored",
]
#: Commissure movement (lateral, up) in mm on the (affected, healthy) side per visit: little
#: affected-side movement before surgery and in the swelling phase, more at the late visit.
VISITS = ((-10, "orig", (0.5, 0.3), (5.0, 3.0)), (9, "scaled", (0.5, 0.2), (4.5, 2.5)), (200, "mirror", (3.0, 2.0), (5.0, 3.0)))
PATIENTS = (
    ("P01", "astronaut.png", 1.0, "left", "Bell's palsy", "sd;pilot", dt.date(2024, 3, 1)),
    ("P02", "obama.jpg", 0.6, "right", "Ramsay Hunt", "sd", dt.date(2024, 1, 10)),
)


# --------------------------------------------------------------------------- demo cohort


def save_jpeg_with_gps(rgb: np.ndarray, path: Path, *, orientation: int | None = None) -> None:
    """A JPEG carrying camera make/model and a GPS position, as phones write them."""
    exif = Image.Exif()
    exif[0x010F] = "PhoneMaker"
    exif[0x0110] = "PhoneModel X"
    gps = exif.get_ifd(0x8825)
    gps.update({1: "N", 2: (52.0, 31.0, 12.5), 3: "E", 4: (13.0, 24.0, 1.0)})
    if orientation:
        exif[0x0112] = orientation
    Image.fromarray(rgb).save(path, "JPEG", quality=92, exif=exif.tobytes())


def smile_phantom(rgb: np.ndarray, landmarker, affected: str, affected_mm, healthy_mm) -> np.ndarray:
    """Both commissures moved by known amounts (pupil-frame mm), everything stable held still."""
    from symmetry.frame import lateral_sign
    from symmetry.landmarks import CONTOURS, Side
    from symmetry.phantom import warp_landmarks
    from symmetry.photo import PhotoOptions, measure_photo

    r = measure_photo(rgb, options=PhotoOptions(average=False), landmarker=landmarker)
    moves = {}
    for side, (lat, up) in ((Side(affected), affected_mm), (Side(affected).other, healthy_mm)):
        moves[CONTOURS[side].commissure] = (lateral_sign(side) * lat, up)
    return warp_landmarks(rgb, r.points_px, r.frame, moves, sigma_mm=8.0).image


def write_manifest(path: Path, rows: list[dict[str, str]]) -> Path:
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, MANIFEST_COLUMNS)
        w.writeheader()
        for r in rows:
            w.writerow(r)
    return path


def build_cohort(folder: Path, landmarker, *, patients=PATIENTS, visits=VISITS, bad_rows: bool = True) -> Path:
    """A small demo cohort: per patient a pre-op, an early and a late visit with rest + smile_open.

    Rest photos are PNGs, smiles JPEGs with GPS and device EXIF; the early visit is a
    rescaled copy, the late visit a mirrored (selfie) copy flagged ``mirrored``.
    With ``bad_rows`` two more rows name an unreadable and a missing file.
    """
    folder.mkdir(parents=True, exist_ok=True)
    rows: list[dict[str, str]] = []
    for code, name, scale, affected, aetiology, cohort, proc_date in patients:
        base = read_image(SAMPLES / name)
        if scale != 1.0:
            h, w = base.shape[:2]
            base = np.asarray(Image.fromarray(base).resize((round(w * scale), round(h * scale)), Image.LANCZOS))
        for k, (days, variant, aff_mm, healthy_mm) in enumerate(visits):
            img = base
            if variant == "scaled":
                h, w = base.shape[:2]
                img = np.asarray(Image.fromarray(base).resize((round(w * 0.85), round(h * 0.85)), Image.LANCZOS))
            smile = smile_phantom(img, landmarker, affected, aff_mm, healthy_mm)
            mirrored = variant == "mirror"
            if mirrored:
                img, smile = np.ascontiguousarray(img[:, ::-1]), np.ascontiguousarray(smile[:, ::-1])
            rest_path, smile_path = folder / f"{code}_v{k}_rest.png", folder / f"{code}_v{k}_smile.jpg"
            Image.fromarray(img).save(rest_path)
            save_jpeg_with_gps(smile, smile_path)
            first = k == 0
            for expr, path in (("smile_open", smile_path), ("rest", rest_path)):  # smile first on purpose
                rows.append(
                    {
                        "patient": code,
                        "visit_date": (proc_date + dt.timedelta(days=days)).isoformat(),
                        "expression": expr,
                        "path": path.name,
                        "procedure_date": proc_date.isoformat() if first else "",
                        "procedure": "selective denervation" if first else "",
                        "affected_side": affected if first else "",
                        "aetiology": aetiology if first else "",
                        "cohort": cohort if first else "",
                        "mirrored": "true" if mirrored else "",
                    }
                )
    if bad_rows:
        (folder / "broken.jpg").write_bytes(b"not a jpeg at all")
        day0 = (patients[0][6] + dt.timedelta(days=visits[0][0])).isoformat()
        rows.append({"patient": patients[0][0], "visit_date": day0, "expression": "pucker", "path": "broken.jpg"})
        rows.append({"patient": patients[0][0], "visit_date": day0, "expression": "snarl", "path": "missing.jpg"})
    return write_manifest(folder / "manifest.csv", rows)


@pytest.fixture(scope="module")
def cohort(tmp_path_factory, landmarker):
    """The demo cohort ingested once: (manifest, store, report)."""
    folder = tmp_path_factory.mktemp("cohort")
    manifest = build_cohort(folder / "photos", landmarker)
    store = open_store(home=folder / "home")
    report = ingest_manifest(store, manifest, landmarker=landmarker)
    yield manifest, store, report
    store.close()


# --------------------------------------------------------------------------- manifest validation


def test_manifest_rows_are_validated_with_line_file_and_reason(tmp_path):
    rows = [
        {"patient": "P01", "visit_date": "2024-02-30", "expression": "rest", "path": "a.png"},
        {"patient": "P01", "visit_date": "2024-02-20", "expression": "grin", "path": "b.png"},
        {"patient": "John Smith", "visit_date": "2024-02-20", "expression": "rest", "path": "c.png"},
        {"patient": "P01", "visit_date": "2024-02-20", "expression": "rest", "path": "d.png", "affected_side": "up"},
        {"patient": "P01", "visit_date": "2024-02-20", "expression": "rest", "path": "e.png", "procedure": "sd"},
        {"patient": "P01", "visit_date": "2024-02-20", "expression": "rest", "path": "f.png", "aetiology": "flu"},
        {"patient": "P01", "visit_date": "2024-02-20", "expression": "rest", "path": "g.png", "mirrored": "maybe"},
        {"patient": "P01", "visit_date": "2024-02-20", "expression": "rest", "path": "clinic.MOV"},
        {"patient": "P01", "visit_date": "2024-02-20", "expression": "Smile_Open", "path": "ok.png",
         "aetiology": "Bell's palsy", "affected_side": "L", "cohort": "b; a", "procedure_date": "2024-03-01"},
    ]
    manifest = write_manifest(tmp_path / "m.csv", rows)
    good, problems = read_manifest(manifest)
    messages = [str(p) for p in problems]
    assert len(messages) == 8
    assert messages[0].startswith("m.csv:2: a.png:") and "visit_date '2024-02-30' is not a date" in messages[0]
    assert "m.csv:3: b.png: unknown expression 'grin'" in messages[1] and "smile_open" in messages[1]
    assert "m.csv:4: c.png:" in messages[2] and "pseudonymous" in messages[2]
    assert "affected_side 'up' must be left or right" in messages[3]
    assert "procedure 'sd' needs a procedure_date" in messages[4]
    assert "unknown aetiology 'flu'" in messages[5] and "bells_palsy" in messages[5]
    assert "mirrored 'maybe' must be true or false" in messages[6]
    assert "m.csv:9: clinic.MOV: is a video" in messages[7] and "symmetry measure VIDEO" in messages[7]
    (row,) = good
    assert row.line == 10 and row.expression == "smile_open" and row.path == tmp_path / "ok.png"
    assert (row.aetiology, row.affected_side, row.cohorts) == ("bells_palsy", "left", ("a", "b"))
    assert (row.procedure, row.procedure_date) == ("unspecified", dt.date(2024, 3, 1))


@pytest.mark.parametrize(
    "header, message",
    [
        ("patient,visit_date,path", "missing column(s) expression"),
        ("patient,visit_date,expression,path,side", "unknown column(s) 'side'"),
        ("", "empty manifest"),
    ],
)
def test_manifest_with_wrong_columns_is_refused_naming_them(tmp_path, header, message):
    manifest = tmp_path / "m.csv"
    manifest.write_text(header + "\n" if header else "")
    with pytest.raises(ManifestError, match=message.replace("(", r"\(").replace(")", r"\)")):
        read_manifest(manifest)


def test_missing_manifest_is_an_input_error(tmp_path):
    with pytest.raises(ManifestError, match="manifest not found"):
        read_manifest(tmp_path / "nope.csv")


def test_contradicting_patient_fields_skip_that_patient(tmp_path):
    rows = [
        {"patient": "P07", "visit_date": "2024-02-20", "expression": "rest", "path": "a.png", "affected_side": "left"},
        {"patient": "P07", "visit_date": "2024-03-20", "expression": "rest", "path": "b.png", "affected_side": "right"},
    ]
    store = open_store("sqlite://", home=tmp_path)
    report = ingest_manifest(store, write_manifest(tmp_path / "m.csv", rows), landmarker=object())
    assert [p.source for p in report.problems] == ["m.csv:2", "m.csv:3"]
    assert "affected_side given as left (line 2) and right (line 3)" in report.problems[0].reason
    assert store.patients().empty


# --------------------------------------------------------------------------- stored copies


def test_jpeg_copy_drops_gps_and_device_but_keeps_pixels_and_orientation(tmp_path):
    rgb = read_image(SAMPLES / "astronaut.png")[:300, :200]
    src = tmp_path / "phone.jpg"
    save_jpeg_with_gps(rgb, src, orientation=6)
    data = src.read_bytes()
    assert b"PhoneModel X" in data
    original = read_image(src)
    assert original.shape == (200, 300, 3)  # orientation 6 rotates
    blob, ext = stripped_copy(data, original)
    assert ext == "jpg" and b"PhoneModel X" not in blob and b"PhoneMaker" not in blob
    with Image.open(io.BytesIO(blob)) as img:
        exif = img.getexif()
        assert dict(exif) == {0x0112: 6}
        assert not exif.get_ifd(0x8825)
    copy = tmp_path / "copy.jpg"
    copy.write_bytes(blob)
    assert np.array_equal(read_image(copy), original)
    # the compressed image data are copied byte for byte (lossless)
    sos = data.index(b"\xff\xda")
    assert data[sos:] in blob or data[sos : data.rindex(b"\xff\xd9") + 2] in blob


def test_png_copy_drops_text_chunks_and_other_formats_become_png(tmp_path):
    from PIL import PngImagePlugin

    rgb = read_image(SAMPLES / "astronaut.png")[:64, :64]
    info = PngImagePlugin.PngInfo()
    info.add_text("Location", "52.5N 13.4E")
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, "PNG", pnginfo=info)
    blob, ext = stripped_copy(buf.getvalue(), rgb)
    assert ext == "png" and b"52.5N" not in blob
    assert np.array_equal(np.asarray(Image.open(io.BytesIO(blob)).convert("RGB")), rgb)
    webp = io.BytesIO()
    Image.fromarray(rgb).save(webp, "WEBP", lossless=True)
    blob, ext = stripped_copy(webp.getvalue(), rgb)
    assert ext == "png" and np.array_equal(np.asarray(Image.open(io.BytesIO(blob)).convert("RGB")), rgb)


# --------------------------------------------------------------------------- the demo cohort


def test_cohort_ingest_reports_bad_files_and_stores_the_rest(cohort):
    manifest, store, report = cohort
    assert report.added == 12 and report.already_present == 0
    reasons = {p.source: p.reason for p in report.problems}
    assert set(reasons) == {"manifest.csv:14", "manifest.csv:15"}
    assert "broken.jpg" in reasons["manifest.csv:14"] and "not an image" in reasons["manifest.csv:14"]
    assert "missing.jpg: file not found" in reasons["manifest.csv:15"]
    patients = store.patients().set_index("patient")
    assert patients.loc["P01", "cohort"] == "pilot;sd" and patients.loc["P02", "aetiology"] == "ramsay_hunt"
    assert patients["n_visits"].tolist() == [3, 3] and patients["n_recordings"].tolist() == [6, 6]
    visits = store.visits("P01")
    assert visits["days_from_procedure"].tolist() == [-10, 9, 200]
    assert visits["phase"].tolist() == ["pre-op", "early", "late"]


def test_stored_copies_are_stripped_and_identical_in_pixels(cohort):
    manifest, store, _ = cohort
    recs = store.recordings()
    folder = manifest.parent
    for _, r in recs.iterrows():
        stored = Path(r["file"])
        assert stored.is_file() and stored.is_relative_to(store.media_dir)
        assert b"PhoneModel X" not in stored.read_bytes()
        original = folder / r["original_name"]
        assert r["sha256"] == file_sha256(original)
        assert np.array_equal(read_image(stored), read_image(original))


def test_cohort_round_trips_ingest_to_export_with_nothing_lost(cohort, landmarker, tmp_path):
    """Every photo's measure rows reach the export unchanged: values equal a direct measurement."""
    from symmetry.photo import PhotoOptions, measure_photo

    manifest, store, _ = cohort
    rows, _ = read_manifest(manifest)
    export = export_frame(store)
    assert list(export.columns) == list(EXPORT_COLUMNS)
    # P01 measured directly from the original files, as ingest should have measured them
    expected = []
    for r in rows:
        if r.patient != "P01" or not r.path.exists() or r.path.name == "broken.jpg":
            continue
        rest = None
        if r.expression != "rest":
            rest = next(x.path for x in rows if x.patient == r.patient and x.visit_date == r.visit_date and x.expression == "rest")
        f = measure_photo(
            r.path, rest=rest, landmarker=landmarker,
            options=PhotoOptions(expression=r.expression, affected_side="left", mirrored=r.mirrored),
        ).to_frame()
        expected.append(f.assign(visit_date=r.visit_date))
    exp = pd.concat(expected, ignore_index=True)
    got = export[export["patient"] == "P01"]
    key = ["visit_date", "expression", "name", "side"]
    merged = exp.merge(got.rename(columns={"measure": "name"}), on=key, how="outer", suffixes=("_direct", "_db"), indicator=True)
    assert (merged["_merge"] == "both").all(), merged[merged["_merge"] != "both"][key]
    assert len(got) == len(exp)
    both = merged["value_direct"].notna() | merged["value_db"].notna()
    np.testing.assert_array_equal(merged.loc[both, "value_direct"].to_numpy(), merged.loc[both, "value_db"].to_numpy())
    assert (merged["unit_direct"] == merged["unit_db"]).all()
    # movement measures were taken against the visit's rest photo (smiles come first in the manifest)
    assert set(got.loc[got["expression"] == "smile_open", "measure"]) >= {"commissure_movement", "commissure_movement_ratio"}
    # and the export files read back identically
    for fmt in ("csv", "parquet", "xlsx"):
        path = tmp_path / f"export.{fmt}"
        write_export(export, fmt, path)
        back = read_export(path)
        pd.testing.assert_frame_equal(back, export, check_dtype=False, check_exact=fmt != "xlsx", rtol=1e-12)


def test_measured_movement_matches_the_known_phantom_movement(cohort):
    _, store, _ = cohort
    m = store.measurements()
    move = m[(m["expression"] == "smile_open") & (m["measure"] == "commissure_movement")]
    for (patient, phase), g in move.groupby(["patient", "phase"]):
        affected = g["affected_side"].iloc[0]
        healthy = "right" if affected == "left" else "left"
        days = {"pre-op": -10, "early": 9, "late": 200}[phase]
        _, _, aff_mm, healthy_mm = next(v for v in VISITS if v[0] == days)
        got_aff = float(g.loc[g["side"] == affected, "value"].iloc[0])
        got_healthy = float(g.loc[g["side"] == healthy, "value"].iloc[0])
        # sides survive the mirrored (selfie) visit: the affected side stays the one that moves less
        assert got_aff == pytest.approx(np.hypot(*aff_mm), abs=0.6), (patient, phase)
        assert got_healthy == pytest.approx(np.hypot(*healthy_mm), abs=0.6), (patient, phase)


def test_second_ingest_adds_nothing(cohort, landmarker):
    manifest, store, _ = cohort
    before = export_frame(store)
    n_files = sum(1 for _ in store.media_dir.rglob("*") if _.is_file())
    again = ingest_manifest(store, manifest, landmarker=landmarker)
    assert (again.added, again.already_present, again.remeasured, again.measurement_rows) == (0, 12, 0, 0)
    assert len(again.problems) == 2  # the same two bad rows, reported again
    pd.testing.assert_frame_equal(export_frame(store), before)
    assert sum(1 for _ in store.media_dir.rglob("*") if _.is_file()) == n_files


def test_same_photo_under_another_patient_is_refused(cohort, tmp_path, landmarker):
    manifest, store, _ = cohort
    photo = manifest.parent / "P01_v0_rest.png"
    other = write_manifest(tmp_path / "m.csv", [{"patient": "P99", "visit_date": "2024-05-01", "expression": "rest", "path": str(photo)}])
    report = ingest_manifest(store, other, landmarker=landmarker)
    assert report.added == 0
    (problem,) = report.problems
    assert "already stored as patient P01, visit 2024-02-20, rest" in problem.reason


def test_rest_photo_or_affected_side_arriving_later_remeasures(tmp_path, landmarker):
    folder = tmp_path / "photos"
    full = build_cohort(folder, landmarker, patients=PATIENTS[:1], visits=VISITS[:1], bad_rows=False)
    rows = list(csv.DictReader(open(full)))
    smile = [dict(r, affected_side="", aetiology="", cohort="", procedure="", procedure_date="") for r in rows if r["expression"] == "smile_open"]
    rest = [r for r in rows if r["expression"] == "rest"]
    store = open_store(home=tmp_path / "home")
    first = ingest_manifest(store, write_manifest(folder / "smile.csv", smile), landmarker=landmarker)
    assert (first.added, first.remeasured) == (1, 0)
    m = store.measurements()
    assert not m["measure"].str.startswith("commissure_movement").any()
    assert not m["measure"].str.endswith("_ratio").any()
    second = ingest_manifest(store, write_manifest(folder / "rest.csv", rest), landmarker=landmarker)
    assert (second.added, second.remeasured) == (1, 1)
    m = store.measurements()
    smile_rows = m[m["expression"] == "smile_open"]
    assert smile_rows["measure"].str.startswith("commissure_movement").any()
    assert smile_rows["measure"].str.endswith("_ratio").any()  # the affected side came with the rest row
    assert store.recordings().set_index("expression").loc["smile_open", "rest_sha256"] == file_sha256(folder / rest[0]["path"])
    third = ingest_manifest(store, full, landmarker=landmarker)
    assert (third.added, third.remeasured, third.already_present) == (0, 0, 2)


# --------------------------------------------------------------------------- crash safety


def _rows_per_recording(home: Path) -> dict[str, int]:
    con = sqlite3.connect(home / "symmetry.sqlite3")
    try:
        return dict(
            con.execute(
                "SELECT r.sha256, COUNT(m.id) FROM recording r LEFT JOIN measurement m ON m.recording_id = r.id GROUP BY r.id"
            ).fetchall()
        )
    finally:
        con.close()


def _consistency_problems(home: Path, expected_rows: dict[str, int]) -> list[str]:
    """What a consistent store must satisfy after any crash.

    ``expected_rows`` maps each photo's SHA-256 to its number of measurement rows
    in an uninterrupted ingest: a recording is there with all of them or not at all.
    """
    problems = []
    con = sqlite3.connect(home / "symmetry.sqlite3")
    try:
        if con.execute("PRAGMA integrity_check").fetchone()[0] != "ok":
            problems.append("integrity_check failed")
        if con.execute("PRAGMA foreign_key_check").fetchall():
            problems.append("dangling foreign keys")
        media = dict(con.execute("SELECT sha256, media_path FROM recording").fetchall())
        empty_visits = con.execute(
            "SELECT COUNT(*) FROM visit v WHERE NOT EXISTS (SELECT 1 FROM recording r WHERE r.visit_id = v.id)"
        ).fetchone()[0]
    finally:
        con.close()
    if empty_visits:
        problems.append(f"{empty_visits} visit(s) without recordings")
    for sha, n in _rows_per_recording(home).items():
        if n != expected_rows.get(sha):
            problems.append(f"recording {sha[:8]} has {n} measurement rows, expected {expected_rows.get(sha)}")
        path = home / "media" / media[sha]
        if not path.is_file():
            problems.append(f"recording {sha[:8]}: stored copy missing")
        else:
            try:
                read_image(path)  # complete and decodable
            except ImageReadError as exc:
                problems.append(f"recording {sha[:8]}: stored copy unreadable ({exc.reason})")
    return problems


def test_ingest_killed_midway_leaves_a_consistent_database(cohort, tmp_path, landmarker):
    manifest, reference_store, _ = cohort
    home = tmp_path / "home"
    env = dict(os.environ, SYMMETRY_HOME=str(home))
    env.pop("SYMMETRY_DATABASE_URL", None)
    proc = subprocess.Popen(
        [sys.executable, "-m", "symmetry.cli", "ingest", str(manifest)],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    db = home / "symmetry.sqlite3"
    n_at_kill = 0
    deadline = time.monotonic() + 120
    try:
        while time.monotonic() < deadline and proc.poll() is None:
            if db.exists():
                try:
                    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=1)
                    n_at_kill = con.execute("SELECT COUNT(*) FROM recording").fetchone()[0]
                    con.close()
                except sqlite3.Error:
                    n_at_kill = 0  # schema not there yet
                if n_at_kill >= 3:
                    time.sleep(0.137)  # somewhere inside the next photo's work
                    break
            time.sleep(0.01)
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL, "the ingest finished before it could be killed"
    assert 3 <= n_at_kill < 12
    expected_rows = _rows_per_recording(reference_store.home)
    assert _consistency_problems(home, expected_rows) == []
    partial = open_store(home=home)
    assert 3 <= len(partial.recordings()) < 12
    # the next ingest completes the job, and the result equals an uninterrupted ingest
    resumed = ingest_manifest(partial, manifest, landmarker=landmarker)
    assert resumed.added + resumed.already_present == 12
    assert _consistency_problems(home, expected_rows) == []
    pd.testing.assert_frame_equal(export_frame(partial), export_frame(reference_store))
    partial.close()


def test_expressions_are_the_standard_set():
    assert EXPRESSIONS == ("rest", "brow_raise", "eye_closure_gentle", "eye_closure_tight", "smile_closed",
                           "smile_open", "pucker", "lower_teeth", "snarl")


# --------------------------------------------------------------------------- CLI


def test_cli_ingest_and_export(tmp_path, monkeypatch, capsys, cohort):
    from symmetry.cli import main

    manifest, _, _ = cohort
    rows = list(csv.DictReader(open(manifest)))[:2] + [{"patient": "P01", "visit_date": "2024-02-20", "expression": "snarl", "path": "missing.jpg"}]
    for r in rows:
        r["path"] = str(manifest.parent / r["path"])
    small = write_manifest(tmp_path / "small.csv", rows)
    monkeypatch.setenv("SYMMETRY_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("SYMMETRY_DATABASE_URL", raising=False)
    assert main(["ingest", str(small)]) == 2
    err = capsys.readouterr().err
    assert "error: small.csv:4: " in err and "missing.jpg: file not found" in err
    assert "2 recording(s) added" in err
    assert main(["export"]) == 0
    out = capsys.readouterr().out
    frame = pd.read_csv(io.StringIO(out))
    assert list(frame.columns) == list(EXPORT_COLUMNS) and set(frame["expression"]) == {"rest", "smile_open"}
    assert main(["export", "--out", str(tmp_path / "x.parquet")]) == 0
    assert len(pd.read_parquet(tmp_path / "x.parquet")) == len(frame)
    assert main(["ingest", str(tmp_path / "none.csv")]) == 2
    assert "manifest not found" in capsys.readouterr().err
