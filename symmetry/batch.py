"""Cohort-scale batch measuring: a manifest measured by Dask workers, stored by one client.

``symmetry batch MANIFEST.csv`` does what ``symmetry ingest`` does (same
manifest, same database rows, same values) with every core of the machine, or
with the workers of an existing Dask distributed cluster.

How it works
------------
The **client** (the process that runs :func:`run_batch`) reads and validates
the manifest, applies the patient fields (:mod:`symmetry.ingest`), hashes
every file, and skips the files the store already holds measured with this
:data:`symmetry.ALGORITHM_VERSION` (content hash + algorithm version; a
recording stored by an older version, or whose visit gained a rest photo or
whose patient's affected side changed, is measured again). It then submits
tasks to Dask that **shrink as the queue does**, so that the workers share the
load evenly to the end: while many files wait, a task carries several whole
visits (each Dask task costs the client several ms of CPU, whatever it
carries); near the end, one photo. Within a visit, expression photos are
measured against the visit's rest photo, so the rest photo goes first: in the
same task, or, when the visit does not fit, in a task of its own, and once it
is stored the expression photos follow carrying the rest photo's landmarks (no
worker detects a rest photo twice). A visit whose rest photo is already
stored, and not measured again, stays in one task.

**Workers** read the files themselves (the paths must be readable by them),
keep one IMAGE-mode :class:`~symmetry.landmarks.Landmarker` per worker thread,
and return plain data: the tidy measure rows, scale and pose, and the
metadata-stripped copy of the photo, or a reason string when a file cannot be
measured. A worker never touches the database.

**Only the client writes**, as each task's results arrive, one transaction
per visit in the task (each stored copy is written first, then the recordings
and all their measurement rows are committed together; when one file cannot be
stored, the visit's files are stored one by one and that file alone is
reported), so a SQLite file works and a crash or Ctrl-C leaves only complete
recordings; running the
batch again resumes where it stopped. (Stored recordings that the manifest does
not list but that need measuring again, because their visit gained a rest photo
or their patient an affected side, are re-measured at the end by the client with
:func:`symmetry.ingest.remeasure`, as ``symmetry ingest`` does.)

Parallelism
-----------
By default a :class:`distributed.LocalCluster` with one single-threaded
worker process per available core, each limited to ``memory_limit`` (the
nanny restarts a worker that exceeds it; its visit is then retried and, after
Dask's ``allowed-failures``, recorded as failed). Worker processes start with
``OMP_NUM_THREADS=1`` and friends, and set ``cv2.setNumThreads(1)``, so N
workers use N cores rather than fighting over them. ``scheduler`` connects to
an existing cluster instead (``dask scheduler`` plus ``dask worker
tcp://HOST:8786`` on machines that have the same symmetry version installed).
"""

from __future__ import annotations

import collections
import contextlib
import csv
import functools
import hashlib
import itertools
import logging
import os
import sys
import threading
import time
import types
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import ALGORITHM_VERSION
from .errors import ImageReadError, InputError, SymmetryError

if TYPE_CHECKING:  # pragma: no cover
    from distributed import Client

    from .ingest import ManifestRow, RowProblem, _Measured
    from .store import Store

__all__ = [
    "DEFAULT_MEMORY_LIMIT",
    "BatchError",
    "BatchOptions",
    "BatchReport",
    "connect",
    "local_client",
    "run_batch",
]

#: Memory limit of each local worker process (Dask's syntax). A worker measures
#: one photo at a time: the model and a 12-megapixel photo with its rotated
#: copies need well under 1 GiB.
DEFAULT_MEMORY_LIMIT = "2GiB"
#: Environment of local worker processes: one thread for every numeric library.
_ONE_THREAD_ENV = {
    "OMP_NUM_THREADS": "1",
    "OPENBLAS_NUM_THREADS": "1",
    "MKL_NUM_THREADS": "1",
    "VECLIB_MAXIMUM_THREADS": "1",
    "NUMEXPR_NUM_THREADS": "1",
}
_CONNECT_TIMEOUT_S = 20
_HASH_THREADS = 8
_STORED_REST = -1  # rest_key of a result measured against the visit's stored rest photo
#: Most photos in one task. Each Dask task costs the client (and the local scheduler) 6-12 ms of CPU
#: whatever it carries (measured on the 2-core test machine), more than storing two files: a cluster
#: of many workers would wait on the client. While plenty of files wait, a task carries whole visits
#: (each rest photo first) up to this many photos; near the end, one photo per task.
_MAX_FILES_PER_TASK = 12


class BatchError(SymmetryError):
    """The batch cannot run (no Dask cluster to be had, bad options)."""


@dataclass(frozen=True)
class BatchOptions:
    """How to run a batch.

    Attributes
    ----------
    workers : int
        Local worker processes, one thread each; ``0`` (default) = one per
        available core. Ignored with ``scheduler``.
    scheduler : str or None
        Address of an existing Dask scheduler, e.g. ``tcp://10.0.0.5:8786``;
        ``None`` starts a local cluster.
    memory_limit : str
        Memory limit of each local worker, e.g. ``"2GiB"`` (Dask's syntax).
        With ``scheduler`` the cluster's own limits apply.
    """

    workers: int = 0
    scheduler: str | None = None
    memory_limit: str = DEFAULT_MEMORY_LIMIT

    def __post_init__(self) -> None:
        if isinstance(self.workers, bool) or not isinstance(self.workers, int) or self.workers < 0:
            raise ValueError(f"`workers` must be a whole number >= 0 (0 = one per core), got {self.workers!r}")
        if self.scheduler is not None and not self.scheduler.strip():
            raise ValueError("`scheduler` must be an address such as tcp://HOST:8786, or None for a local cluster")


