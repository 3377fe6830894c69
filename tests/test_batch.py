"""Batch: a real 2-worker Dask LocalCluster, a broken file, a re-run, and the same rows as ingest."""

from __future__ import annotations

import csv
import os
import sqlite3
from pathlib import Path

import pandas as pd
import pytest
from test_ingest import SAMPLES, build_cohort, write_manifest

from symmetry import ALGORITHM_VERSION
from symmetry.batch import BatchOptions, _Item, _measure_visit, _VisitTask, local_client, run_batch
from symmetry.ingest import file_sha256, ingest_manifest
from symmetry.store import open_store

#: Recording columns that must be identical between ``symmetry batch`` and ``symmetry ingest``.
_RECORDING_SQL = """
SELECT r.sha256, r.expression, r.mirrored, r.media_path, r.original_name, r.width_px, r.height_px,
       r.mm_per_px, r.mm_per_px_uncertainty, r.scale_source, r.head_yaw_deg, r.head_pitch_deg, r.head_roll_deg,
       r.warnings, r.refined_points, r.measured_affected_side, r.algorithm_version, rest.sha256 AS rest_sha256,
       p.code AS patient, v.date AS visit_date, v.phase, v.days_from_procedure
FROM recording r JOIN visit v ON v.id = r.visit_id JOIN patient p ON p.id = v.patient_id
LEFT JOIN recording rest ON rest.id = r.rest_recording_id
"""
_MEASUREMENT_SQL = """
SELECT r.sha256, m.name, m.side, m.value, m.unit, m.algorithm_version
FROM measurement m JOIN recording r ON r.id = m.recording_id
"""


def _table(home: Path, sql: str, key: list[str]) -> pd.DataFrame:
    con = sqlite3.connect(home / "symmetry.sqlite3")
    try:
        frame = pd.read_sql_query(sql, con)
    finally:
        con.close()
    return frame.sort_values(key).reset_index(drop=True)


def recordings_of(home: Path) -> pd.DataFrame:
    return _table(home, _RECORDING_SQL, ["sha256"])


def measurements_of(home: Path) -> pd.DataFrame:
    return _table(home, _MEASUREMENT_SQL, ["sha256", "name", "side"])


@pytest.fixture(scope="module")
def client():
    with local_client(2) as c:
        yield c


@pytest.fixture(scope="module")
def cohort(tmp_path_factory, landmarker):
    """12 good photos (2 patients x 3 visits x rest + smile), a broken file and a missing one."""
    folder = tmp_path_factory.mktemp("batch")
    return build_cohort(folder / "photos", landmarker)


@pytest.fixture(scope="module")
def ingested(cohort, tmp_path_factory, landmarker):
    """The reference: a plain sequential ingest of the same manifest."""
    home = tmp_path_factory.mktemp("ingest_home")
    with open_store(home=home) as store:
        report = ingest_manifest(store, cohort, landmarker=landmarker)
    assert report.added == 12
    return home


@pytest.fixture(scope="module")
def batched(cohort, client, tmp_path_factory):
    """The cohort measured by ``run_batch`` on the 2-worker cluster: (home, report, progress ticks)."""
    home = tmp_path_factory.mktemp("batch_home")
    ticks: list[tuple[int, int]] = []
    with open_store(home=home) as store:
        report = run_batch(store, cohort, client=client, progress=lambda n, total: ticks.append((n, total)))
    return home, report, ticks


def test_failed_files_are_recorded_with_their_reason_and_the_rest_stored(batched):
    _, report, ticks = batched
    assert (report.added, report.remeasured, report.skipped) == (12, 0, 0)
    assert report.workers == 2 and not report.ok
    reasons = {p.source: p.reason for p in report.failed}
    assert set(reasons) == {"manifest.csv:14", "manifest.csv:15"}
    assert "broken.jpg" in reasons["manifest.csv:14"] and "not an image" in reasons["manifest.csv:14"]
    assert "missing.jpg: file not found" in reasons["manifest.csv:15"]  # found by the client, never sent
    # progress counts every file sent to the workers, the broken one included
    assert ticks[-1] == (13, 13) and [n for n, _ in ticks] == sorted(n for n, _ in ticks)
    assert "12 done (12 added" in report.summary() and "2 failed" in report.summary()


