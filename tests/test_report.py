"""Patient reports: self-contained HTML, PDF, plots, and the CLI commands that read the store."""

from __future__ import annotations

import base64
import datetime as dt
import io
import json
import re

import pandas as pd
import pytest
from matplotlib.figure import Figure
from PIL import Image

from symmetry.report import ReportContext, plot_measure_trend, write_html, write_report
from symmetry.trends import patient_outcomes

_DATA_URI = re.compile(r"data:image/(png|jpeg);base64,([A-Za-z0-9+/=]+)")


@pytest.fixture(scope="module")
def home(tmp_path_factory, landmarker):
    """A store with one patient: pre-op and late visit, rest + smile each, and two clinician scores."""
    from test_ingest import PATIENTS, VISITS, build_cohort

    from symmetry.ingest import ingest_manifest
    from symmetry.store import open_store

    folder = tmp_path_factory.mktemp("report")
    manifest = build_cohort(folder / "photos", landmarker, patients=PATIENTS[:1], visits=VISITS[::2], bad_rows=False)
    with open_store(home=folder / "home") as store:
        assert ingest_manifest(store, manifest, landmarker=landmarker).added == 4
        store.add_scores("P01", dt.date(2024, 9, 17), {("sunnybrook", "composite"): 62}, rater="AB")
    return folder / "home"


@pytest.fixture
def cli(home, monkeypatch):
    from symmetry.cli import main

    monkeypatch.setenv("SYMMETRY_HOME", str(home))
    monkeypatch.delenv("SYMMETRY_DATABASE_URL", raising=False)
    return main


def _external_refs(doc: str) -> list[str]:
    stripped = _DATA_URI.sub("data:", doc)
    return re.findall(r"""(?:src|href)\s*=\s*["']?(?!data:)[^"'\s>]+""", stripped) + re.findall(r"https?://", stripped)


def test_html_report_is_self_contained_with_overlays_plots_and_tables(cli, tmp_path, capsys):
    out = tmp_path / "report.html"
    assert cli(["report", "P01", "--out", str(out)]) == 0
    doc = out.read_text()
    assert _external_refs(doc) == []
    images = _DATA_URI.findall(doc)
    kinds = [k for k, _ in images]
    assert kinds.count("png") == 2  # trend grid and eFACE-style plot
    assert kinds.count("jpeg") == 4  # rest and smile at the pre-op and the late visit
    for _, payload in images:
        Image.open(io.BytesIO(base64.b64decode(payload))).verify()
    for text in ("Patient P01", "affected side: left", "selective denervation", "approximation",
                 "commissure_movement_asymmetry", "more symmetric", "sunnybrook composite", "within measurement noise"):
        assert text in doc, text
    assert "report written to" in capsys.readouterr().err


def test_pdf_report(cli, tmp_path):
    out = tmp_path / "report.pdf"
    assert cli(["report", "P01", "--out", str(out)]) == 0
    data = out.read_bytes()
    assert data.startswith(b"%PDF") and data.rstrip().endswith(b"%%EOF")
    n_pages = len(re.findall(rb"/Type\s*/Page[^s]", data))
    assert n_pages >= 5  # summary, deltas, trends, eFACE plot and table, scores, photos


def test_report_refuses_other_suffixes_and_unknown_patients(cli, tmp_path, capsys):
    assert cli(["report", "P01", "--out", str(tmp_path / "r.docx")]) == 1
    assert "must end in .html or .pdf" in capsys.readouterr().err
    assert cli(["report", "P77", "--out", str(tmp_path / "r.html")]) == 1
    assert "no measurements for patient 'P77'; patients: P01" in capsys.readouterr().err
    with pytest.raises(ValueError, match="must end in .html or .pdf"):
        write_report(tmp_path / "r.txt", ReportContext(outcomes=None))  # type: ignore[arg-type]


