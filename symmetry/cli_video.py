"""Video subcommands: ``symmetry frames VIDEO --out series.parquet`` and ``symmetry measure VIDEO``.

``frames`` writes the per-frame series; ``measure`` (dispatched here by
:mod:`symmetry.cli` when every input is a video) prints the video summary
(``--format table|json|csv``) and optionally writes an annotated video, the
time-series plot (PNG and/or interactive HTML), the annotated key frames and
the series. Errors are one line ``error: FILE: reason`` on stderr; exit codes
are 0 (all measured), 2 (an input could not be used) and 1 (anything else).
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path
from typing import Any, TextIO

from .cli_args import EXIT_INPUT, EXIT_OK, EXIT_OTHER, non_negative_int, non_negative_seconds, positive_float, positive_int
from .errors import InputError, SymmetryError

__all__ = ["add_parsers", "measure_videos"]











def _video_arguments(group: Any) -> None:
    group.add_argument("--events", metavar="CSV",
                       help="start_s,end_s,expression rows overriding the automatic events ('rest' rows set the baseline)")
    group.add_argument("--stride", type=positive_int, default=1, metavar="N", help="analyse every N-th frame (default 1)")
    group.add_argument("--smooth", type=non_negative_seconds, default=0.0, metavar="S",
                       help="centred moving average of S seconds on the series; raw kept as *_raw (default off)")
    group.add_argument("--workers", type=non_negative_int, default=0, metavar="N",
                       help="parallel landmarkers (default: 1.5 per core)")
    group.add_argument("--plot", action="append", default=None, metavar="OUT",
                       help="write the eye-aperture / commissure time-series plot: .png or .html (repeatable)")
    group.add_argument("--no-progress", action="store_true", help="no progress bar")
    group.add_argument("--engine", choices=("auto", "tracker", "mediapipe"), default="auto",
                       help="per-frame landmarks: 'tracker' runs MediaPipe's models directly from frame to frame "
                            "(faster), 'mediapipe' its FaceLandmarker on every frame; 'auto' (default): the tracker "
                            "where LiteRT is installed")


def add_parsers(subparsers: Any) -> None:
    """Add ``frames`` and the video options of ``measure``."""
    f = subparsers.add_parser(
        "frames",
        help="per-frame series of a clinic video (measures, blendshapes, head pose)",
        description=(
            "Write one row per video frame: every photo measure per side (mm, pupil frame, movement "
            "against the video's own rest baseline), blendshapes and head pose. Sides are the patient's."
        ),
    )
    f.add_argument("video", metavar="VIDEO", help="video file (mp4, mov, avi, webm, mkv, m4v)")
    f.add_argument("--out", required=True, metavar="OUT", help="output table: .parquet or .csv")
    f.add_argument("--affected-side", choices=("left", "right"), help="patient's affected side (adds *_ratio columns)")
    f.add_argument("--mirrored", action="store_true", help="the video is mirrored (selfie camera): swap side labels")
    f.add_argument("--mm-per-px", type=positive_float, metavar="X", help="manual scale at rest, mm per pixel")
    f.add_argument("--iris-mm", type=positive_float, default=None, metavar="MM", help="horizontal iris diameter, mm (default 11.77)")
    f.add_argument("--model", metavar="TASK", help="another face_landmarker.task model file")
    _video_arguments(f)
    f.set_defaults(func=_frames)

    measure = getattr(subparsers, "choices", {}).get("measure")
    if measure is not None:
        g = measure.add_argument_group(
            "video options (when every input is a video)",
            "A video's rest periods and expression events are found automatically; --annotate OUT.mp4 "
            "writes the annotated video; --rest and --expression apply to photos only.",
        )
        _video_arguments(g)
        g.add_argument("--keyframes", metavar="DIR", help="write the annotated rest frame and event peak frames (PNG) here")
        g.add_argument("--frames-out", metavar="OUT", help="also write the per-frame series (.parquet or .csv)")


def _options(args: argparse.Namespace) -> Any:
    from .calibration import DEFAULT_IRIS_MM
    from .video import VideoOptions

    return VideoOptions(
        frame_stride=args.stride,
        smoothing_s=args.smooth,
        affected_side=args.affected_side,
        mirrored=args.mirrored,
        mm_per_px=args.mm_per_px,
        iris_mm=args.iris_mm or DEFAULT_IRIS_MM,
        workers=args.workers,
        model_path=args.model,
        engine=getattr(args, "engine", "auto"),
    )


def _output_path(out: str, video: str, several: bool, default_suffix: str) -> Path:
    path = Path(out)
    if not several:
        return path
    if path.suffix == "" or path.is_dir():
        return path / f"{Path(video).stem}{default_suffix}"
    return path.with_name(f"{path.stem}_{Path(video).stem}{path.suffix}")


def _check_table_suffix(out: str) -> str | None:
    return None if Path(out).suffix.lower() in (".parquet", ".csv") else "must end in .parquet or .csv"


def _check_plot_suffix(out: str) -> str | None:
    return None if Path(out).suffix.lower() in (".png", ".html") else "must end in .png or .html"


def _frames(args: argparse.Namespace) -> int:
    from .video import VideoAnalyser

    problem = _check_table_suffix(args.out)
    if problem:
        print(f"error: {args.out}: --out {problem}", file=sys.stderr)
        return EXIT_INPUT
    for plot in args.plot or []:
        problem = _check_plot_suffix(plot)
        if problem:
            print(f"error: {plot}: --plot {problem}", file=sys.stderr)
            return EXIT_INPUT
    try:
        options = _options(args)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_INPUT
    try:
        with VideoAnalyser(options) as va:
            series = va.frames(args.video, events=args.events, progress=not args.no_progress)
        path = series.save(args.out)
        for plot in args.plot or []:
            from .plotting import save_video_plot

            save_video_plot(series, plot)
    except InputError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_INPUT
    except (SymmetryError, OSError) as exc:
        print(f"error: {args.video}: {exc}", file=sys.stderr)
        return EXIT_OTHER
    print(f"{path}: {series.n_frames} frames ({series.frames_without_face} without a face), "
          f"{len(series.segmentation.events)} events")
    for w in series.warnings:
        print(f"warning: {args.video}: {w}", file=sys.stderr)
    return EXIT_OK


def _print_table(result: Any, out: TextIO) -> None:
    print(f"{result.source}  {result.duration_s:.2f} s at {result.fps:.2f} fps, {result.series.n_frames} frames "
          f"({result.series.frames_without_face} without a face), scale {result.mm_per_px:.4f} mm/px", file=out)
    rest = ", ".join(f"{a:.2f}-{b:.2f}" for a, b in result.rest_periods) or "-"
    print(f"rest: {rest} s (baseline frame at {result.rest_s:.2f} s)", file=out)
    print(f"  {'event':<15}{'start':>7}{'end':>7}{'peak':>7}  {'corner moved R/L mm':>20}  {'fissure chg R/L %':>18}  {'brow R/L mm':>12}", file=out)
    for e in result.events:
        cm = f"{e.value('commissure_movement', 'right'):.1f} / {e.value('commissure_movement', 'left'):.1f}"
        pf = f"{e.value('palpebral_fissure_change', 'right'):.0f} / {e.value('palpebral_fissure_change', 'left'):.0f}"
        br = f"{e.value('brow_movement', 'right'):.1f} / {e.value('brow_movement', 'left'):.1f}"
        print(f"  {e.expression:<15}{e.start_s:7.2f}{e.end_s:7.2f}{e.peak_s:7.2f}  {cm:>20}  {pf:>18}  {br:>12}", file=out)
    if result.indicators:
        print(f"  {'indicator':<38}{'right':>9}{'left':>9}{'midline':>9}  unit", file=out)
        names = list(dict.fromkeys(m.name for m in result.indicators))
        for name in names:
            vals = {side: result.indicator(name, side) for side in ("right", "left", "midline")}
            unit = next(m.unit for m in result.indicators if m.name == name)
            cells = "".join(f"{v:9.2f}" if not math.isnan(v) else f"{'':9}" for v in vals.values())
            print(f"  {name:<38}{cells}  {unit}", file=out)
    for w in result.warnings:
        print(f"  warning: {w}", file=out)


def measure_videos(args: argparse.Namespace) -> int:
    """``symmetry measure VIDEO [VIDEO...]``: the video summary of each video.

    Returns the exit code: 0 all measured, 2 a video could not be used, 1 anything else.
    """
    from .cli import _record_error, _write_results

    from .video import VideoAnalyser, write_annotated_video

    videos: list[str] = list(args.photos)
    for flag in ("rest", "expression"):
        if getattr(args, flag, None):
            print(f"error: --{flag} applies to photos only; a video finds its own rest and expressions "
                  "(use --events CSV to name them)", file=sys.stderr)
            return EXIT_INPUT
    for plot in getattr(args, "plot", None) or []:
        problem = _check_plot_suffix(plot)
        if problem:
            print(f"error: {plot}: --plot {problem}", file=sys.stderr)
            return EXIT_INPUT
    frames_out = getattr(args, "frames_out", None)
    if frames_out and _check_table_suffix(frames_out):
        print(f"error: {frames_out}: --frames-out {_check_table_suffix(frames_out)}", file=sys.stderr)
        return EXIT_INPUT
    for name in ("stride", "smooth", "workers", "events", "keyframes", "no_progress"):
        if not hasattr(args, name):
            setattr(args, name, {"stride": 1, "smooth": 0.0, "workers": 0}.get(name))
    try:
        options = _options(args)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_INPUT

    several = len(videos) > 1
    results = []
    status = EXIT_OK
    with VideoAnalyser(options) as va:
        for video in videos:
            try:
                result = va.measure(video, events=args.events, keyframes_dir=args.keyframes,
                                    progress=not args.no_progress)
                if args.annotate:
                    write_annotated_video(result, _output_path(args.annotate, video, several, "_annotated.mp4"),
                                          progress=not args.no_progress)
                for plot in getattr(args, "plot", None) or []:
                    from .plotting import save_video_plot

                    save_video_plot(result, _output_path(plot, video, several, Path(plot).suffix))
                if frames_out:
                    result.series.save(_output_path(frames_out, video, several, Path(frames_out).suffix))
            except (SymmetryError, OSError) as exc:
                status = _record_error(exc, video, status)
                continue
            results.append(result)
            if args.format == "table":
                _print_table(result, sys.stdout)
    _write_results(results, args.format, several)
    return status
