"""The store: locations, migrations, model rules, scores, and the same on a real PostgreSQL server."""

from __future__ import annotations

import datetime as dt
import math
import os
import uuid
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sqlalchemy import create_engine, inspect, select, text
from sqlalchemy.exc import IntegrityError

from symmetry.migrations import current_revision, head_revision
from symmetry.store import (
    Aetiology,
    Measurement,
    Patient,
    Procedure,
    Recording,
    StoreError,
    Visit,
    export_frame,
    get_or_create_visit,
    normalise_aetiology,
    open_store,
    refresh_timeline,
    resolve_database_url,
    symmetry_home,
    validate_score,
)

POSTGRES_ENV = "SYMMETRY_TEST_POSTGRES_URL"


# --------------------------------------------------------------------------- locations


def test_home_and_database_url_resolution(tmp_path):
    assert symmetry_home({"SYMMETRY_HOME": str(tmp_path)}) == tmp_path
    default = symmetry_home({})
    assert default.name == "symmetry" and default.is_absolute()
    url = resolve_database_url(home=tmp_path, env={})
    assert url.get_backend_name() == "sqlite" and url.database == str(tmp_path / "symmetry.sqlite3")
    env = {"SYMMETRY_DATABASE_URL": "postgresql+psycopg://u:secret@db.example/clinic"}
    assert resolve_database_url(env=env).get_backend_name() == "postgresql"
    assert resolve_database_url("other.db", env=env).database == "other.db"  # a path is an SQLite file
    assert resolve_database_url("sqlite://", env={}).database is None
    for bad in ("bad url://x", "postgresql://u@h:port/db"):
        with pytest.raises(StoreError, match="not a database URL"):
            resolve_database_url(bad, env={})
    with pytest.raises(StoreError, match="cannot use database nosuchdialect://"):
        open_store("nosuchdialect://", home=tmp_path)


def test_password_is_hidden_in_messages(tmp_path):
    with pytest.raises(StoreError) as info:
        open_store("postgresql+psycopg://user:s3cret@127.0.0.1:1/nodb", home=tmp_path)
    assert "s3cret" not in str(info.value) and "***" in str(info.value)


# --------------------------------------------------------------------------- migrations


def _assert_schema_matches_models(engine) -> None:
    from alembic.autogenerate import compare_metadata
    from alembic.runtime.migration import MigrationContext

    from symmetry.store import Base

    with engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn, opts={"compare_type": True}), Base.metadata)
    assert diff == []


def test_open_migrates_a_new_file_database_to_head(tmp_path):
    store = open_store(home=tmp_path)
    assert Path(store.url.database).is_file()
    assert current_revision(store.engine) == head_revision() == "0002"
    assert {"patient", "patient_cohort", "procedure", "visit", "recording", "measurement", "clinician_score",
            "stimulation_map", "stimulation_branch", "stimulation_movement"} <= set(inspect(store.engine).get_table_names())
    _assert_schema_matches_models(store.engine)
    store.close()
    again = open_store(home=tmp_path)  # no-op upgrade
    assert current_revision(again.engine) == "0002"
    again.close()


def test_a_database_of_the_first_schema_is_upgraded_with_its_data(tmp_path):
    from sqlalchemy import create_engine, text

    from symmetry.migrations import upgrade

    url = f"sqlite:///{tmp_path / 'symmetry.sqlite3'}"
    engine = create_engine(url)
    upgrade(engine, "0001")
    with engine.begin() as conn:
        conn.execute(text("INSERT INTO patient (code, created_at) VALUES ('P01', CURRENT_TIMESTAMP)"))
    assert current_revision(engine) == "0001"
    engine.dispose()
    store = open_store(url, home=tmp_path)
    assert current_revision(store.engine) == head_revision()
    assert store.patients()["patient"].tolist() == ["P01"]
    assert store.stimulation("P01").empty
    _assert_schema_matches_models(store.engine)
    store.close()