@dataclass
class BatchReport:
    """What a batch did.

    Attributes
    ----------
    added : int
        New recordings measured and stored.
    remeasured : int
        Stored recordings measured again (older algorithm version, a rest
        photo or the affected side arrived) and replaced.
    skipped : int
        Files already stored and measured with this algorithm version
        (including a file listed twice for the same visit and expression).
    failed : list of RowProblem
        Rows not stored, each with the manifest line and the reason.
    measurement_rows : int
        Measurement rows written.
    workers : int
        Worker threads that measured (0 when nothing needed measuring).
    seconds : float
        Wall time of the whole batch.
    startup_seconds : float
        Of which starting (or connecting to) the cluster.
    algorithm_version : str
    """

    added: int = 0
    remeasured: int = 0
    skipped: int = 0
    failed: list[RowProblem] = field(default_factory=list)
    measurement_rows: int = 0
    workers: int = 0
    seconds: float = 0.0
    startup_seconds: float = 0.0
    algorithm_version: str = ALGORITHM_VERSION

    @property
    def done(self) -> int:
        """Files measured and stored in this run (``added + remeasured``)."""
        return self.added + self.remeasured

    @property
    def ok(self) -> bool:
        """No row failed."""
        return not self.failed

    @property
    def files_per_minute(self) -> float:
        """Measured files per minute of wall time, cluster start-up excluded (NaN when none)."""
        busy = self.seconds - self.startup_seconds
        return 60.0 * self.done / busy if self.done and busy > 0 else float("nan")

    def summary(self) -> str:
        speed = ""
        if self.done:
            speed = f", {self.files_per_minute:.1f} files/min on {self.workers} worker(s)"
        return (
            f"{self.done} done ({self.added} added, {self.remeasured} re-measured; {self.measurement_rows} "
            f"measurement rows), {self.skipped} skipped (already measured with algorithm {self.algorithm_version}), "
            f"{len(self.failed)} failed; {self.seconds:.1f} s{speed}"
        )

    def write_failures(self, path: str | os.PathLike[str]) -> None:
        """Write the failed rows as CSV: ``source,reason`` (``source`` is ``manifest.csv:LINE``)."""
        with open(path, "w", newline="", encoding="utf-8") as f:
            w = csv.writer(f)
            w.writerow(["source", "reason"])
            for p in self.failed:
                w.writerow([p.source, p.reason])


# --------------------------------------------------------------------------- the cluster


def _local_config() -> dict[str, Any]:
    """Dask settings of the local cluster: one thread per worker, little background work.

    Dask's defaults suit interactive clusters; here they cost CPU that the workers need: the
    statistical profiler samples each worker's stack every 10 ms, and event-loop ticks (20 ms) and
    system monitors (0.5 s) run in every process. Together, idle, they took about a sixth of a core
    on a 2-core machine; with these settings under 2%. The nanny's ``MALLOC_TRIM_THRESHOLD_`` is
    left out of the workers' environment (see :func:`_undo_malloc_trim_threshold`).
    """
    import dask

    env = dict(dask.config.get("distributed.nanny.pre-spawn-environ", default={}) or {})
    env.update(_ONE_THREAD_ENV)
    env.pop("MALLOC_TRIM_THRESHOLD_", None)  # see _undo_malloc_trim_threshold
    return {
        "distributed.nanny.pre-spawn-environ": env,
        "distributed.worker.profile.enabled": False,
        "distributed.admin.tick.interval": "1s",
        "distributed.admin.system-monitor.interval": "5s",
        "distributed.worker.memory.monitor-interval": "1s",
    }


@contextlib.contextmanager
def local_client(
    workers: int = 0, *, memory_limit: str = DEFAULT_MEMORY_LIMIT, dashboard: bool = False
) -> Iterator[Client]:
    """A :class:`distributed.Client` on a new local cluster of single-threaded worker processes.

    The scheduler, the workers and (when asked for) the dashboard listen on the loopback
    interface only: nothing about the batch (file names, progress) is reachable from the network.

    Parameters
    ----------
    workers : int
        Worker processes; ``0`` = one per available core.
    memory_limit : str
        Per worker, Dask's syntax (``"2GiB"``).
    dashboard : bool
        Serve Dask's diagnostic dashboard on a free port of 127.0.0.1 (``client.dashboard_link``);
        off by default.

    Yields
    ------
    distributed.Client
        Closed, with its cluster, on exit.

    Raises
    ------
    BatchError
        The cluster could not be started.
    """
    import dask
    from distributed import Client, LocalCluster

    n = workers or _available_cores()
    with dask.config.set(_local_config()):  # read when the cluster and the client are built
        try:
            cluster = LocalCluster(
                n_workers=n,
                threads_per_worker=1,
                processes=True,
                memory_limit=memory_limit,
                host="127.0.0.1",  # scheduler and workers: loopback only
                # Dask binds ":port" to every interface, and its scheduler serves HTTP (health,
                # metrics, and the dashboard on request) even without a dashboard: a free loopback port
                dashboard_address="127.0.0.1:0",
                scheduler_kwargs={"dashboard": dashboard},
                silence_logs=logging.CRITICAL,  # failures are reported per file instead
            )
        except Exception as exc:
            raise BatchError(f"cannot start {n} local Dask worker(s): {type(exc).__name__}: {exc}") from exc
        try:
            client = Client(cluster, set_as_default=False)
        except BaseException:
            cluster.close()
            raise
    try:
        with client:
            yield client
    finally:
        cluster.close()


@contextlib.contextmanager
def connect(address: str) -> Iterator[Client]:
    """A :class:`distributed.Client` on an existing scheduler (closed on exit; the cluster stays).

    Raises
    ------
    BatchError
        The scheduler cannot be reached, or has no workers.
    """
    from distributed import Client

    try:
        client = Client(address, timeout=_CONNECT_TIMEOUT_S, set_as_default=False)
    except Exception as exc:
        raise BatchError(
            f"cannot reach the Dask scheduler at {address} ({type(exc).__name__}: {exc}); start it with "
            "`dask scheduler` and workers with `dask worker tcp://HOST:8786`"
        ) from None
    try:
        try:
            client.wait_for_workers(1, timeout=_CONNECT_TIMEOUT_S)
        except Exception:
            raise BatchError(
                f"the Dask scheduler at {address} has no workers; start some with `dask worker {address}` "
                "on machines that have symmetry installed"
            ) from None
        yield client
    finally:
        client.close()


def _available_cores() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)


