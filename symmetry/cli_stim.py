"""Stimulation-mapping subcommand: ``symmetry stim VIDEO --log stim.csv --side left|right``.

Thin: argparse parses, :mod:`symmetry.stim` measures, :mod:`symmetry.store`
stores. One video with a log (``branch,time_s`` or ``branch,start_s,end_s``),
or one clip per branch (``symmetry stim CLIP1 CLIP2 ...``; branch names from
the file stems or the log). Prints the branch table (``--format
table|json|csv``), writes side-by-side key frames with ``--keyframes DIR``,
and stores the table with the patient's procedure with ``--patient CODE
--procedure-date YYYY-MM-DD``. Decision support only: the table ranks and
explains; it never decides.

Errors are one line ``error: FILE: reason`` on stderr; exit codes 0 (done),
2 (an input could not be used: video, log), 1 (anything else).
"""

from __future__ import annotations

import argparse
import math
import sys
from typing import Any, TextIO

from .cli_args import EXIT_INPUT, EXIT_OK, EXIT_OTHER, iso_date, non_negative_int, positive_float, positive_int, positive_seconds
from .errors import SymmetryError

__all__ = ["add_parsers"]






def add_parsers(subparsers: Any) -> None:
    """Add ``stim``."""

    p = subparsers.add_parser(
        "stim",
        help="stimulation mapping: what each stimulated facial-nerve branch moves (decision support)",
        description=(
            "Measure the movement each stimulated facial-nerve branch elicits on the operated side, from one "
            "session video and its stimulation log (CSV: branch,time_s or branch,start_s,end_s), or from one "
            "clip per branch. Per branch: brow, eye closure, smile vector, commissure depression, lip and chin "
            "movements in mm (pupil frame) with directions, onset latency, quality, and a class (smile_agonist, "
            "smile_antagonist, ocular, lower_lip, mixed, none). Decision support only: the table ranks and "
            "explains; it never decides. Sides are the patient's."
        ),
    )
    p.add_argument("inputs", nargs="+", metavar="VIDEO", help="the session video, or one clip per branch")
    p.add_argument("--log", metavar="CSV", help="stimulation log: branch,time_s or branch,start_s,end_s (optional clip column)")
    p.add_argument("--side", required=True, choices=("left", "right"), help="the operated side (the patient's)")
    p.add_argument("--format", choices=("table", "json", "csv"), default="table", help="output format (default table)")
    p.add_argument("--keyframes", metavar="DIR", help="write a baseline | peak image per branch (PNG) here")
    p.add_argument("--baseline", type=positive_seconds, default=1.0, metavar="S", help="baseline window before each stimulation, s (default 1)")
    p.add_argument("--response", type=positive_seconds, default=2.0, metavar="S",
                   help="response window after a stimulation without end_s, s (default 2)")
    p.add_argument("--mirrored", action="store_true", help="the video is mirrored (selfie camera)")
    p.add_argument("--mm-per-px", type=positive_float, metavar="X", help="manual scale, mm per pixel")
    p.add_argument("--iris-mm", type=positive_float, default=None, metavar="MM", help="horizontal iris diameter, mm (default 11.77)")
    p.add_argument("--no-refine", action="store_true", help="landmark model only (no image tracking; under-reports)")
    p.add_argument("--stride", type=positive_int, default=1, metavar="N", help="analyse every N-th frame (default 1)")
    p.add_argument("--workers", type=non_negative_int, default=0, metavar="N", help="parallel landmarkers (default: 1.5 per core)")
    p.add_argument("--model", metavar="TASK", help="another face_landmarker.task model file")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    g = p.add_argument_group("storing", "Store the branch table with the patient's procedure (created if absent).")
    g.add_argument("--patient", metavar="CODE", help="patient code")
    g.add_argument("--procedure-date", type=iso_date, metavar="YYYY-MM-DD", help="date of the procedure")
    g.add_argument("--procedure", metavar="KIND", help="procedure kind (default: the one on that date, else selective_neurectomy)")
    g.add_argument("--database", metavar="URL",
                   help="SQLAlchemy URL or SQLite file (default: $SYMMETRY_DATABASE_URL, else symmetry.sqlite3 in $SYMMETRY_HOME)")
    p.set_defaults(func=_stim)


