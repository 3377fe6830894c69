"""Shared fixtures: the sample portraits and one IMAGE-mode landmarker per session."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
SAMPLES = ROOT / "sample_media"
PORTRAITS = {"astronaut": SAMPLES / "astronaut.png", "obama": SAMPLES / "obama.jpg"}


@pytest.fixture(scope="session")
def landmarker():
    from symmetry.landmarks import Landmarker

    with Landmarker() as lm:
        yield lm


@pytest.fixture(scope="session")
def portraits() -> dict[str, np.ndarray]:
    from symmetry.images import read_image

    return {name: read_image(path) for name, path in PORTRAITS.items()}


@contextlib.contextmanager
def symmetry_home_env(home: Path):
    """Point ``SYMMETRY_HOME`` at ``home`` (and unset ``SYMMETRY_DATABASE_URL``) for the block."""
    saved = {k: os.environ.get(k) for k in ("SYMMETRY_HOME", "SYMMETRY_DATABASE_URL")}
    os.environ["SYMMETRY_HOME"] = str(home)
    os.environ.pop("SYMMETRY_DATABASE_URL", None)
    try:
        yield home
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