def _worker_threads(client: Client) -> int:
    try:
        return int(sum(client.nthreads().values()))
    except Exception:  # pragma: no cover - informational only
        return 0


# --------------------------------------------------------------------------- worker side


@dataclass(frozen=True)
class _Item:
    """One file for a worker to measure."""

    key: int
    path: str
    sha256: str
    expression: str
    mirrored: bool
    copy: bool  # a new recording: also return the metadata-stripped copy


@dataclass(frozen=True)
class _VisitTask:
    """A visit's files; rest photos come first."""

    items: tuple[_Item, ...]
    affected_side: str | None
    #: The visit's stored rest photo (stored-copy bytes, file name, mirrored) when it is not among ``items``.
    rest: tuple[bytes, str, bool] | None
    algorithm_version: str
    #: The visit's rest photo measured in this batch (path, SHA-256, mirrored): the worker reads it itself.
    rest_file: tuple[str, str, bool] | None = None
    #: The landmarks of the rest photo (``rest`` or ``rest_file``) when a worker detected them already.
    rest_face: Any = None
    #: Return the landmarks of the rest photo among ``items`` (its expression photos follow as tasks of their own).
    keep_rest_face: bool = False


@dataclass
class _Outcome:
    """A worker's answer for one file: measured (with the copy to store) or a reason."""

    key: int
    measured: _Measured | None = None
    reason: str | None = None
    blob: bytes | None = None
    ext: str = ""
    width_px: int = 0
    height_px: int = 0
    #: Which photo the movement measures are taken against: an item's key, _STORED_REST, or None.
    rest_key: int | None = None
    #: A rest photo's landmarks (``_VisitTask.keep_rest_face``), for its expression photos' tasks.
    face: Any = None


_local = threading.local()


def _undo_malloc_trim_threshold() -> None:
    """Give large allocations back glibc's usual reuse when ``MALLOC_TRIM_THRESHOLD_`` is set.

    Dask's nanny starts workers with ``MALLOC_TRIM_THRESHOLD_=65536``; setting it also switches off
    glibc's dynamic mmap threshold, so every image-sized buffer (the rotated copies of each photo)
    is a fresh ``mmap`` with page faults on first touch: measuring took 15-40% more CPU per photo on
    the sample media. Large mmap and trim thresholds restore the reuse (a worker holds well under
    1 GiB either way). Only on glibc, and only when the variable is set (``dask worker`` clusters;
    local clusters leave it out).
    """
    if "MALLOC_TRIM_THRESHOLD_" not in os.environ or not sys.platform.startswith("linux"):
        return
    try:
        import ctypes

        libc = ctypes.CDLL("libc.so.6")
        m_trim_threshold, m_mmap_threshold = -1, -3  # glibc's malloc.h
        libc.mallopt(m_mmap_threshold, 64 << 20)
        libc.mallopt(m_trim_threshold, 128 << 20)
    except (OSError, AttributeError):  # pragma: no cover - not glibc
        pass


def _landmarker() -> object:
    """This worker thread's IMAGE-mode landmarker, created on first use (one thread for OpenCV)."""
    lm = getattr(_local, "landmarker", None)
    if lm is None:
        try:
            import cv2

            cv2.setNumThreads(1)  # every worker process already has a core of its own
        except Exception:  # pragma: no cover - OpenCV is a dependency
            pass
        _undo_malloc_trim_threshold()
        from .landmarks import Landmarker, LandmarkerOptions

        lm = _local.landmarker = Landmarker(LandmarkerOptions())
    return lm


def _warm_up() -> int:
    """Load this worker's landmarker now (benchmarks); returns the process id."""
    _landmarker()
    return os.getpid()


def _read_file(path: Path) -> bytes:
    """The file's bytes; ImageReadError with ingest's reasons."""
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise ImageReadError(path, "file not found") from None
    except IsADirectoryError:
        raise ImageReadError(path, "is a directory, not a photo") from None
    except OSError as exc:
        raise ImageReadError(path, f"cannot read ({exc.strerror or exc})") from None


def _read_unchanged(path: Path, sha256: str) -> bytes:
    """The file's bytes, checked against the hash the client planned with (ImageReadError otherwise)."""
    data = _read_file(path)
    if hashlib.sha256(data).hexdigest() != sha256:
        raise ImageReadError(path, "the file changed while the batch ran; run the batch again")
    return data


def _measure_visit(task: _VisitTask) -> list[_Outcome]:
    """Worker: measure a visit's files, rest photos first; failures become reasons, never exceptions."""
    from .ingest import REST, _decode, _measure, stripped_copy

    if task.algorithm_version != ALGORITHM_VERSION:
        why = (
            f"this worker has symmetry algorithm {ALGORITHM_VERSION}, the client {task.algorithm_version}: "
            "install the same symmetry version on every worker"
        )
        return [_Outcome(i.key, reason=f"{i.path}: {why}") for i in task.items]
    try:
        lm = _landmarker()
    except SymmetryError as exc:
        return [_Outcome(i.key, reason=f"{i.path}: {exc}") for i in task.items]

    rest: tuple[Any, bool] | None = None
    rest_key: int | None = None
    if task.rest is not None:
        data, name, mirrored = task.rest
        try:
            rest, rest_key = (_decode(data, Path(name)), mirrored), _STORED_REST
        except InputError as exc:
            why = f"the visit's stored rest photo cannot be read ({exc.reason})"
            return [_Outcome(i.key, reason=f"{i.path}: {why}") for i in task.items]
    elif task.rest_file is not None:
        name, sha, mirrored = task.rest_file
        try:
            rest, rest_key = (_decode(_read_unchanged(Path(name), sha), Path(name)), mirrored), _STORED_REST
        except InputError as exc:
            why = f"the visit's rest photo cannot be read again ({exc})"
            return [_Outcome(i.key, reason=f"{i.path}: {why}") for i in task.items]
    rest_face = task.rest_face  # the rest photo's landmarks, when known
    out: list[_Outcome] = []
    for item in task.items:
        path = Path(item.path)
        try:
            data = _read_unchanged(path, item.sha256)
            rgb = _decode(data, path)
            use_rest = rest if item.expression != REST else None
            measured = _measure(
                rgb, str(path), expression=item.expression, mirrored=item.mirrored,
                affected_side=task.affected_side, rest=use_rest, landmarker=lm,
                rest_face=rest_face if use_rest is not None else None,
                keep_face=item.expression == REST,
            )
            blob, ext = stripped_copy(data, rgb, str(path)) if item.copy else (None, "")
        except InputError as exc:
            out.append(_Outcome(item.key, reason=str(exc)))
            continue
        except (SymmetryError, OSError) as exc:
            out.append(_Outcome(item.key, reason=f"{path}: {exc}"))
            continue
        except Exception as exc:  # data, not a crash: the batch goes on
            out.append(_Outcome(item.key, reason=f"{path}: internal error ({type(exc).__name__}: {exc}); please report it"))
            continue
        face, measured.face = measured.face, None
        out.append(
            _Outcome(
                item.key, measured=measured, blob=blob, ext=ext, width_px=int(rgb.shape[1]),
                height_px=int(rgb.shape[0]), rest_key=rest_key if use_rest is not None else None,
                face=face if task.keep_rest_face else None,
            )
        )
        if item.expression == REST and rest is None:  # the visit's expressions in this task follow it
            rest, rest_key, rest_face = (rgb, item.mirrored), item.key, face
    return out


