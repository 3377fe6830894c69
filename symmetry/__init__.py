"""symmetry: calibrated facial symmetry and movement measures for facial-nerve clinics.

Sides are always the patient's: ``left`` is the patient's left (the image's
right in an unmirrored photo). Distances are millimetres in the pupil frame
(see :mod:`symmetry.frame`), angles degrees, changes percent; every measure
row carries its unit.
"""

from __future__ import annotations

__version__ = "0.1.0"
#: Version of the measuring algorithm; stored with every measurement.
ALGORITHM_VERSION = "0.1.0"

from .calibration import DEFAULT_IRIS_MM, Calibration, calibrate_from_iris  # noqa: E402
from .errors import (  # noqa: E402
    CalibrationError,
    FaceTooSmallError,
    ImageReadError,
    InputError,
    ModelError,
    NoFaceError,
    SymmetryError,
)
from .frame import PupilFrame, pupil_frame  # noqa: E402
from .images import read_image  # noqa: E402
from .landmarks import LM, FaceLandmarks, Landmarker, LandmarkerOptions, RunningMode, Side  # noqa: E402
from .measures import MOVEMENT_MEASURES, STATIC_MEASURES, UNITS, Measure  # noqa: E402
from .photo import PhotoOptions, PhotoResult, measure_photo, measure_photos  # noqa: E402

# The database, statistics and video layers load on first use, so that measuring (CLI,
# batch workers) does not import SQLAlchemy, statsmodels or pingouin.
_LAZY = {
    "open_store": "symmetry.store",
    "Store": "symmetry.store",
    "export_frame": "symmetry.store",
    "ingest_manifest": "symmetry.ingest",
    "patient_outcomes": "symmetry.trends",
    "prepost_pairs": "symmetry.stats",
    "paired_tests": "symmetry.stats",
    "compare_cohorts": "symmetry.stats",
    "trajectory_models": "symmetry.stats",
    "write_report": "symmetry.report",
    "VideoOptions": "symmetry.video",
    "VideoAnalyser": "symmetry.video",
    "VideoResult": "symmetry.video",
    "measure_video": "symmetry.video",
    "video_frames": "symmetry.video",
}


def __getattr__(name: str) -> object:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'symmetry' has no attribute {name!r}")


__all__ = [
    "__version__",
    "ALGORITHM_VERSION",
    "Calibration",
    "CalibrationError",
    "DEFAULT_IRIS_MM",
    "FaceLandmarks",
    "FaceTooSmallError",
    "ImageReadError",
    "InputError",
    "LM",
    "Landmarker",
    "LandmarkerOptions",
    "MOVEMENT_MEASURES",
    "Measure",
    "ModelError",
    "NoFaceError",
    "PhotoOptions",
    "PhotoResult",
    "PupilFrame",
    "RunningMode",
    "STATIC_MEASURES",
    "Side",
    "SymmetryError",
    "UNITS",
    "calibrate_from_iris",
    "measure_photo",
    "measure_photos",
    "pupil_frame",
    "read_image",
    *_LAZY,
]