def test_batch_stores_exactly_what_ingest_stores(batched, ingested):
    home, _, _ = batched
    pd.testing.assert_frame_equal(recordings_of(home), recordings_of(ingested))
    got, want = measurements_of(home), measurements_of(ingested)
    assert len(got) > 12 * 20
    pd.testing.assert_frame_equal(got, want, check_exact=True)
    # the stored (metadata-stripped) copies are byte for byte the same files
    for rel in recordings_of(home)["media_path"]:
        assert (home / "media" / rel).read_bytes() == (ingested / "media" / rel).read_bytes()
    with open_store(home=home) as a, open_store(home=ingested) as b:
        pd.testing.assert_frame_equal(a.visits("P01"), b.visits("P01"))
        pd.testing.assert_frame_equal(a.patients(), b.patients())


def test_workers_use_one_core_each_within_a_memory_limit(batched, client):
    def threads() -> tuple[str | None, int, bool]:
        import cv2
        import dask

        return (os.environ.get("OMP_NUM_THREADS"), cv2.getNumThreads(),
                dask.config.get("distributed.worker.profile.enabled"), "MALLOC_TRIM_THRESHOLD_" in os.environ)

    # one thread for OpenCV and BLAS; no stack-sampling profiler and no malloc trimming taking CPU
    assert set(client.run(threads).values()) == {("1", 1, False, False)}
    limits = {w["memory_limit"] for w in client.scheduler_info()["workers"].values()}
    assert limits == {2 * 2**30}


def test_cli_rerun_skips_everything_and_adds_nothing(batched, cohort, client, monkeypatch, capsys, tmp_path):
    from symmetry.cli import main

    home, _, _ = batched
    before = measurements_of(home)
    monkeypatch.setenv("SYMMETRY_HOME", str(home))
    monkeypatch.delenv("SYMMETRY_DATABASE_URL", raising=False)
    address = client.scheduler.address
    failures = tmp_path / "failures.csv"
    # the broken file is still listed: tried again, failed again, exit 3
    assert main(["batch", str(cohort), "--scheduler", address, "--no-progress", "--failures", str(failures)]) == 3
    err = capsys.readouterr().err
    assert "0 done (0 added, 0 re-measured; 0 measurement rows), 12 skipped" in err
    assert "error: manifest.csv:14: " in err and "broken.jpg" in err
    assert "error: manifest.csv:15: " in err and "missing.jpg: file not found" in err
    with open(failures, newline="") as f:
        assert [r["source"] for r in csv.DictReader(f)] == ["manifest.csv:14", "manifest.csv:15"]
    # fixed: the bad rows removed; nothing to measure, no cluster needed, exit 0
    with open(cohort, newline="") as f:
        rows = [r for r in csv.DictReader(f) if r["path"] not in ("broken.jpg", "missing.jpg")]
    fixed = write_manifest(cohort.parent / "fixed.csv", rows)
    assert main(["batch", str(fixed), "--no-progress"]) == 0
    err = capsys.readouterr().err
    assert "0 done" in err and "12 skipped" in err and "0 failed" in err and "error" not in err
    pd.testing.assert_frame_equal(measurements_of(home), before)
    assert len(recordings_of(home)) == 12