def _measure_visits(tasks: Sequence[_VisitTask]) -> list[list[_Outcome]]:
    """Worker: several visits' files in one Dask task (each task costs the client a few ms of CPU)."""
    return [_measure_visit(task) for task in tasks]


# --------------------------------------------------------------------------- client side: the plan


@dataclass
class _Planned:
    """A manifest row that is to be measured."""

    row: ManifestRow
    sha256: str
    recording_id: int | None  # stored recording to replace, None for a new one


@dataclass
class _Visit:
    patient: str
    affected_side: str | None
    stored_rest_id: int | None = None
    #: The stored rest photo to send along (media path, mirrored), when it is not measured again.
    stored_rest: tuple[str, bool] | None = None
    items: list[_Planned] = field(default_factory=list)


@dataclass
class _Plan:
    visits: list[_Visit] = field(default_factory=list)
    patients: list[str] = field(default_factory=list)

    @property
    def n_files(self) -> int:
        return sum(len(v.items) for v in self.visits)


def _hash_all(paths: Sequence[Path]) -> list[str | InputError]:
    """SHA-256 of each file (threads: the files may be on a network share), or the read error."""

    def one(path: Path) -> str | InputError:
        try:
            h = hashlib.sha256()
            with open(path, "rb") as f:
                for chunk in iter(lambda: f.read(1 << 20), b""):
                    h.update(chunk)
            return h.hexdigest()
        except FileNotFoundError:
            return ImageReadError(path, "file not found")
        except IsADirectoryError:
            return ImageReadError(path, "is a directory, not a photo")
        except OSError as exc:
            return ImageReadError(path, f"cannot read ({exc.strerror or exc})")

    with ThreadPoolExecutor(max_workers=_HASH_THREADS) as pool:
        return list(pool.map(one, paths))


def _chunks(seq: Sequence[Any], n: int = 500) -> Iterator[Sequence[Any]]:
    for i in range(0, len(seq), n):
        yield seq[i : i + n]


