"""The Streamlit app, page by page, with Streamlit's AppTest (in-process, no browser).

A small database is built once for the module from the bundled sample media (photos
warped from the two public-domain portraits): the demo patient at its pre-op and
12-month visits, and two patients of each demo cohort at their first and last visits.
"""

from __future__ import annotations

import csv
import datetime as dt
from pathlib import Path

import pytest

pytest.importorskip("streamlit")
pytest.importorskip("plotly")

from conftest import symmetry_home_env  # noqa: E402
from streamlit.testing.v1 import AppTest  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
APP = str(ROOT / "app.py")
SAMPLES = ROOT / "sample_media"
MANIFEST = SAMPLES / "manifest.csv"
TIMEOUT = 180


def _subset(rows: list[dict[str, str]]) -> list[dict[str, str]]:
    """Demo patient (pre-op and last visit: rest, smile, "eee", pucker) and two patients per cohort
    (first and last visit: rest, smile)."""
    out = []
    by_patient: dict[str, list[dict[str, str]]] = {}
    for r in rows:
        by_patient.setdefault(r["patient"], []).append(r)
    cohorts: dict[str, list[str]] = {}
    for code, prow in sorted(by_patient.items()):
        label = prow[0]["cohort"]
        if label:
            cohorts.setdefault(label, []).append(code)
    chosen = {"DEMO": ("rest", "smile_open", "lower_teeth", "pucker")}
    for codes in cohorts.values():
        for code in codes[:2]:
            chosen[code] = ("rest", "smile_open")
    for code, expressions in chosen.items():
        prow = by_patient[code]
        dates = sorted({r["visit_date"] for r in prow})
        for r in prow:
            if r["visit_date"] in (dates[0], dates[-1]) and r["expression"] in expressions:
                out.append({**r, "path": str((SAMPLES / r["path"]).resolve())})
    return out