def test_a_file_that_cannot_be_stored_fails_alone_and_a_rerun_stores_it(cohort, client, ingested, tmp_path,
                                                                         monkeypatch):
    """A visit's files are stored in one transaction; when one cannot be stored (its copy cannot be
    written: disk full), that file alone is reported and the rest of its visit is stored."""
    import symmetry.batch as batch
    import symmetry.ingest as ingest

    with open(cohort, newline="") as f:
        rows = list(csv.DictReader(f))
    smile = next(r for r in rows if r["expression"] == "smile_open")
    bad_sha = file_sha256(cohort.parent / smile["path"])
    real_write = ingest._write_media

    def write_media(store, sha, data, ext):
        if sha == bad_sha:
            raise OSError(28, "No space left on device")
        return real_write(store, sha, data, ext)

    monkeypatch.setattr(ingest, "_write_media", write_media)
    monkeypatch.setattr(batch, "_files_per_task", lambda queued, threads: 4)  # whole visits: rest + smile
    home = tmp_path / "home"
    with open_store(home=home) as store:
        report = run_batch(store, cohort, client=client)
    line = f"manifest.csv:{rows.index(smile) + 2}"
    failed = {p.source: p.reason for p in report.failed}
    assert report.added == 11 and "No space left on device" in failed[line] and "cannot store" in failed[line]
    got = recordings_of(home)
    assert bad_sha not in set(got["sha256"]) and got["sha256"].is_unique
    same_visit = got[(got["patient"] == smile["patient"]) & (got["visit_date"] == smile["visit_date"])]
    assert list(same_visit["expression"]) == ["rest"]  # its rest photo is stored all the same

    monkeypatch.setattr(ingest, "_write_media", real_write)
    with open_store(home=home) as store:
        again = run_batch(store, cohort, client=client)
    assert (again.added, again.skipped) == (1, 11)
    pd.testing.assert_frame_equal(recordings_of(home), recordings_of(ingested))
    pd.testing.assert_frame_equal(measurements_of(home), measurements_of(ingested), check_exact=True)


def test_an_older_algorithm_version_is_measured_again(batched, cohort, client, ingested):
    home, _, _ = batched
    con = sqlite3.connect(home / "symmetry.sqlite3")
    with con:
        sha = con.execute("SELECT sha256 FROM recording WHERE expression = 'smile_open' ORDER BY id LIMIT 1").fetchone()[0]
        con.execute("UPDATE recording SET algorithm_version = '0.0.0' WHERE sha256 = ?", (sha,))
        con.execute(
            "UPDATE measurement SET value = value + 1, algorithm_version = '0.0.0' "
            "WHERE recording_id = (SELECT id FROM recording WHERE sha256 = ?)", (sha,)
        )
    con.close()
    with open_store(home=home) as store:
        report = run_batch(store, cohort, client=client)
    assert (report.added, report.remeasured, report.skipped) == (0, 1, 12 - 1)
    assert set(measurements_of(home)["algorithm_version"]) == {ALGORITHM_VERSION}
    pd.testing.assert_frame_equal(measurements_of(home), measurements_of(ingested), check_exact=True)
    pd.testing.assert_frame_equal(recordings_of(home), recordings_of(ingested))


def test_a_rest_photo_that_arrives_later_is_measured_against(cohort, client, ingested, tmp_path):
    """Expression first, rest in a later batch (re-measured on a worker); then an expression
    whose rest is already stored (the stored copy goes to the worker). Same values as ingest."""
    with open(cohort, newline="") as f:
        rows = [r for r in csv.DictReader(f) if r["patient"] == "P02"]
    first = {k: v for k, v in rows[0].items() if v}  # patient fields of P02 on every row
    rows = [{**first, **{k: v for k, v in r.items() if v}} for r in rows]
    for r in rows:
        r["path"] = str(cohort.parent / r["path"])
    v0 = [r for r in rows if r["visit_date"] == rows[0]["visit_date"]]
    v1 = [r for r in rows if r["visit_date"] == rows[2]["visit_date"]]
    smile0 = next(r for r in v0 if r["expression"] == "smile_open")
    rest1 = next(r for r in v1 if r["expression"] == "rest")
    home = tmp_path / "home"
    with open_store(home=home) as store:
        steps = [([smile0], (1, 0)), (v0, (1, 1)), ([rest1], (1, 0)), (v1, (1, 0))]
        for k, (step, (added, remeasured)) in enumerate(steps):
            report = run_batch(store, write_manifest(tmp_path / f"m{k}.csv", step), client=client)
            assert report.ok, report.failed
            assert (report.added, report.remeasured) == (added, remeasured), k
    shas = {file_sha256(r["path"]) for r in v0 + v1}
    want = measurements_of(ingested)
    want_recs = recordings_of(ingested)
    got_recs = recordings_of(home)
    assert got_recs["rest_sha256"].notna().sum() == 2
    pd.testing.assert_frame_equal(measurements_of(home), want[want["sha256"].isin(shas)].reset_index(drop=True),
                                  check_exact=True)
    columns = ["sha256", "expression", "mm_per_px", "rest_sha256", "refined_points", "measured_affected_side"]
    pd.testing.assert_frame_equal(got_recs[columns], want_recs[want_recs["sha256"].isin(shas)][columns].reset_index(drop=True))