def test_a_newer_schema_is_refused(tmp_path):
    store = open_store(home=tmp_path)
    with store.engine.begin() as conn:
        conn.execute(text("UPDATE alembic_version SET version_num = '9999'"))
    store.close()
    with pytest.raises(StoreError, match=r"newer than this symmetry knows .*upgrade symmetry"):
        open_store(home=tmp_path)


def test_without_migrate_an_empty_database_is_refused(tmp_path):
    with pytest.raises(StoreError, match="open it with migrate=True"):
        open_store(home=tmp_path, migrate=False)


# --------------------------------------------------------------------------- model rules


def _patient_with_visits(store, code="P01", procs=(dt.date(2024, 3, 1),), visits=(dt.date(2024, 2, 20), dt.date(2024, 3, 10))):
    with store.session(write=True) as s:
        p = Patient(code=code, affected_side="left", aetiology=Aetiology.BELLS_PALSY.value)
        s.add(p)
        for d in procs:
            p.procedures.append(Procedure(kind="selective denervation", date=d))
        s.flush()
        for d in visits:
            get_or_create_visit(s, p, d)


def test_visits_are_timed_against_the_procedure_and_retimed_when_one_is_added():
    store = open_store("sqlite://")
    _patient_with_visits(store, visits=(dt.date(2024, 2, 20), dt.date(2024, 3, 10), dt.date(2024, 9, 1)))
    v = store.visits("P01")
    assert v["days_from_procedure"].tolist() == [-10, 9, 184]
    assert v["phase"].tolist() == ["pre-op", "early", "late"]
    with store.session(write=True) as s:  # a revision operation in August
        p = s.scalar(select(Patient).where(Patient.code == "P01"))
        p.procedures.append(Procedure(kind="revision", date=dt.date(2024, 8, 20)))
        s.flush()
        refresh_timeline(s, p)
    v = store.visits("P01")
    assert v["days_from_procedure"].tolist() == [-10, 9, 12]
    assert v["procedure"].tolist() == ["selective denervation", "selective denervation", "revision"]


def test_constraints_hold():
    store = open_store("sqlite://")
    _patient_with_visits(store)
    with pytest.raises(IntegrityError):
        with store.session(write=True) as s:
            s.add(Patient(code="P01"))
    with pytest.raises(IntegrityError):
        with store.session(write=True) as s:
            s.add(Patient(code="P02", affected_side="up"))
    with pytest.raises(IntegrityError):  # foreign keys are enforced on SQLite too
        with store.session(write=True) as s:
            s.add(Recording(visit_id=999, expression="rest", sha256="0" * 64, media_path="x", algorithm_version="0"))
    assert store.patients()["patient"].tolist() == ["P01"]


def test_a_failed_transaction_leaves_nothing():
    store = open_store("sqlite://")
    with pytest.raises(RuntimeError):
        with store.session(write=True) as s:
            s.add(Patient(code="P05"))
            s.flush()
            raise RuntimeError("crash in the middle")
    assert store.patients().empty


def _add_recording(store, sha: str, values: dict[tuple[str, str], float]) -> None:
    with store.session(write=True) as s:
        visit = s.scalar(select(Visit).order_by(Visit.date))
        rec = Recording(visit=visit, expression="rest", sha256=sha, media_path=f"{sha[:2]}/{sha}.png", algorithm_version="0.1.0")
        rec.measurements = [
            Measurement(name=n, side=side, value=None if math.isnan(v) else v, unit="mm", algorithm_version="0.1.0")
            for (n, side), v in values.items()
        ]
        s.add(rec)


