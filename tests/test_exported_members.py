"""The public surface: `symmetry` exports exactly these names, and measuring stays database-free."""

from __future__ import annotations

import subprocess
import sys

import symmetry

EXPECTED = {
    "__version__", "ALGORITHM_VERSION", "Calibration", "CalibrationError", "DEFAULT_IRIS_MM",
    "FaceLandmarks", "FaceTooSmallError", "ImageReadError", "InputError", "LM", "Landmarker",
    "LandmarkerOptions", "MOVEMENT_MEASURES", "Measure", "ModelError", "NoFaceError", "PhotoOptions",
    "PhotoResult", "PupilFrame", "RunningMode", "STATIC_MEASURES", "Side", "SymmetryError", "UNITS",
    "calibrate_from_iris", "measure_photo", "measure_photos", "pupil_frame", "read_image",
    "open_store", "Store", "export_frame", "ingest_manifest", "patient_outcomes", "prepost_pairs",
    "paired_tests", "compare_cohorts", "trajectory_models", "write_report",
    "VideoOptions", "VideoAnalyser", "VideoResult", "measure_video", "video_frames",
}


def test_all_is_pinned():
    assert set(symmetry.__all__) == EXPECTED
    for name in symmetry.__all__:
        assert getattr(symmetry, name) is not None


def test_measuring_core_does_not_import_the_database_or_statistics():
    code = (
        "import sys, symmetry, symmetry.photo, symmetry.cli;"
        "bad = [m for m in ('sqlalchemy', 'statsmodels', 'pingouin', 'streamlit') if m in sys.modules];"
        "print(','.join(bad))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == ""
