"""Command-line interface: ``symmetry measure PHOTO [PHOTO...]``.

Thin by design: argparse parses, the library measures, and only symmetry's own
errors are caught and printed as one line naming the file and the reason.
Exit codes: 0 all measured; 2 an input could not be measured (unreadable, not
an image, no face, face too small); 1 anything else.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import json
import math
import os
import sys
from pathlib import Path
from typing import Any, Sequence, TextIO

from . import __version__
from .cli_args import EXIT_INPUT, EXIT_OK, EXIT_OTHER, positive_float
from .errors import InputError, SymmetryError

#: Modules that add subcommands: each has ``add_parsers(subparsers)``, and every
#: parser it adds sets ``func`` (``args -> exit code``) with ``set_defaults``.
_COMMAND_MODULES: tuple[str, ...] = (
    "symmetry.cli_store",
    "symmetry.cli_video",
    "symmetry.cli_batch",
    "symmetry.cli_stim",
)





def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="symmetry",
        description="Calibrated facial symmetry and movement measures from photos and videos.",
    )
    parser.add_argument("--version", action="version", version=f"symmetry {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    m = sub.add_parser(
        "measure",
        help="measure frontal photos, or clinic videos (expression events and indicators)",
        description=(
            "Measure frontal photos, or clinic videos (given videos only: the video summary with its "
            "expression events and indicators). Sides are the patient's (left = image right in an "
            "unmirrored photo). Distances in mm in the pupil frame; angles in degrees."
        ),
    )
    m.add_argument("photos", nargs="+", metavar="PHOTO", help="photo file(s), or video file(s)")
    m.add_argument("--rest", metavar="REST", help="the same session's rest photo: adds movement measures and shares its scale")
    m.add_argument("--expression", metavar="KEY", help="expression key, e.g. rest, smile_open, pucker")
    m.add_argument("--affected-side", choices=("left", "right"), help="patient's affected side (for affected/healthy ratios)")
    m.add_argument("--mirrored", action="store_true", help="photos are mirrored (selfie camera): swap side labels")
    m.add_argument("--mm-per-px", type=positive_float, metavar="X", help="manual scale, mm per pixel")
    m.add_argument("--iris-mm", type=positive_float, default=None, metavar="MM", help="horizontal iris diameter, mm (default 11.77)")
    m.add_argument("--iris-fit", action="store_true",
                   help="photos: read the iris diameters from an image fit of the iris edge instead of the "
                        "model's iris points (falls back to the model when the edge is unclear)")
    m.add_argument("--format", choices=("table", "json", "csv"), default="table", help="output format (default table)")
    m.add_argument("--annotate", metavar="OUT", help="write the annotated photo (PNG/JPEG); with several photos, the photo name is appended")
    m.add_argument("--model", metavar="TASK", help="another face_landmarker.task model file")
    m.set_defaults(func=_measure)
    for module_name in _COMMAND_MODULES:
        importlib.import_module(module_name).add_parsers(sub)
    return parser


def _annotation_path(out: str, photo: str, several: bool) -> Path:
    path = Path(out)
    if not several:
        return path
    if path.suffix == "" or path.is_dir():
        return path / f"{Path(photo).stem}_annotated.png"
    return path.with_name(f"{path.stem}_{Path(photo).stem}{path.suffix}")


def _print_table(result: "PhotoResult", out: TextIO) -> None:  # type: ignore[name-defined]  # noqa: F821
    from .measures import MOVEMENT_MEASURES, STATIC_MEASURES, UNITS

    print(f"{result.source}  expression={result.expression or '-'}  "
          f"scale={result.mm_per_px:.4f} mm/px ({result.calibration.source.value}"
          f"{', iris ' + result.calibration.iris_method if result.calibration.iris_method else ''})", file=out)
    pose = result.head_pose_deg
    print(f"head pose: yaw {pose['yaw']:.1f}  pitch {pose['pitch']:.1f}  roll {pose['roll']:.1f} deg", file=out)
    print(f"  {'measure':<28}{'right':>9}{'left':>9}{'|L-R|':>9}{'ratio':>8}  unit", file=out)
    for name in STATIC_MEASURES + MOVEMENT_MEASURES:
        r, l = result.value(name, "right"), result.value(name, "left")
        if math.isnan(r) and math.isnan(l):
            continue
        diff = result.value(f"{name}_asymmetry", "midline")
        ratio = result.value(f"{name}_ratio", "midline")
        ratio_s = f"{ratio:8.2f}" if not math.isnan(ratio) else f"{'':8}"
        print(f"  {name:<28}{r:9.2f}{l:9.2f}{diff:9.2f}{ratio_s}  {UNITS[name]}", file=out)
    for w in result.warnings:
        print(f"  warning: {w}", file=out)


def _measure(args: argparse.Namespace) -> int:
    from .video import is_video_path

    if all(is_video_path(p) for p in args.photos):
        from .cli_video import measure_videos

        return measure_videos(args)

    from .calibration import DEFAULT_IRIS_MM
    from .images import read_image
    from .landmarks import Landmarker, LandmarkerOptions
    from .photo import PhotoOptions, measure_photo

    options = PhotoOptions(
        expression=args.expression,
        affected_side=args.affected_side,
        mirrored=args.mirrored,
        mm_per_px=args.mm_per_px,
        iris_mm=args.iris_mm or DEFAULT_IRIS_MM,
        iris_fit=args.iris_fit,
    )
    results = []
    status = EXIT_OK
    several = len(args.photos) > 1
    with Landmarker(LandmarkerOptions(model_path=args.model)) as lm:
        for photo in args.photos:
            try:
                result = measure_photo(photo, rest=args.rest, options=options, landmarker=lm)
                if args.annotate:
                    from .annotate import save_annotated

                    save_annotated(_annotation_path(args.annotate, photo, several), read_image(photo), result)
            except (SymmetryError, OSError) as exc:
                status = _record_error(exc, photo, status)
                continue
            results.append(result)
            if args.format == "table":
                _print_table(result, sys.stdout)
    _write_results(results, args.format, several)
    return status


def _record_error(exc: Exception, source: str, status: int) -> int:
    """Print one ``error:`` line for a file that could not be measured; return the new exit status.

    Input errors (exit 2) win over other errors (exit 1).
    """
    if isinstance(exc, InputError):
        print(f"error: {exc}", file=sys.stderr)
        return max(status, EXIT_INPUT)
    print(f"error: {source}: {exc}", file=sys.stderr)
    return EXIT_OTHER if status == EXIT_OK else status


def _write_results(results: Sequence[Any], fmt: str, several: bool) -> None:
    """Print results (with ``to_dict`` / ``to_frame``) as one JSON object or a list, or tidy CSV."""
    import pandas as pd

    if fmt == "json":
        payload = [r.to_dict() for r in results]
        json.dump(payload[0] if len(payload) == 1 and not several else payload, sys.stdout, indent=2)
        sys.stdout.write("\n")
    elif fmt == "csv" and results:
        pd.concat([r.to_frame() for r in results], ignore_index=True).to_csv(sys.stdout, index=False)


@contextlib.contextmanager
def _quiet_native_stderr():  # type: ignore[no-untyped-def]
    """Silence the model's native (C++) log lines on file descriptor 2.

    MediaPipe writes informational lines straight to fd 2, which would bury the
    one-line errors a user needs. Python's ``sys.stderr`` is moved to a copy of
    the real stderr first, so symmetry's own messages still appear. Skipped when
    stderr is not a real file (e.g. under a test harness) or when
    ``SYMMETRY_NATIVE_LOGS=1``.
    """
    try:
        real = sys.stderr.fileno() == 2
    except (AttributeError, OSError, ValueError):
        real = False
    if not real or os.environ.get("SYMMETRY_NATIVE_LOGS") == "1":
        yield
        return
    sys.stderr.flush()
    saved = os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    old_stderr = sys.stderr
    sys.stderr = os.fdopen(os.dup(saved), "w", buffering=1)
    os.dup2(devnull, 2)
    os.close(devnull)
    try:
        yield
    finally:
        sys.stderr.flush()
        os.dup2(saved, 2)
        os.close(saved)
        sys.stderr.close()
        sys.stderr = old_stderr


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``symmetry`` command; returns the exit code."""
    args = _parser().parse_args(argv)
    with _quiet_native_stderr():
        return _dispatch(args)


def _dispatch(args: argparse.Namespace) -> int:
    try:
        return int(args.func(args))
    except SymmetryError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_INPUT if isinstance(exc, InputError) else EXIT_OTHER
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # never a traceback for a clinician
        print(f"error: internal error ({type(exc).__name__}: {exc}); please report it", file=sys.stderr)
        return EXIT_OTHER


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