def test_measurements_frame_keeps_nan_and_cohorts():
    store = open_store("sqlite://")
    _patient_with_visits(store)
    with store.session(write=True) as s:
        p = s.scalar(select(Patient))
        from symmetry.store import PatientCohort

        p.cohorts += [PatientCohort(label="sd"), PatientCohort(label="pilot")]
    _add_recording(store, "ab" * 32, {("mrd1", "left"): 3.25, ("mrd1", "right"): float("nan")})
    m = store.measurements()
    assert m["cohort"].unique().tolist() == ["pilot;sd"]
    assert m["value"].iloc[0] == 3.25 and math.isnan(m["value"].iloc[1])
    assert m["phase"].iloc[0] == "pre-op" and m["days_from_procedure"].iloc[0] == -10
    assert list(export_frame(store).columns) == [
        "patient", "cohort", "visit_date", "days_from_procedure", "phase", "expression", "measure", "side", "value", "unit",
    ]


# --------------------------------------------------------------------------- clinician scores


@pytest.mark.parametrize(
    "instrument, item, value, message",
    [
        ("efase", "total", 50, "unknown instrument 'efase'; use one of eface, sunnybrook"),
        ("eface", "smile", 50, "unknown eface item 'smile'; use one of brow_rest"),
        ("sunnybrook", "composite", 101, "sunnybrook composite must be between -15 and 100"),
        ("house_brackmann", "grade", 2.5, "must be a whole number"),
        ("House-Brackmann", "grade", 7, "between 1 and 6"),
        ("saq", "total", 50, "between 9 and 45"),
        ("face", "total", float("nan"), "between 0 and 100"),
    ],
)
def test_invalid_scores_are_refused_with_a_reason(instrument, item, value, message):
    with pytest.raises(ValueError, match=message):
        validate_score(instrument, item, value)


def test_scores_are_stored_per_visit_and_replaced_per_rater():
    assert validate_score("House-Brackmann", "Grade", 3) == ("house_brackmann", "grade", 3.0)
    assert validate_score("eface", "brow_rest", 150)[2] == 150.0  # static eFACE items run to 200
    store = open_store("sqlite://")
    _patient_with_visits(store)
    day = dt.date(2024, 9, 1)
    assert store.add_scores("P01", day, {("sunnybrook", "composite"): 55, ("saq", "total"): 27}, rater="AB") == 2
    store.add_scores("P01", day, {("sunnybrook", "composite"): 60}, rater="AB")
    store.add_scores("P01", day, {("sunnybrook", "composite"): 58}, rater="CD")
    sc = store.scores("P01").set_index(["item", "rater"])["value"]
    assert sc.to_dict() == {("composite", "AB"): 60.0, ("composite", "CD"): 58.0, ("total", "AB"): 27.0}
    assert store.visits("P01")["visit_date"].tolist()[-1] == day  # the visit was created, and timed
    assert store.visits("P01")["phase"].tolist()[-1] == "late"
    with pytest.raises(StoreError, match="unknown patient 'P99'; patients: P01"):
        store.add_scores("P99", day, {("saq", "total"): 20})
    with pytest.raises(ValueError):
        store.add_scores("P01", day, {("saq", "total"): 20, ("saq", "total_x"): 20})
    assert len(store.scores("P01")) == 3  # nothing of the invalid batch stored


@pytest.mark.parametrize(
    "text_, value",
    [("Bell's palsy", "bells_palsy"), ("Ramsay Hunt", "ramsay_hunt"), ("acoustic neuroma", "acoustic_neuroma"),
     ("Nerve repair", "nerve_repair"), ("TRAUMA", "trauma"), ("vestibular schwannoma", "acoustic_neuroma")],
)
def test_aetiology_names(text_, value):
    assert normalise_aetiology(text_).value == value


# --------------------------------------------------------------------------- PostgreSQL