@pytest.mark.parametrize("files_per_task, tasks", [(1, [1, 1, 1, 1]), (3, [1, 3]), (4, [4])])
def test_a_visit_sent_in_tasks_of_any_size_is_stored_as_ingest_stores_it(
    cohort, client, landmarker, tmp_path, monkeypatch, files_per_task, tasks
):
    """One visit, a rest photo and three expression photos, as the batch sends it near the end (one
    file per task), with many tasks waiting (its expressions together after the rest photo) and with
    very many (the whole visit in one task). Same rows as ingest every time."""
    import symmetry.batch as batch

    with open(cohort, newline="") as f:
        rows = [r for r in csv.DictReader(f) if r["patient"] == "P01" and r["expression"] in ("rest", "smile_open")]
    v0, v1 = rows[0]["visit_date"], next(r["visit_date"] for r in rows if r["visit_date"] != rows[0]["visit_date"])
    visit = [dict(r, path=str(cohort.parent / r["path"])) for r in rows if r["visit_date"] == v0]
    # the next visit's two photos as two more expressions of this visit (other pixels, same face)
    extra = [r for r in rows if r["visit_date"] == v1]
    for r, expr in zip(extra, ("pucker", "eye_closure_gentle")):
        visit.append({"patient": "P01", "visit_date": v0, "expression": expr, "path": str(cohort.parent / r["path"])})
    manifest = write_manifest(tmp_path / "visit.csv", visit)

    asked: list[tuple[int, int]] = []  # (queued tasks, worker threads) of each question

    def files_per_task_of(queued_tasks: int, threads: int) -> int:
        asked.append((queued_tasks, threads))
        return files_per_task

    monkeypatch.setattr(batch, "_files_per_task", files_per_task_of)
    submitted: list[int] = []  # files per task
    real_submit = client.submit

    def submit(fn, tasks, **kw):
        assert len(tasks) == 1  # one visit
        submitted.append(len(tasks[0].items))
        return real_submit(fn, tasks, **kw)

    monkeypatch.setattr(client, "submit", submit)

    with open_store(home=tmp_path / "batch") as store:
        report = run_batch(store, manifest, client=client)
    assert report.ok and report.added == 4, report.failed
    assert asked[0] == (4, 2) and {t for _, t in asked} == {2} and sorted(submitted) == tasks
    with open_store(home=tmp_path / "ingest") as store:
        assert ingest_manifest(store, manifest, landmarker=landmarker).added == 4
    pd.testing.assert_frame_equal(recordings_of(tmp_path / "batch"), recordings_of(tmp_path / "ingest"))
    pd.testing.assert_frame_equal(measurements_of(tmp_path / "batch"), measurements_of(tmp_path / "ingest"),
                                  check_exact=True)


def test_tasks_carry_several_files_only_while_many_wait():
    from symmetry.batch import _MAX_FILES_PER_TASK, _files_per_task

    assert _files_per_task(0, 2) == 1 and _files_per_task(15, 2) == 1  # near the end: one file per task
    assert _files_per_task(16, 2) == 2 and _files_per_task(10_000, 2) == _MAX_FILES_PER_TASK
    assert _files_per_task(100, 32) == 1 and _files_per_task(10_000, 0) == _MAX_FILES_PER_TASK


