"""``symmetry batch MANIFEST.csv``: measure a cohort on every core, or on a Dask cluster.

Thin: argparse parses, :func:`symmetry.batch.run_batch` does the work.
Exit codes: 0 every row stored or already stored; 3 some rows failed (each
printed as ``error: manifest.csv:LINE: reason``); 2 the manifest as a whole is
unusable; 1 anything else (no cluster, database unreachable); 130 interrupted.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from .cli_args import EXIT_INPUT, EXIT_INTERRUPTED, EXIT_OK, EXIT_OTHER, EXIT_SOME_FAILED, workers


__all__ = ["add_parsers"]




def add_parsers(sub: Any) -> None:
    """Add ``batch`` to the ``symmetry`` parser."""
    from .batch import DEFAULT_MEMORY_LIMIT

    p = sub.add_parser(
        "batch",
        help="measure and store every photo of a manifest on all cores or a Dask cluster",
        description=(
            "Measure every photo of an ingest manifest (see `symmetry ingest -h`) in parallel and store the "
            "results as `symmetry ingest` would. Files already measured with this algorithm version (same "
            "content) are skipped, so a re-run resumes an interrupted batch. A file that cannot be measured is "
            "reported with its reason and the batch goes on. Exit codes: 0 all stored, 3 some failed, "
            "2 unusable manifest, 1 other errors."
        ),
    )
    p.add_argument("manifest", metavar="MANIFEST.csv")
    where = p.add_mutually_exclusive_group()
    where.add_argument("--workers", type=workers, default=0, metavar="N",
                       help="local worker processes, one core each (default 0 = every core)")
    where.add_argument("--scheduler", metavar="tcp://HOST:PORT",
                       help="run on an existing Dask cluster; its workers need symmetry installed and must be able "
                            "to read the manifest's paths")
    p.add_argument("--memory-limit", default=DEFAULT_MEMORY_LIMIT, metavar="SIZE",
                   help=f"memory limit of each local worker (default {DEFAULT_MEMORY_LIMIT})")
    p.add_argument("--failures", metavar="FILE.csv", help="also write the failed rows (source, reason) to this CSV file")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument(
        "--database",
        metavar="URL",
        help="SQLAlchemy URL or SQLite file (default: $SYMMETRY_DATABASE_URL, else symmetry.sqlite3 in $SYMMETRY_HOME)",
    )
    p.set_defaults(func=_batch)


def _batch(args: argparse.Namespace) -> int:
    from .batch import BatchError, BatchOptions, run_batch
    from .errors import InputError
    from .store import open_store

    options = BatchOptions(workers=args.workers, scheduler=args.scheduler, memory_limit=args.memory_limit)
    say = lambda msg: print(msg, file=sys.stderr)  # noqa: E731
    try:
        with open_store(args.database) as store:
            report = run_batch(store, args.manifest, options=options, progress=not args.no_progress, on_message=say)
    except InputError as exc:  # the manifest as a whole
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_INPUT
    except BatchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_OTHER
    except KeyboardInterrupt:
        print("error: interrupted; every recording stored so far is complete and kept: run the same command "
              "again to go on", file=sys.stderr)
        return EXIT_INTERRUPTED
    for problem in report.failed:
        print(f"error: {problem}", file=sys.stderr)
    if args.failures:
        report.write_failures(args.failures)
    print(report.summary(), file=sys.stderr)
    return EXIT_OK if report.ok else EXIT_SOME_FAILED