@pytest.fixture(scope="module")
def postgres_url():
    """A fresh database on the PostgreSQL server named by SYMMETRY_TEST_POSTGRES_URL, dropped afterwards."""
    base = os.environ.get(POSTGRES_ENV)
    if not base:
        pytest.skip(f"{POSTGRES_ENV} is not set (CI starts a local PostgreSQL server and sets it; see .ci/run)")
    from sqlalchemy.engine import make_url

    admin = create_engine(make_url(base), isolation_level="AUTOCOMMIT")
    name = f"symmetry_test_{uuid.uuid4().hex[:10]}"
    try:
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
    except Exception as exc:  # server down, or no CREATEDB right
        admin.dispose()
        pytest.skip(f"cannot create a test database on {make_url(base).render_as_string(hide_password=True)}: {exc}")
    yield make_url(base).set(database=name)
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


def test_postgres_migrates_and_matches_the_models(postgres_url, tmp_path):
    store = open_store(postgres_url.render_as_string(hide_password=False), home=tmp_path)
    assert store.engine.dialect.name == "postgresql"
    assert current_revision(store.engine) == head_revision()
    _assert_schema_matches_models(store.engine)
    store.close()


def test_postgres_round_trip_and_scores(postgres_url, tmp_path):
    store = open_store(postgres_url.render_as_string(hide_password=False), home=tmp_path)
    _patient_with_visits(store, code="PG1")
    _add_recording(store, "cd" * 32, {("mrd1", "left"): 3.25, ("mrd1", "right"): float("nan")})
    m = store.measurements("PG1")
    assert m["value"].iloc[0] == 3.25 and math.isnan(m["value"].iloc[1])
    store.add_scores("PG1", dt.date(2024, 9, 1), {("house_brackmann", "grade"): 2})
    assert store.scores("PG1")["value"].tolist() == [2.0]
    with pytest.raises(IntegrityError):
        with store.session(write=True) as s:
            s.add(Patient(code="PG1"))
    store.close()


def test_postgres_ingest_equals_sqlite_ingest(postgres_url, tmp_path, landmarker):
    """The same photos give the same export on PostgreSQL as on SQLite, and a second ingest adds nothing."""
    from test_ingest import PATIENTS, VISITS, build_cohort

    from symmetry.ingest import ingest_manifest

    manifest = build_cohort(tmp_path / "photos", landmarker, patients=PATIENTS[:1], visits=VISITS[::2], bad_rows=False)
    pg_store = open_store(postgres_url.render_as_string(hide_password=False), home=tmp_path / "pg")
    lite = open_store(home=tmp_path / "lite")
    first = ingest_manifest(pg_store, manifest, landmarker=landmarker)
    assert (first.added, first.problems) == (4, [])
    ingest_manifest(lite, manifest, landmarker=landmarker)
    pd.testing.assert_frame_equal(export_frame(pg_store, "P01"), export_frame(lite))  # PG1 is another test's
    again = ingest_manifest(pg_store, manifest, landmarker=landmarker)
    assert (again.added, again.already_present) == (0, 4)
    assert np.isfinite(export_frame(pg_store)["value"]).any()
    pg_store.close()
    lite.close()


def test_postgres_batch_equals_sqlite_ingest(postgres_url, tmp_path, landmarker):
    """``symmetry batch`` writes PostgreSQL with Core inserts (RETURNING): the same export as an ingest."""
    from test_ingest import PATIENTS, VISITS, build_cohort

    from symmetry.batch import local_client, run_batch
    from symmetry.ingest import ingest_manifest

    manifest = build_cohort(tmp_path / "photos", landmarker, patients=PATIENTS[1:], visits=VISITS[:2], bad_rows=False)
    pg_store = open_store(postgres_url.render_as_string(hide_password=False), home=tmp_path / "pg")
    lite = open_store(home=tmp_path / "lite")
    with local_client(1) as client:
        report = run_batch(pg_store, manifest, client=client)
        assert (report.added, report.failed) == (4, [])
        again = run_batch(pg_store, manifest, client=client)
        assert (again.added, again.skipped, again.failed) == (0, 4, [])
    ingest_manifest(lite, manifest, landmarker=landmarker)
    pd.testing.assert_frame_equal(export_frame(pg_store, "P02"), export_frame(lite))
    pg_store.close()
    lite.close()