def _make_plan(store: Store, rows: Sequence[ManifestRow], manifest_name: str, report: BatchReport) -> _Plan:
    """Apply patient fields, hash files, and decide per row: skip, fail, measure or re-measure."""
    from sqlalchemy import select

    from .ingest import (
        REST,
        RowProblem,
        _apply_patient_fields,
        _in_write_session,
        _patient_conflicts,
        _retry_on_conflict,
    )
    from .store import Patient, Recording, Visit

    where = lambda r: f"{manifest_name}:{r.line}"  # noqa: E731
    plan = _Plan()
    conflicts = _patient_conflicts(rows, manifest_name)
    by_patient: dict[str, list[ManifestRow]] = {}
    for r in rows:
        by_patient.setdefault(r.patient, []).append(r)
    usable: list[ManifestRow] = []
    for code, prow in by_patient.items():
        if code in conflicts:
            report.failed += [RowProblem(where(r), f"{r.path}: {conflicts[code]}") for r in prow]
    todo = {code: prow for code, prow in by_patient.items() if code not in conflicts}

    def apply_all(s: Any) -> dict[str, str]:
        """Every patient's fields in one transaction, each in a savepoint: patient -> reason refused."""
        refused = {}
        for code, prow in todo.items():
            try:
                with s.begin_nested():
                    _apply_patient_fields(s, code, prow)
            except ValueError as exc:
                refused[code] = str(exc)
        return refused

    refused: dict[str, str] = _retry_on_conflict(lambda: _in_write_session(store, apply_all))  # type: ignore[assignment]
    for code, prow in todo.items():
        if code in refused:
            report.failed += [RowProblem(where(r), f"{r.path}: {refused[code]}") for r in prow]
            continue
        plan.patients.append(code)
        # rest photos first within each visit, then the manifest's order (as ingest does)
        usable += sorted(prow, key=lambda r: (r.visit_date, r.expression != REST, r.line))

    hashes = _hash_all([r.path for r in usable])
    shas = [h for h in hashes if isinstance(h, str)]
    with store.session() as s:
        existing: dict[str, tuple[Any, ...]] = {}
        for chunk in _chunks(sorted(set(shas))):
            q = (
                select(
                    Recording.sha256, Recording.id, Recording.expression, Visit.date, Patient.code,
                    Recording.algorithm_version, Recording.measured_affected_side, Recording.rest_recording_id,
                )
                .join(Recording.visit)
                .join(Visit.patient)
                .where(Recording.sha256.in_(chunk))
            )
            existing.update({t[0]: tuple(t[1:]) for t in s.execute(q)})
        affected: dict[str, str | None] = {}
        stored_rests: dict[tuple[str, Any], tuple[int, str, str, bool]] = {}
        for chunk in _chunks(plan.patients):
            q = select(Patient.code, Patient.affected_side).where(Patient.code.in_(chunk))
            affected.update({code: side for code, side in s.execute(q)})
            q = (
                select(Patient.code, Visit.date, Recording.id, Recording.sha256, Recording.media_path, Recording.mirrored)
                .join(Recording.visit)
                .join(Visit.patient)
                .where(Patient.code.in_(chunk), Recording.expression == REST)
                .order_by(Recording.id)
            )
            for code, date, rid, sha, media, mirrored in s.execute(q):
                stored_rests.setdefault((code, date), (rid, sha, media, bool(mirrored)))

    # a visit gets a rest photo in this run when one of its rest rows is new
    new_rest_visits = {
        (r.patient, r.visit_date)
        for r, h in zip(usable, hashes)
        if r.expression == REST and isinstance(h, str) and h not in existing
    }
    visits: dict[tuple[str, Any], _Visit] = {}
    seen: dict[str, ManifestRow] = {}
    for r, h in zip(usable, hashes):
        if not isinstance(h, str):
            report.failed.append(RowProblem(where(r), str(h)))
            continue
        ident = (r.expression, r.visit_date, r.patient)
        first = seen.setdefault(h, r)
        if first is not r:  # the same file listed twice
            if (first.expression, first.visit_date, first.patient) == ident:
                report.skipped += 1
            else:
                report.failed.append(RowProblem(where(r), f"{r.path}: the same photo is also listed at "
                                                f"{where(first)} as patient {first.patient}, visit {first.visit_date}, "
                                                f"{first.expression}"))
            continue
        key = (r.patient, r.visit_date)
        recording_id = None
        if h in existing:
            rid, expr, vdate, code, version, measured_side, rest_id = existing[h]
            if (expr, vdate, code) != ident:
                report.failed.append(RowProblem(
                    where(r), f"{r.path}: the same photo is already stored as patient {code}, visit {vdate}, {expr}"))
                continue
            visit_has_rest = key in stored_rests or key in new_rest_visits
            needs_rest = r.expression != REST and rest_id is None and visit_has_rest
            if version == ALGORITHM_VERSION and measured_side == affected.get(r.patient) and not needs_rest:
                report.skipped += 1
                continue
            recording_id = rid
        visit = visits.get(key)
        if visit is None:
            visit = visits[key] = _Visit(r.patient, affected.get(r.patient))
            if key in stored_rests:
                visit.stored_rest_id = stored_rests[key][0]
        visit.items.append(_Planned(r, h, recording_id))

    # the stored rest photo goes first; when it is not measured again, its stored copy goes along
    for key, visit in visits.items():
        if visit.stored_rest_id is None:
            continue
        rid, _sha, media, mirrored = stored_rests[key]
        mine = [p for p in visit.items if p.recording_id == rid]
        if mine:
            visit.items.remove(mine[0])
            visit.items.insert(0, mine[0])
        elif any(p.row.expression != REST for p in visit.items):
            visit.stored_rest = (media, mirrored)
    plan.visits = list(visits.values())
    return plan


# --------------------------------------------------------------------------- client side: storing


def _store_files(
    store: Store, visit: _Visit, files: Sequence[tuple[_Planned, _Outcome]], ids: dict[int, int | None]
) -> list[tuple[int | None, bool]]:
    """Write measured files of one visit in one transaction: (recording id, whether rows were
    written) for each. ``ids`` (an outcome's ``rest_key`` -> recording id) holds the rest photos
    stored already; it gains these files' ids once they are committed.

    Stores what ingest's :func:`~symmetry.ingest._apply_measured` stores, more cheaply: the client
    is the one writer and shares the machine with the workers. A new file is Core statements only:
    its stored copy (written first), one insert of the recording, and its ~50 measurement rows in
    one executemany on the table (the ORM's unit of work cost about 5 ms per photo); the patient's
    and visit's ids (the visit created with its timeline if need be,
    :func:`~symmetry.store.visit_id_for`) are looked up once. A file measured again is updated
    through the ORM.
    """
    from .ingest import _in_write_session, _retry_on_conflict

    def work(s: Any) -> tuple[dict[int, int | None], list[tuple[int | None, bool]]]:
        known, out = dict(ids), []
        new = next((p.row for p, _ in files if p.recording_id is None), None)
        visit_id = _visit_id(s.connection(), new) if new is not None else None
        for planned, outcome in files:  # in the visit's order: a rest photo before its expressions
            rest_id = known.get(outcome.rest_key) if outcome.rest_key is not None else None
            if planned.recording_id is not None:
                stored = _update_recording(s, visit, planned, outcome, rest_id)
            else:
                assert visit_id is not None
                stored = _insert_recording(s, store, visit, planned, outcome, rest_id, visit_id)
            known[outcome.key] = stored[0]
            out.append(stored)
        return known, out

    known, out = _retry_on_conflict(lambda: _in_write_session(store, work))  # type: ignore[misc]
    ids.update(known)
    return out


def _visit_id(conn: Any, row: ManifestRow) -> int:
    """The id of the row's visit, created with its timeline if need be (InputError: no such patient)."""
    from .store import visit_id_for

    pid = conn.execute(_statements().patient_by_code, {"code": row.patient}).scalar()
    if pid is None:
        raise InputError(row.path, f"patient {row.patient} vanished from the database during the batch")
    return visit_id_for(conn, pid, row.visit_date)


def _insert_recording(
    s: Any, store: Store, visit: _Visit, planned: _Planned, outcome: _Outcome, rest_id: int | None, visit_id: int
) -> tuple[int | None, bool]:
    """A new file's stored copy, recording and measurement rows, in visit ``visit_id``."""
    from .ingest import _recording_fields, _write_media
    from .store import RecordingKind

    r, measured = planned.row, outcome.measured
    assert measured is not None and outcome.blob is not None
    st, conn = _statements(), s.connection()
    found = conn.execute(st.recording_by_sha, {"sha": planned.sha256}).scalar()
    if found is not None:
        return found, False  # committed meanwhile by a concurrent ingest
    values = {
        "visit_id": visit_id,
        "kind": RecordingKind.PHOTO.value,
        "expression": r.expression,
        "sha256": planned.sha256,
        "mirrored": r.mirrored,
        "media_path": _write_media(store, planned.sha256, outcome.blob, outcome.ext),
        "original_name": r.path.name[:255],
        "width_px": outcome.width_px,
        "height_px": outcome.height_px,
        **_recording_fields(measured, rest_id, visit.affected_side),
    }
    rid = conn.execute(st.insert_recording, values).scalar_one()
    _insert_measurements(conn, rid, measured.rows)
    return rid, True


