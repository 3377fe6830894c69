"""Exit codes and argument types shared by the ``symmetry`` subcommands.

Every type raises :class:`argparse.ArgumentTypeError` with a one-line reason,
which argparse prints as ``symmetry: error: argument --x: reason`` (exit 2).
"""

from __future__ import annotations

import argparse
import datetime as dt
import math
from typing import Callable, TypeVar

__all__ = [
    "EXIT_OK",
    "EXIT_OTHER",
    "EXIT_INPUT",
    "EXIT_SOME_FAILED",
    "EXIT_INTERRUPTED",
    "positive_float",
    "positive_seconds",
    "non_negative_seconds",
    "positive_int",
    "non_negative_int",
    "workers",
    "iso_date",
]

EXIT_OK = 0
EXIT_OTHER = 1
#: An input could not be measured (unreadable, not an image or video, no face, face too small...).
EXIT_INPUT = 2
#: A batch stored some files and not others.
EXIT_SOME_FAILED = 3
EXIT_INTERRUPTED = 130

_N = TypeVar("_N", int, float)


def _number(text: str, kind: Callable[[str], _N], accept: Callable[[_N], bool], requirement: str) -> _N:
    try:
        value = kind(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not {'an integer' if kind is int else 'a number'}: {text!r}") from None
    if not (math.isfinite(value) and accept(value)):
        raise argparse.ArgumentTypeError(f"must be {requirement}, got {text}")
    return value


def positive_float(text: str) -> float:
    return _number(text, float, lambda v: v > 0, "a positive number")


def positive_seconds(text: str) -> float:
    return _number(text, float, lambda v: v > 0, "a positive number of seconds")


def non_negative_seconds(text: str) -> float:
    return _number(text, float, lambda v: v >= 0, "0 or more seconds")


def positive_int(text: str) -> int:
    return _number(text, int, lambda v: v >= 1, "1 or more")


def non_negative_int(text: str) -> int:
    return _number(text, int, lambda v: v >= 0, "0 or more")


def workers(text: str) -> int:
    return _number(text, int, lambda v: v >= 0, "0 (automatic) or more")


def iso_date(text: str) -> dt.date:
    try:
        return dt.date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a date in YYYY-MM-DD form: {text!r}") from None
