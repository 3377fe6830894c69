"""Exceptions raised by symmetry.

Hierarchy::

    SymmetryError                 base class; the CLI catches this one
    ├── InputError                the input file cannot be used (exit code 2)
    │   ├── ImageReadError        missing, unreadable or not an image
    │   ├── NoFaceError           no face was found in the image
    │   ├── FaceTooSmallError     the face is too small to measure reliably
    │   └── IrisHiddenError       both irises hidden (eyes closed): no scale from this photo
    ├── CalibrationError          no usable scale (iris not measurable, bad override)
    └── ModelError                the landmark model file is missing or corrupt
"""

from __future__ import annotations

from pathlib import Path

__all__ = [
    "SymmetryError",
    "InputError",
    "ImageReadError",
    "NoFaceError",
    "FaceTooSmallError",
    "IrisHiddenError",
    "CalibrationError",
    "ModelError",
]


class SymmetryError(Exception):
    """Base class of every error symmetry raises on purpose."""


class InputError(SymmetryError):
    """An input file cannot be measured. ``source`` names the file."""

    def __init__(self, source: str | Path | None, reason: str) -> None:
        self.source = None if source is None else str(source)
        self.reason = reason
        super().__init__(f"{self.source}: {reason}" if self.source else reason)


class ImageReadError(InputError):
    """The file is missing, unreadable, or not a supported image."""


class NoFaceError(InputError):
    """No face was detected in the image."""


class FaceTooSmallError(InputError):
    """The face (its iris) is too small in pixels to be measured."""


class IrisHiddenError(InputError):
    """Both irises are hidden (eyes closed or squeezed): the photo gives no scale."""


class CalibrationError(SymmetryError):
    """No usable millimetre scale could be established."""


class ModelError(SymmetryError):
    """The landmark model file is missing, unreadable or fails its hash check."""