def _print_table(result: Any, out: TextIO) -> None:
    print(f"stimulation map of {result.source}   operated side: patient's {result.side}   "
          f"scale {result.mm_per_px:.4f} mm/px", file=out)
    print("decision support only: branches ranked by smile vector; the table explains, it never decides", file=out)
    head = (f"  {'rank':>4}  {'branch':<18}{'class':<18}{'smile mm':>9}{'corner dn':>10}{'eye cl %':>9}"
            f"{'brow mm':>8}{'low lip':>8}{'onset ms':>9}  {'quality':<8}preserve")
    print(head, file=out)

    def f(v: float, d: int = 1) -> str:
        return "" if not math.isfinite(v) else f"{(0.0 if round(v, d) == 0 else v):.{d}f}"

    for b in result.ranked():
        print(f"  {b.rank:>4}  {b.branch[:17]:<18}{b.movement_class:<18}{f(b.value('smile_vector')):>9}"
              f"{f(b.value('commissure_depression')):>10}{f(b.value('eye_closure'), 0):>9}"
              f"{f(b.value('brow_elevation')):>8}{f(b.value('lower_lip_depression')):>8}"
              f"{f(b.onset_latency_ms, 0):>9}  {b.quality:<8}{'yes' if b.preserve else ''}", file=out)
    for b in result.ranked():
        print(f"  {b.branch}: {b.explanation}", file=out)
    for w in result.warnings:
        print(f"  warning: {w}", file=out)


def _stim(args: argparse.Namespace) -> int:
    from .calibration import DEFAULT_IRIS_MM
    from .cli import _record_error, _write_results
    from .stim import StimOptions, analyse_clips, analyse_stimulation, read_stim_log

    if (args.patient is None) != (args.procedure_date is None):
        print("error: --patient and --procedure-date go together (the table is stored with the patient's procedure)",
              file=sys.stderr)
        return EXIT_INPUT
    try:
        options = StimOptions(side=args.side, baseline_s=args.baseline, response_s=args.response, mirrored=args.mirrored,
                              refine=not args.no_refine, mm_per_px=args.mm_per_px,
                              iris_mm=args.iris_mm or DEFAULT_IRIS_MM, frame_stride=args.stride, workers=args.workers,
                              model_path=args.model)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_INPUT
    source = args.log or args.inputs[0]
    try:
        stims = read_stim_log(args.log) if args.log else None
        one_video = len(args.inputs) == 1 and stims is not None and not any(s.clip for s in stims)
        source = args.inputs[0] if one_video else source
        progress = not args.no_progress
        keyframes = bool(args.keyframes)
        if one_video:
            result = analyse_stimulation(args.inputs[0], args.log, options, keyframes=keyframes, progress=progress)
        else:
            result = analyse_clips(args.inputs, options, log=args.log, keyframes=keyframes, progress=progress)
        if args.keyframes:
            result.save_keyframes(args.keyframes)
    except (SymmetryError, OSError) as exc:
        return _record_error(exc, source, EXIT_OK)
    if args.format == "table":
        _print_table(result, sys.stdout)
    _write_results([result], args.format, False)
    if args.patient is not None:
        from .store import open_store, save_stimulation

        try:
            with open_store(args.database) as store:
                n = save_stimulation(store, args.patient, args.procedure_date, result, procedure=args.procedure)
        except (SymmetryError, ValueError) as exc:
            print(f"error: {exc}", file=sys.stderr)
            return EXIT_OTHER
        print(f"{n} branch(es) stored for {args.patient}, procedure of {args.procedure_date}", file=sys.stderr)
    return EXIT_OK
