"""Shared fixtures: the sample portraits and one IMAGE-mode landmarker per session."""

from __future__ import annotations

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