def test_a_task_packs_whole_visits_and_splits_only_what_need_not_stay_together(tmp_path):
    """The queue fills a task with whole visits (rest photo first) while they fit, sends a rest photo
    ahead of its expressions when the visit does not fit, splits follow-up expression photos, and
    never splits a visit measured against its stored rest photo (each part would detect it again)."""
    import datetime as dt

    from symmetry.batch import _jobs, _Planned, _Queue, _Visit
    from symmetry.ingest import ManifestRow

    def visit(expressions, stored_rest=None):
        v = _Visit("P01", None, stored_rest=stored_rest)
        for k, e in enumerate(expressions):
            row = ManifestRow(line=k + 2, path=tmp_path / f"{e}{k}.jpg", patient="P01", visit_date=dt.date(2024, 1, 1),
                              expression=e, mirrored=False)
            v.items.append(_Planned(row, f"{k:064x}", None))
        return v

    a, b = visit(["rest", "smile", "pucker"]), visit(["rest", "smile", "pucker", "eee", "brow_raise"])
    c = visit(["smile", "pucker", "eee"], stored_rest=("ab/cd.jpg", False))
    queue = _Queue(j for v in (a, b, c) for j in _jobs(v))
    assert queue.files == 11
    first = queue.take(6, first=True)
    assert first.visit is a and first.keys == (0, 1, 2) and not first.then  # whole, rest first
    ahead = queue.take(3, first=False)
    assert ahead.visit is b and ahead.keys == (0,) and ahead.then == (1, 2, 3, 4)  # the rest photo goes ahead
    assert queue.take(2, first=False) is None and queue.files == 3  # the stored-rest visit stays whole...
    assert queue.take(2, first=True).keys == (0, 1, 2) and not queue  # ...even alone in a task

    queue.push_front(type(ahead)(b, ahead.then, rest_file=("rest0.jpg", "0" * 64, False)))
    part = queue.take(3, first=True)
    assert part.keys == (1, 2, 3) and part.rest_file is not None and queue.files == 1  # follow-ups split
    assert queue.take(3, first=True).keys == (4,) and not queue and queue.files == 0


def test_a_task_with_a_rest_photo_and_its_expressions_detects_each_photo_once(cohort, monkeypatch):
    """A worker measuring a visit's rest photo and smile in one task reuses the rest photo's
    landmarks (as the follow-up tasks get them): one detection per photo, the same rows."""
    from symmetry.landmarks import Landmarker
    from symmetry.photo import _REST_CACHE

    with open(cohort, newline="") as f:
        rows = [r for r in csv.DictReader(f) if r["patient"] == "P02" and r["expression"] in ("rest", "smile_open")]
    visit = sorted((r for r in rows if r["visit_date"] == rows[0]["visit_date"]), key=lambda r: r["expression"])
    items = tuple(_Item(k, str(cohort.parent / r["path"]), file_sha256(cohort.parent / r["path"]), r["expression"],
                        False, False) for k, r in enumerate(visit))
    assert [i.expression for i in items] == ["rest", "smile_open"]
    calls: list[int] = []
    real = Landmarker.detect_averaged
    monkeypatch.setattr(Landmarker, "detect_averaged", lambda self, *a, **k: calls.append(1) or real(self, *a, **k))

    def task(its, **kw):
        return _VisitTask(items=its, affected_side="right", rest=None, algorithm_version=ALGORITHM_VERSION, **kw)

    _REST_CACHE.clear()
    together = _measure_visit(task(items))
    assert len(calls) == 2 and all(o.measured is not None for o in together)
    _REST_CACHE.clear()
    (rest,) = _measure_visit(task(items[:1], keep_rest_face=True))
    (smile,) = _measure_visit(task(items[1:], rest_file=(items[0].path, items[0].sha256, False), rest_face=rest.face))
    assert len(calls) == 4
    assert together[1].measured.rows == smile.measured.rows and together[0].measured.rows == rest.measured.rows
    assert together[1].rest_key == 0 and together[0].face is None  # landmarks go back only when asked for


def test_a_worker_with_another_algorithm_version_refuses_with_a_reason():
    task = _VisitTask(
        items=(_Item(0, "/x/rest.jpg", "0" * 64, "rest", False, True),),
        affected_side=None, rest=None, algorithm_version="0.0.0-other",
    )
    (outcome,) = _measure_visit(task)
    assert outcome.measured is None
    assert outcome.reason.startswith("/x/rest.jpg: this worker has symmetry algorithm")
    assert "install the same symmetry version on every worker" in outcome.reason


