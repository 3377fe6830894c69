"""Batch benchmark: files per minute with 1 and 2 local Dask workers (or on a cluster), and the speed-up.

Run: ``python benchmarks/batch.py [--photos 0] [--repeat 3] [--workers 1 2]``, or against a running
cluster ``python benchmarks/batch.py --scheduler tcp://HOST:8786`` (the workers must have symmetry
installed and read this checkout's ``sample_media``). Prints figures; asserts nothing.

The sample is the whole sample manifest (``sample_media/manifest.csv``, 324 photos in 100 visits;
about a minute per run with one worker here), or with ``--photos N`` whole visits of it (one visit
per patient in turn, so the faces vary) until N photos: a small sample over-weights the start and
the end of a batch, where the workers wait for the first results or for the last files. Each run measures into a new, empty store with freshly
restarted, warmed-up workers (model loaded; no cached rest photos), so cluster start-up is not counted
but everything else is: hashing, planning, measuring, shipping the stripped copies back and the
database writes. Other processes on the machine take CPU from the workers: the load average and the
workers' CPU use are printed beside each figure, and every configuration runs ``--repeat`` times
(best, median and spread), the configurations taking turns so that they share the outside load.
``--control`` adds, each round, the same work in plain processes without Dask or a database (one
task per visit): the speed-up the machine allowed at that moment, against which the batch's can be judged.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MANIFEST = ROOT / "sample_media" / "manifest.csv"


def sample_manifest(source: Path, n_photos: int, out: Path) -> tuple[int, int]:
    """Write whole visits of ``source`` (round-robin over patients) up to ``n_photos``; (photos, visits)."""
    with open(source, newline="", encoding="utf-8-sig") as f:
        reader = csv.DictReader(f)
        fields = list(reader.fieldnames or [])
        rows = list(reader)
    visits: dict[str, dict[str, list[dict[str, str]]]] = {}
    for r in rows:
        r["path"] = str((source.parent / r["path"]).resolve())
        visits.setdefault(r["patient"], {}).setdefault(r["visit_date"], []).append(r)
    queues = [list(v.values()) for v in visits.values()]
    chosen: list[list[dict[str, str]]] = []
    while queues and (n_photos <= 0 or sum(map(len, chosen)) < n_photos):
        for q in list(queues):
            if n_photos > 0 and sum(map(len, chosen)) >= n_photos:
                break
            chosen.append(q.pop(0))
            if not q:
                queues.remove(q)
    with open(out, "w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fields)
        w.writeheader()
        for visit in chosen:
            w.writerows(visit)
    return sum(map(len, chosen)), len(chosen)


def _cpu_seconds() -> float:
    import psutil

    t = psutil.Process().cpu_times()
    return float(t.user + t.system)


def _fresh_workers(client) -> None:  # type: ignore[no-untyped-def]
    """Restart the workers (empty caches), then load each one's model."""
    from symmetry.batch import _warm_up

    client.restart(wait_for_workers=True)
    workers = list(client.scheduler_info()["workers"])
    client.gather([client.submit(_warm_up, pure=False, workers=[w], allow_other_workers=False) for w in workers])


def run_once(client, manifest: Path) -> dict[str, float]:  # type: ignore[no-untyped-def]
    """One timed batch into an empty store, on freshly restarted, warmed-up workers."""
    from symmetry.batch import run_batch
    from symmetry.store import open_store

    _fresh_workers(client)
    cpu0 = client.run(_cpu_seconds)
    own0 = _cpu_seconds()
    load0 = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as home, open_store(home=home) as store:
        report = run_batch(store, manifest, client=client)
    own = _cpu_seconds() - own0
    cpu1 = client.run(_cpu_seconds)
    if not report.ok or report.done == 0:
        print(f"  {len(report.failed)} failed: {report.failed[:3]}", file=sys.stderr)
    cpu = sum(cpu1[w] - cpu0.get(w, 0.0) for w in cpu1)
    return {
        "files": report.done,
        "files_per_min": 60.0 * report.done / report.seconds,
        "seconds": report.seconds,
        "cpu_per_file": cpu / max(report.done, 1),
        "client_cpu_per_file": own / max(report.done, 1),
        "utilisation": cpu / (report.seconds * max(report.workers, 1)),
        "load": (load0 + os.getloadavg()[0]) / 2,
    }


def control_tasks(manifest: Path) -> list:  # type: ignore[type-arg]
    """The batch's worker tasks for ``manifest`` (one per visit, rest first, longest first)."""
    from symmetry import ALGORITHM_VERSION
    from symmetry.batch import _Item, _VisitTask
    from symmetry.ingest import file_sha256, read_manifest

    rows, _ = read_manifest(manifest)
    visits: dict[tuple[str, object], list] = {}  # type: ignore[type-arg]
    for r in sorted(rows, key=lambda r: (r.expression != "rest", r.line)):
        visits.setdefault((r.patient, r.visit_date), []).append(r)
    tasks = [
        _VisitTask(
            items=tuple(_Item(k, str(r.path), file_sha256(r.path), r.expression, r.mirrored, True) for k, r in enumerate(v)),
            affected_side=next((r.affected_side for r in v if r.affected_side), None),
            rest=None,
            algorithm_version=ALGORITHM_VERSION,
        )
        for v in visits.values()
    ]
    return sorted(tasks, key=lambda t: -len(t.items))