@pytest.fixture(scope="module")
def app_home(tmp_path_factory):
    """SYMMETRY_HOME with the small ingested cohort; the environment points at it during the module."""
    if not MANIFEST.exists():
        pytest.skip("sample_media/manifest.csv is missing (regenerate with python -m symmetry.sample_data)")
    from symmetry.ingest import ingest_manifest
    from symmetry.store import open_store

    home = tmp_path_factory.mktemp("symmetry-home")
    with open(MANIFEST, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    subset = _subset(rows)
    manifest = home / "subset.csv"
    with open(manifest, "w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, list(rows[0].keys()))
        w.writeheader()
        w.writerows(subset)
    with open_store(home=home) as store:
        report = ingest_manifest(store, manifest)
    assert report.ok, report.problems
    with symmetry_home_env(home):
        yield home


def _app() -> AppTest:
    at = AppTest.from_file(APP, default_timeout=TIMEOUT)
    return at.run()


def _page(page: str) -> AppTest:
    at = _app()
    return at.switch_page(f"app_pages/{page}.py").run()


def _texts(at: AppTest) -> str:
    parts = [e.value for e in at.markdown] + [e.value for e in at.caption] + [e.value for e in at.info]
    parts += [e.value for e in at.success] + [e.value for e in at.warning] + [e.value for e in at.error]
    return "\n".join(str(p) for p in parts)


def _no_exception(at: AppTest) -> None:
    assert not at.exception, [e.value for e in at.exception]


def _photo(path: Path) -> tuple[str, bytes, str]:
    mime = "image/png" if path.suffix == ".png" else "image/jpeg"
    return path.name, path.read_bytes(), mime


# --------------------------------------------------------------------------- measure page


def test_measure_page_opens_with_instructions(app_home):
    at = _app()
    _no_exception(at)
    assert at.title[0].value == "Measure photos and videos"
    assert "No photos yet" in at.info[0].value
    assert at.file_uploader[0].accept_multiple_files
    assert "DEMO" in at.selectbox[0].options  # the patient list comes from the database


def test_measure_upload_shows_per_side_measures(app_home):
    at = _app()
    at.file_uploader[0].upload(*_photo(SAMPLES / "obama.jpg"))
    at.run()
    _no_exception(at)
    assert not at.error
    labels = {m.label: m.value for m in at.metric}
    assert set(labels) >= {"Mouth corner height", "Eye opening", "Brow height"}
    assert all(v.endswith(" mm") and v != "— mm" for v in labels.values())
    table = at.dataframe[0].value
    assert list(table.columns[:5]) == ["Measure", "Unit", "Patient's right", "Patient's left", "|L − R|"]
    row = table[table["Measure"] == "Eye opening (palpebral fissure)"].iloc[0]
    assert 2.0 < row["Patient's right"] < 15.0 and 2.0 < row["Patient's left"] < 15.0
    assert abs(row["|L − R|"] - abs(row["Patient's left"] - row["Patient's right"])) < 1e-6
    assert len(at.image) >= 2  # thumbnail and annotated overlay
    assert "mm per pixel" in _texts(at)
    # the tag was suggested (nothing in the name: rest) and can be changed
    assert at.selectbox(key=at.selectbox[-1].key).value == "Rest (face relaxed)"


def test_measure_rest_and_smile_give_movement_and_ratios(app_home):
    visit = SAMPLES / "demo" / "2024-05-13_3m"
    at = _app()
    at.radio[0].set_value("left")
    at.file_uploader[0].upload(*_photo(visit / "rest.jpg")).upload(*_photo(visit / "smile_open.jpg"))
    at.run()
    _no_exception(at)
    tags = [s.value for s in at.selectbox if s.label in ("rest.jpg", "smile_open.jpg")]
    assert tags == ["Rest (face relaxed)", "Big smile (teeth)"]
    smile = at.dataframe[1].value
    assert "Patient's left (affected)" in smile.columns and "Affected ÷ healthy" in smile.columns
    move = smile[smile["Measure"] == "Mouth corner movement from rest"].iloc[0]
    # the demo patient's left smile is the weaker one at 3 months (truth: about 5.8 mm vs 9 mm)
    assert 2.0 < move["Patient's left (affected)"] < move["Patient's right"]
    assert 0.2 < move["Affected ÷ healthy"] < 1.0
    assert "Movement measured against the rest photo *rest.jpg*." in _texts(at)


def test_bad_file_gives_a_readable_error(app_home):
    at = _app()
    at.file_uploader[0].upload("notaphoto.jpg", b"this is a text file, not a photo", "image/jpeg")
    at.run()
    _no_exception(at)
    errors = [e.value for e in at.error]
    assert len(errors) == 1
    assert errors[0].startswith("Could not measure notaphoto.jpg: ")
    assert "symmetry-app" not in errors[0]  # the temporary copy's path is not shown


def test_the_bad_input_corpus_gives_one_readable_message_per_file(app_home, tmp_path):
    """Every file of the hardening corpus, uploaded with a good photo: one readable error each
    (the file's name and the reason, no traceback), and the good photo is still measured."""
    from corpus import BAD_PHOTO_REASONS, bad_photos

    at = _app()
    uploader = at.file_uploader[0]
    uploader.upload(*_photo(SAMPLES / "demo" / "2024-05-13_3m" / "rest.jpg"))
    for name, path in bad_photos(tmp_path).items():
        uploader.upload(name, path.read_bytes(), "image/png" if name.endswith(".png") else "image/jpeg")
    at.run()
    _no_exception(at)
    errors = [str(e.value) for e in at.error]
    assert len(errors) == len(BAD_PHOTO_REASONS), errors
    for name, words in BAD_PHOTO_REASONS.items():
        mine = [e for e in errors if e.startswith(f"Could not measure {name}: ")]
        assert len(mine) == 1 and words in mine[0], (name, errors)
        assert "Traceback" not in mine[0] and "symmetry-app" not in mine[0]
    assert at.dataframe, "the good photo's measures are shown"


def test_upload_over_the_size_limit_is_refused(app_home):
    from streamlit import config

    before = config.get_option("server.maxUploadSize")
    config.set_option("server.maxUploadSize", 1)  # MB
    try:
        at = _app()
        at.file_uploader[0].upload("huge.jpg", b"\xff" * (1024 * 1024 + 10), "image/jpeg")
        at.run()
    finally:
        config.set_option("server.maxUploadSize", before)
    _no_exception(at)
    errors = [e.value for e in at.error]
    assert any("huge.jpg is 1.0 MB, over the upload limit of 1 MB per file" in e for e in errors), errors
    assert not at.metric  # nothing was measured


def test_save_to_database_is_idempotent(app_home):
    from symmetry.store import open_store

    visit = SAMPLES / "demo" / "2024-02-26_2w"
    at = _app()
    at.text_input[0].set_value("T01")
    at.radio[0].set_value("right")
    at.file_uploader[0].upload(*_photo(visit / "rest.jpg")).upload(*_photo(visit / "pucker.jpg"))
    at.date_input[0].set_value(dt.date(2024, 2, 26))
    at.run()
    _no_exception(at)
    save = next(b for b in at.button if b.label == "Save to database")
    save.click().run()
    _no_exception(at)
    assert any("Saved for T01, visit 2024-02-26: 2 new" in s.value for s in at.success), _texts(at)
    with open_store(home=app_home) as store:
        rec = store.recordings("T01")
        assert sorted(rec["expression"]) == ["pucker", "rest"]
        assert store.patients().set_index("patient").loc["T01", "affected_side"] == "right"
        pucker = store.measurements("T01").query("expression == 'pucker' and measure == 'commissure_movement'")
        assert len(pucker) == 2  # measured against the rest photo saved with it
    save = next(b for b in at.button if b.label == "Save to database")
    save.click().run()
    assert any("0 new, 2 already in the database" in s.value for s in at.success), _texts(at)


# --------------------------------------------------------------------------- patient page


def test_patient_page_timeline_trends_and_panels(app_home):
    at = _page("patient")
    _no_exception(at)
    assert at.title[0].value == "Follow a patient"
    assert at.selectbox(key="patient_select").value == "DEMO"
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Affected side"] == "left" and metrics["Aetiology"] == "Bell's palsy"
    charts = at.get("plotly_chart")
    assert len(charts) >= 4  # timeline, trends, synkinesis, eFACE
    frames = [d.value for d in at.dataframe]
    visits = frames[0]
    assert list(visits["Phase"]) == ["pre-op", "late (> 4 months)"]
    changes = frames[1]
    assert "Big smile · Mouth corner movement from rest (affected side)" in set(changes["Measure"])
    text = _texts(at)
    assert "within test-retest noise" in text
    # before/after: the pre-op and last visit's annotated smiles side by side
    assert len(at.image) == 2
    assert next(s for s in at.selectbox if s.label == "Expression").value == "smile_open"
    # oral competence: a verdict is always shown
    assert ("No oral-competence proxy worsened" in text) or ("oral competence" in text.lower())


def test_patient_page_clinician_scores_and_report(app_home):
    at = _page("patient")
    at.selectbox(key="patient_select").set_value("DEMO").run()
    instrument = next(s for s in at.selectbox if s.label == "Instrument")
    instrument.set_value("sunnybrook").run()
    _no_exception(at)
    at.number_input(key="score_sunnybrook_composite").set_value(62)
    next(b for b in at.button if b.label == "Save scores").click().run()
    _no_exception(at)
    assert any("1 score(s) saved for DEMO" in s.value for s in at.success), _texts(at)
    scores = next(d.value for d in at.dataframe if "Score" in d.value.columns)
    assert "Sunnybrook facial grading: composite" in set(scores["Score"])

    next(b for b in at.button if b.label == "Prepare report").click().run()
    _no_exception(at)
    downloads = [b for b in at.download_button if "report" in b.label]
    assert downloads and downloads[0].label == "Download DEMO report (PDF)"


# --------------------------------------------------------------------------- cohort page


def test_cohort_page_statistics_plots_and_downloads(app_home):
    at = _page("cohort")
    _no_exception(at)
    assert at.title[0].value == "Compare cohorts"
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Patients chosen"] == "4"  # the demo patient has no cohort label
    assert metrics["With a pre-op and a post-op visit"] == "4"
    tests = at.dataframe[0].value
    smile = tests[tests["Measure"] == "Big smile · Mouth corner movement from rest (affected side) (mm)"].iloc[0]
    assert smile["n"] == 4
    assert smile["Mean change (95% CI)"].startswith("+")  # both arms gain smile excursion
    comparison = at.dataframe[1].value
    assert {"Change myectomy", "Change neurectomy", "p Welch t"} <= set(comparison.columns)
    assert len(at.get("plotly_chart")) == 3  # distribution, pre/post lines, spaghetti
    labels = [b.label for b in at.download_button]
    assert {"Download CSV", "Download Excel", "Download Parquet", "Statistics as CSV"} <= set(labels)
    # filters: one cohort alone has no comparison
    at.multiselect[0].set_value(["neurectomy"]).run()
    _no_exception(at)
    assert {m.label: m.value for m in at.metric}["Patients chosen"] == "2"
    assert "Choose at least two cohorts" in _texts(at)


def test_cohort_page_models_fit(app_home):
    at = _page("cohort")
    next(b for b in at.button if b.label == "Fit the models").click().run()
    _no_exception(at)
    frames = [d.value for d in at.dataframe if "Term" in d.value.columns]
    assert frames, [list(d.value.columns) for d in at.dataframe]
    assert {"pre-op level", "late vs pre-op"} <= set(frames[0]["Term"])


# --------------------------------------------------------------------------- video page


def test_video_page_analyses_the_demo_video(app_home):
    from app_pages._common import DEMO_VIDEO, video_available

    if video_available() or not DEMO_VIDEO.exists():
        pytest.skip(video_available() or "no demo video")
    at = _page("video")
    _no_exception(at)
    assert "Drop a clinic video" in at.info[0].value
    at.radio[0].set_value(at.radio[0].options[1]).run()
    _no_exception(at)
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Duration"] == "16.5 s"
    assert int(metrics["Expression events"]) >= 3
    assert len(at.get("plotly_chart")) == 1
    events = at.dataframe[0].value
    assert {"smile open", "smile closed"} & set(events["Event"])
    indicators = at.dataframe[1].value
    assert "Smile → eye narrowing" in set(indicators["Indicator"])
    assert len(at.image) >= 2  # key frames
    assert any(b.label == "Draw the annotated video" for b in at.button)


def test_video_page_says_when_video_analysis_is_unavailable(app_home, monkeypatch):
    import app_pages._common as common

    monkeypatch.setattr(common, "video_available", lambda: "video analysis is not available in this version (test)")
    at = _page("video")
    _no_exception(at)
    assert "Video analysis is not available in this version" in at.info[0].value


# --------------------------------------------------------------------------- the frame


def test_password_gate_when_configured(app_home):
    at = AppTest.from_file(APP, default_timeout=TIMEOUT)
    at.secrets["symmetry"] = {"password": "open sesame"}
    at.run()
    _no_exception(at)
    assert not at.title or at.title[0].value == "symmetry"
    assert at.text_input[0].label == "Password"
    at.text_input[0].input("wrong")
    at.button[0].click().run()
    assert at.error[0].value == "Wrong password."
    at.text_input[0].input("open sesame")
    at.button[0].click().run()
    _no_exception(at)
    assert at.title[0].value == "Measure photos and videos"


def test_unusable_database_is_a_readable_message(app_home, monkeypatch):
    monkeypatch.setenv("SYMMETRY_DATABASE_URL", "nosuchdriver://user@host/db")
    at = _app()
    _no_exception(at)
    assert at.error and at.error[0].value.startswith("Cannot read the database")