@pytest.mark.parametrize(
    "content, message",
    [(None, "manifest not found"), ("patient,visit_date,path\n", "missing column(s) expression")],
)
def test_an_unusable_manifest_exits_2_before_any_cluster_starts(tmp_path, monkeypatch, capsys, content, message):
    from symmetry.cli import main

    manifest = tmp_path / "m.csv"
    if content is not None:
        manifest.write_text(content)
    monkeypatch.setenv("SYMMETRY_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("SYMMETRY_DATABASE_URL", raising=False)
    assert main(["batch", str(manifest), "--workers", "2"]) == 2
    assert message in capsys.readouterr().err


def test_options_are_validated_naming_the_argument():
    with pytest.raises(ValueError, match="`workers` must be a whole number"):
        BatchOptions(workers=-1)
    with pytest.raises(ValueError, match="`scheduler` must be an address"):
        BatchOptions(scheduler=" ")


def test_an_affected_side_given_later_remeasures_the_patient_and_a_contradiction_is_refused(
    cohort, client, ingested, tmp_path
):
    with open(cohort, newline="") as f:
        rows = [r for r in csv.DictReader(f) if r["patient"] == "P02"][:2]  # visit 0: smile, rest
    for r in rows:
        r["path"] = str(cohort.parent / r["path"])
    smile, rest = ({**r, "affected_side": ""} for r in rows)
    home = tmp_path / "home"
    with open_store(home=home) as store:
        first = run_batch(store, write_manifest(tmp_path / "a.csv", [rest]), client=client)
        assert (first.added, first.remeasured) == (1, 0)
        # the smile arrives with the affected side: the stored rest photo (not in this manifest) is
        # measured again with it, as ingest does
        second = run_batch(store, write_manifest(tmp_path / "b.csv", [{**smile, "affected_side": "right"}]),
                           client=client)
        assert (second.added, second.remeasured, second.failed) == (1, 1, [])
        # a manifest that contradicts the database is refused for that patient, nothing measured
        third = run_batch(store, write_manifest(tmp_path / "c.csv", [{**smile, "affected_side": "left"}]),
                          client=client)
        assert (third.done, third.workers) == (0, 0)
        (problem,) = third.failed
        assert problem.source == "c.csv:2" and "stored with affected side right; the manifest says left" in problem.reason
    shas = {file_sha256(r["path"]) for r in rows}
    want = measurements_of(ingested)
    pd.testing.assert_frame_equal(measurements_of(home), want[want["sha256"].isin(shas)].reset_index(drop=True),
                                  check_exact=True)


def test_the_bad_input_corpus_is_recorded_file_by_file_and_the_good_photos_stored(client, tmp_path):
    """Every file of the hardening corpus becomes a recorded failure naming it and its reason;
    the visit's good photos (rest first, a smile against it) are stored all the same."""
    from corpus import BAD_PHOTO_REASONS, bad_photos

    bad = bad_photos(tmp_path / "photos")
    rows = [{"patient": "P900", "visit_date": "2026-01-05", "expression": "rest", "path": str(SAMPLES / "demo" / "2024-01-29_preop" / "rest.jpg")},
            {"patient": "P900", "visit_date": "2026-01-05", "expression": "smile_open",
             "path": str(SAMPLES / "demo" / "2024-01-29_preop" / "smile_open.jpg")}]
    rows += [{"patient": "P900", "visit_date": "2026-01-05", "expression": "lower_teeth", "path": str(p)} for p in bad.values()]
    manifest = write_manifest(tmp_path / "manifest.csv", rows)
    home = tmp_path / "home"
    with open_store(home=home) as store:
        report = run_batch(store, manifest, client=client)
    assert report.added == 2 and not report.ok
    reasons = {p.source: p.reason for p in report.failed}
    assert len(reasons) == len(BAD_PHOTO_REASONS)
    for line, (name, words) in enumerate(bad.items(), start=4):  # header, two good rows
        reason = reasons[f"manifest.csv:{line}"]
        assert name in reason and BAD_PHOTO_REASONS[name] in reason, reason
        assert "\n" not in reason and "Traceback" not in reason
    rec = recordings_of(home)
    assert sorted(rec["expression"]) == ["rest", "smile_open"]
    smile = rec[rec["expression"] == "smile_open"].iloc[0]
    assert smile["rest_sha256"] == rec[rec["expression"] == "rest"].iloc[0]["sha256"]