def run_control(n: int, tasks: list) -> dict[str, float]:  # type: ignore[type-arg]
    """The same worker tasks in ``n`` plain processes (no Dask, no database): what the machine allows now."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    from symmetry.batch import _measure_visit, _warm_up

    for key in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[key] = "1"
    with ProcessPoolExecutor(n, mp_context=multiprocessing.get_context("spawn"), initializer=_warm_up) as pool:
        list(pool.map(abs, range(4 * n)))  # every process started and warmed up
        load0 = os.getloadavg()[0]
        t0 = time.perf_counter()
        files = sum(len(out) for out in pool.map(_measure_visit, tasks))
        seconds = time.perf_counter() - t0
    return {"files": files, "files_per_min": 60.0 * files / seconds, "seconds": seconds,
            "load": (load0 + os.getloadavg()[0]) / 2}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--manifest", type=Path, default=MANIFEST, help="default: sample_media/manifest.csv")
    parser.add_argument("--photos", type=int, default=0,
                        help="photos in the sample, whole visits (default 0: the whole sample manifest)")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2], help="local worker counts (default 1 2)")
    parser.add_argument("--scheduler", metavar="tcp://HOST:PORT", help="benchmark an existing cluster instead")
    parser.add_argument("--control", action="store_true",
                        help="each round, also run the same worker tasks in plain processes (no Dask, no database): "
                             "the speed-up this machine allows under its current load")
    args = parser.parse_args()

    from symmetry.batch import connect, local_client

    with tempfile.TemporaryDirectory() as tmp:
        manifest = Path(tmp) / "sample.csv"
        n_photos, n_visits = sample_manifest(args.manifest, args.photos, manifest)
        print(f"sample: {n_photos} photos in {n_visits} visits of {args.manifest}; {os.cpu_count()} cores here")
        table: dict[str, list[dict[str, float]]] = {}
        with contextlib.ExitStack() as stack:
            clients = {}
            if args.scheduler:
                client = stack.enter_context(connect(args.scheduler))
                clients[f"cluster ({sum(client.nthreads().values())} threads)"] = client
            else:
                for n in args.workers:
                    t0 = time.perf_counter()
                    clients[str(n)] = stack.enter_context(local_client(n))
                    print(f"{n} local worker(s) started in {time.perf_counter() - t0:.1f} s", flush=True)
            tasks = control_tasks(manifest) if args.control and not args.scheduler else []
            # configurations take turns, so that they share whatever else loads the machine
            for k in range(args.repeat):
                for n in args.workers if tasks else ():
                    r = run_control(n, tasks)
                    table.setdefault(f"{n} plain", []).append(r)
                    print(f"  run {k + 1}/{args.repeat}, {n} plain process(es): {r['files']:.0f} files in "
                          f"{r['seconds']:.1f} s = {r['files_per_min']:.1f} files/min; load average {r['load']:.1f}",
                          flush=True)
                for label, client in clients.items():
                    r = run_once(client, manifest)
                    table.setdefault(label, []).append(r)
                    print(
                        f"  run {k + 1}/{args.repeat}, {label} worker(s): {r['files']:.0f} files in "
                        f"{r['seconds']:.1f} s = {r['files_per_min']:.1f} files/min; worker CPU "
                        f"{r['cpu_per_file']:.2f} s/file, client (planning, scheduler, database) {r['client_cpu_per_file']:.3f} s/file, each worker busy {100 * r['utilisation']:.0f}% of the "
                        f"time; load average {r['load']:.1f}",
                        flush=True,
                    )

    print()
    print(f"{'workers':<12}{'best':>10}{'median':>10}{'worst':>10}  files/min   worker CPU s/file  busy   load")
    for label, rs in table.items():
        fpm = [r["files_per_min"] for r in rs]
        cpu = f"{statistics.median(r['cpu_per_file'] for r in rs):>8.2f}" if "cpu_per_file" in rs[0] else f"{'-':>8}"
        busy = f"{100 * statistics.median(r['utilisation'] for r in rs):>8.0f}%" if "utilisation" in rs[0] else f"{'-':>9}"
        print(
            f"{label:<12}{max(fpm):>10.1f}{statistics.median(fpm):>10.1f}{min(fpm):>10.1f}"
            f"{'':13}{cpu}{busy}{statistics.median(r['load'] for r in rs):>7.1f}"
        )
    if not args.scheduler and len(args.workers) >= 2:
        a, b = str(args.workers[0]), str(args.workers[-1])
        fa = [r["files_per_min"] for r in table[a]]
        fb = [r["files_per_min"] for r in table[b]]
        print(
            f"speed-up {a} -> {b} workers: best/best {max(fb) / max(fa):.2f}x, median/median "
            f"{statistics.median(fb) / statistics.median(fa):.2f}x, spread {min(fb) / max(fa):.2f}x-"
            f"{max(fb) / min(fa):.2f}x"
        )
        paired = [y / x for x, y in zip(fa, fb)]
        print(f"  per round (runs taken in turn, under the same outside load): "
              f"{', '.join(f'{p:.2f}x' for p in paired)}; median {statistics.median(paired):.2f}x")
        if f"{a} plain" in table:
            ca = [r["files_per_min"] for r in table[f"{a} plain"]]
            cb = [r["files_per_min"] for r in table[f"{b} plain"]]
            ceiling = [y / x for x, y in zip(ca, cb)]
            print(f"  plain processes, same rounds (what the machine allowed): "
                  f"{', '.join(f'{p:.2f}x' for p in ceiling)}; median {statistics.median(ceiling):.2f}x; "
                  f"batch at {b} workers vs plain: {statistics.median(fb) / statistics.median(cb):.2f}")


if __name__ == "__main__":
    main()