def _update_recording(
    s: Any, visit: _Visit, planned: _Planned, outcome: _Outcome, rest_id: int | None
) -> tuple[int | None, bool]:
    """A stored recording measured again: its fields and measurement rows replaced."""
    from sqlalchemy import delete

    from .ingest import _recording_fields
    from .store import Measurement, Recording

    assert outcome.measured is not None
    rec = s.get(Recording, planned.recording_id)
    if rec is None:  # deleted meanwhile
        return None, False
    s.execute(delete(Measurement).where(Measurement.recording_id == rec.id))
    s.expire(rec, ["measurements"])
    for name, value in _recording_fields(outcome.measured, rest_id, visit.affected_side).items():
        setattr(rec, name, value)
    s.flush()
    _insert_measurements(s, rec.id, outcome.measured.rows)
    return rec.id, True


@functools.lru_cache(maxsize=None)
def _statements() -> types.SimpleNamespace:
    """The Core statements of storing a file, built once (bound parameters, so each compiles once)."""
    from sqlalchemy import bindparam, insert, select

    from .store import Measurement, Patient, Recording

    table = Recording.__table__
    return types.SimpleNamespace(
        recording_by_sha=select(Recording.id).where(Recording.sha256 == bindparam("sha")),
        patient_by_code=select(Patient.id).where(Patient.code == bindparam("code")),
        insert_recording=insert(table).returning(table.c.id),
        insert_measurements=insert(Measurement.__table__),
    )


def _insert_measurements(s: Any, recording_id: int, rows: Sequence[tuple[str, str, float | None, str]]) -> None:
    """A recording's measurement rows in one executemany on the table (no ORM objects)."""
    if rows:
        s.execute(
            _statements().insert_measurements,
            [
                {"recording_id": recording_id, "name": n, "side": side, "value": v, "unit": u,
                 "algorithm_version": ALGORITHM_VERSION}
                for n, side, v, u in rows
            ],
        )


class _Progress:
    """tqdm on stderr (only on a terminal), or a callback ``(files_finished, files_total)``."""

    def __init__(self, progress: bool | Callable[[int, int], None], total: int) -> None:
        self.total, self.n = total, 0
        self._callback = progress if callable(progress) else None
        self._bar = None
        stream = sys.stderr
        if progress is True and total and stream is not None and hasattr(stream, "isatty") and stream.isatty():
            from tqdm import tqdm

            self._bar = tqdm(total=total, desc="measuring", unit="file", file=stream, dynamic_ncols=True,
                             mininterval=0.5, smoothing=0.1)

    def update(self, n: int, failed: int) -> None:
        self.n += n
        if self._bar is not None:
            self._bar.set_postfix(failed=failed, refresh=False)
            self._bar.update(n)
        if self._callback is not None:
            self._callback(self.n, self.total)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()


def _task(store: Store, visit: _Visit, keys: Sequence[int] | None = None, *,
          rest_file: tuple[str, str, bool] | None = None, rest_face: Any = None,
          keep_rest_face: bool = False) -> _VisitTask:
    """The worker's task for some of a visit's files (all by default; ``keys`` index ``visit.items``).

    Reads the visit's stored rest photo when one goes along (OSError when it cannot).
    """
    rest = None
    if visit.stored_rest is not None:
        media, mirrored = visit.stored_rest
        rest = (store.media_path(media).read_bytes(), media, mirrored)
    keys = range(len(visit.items)) if keys is None else keys
    return _VisitTask(
        items=tuple(
            _Item(k, str(p.row.path), p.sha256, p.row.expression, p.row.mirrored, p.recording_id is None)
            for k, p in ((k, visit.items[k]) for k in keys)
        ),
        affected_side=visit.affected_side,
        rest=rest,
        algorithm_version=ALGORITHM_VERSION,
        rest_file=rest_file,
        rest_face=rest_face,
        keep_rest_face=keep_rest_face,
    )


@dataclass
class _Job:
    """Some files of one visit for one task. ``then``: the visit's expression files, which follow
    as tasks of their own once this job's rest photo is measured and stored."""

    visit: _Visit
    keys: tuple[int, ...]
    then: tuple[int, ...] = ()
    #: The visit's rest photo as measured by the job before (path, SHA-256, mirrored) and its landmarks.
    rest_file: tuple[str, str, bool] | None = None
    rest_face: Any = None

    @property
    def n_files(self) -> int:
        return len(self.keys) + len(self.then)

    @property
    def splittable(self) -> bool:
        """Whether parts of it may go to different tasks: not when each part would detect the
        visit's stored rest photo again, nor a rest photo whose expressions follow it."""
        return not self.then and self.visit.stored_rest is None


def _jobs(visit: _Visit) -> list[_Job]:
    """A visit's files as jobs, which :class:`_Queue` fits into tasks.

    Expression photos are measured against the visit's rest photo: when the rest photo is measured in
    this batch, it goes first (with the visit's other rest photos) and its expression photos follow it,
    in the same task when the whole visit fits (:meth:`_Queue.take`), or else as a job of their own
    once the rest photo is stored, carrying its landmarks (no worker detects the rest photo twice). A
    visit whose rest photo is stored and not measured again is one job, never split (each part would
    detect that photo again); a visit without a rest photo is one job per file.
    """
    from .ingest import REST

    keys = tuple(range(len(visit.items)))
    if visit.stored_rest is not None:
        return [_Job(visit, keys)]
    rests = tuple(k for k in keys if visit.items[k].row.expression == REST)
    others = tuple(k for k in keys if k not in rests)
    if rests and others:
        return [_Job(visit, rests, then=others)]
    return [_Job(visit, (k,)) for k in keys]