def test_outcomes_cli_table_and_json(cli, capsys):
    assert cli(["outcomes", "P01"]) == 0
    out = capsys.readouterr().out
    assert re.search(r"2024-02-20 +day -10 +pre-op", out) and re.search(r"2024-09-17 +day 200 +late", out)
    assert "APPROXIMATION" in out and "sunnybrook composite = 62" in out
    assert re.search(r"smile_open\s+commissure_movement_asymmetry\s+midline\s+5\.\d\d\s+2\.\d\d\s+-2\.\d\d\s+mm more symmetric", out)
    assert cli(["outcomes", "P01", "--format", "json"]) == 0
    payload = json.loads(capsys.readouterr().out)
    assert payload["affected_side"] == "left" and payload["oral_competence_flag"] is False
    assert {d["phase"] for d in payload["deltas"]} == {"late"}
    assert any(e["item"] == "oral_commissure_smile" for e in payload["eface_approximation"])


def test_cohort_and_score_cli(cli, capsys):
    assert cli(["cohort", "--format", "json", "--n-boot", "200"]) == 0
    payload = json.loads(capsys.readouterr().out)
    assert {r["group"] for r in payload["paired"]} == {"all", "pilot", "sd"}
    assert all(r["n"] == 1 for r in payload["paired"])  # one patient: descriptive only
    assert payload["between"] == [] and "patients in more than one compared cohort" in payload["notes"][0]
    assert cli(["score", "P01", "2024-09-17", "house_brackmann.grade=2", "saq.total=21", "--rater", "AB"]) == 0
    assert "2 score(s) stored" in capsys.readouterr().err
    assert cli(["score", "P01", "2024-09-17", "house_brackmann.grade=9"]) == 1
    assert "between 1 and 6" in capsys.readouterr().err
    assert cli(["score", "P01", "2024-09-17", "grade=2"]) == 1
    assert "INSTRUMENT.ITEM=VALUE" in capsys.readouterr().err
    assert cli(["patients"]) == 0
    assert "P01" in capsys.readouterr().out


def _frame_with_flag() -> pd.DataFrame:
    from test_trends import rows

    return pd.DataFrame(
        rows("A", -5, "lower_teeth", {("lower_lip_movement", "left"): -4.0, ("lower_lip_movement", "right"): -4.5})
        + rows("A", -5, "rest", {("commissure_y_asymmetry", "midline"): 3.0})
        + rows("A", 300, "lower_teeth", {("lower_lip_movement", "left"): -1.0, ("lower_lip_movement", "right"): -4.4})
        + rows("A", 300, "rest", {("commissure_y_asymmetry", "midline"): 1.0})
    )


def test_html_shows_the_oral_competence_flag(tmp_path):
    o = patient_outcomes(_frame_with_flag(), "A")
    assert o.oral_competence_flag and o.oral_competence_persistent
    doc = write_html(tmp_path / "a.html", ReportContext(outcomes=o)).read_text()
    assert "class='flag'" in doc and "FLAG - oral competence" in doc and "persists at the last late visit" in doc
    assert "lower_lip_depression_on_eee worse by 3.0 mm" in doc
    assert _external_refs(doc) == []


def test_trend_plot_draws_phases_noise_band_and_thresholds():
    o = patient_outcomes(_frame_with_flag(), "A")
    ax = Figure().subplots()
    assert plot_measure_trend(o.series, "rest", "commissure_y_asymmetry", "midline", ax=ax) is ax
    labels = [p.get_label() for p in ax.patches]
    assert "noise ±1.5 mm" in labels and "swelling (early)" in labels and "settling" in labels
    dashed = [ln for ln in ax.lines if ln.get_linestyle() == "--"]
    assert sorted(ln.get_ydata()[0] for ln in dashed) == [0.0, 6.0]  # baseline 3 mm ± 3 mm (mouth)
    (data,) = [ln for ln in ax.lines if ln.get_marker() == "o"]
    assert list(data.get_xdata()) == [-5.0, 300.0] and list(data.get_ydata()) == [3.0, 1.0]
    empty = Figure().subplots()
    plot_measure_trend(o.series, "pucker", "mrd1", "left", ax=empty)
    assert empty.texts[0].get_text() == "no data"