def _files_per_task(queued_files: int, threads: int) -> int:
    """Files per task: the files waiting divided by four per worker thread (a quarter of them with
    one thread, an eighth with two), between 1 and :data:`_MAX_FILES_PER_TASK`. Tasks shrink as the
    queue does, to one file near the end, so the workers finish together."""
    return max(1, min(_MAX_FILES_PER_TASK, queued_files // (4 * max(threads, 1))))


class _Queue:
    """The jobs waiting to be submitted, in order, and how many files they hold."""

    def __init__(self, jobs: Iterable[_Job]) -> None:
        self._jobs = collections.deque(jobs)
        self.files = sum(j.n_files for j in self._jobs)

    def __bool__(self) -> bool:
        return bool(self._jobs)

    def push_front(self, job: _Job) -> None:
        """A job that must go next (a visit's expression photos once its rest photo is stored)."""
        self._jobs.appendleft(job)
        self.files += job.n_files

    def take(self, room: int, *, first: bool) -> _Job | None:
        """The next job, fitted to ``room`` files: a visit whole (rest photo first) when it fits;
        follow-up expression photos split when they do not. ``first``: the task's first job, taken
        even when larger than ``room``. None when the next job does not fit."""
        job = self._jobs[0]
        if job.then and job.n_files <= room:
            job = _Job(job.visit, job.keys + job.then)  # the whole visit in one task, its rest photo first
        elif len(job.keys) > room and job.splittable:
            rest = _Job(job.visit, job.keys[room:], rest_file=job.rest_file, rest_face=job.rest_face)
            self._jobs[0] = rest
            self.files -= room
            return _Job(job.visit, job.keys[:room], rest_file=job.rest_file, rest_face=job.rest_face)
        elif len(job.keys) > room and not first:
            return None
        self._jobs.popleft()
        self.files -= job.n_files
        return job


def _worker_failure(exc: BaseException) -> str:
    if type(exc).__name__ == "KilledWorker":
        return ("the Dask workers measuring this visit died repeatedly (out of memory? raise --memory-limit, "
                "or the cluster workers' limit)")
    why = f"the Dask worker failed ({type(exc).__name__}: {exc})"
    if isinstance(exc, ImportError):
        why += "; install symmetry on every worker"
    return why


def _run_plan(store: Store, plan: _Plan, client: Client, report: BatchReport, progress: _Progress,
              manifest_name: str) -> None:
    """Submit the visits (a bounded number at a time) and store the results as they arrive."""
    from distributed import as_completed

    from .ingest import RowProblem

    where = lambda r: f"{manifest_name}:{r.line}"  # noqa: E731
    # longest visits first (their rest photos unlock the most tasks); follow-up tasks jump the queue
    queue = _Queue(job for v in sorted(plan.visits, key=lambda v: -len(v.items)) for job in _jobs(v))
    in_flight: dict[Any, list[_Job]] = {}
    # results fetched by the client's event loop as tasks finish (no blocking round trip per task)
    results = as_completed(loop=client.loop, with_results=True, raise_errors=False)
    names = (f"symmetry-visit-{os.urandom(4).hex()}-{i}" for i in itertools.count())

    def fail(job: _Job, why: str) -> list[_Outcome]:
        return [_Outcome(k, reason=f"{job.visit.items[k].row.path}: {why}") for k in job.keys]

    def submit_next() -> None:
        """Submit one Dask task: the next job and, while many files wait, the jobs after it (whole
        visits where they fit) up to :func:`_files_per_task` files."""
        size = _files_per_task(queue.files, report.workers)
        jobs: list[_Job] = []
        tasks: list[_VisitTask] = []
        files = 0
        while queue and files < size:
            job = queue.take(size - files, first=not jobs)
            if job is None:
                break
            try:
                task = _task(store, job.visit, job.keys, rest_file=job.rest_file, rest_face=job.rest_face,
                             keep_rest_face=bool(job.then))
            except OSError as exc:
                why = f"the visit's stored rest photo cannot be read ({exc.strerror or exc})"
                settle(job, fail(job, why))
                continue
            jobs.append(job)
            tasks.append(task)
            files += len(job.keys)
        if jobs:
            future = client.submit(_measure_visits, tuple(tasks), pure=False, key=next(names))
            in_flight[future] = jobs
            results.add(future)

    def settle(job: _Job, outcomes: list[_Outcome]) -> None:
        visit = job.visit
        ids: dict[int, int | None] = {_STORED_REST: visit.stored_rest_id}
        files = []
        for outcome in outcomes:
            planned = visit.items[outcome.key]
            if outcome.measured is None:
                report.failed.append(RowProblem(where(planned.row), outcome.reason or "not measured"))
            else:
                files.append((planned, outcome))
        stored: list[tuple[int | None, bool] | None]
        try:
            stored = _store_files(store, visit, files, ids) if files else []
        except (SymmetryError, OSError):  # find the file that cannot be stored: one transaction each
            stored = []
            for planned, outcome in files:
                try:
                    stored.extend(_store_files(store, visit, [(planned, outcome)], ids))
                except (SymmetryError, OSError) as exc:
                    report.failed.append(RowProblem(where(planned.row), f"{planned.row.path}: cannot store ({exc})"))
                    stored.append(None)
        reference: tuple[int, Any] | None = None  # the rest photo the expressions follow: (key, landmarks)
        for (planned, outcome), done in zip(files, stored):
            if done is None:
                continue
            rid, wrote = done
            if outcome.face is not None and reference is None and rid is not None:
                reference = (outcome.key, outcome.face)
            if not wrote:
                report.skipped += 1
            elif planned.recording_id is None:
                report.added += 1
            else:
                report.remeasured += 1
            if wrote:
                report.measurement_rows += len(outcome.measured.rows)
        progress.update(len(outcomes), len(report.failed))
        if job.then:
            rest_file, face = None, None
            if reference is not None:  # the expressions follow the rest photo just stored
                key, face = reference
                visit.stored_rest_id = ids[key]
                p = visit.items[key]
                rest_file = (str(p.row.path), p.sha256, p.row.mirrored)
            queue.push_front(_Job(visit, job.then, rest_file=rest_file, rest_face=face))

    # a few tasks per worker thread in flight: the cluster stays busy, and the client holds only
    # those tasks' stored rest photos and results in memory, however long the manifest
    limit = max(4, 3 * report.workers)
    for _ in range(limit):
        submit_next()
    try:
        for future, result in results:
            jobs = in_flight.pop(future)
            if future.status == "finished":
                answers: list[list[_Outcome]] = result
            else:  # the worker died, or cannot run symmetry: (type, exception, traceback) or the exception
                exc = result[1] if isinstance(result, tuple) else result
                answers = [fail(job, _worker_failure(exc)) for job in jobs]
            future.release()
            for job, outcomes in zip(jobs, answers):
                settle(job, outcomes)
            while queue and len(in_flight) < limit:
                before = len(in_flight)
                submit_next()
                if len(in_flight) == before:
                    break
    finally:
        for future in in_flight:  # interrupted: leave nothing running on the cluster
            future.cancel()


# --------------------------------------------------------------------------- entry point


def run_batch(
    store: Store,
    manifest: str | os.PathLike[str],
    *,
    options: BatchOptions | None = None,
    client: Client | None = None,
    progress: bool | Callable[[int, int], None] = False,
    on_message: Callable[[str], None] | None = None,
) -> BatchReport:
    """Measure every file of a manifest on Dask workers and store the results.

    Stores exactly what :func:`symmetry.ingest.ingest_manifest` stores for the
    same manifest (same recordings, rows and values), but measures on Dask
    workers in tasks of whole visits, shrinking to single photos near the end (a visit's rest photo
    first; see the module docstring); only this process writes to ``store``, one transaction per
    visit of a task, as results arrive.

    Parameters
    ----------
    store : Store
    manifest : path
        The ingest manifest (see :mod:`symmetry.ingest`).
    options : BatchOptions, optional
        Local workers or a scheduler address; ignored when ``client`` is given.
    client : distributed.Client, optional
        An existing client to run on (tests, benchmarks, notebooks).
    progress : bool or callable
        ``True``: a tqdm bar with ETA on stderr when it is a terminal; a
        callable is called with ``(files_finished, files_total)``.
    on_message : callable, optional
        Called with one line on the plan before measuring starts.

    Returns
    -------
    BatchReport
        Unusable rows and files that failed are in ``failed``, with reasons.

    Raises
    ------
    ManifestError
        The manifest as a whole is unusable (missing, wrong columns).
    BatchError
        The cluster cannot be started or reached.
    StoreError
        The database cannot be used.
    """
    from .ingest import read_manifest, remeasure

    t0 = time.perf_counter()
    options = options or BatchOptions()
    say = on_message or (lambda _msg: None)
    report = BatchReport()
    rows, problems = read_manifest(manifest)
    name = Path(manifest).name
    report.failed += problems
    plan = _make_plan(store, rows, name, report)
    if plan.n_files:
        if client is not None:
            cm: contextlib.AbstractContextManager[Client] = contextlib.nullcontext(client)
            where = "on the given Dask cluster"
        elif options.scheduler:
            cm = connect(options.scheduler)
            where = f"on the Dask cluster at {options.scheduler}"
        else:
            n = min(options.workers or _available_cores(), len(plan.visits))
            cm = local_client(n, memory_limit=options.memory_limit)
            where = f"on {n} local worker(s)"
        say(f"{plan.n_files} file(s) in {len(plan.visits)} visit(s) to measure {where}; "
            f"{report.skipped} already measured, {len(report.failed)} unusable")
        t_start = time.perf_counter()
        with cm as c:
            report.startup_seconds = time.perf_counter() - t_start
            report.workers = _worker_threads(c)
            bar = _Progress(progress, plan.n_files)
            try:
                _run_plan(store, plan, c, report, bar, name)
            finally:
                bar.close()
    # stored recordings outside the manifest whose visit gained a rest photo, or whose patient's
    # affected side changed (rare; measured here, as ingest does)
    from .ingest import IngestReport

    catch_up = IngestReport()
    for code in _out_of_date_patients(store, plan.patients):
        remeasure(store, code, report=catch_up)
    report.remeasured += catch_up.remeasured
    report.measurement_rows += catch_up.measurement_rows
    report.failed += catch_up.problems
    report.failed.sort(key=_line_order)
    report.seconds = time.perf_counter() - t0
    return report


def _out_of_date_patients(store: Store, patients: Sequence[str]) -> list[str]:
    """Those of ``patients`` with a recording that :func:`symmetry.ingest.remeasure` would measure again.

    (An expression recording without a rest photo in a visit that has one, or a recording measured
    with another affected side than the patient's.) Two queries instead of one call per patient.
    """
    from sqlalchemy import and_, exists, select
    from sqlalchemy.orm import aliased

    from .ingest import REST
    from .store import Patient, Recording, Visit

    rest = aliased(Recording)
    base = select(Patient.code).join(Visit, Visit.patient_id == Patient.id).join(Recording, Recording.visit_id == Visit.id)
    found: set[str] = set()
    with store.session() as s:
        for chunk in _chunks(list(patients)):
            no_rest = base.where(
                Patient.code.in_(chunk),
                Recording.expression != REST,
                Recording.rest_recording_id.is_(None),
                exists().where(and_(rest.visit_id == Recording.visit_id, rest.expression == REST)),
            )
            other_side = base.where(
                Patient.code.in_(chunk), Recording.measured_affected_side.is_distinct_from(Patient.affected_side)
            )
            found.update(s.scalars(no_rest.distinct()))
            found.update(s.scalars(other_side.distinct()))
    return [p for p in patients if p in found]


def _line_order(problem: RowProblem) -> tuple[int, int]:
    """Failed rows in manifest order (``manifest.csv:LINE``), anything else after them."""
    _, _, line = problem.source.rpartition(":")
    return (0, int(line)) if line.isdigit() else (1, 0)
