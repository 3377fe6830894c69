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


_FACE_RECOGNITION = "face_recognition==1.3.0"


@pytest.fixture(scope="session")
def unseen_portraits() -> dict[str, np.ndarray]:
    """Public-domain portraits nobody here made, from the ``face_recognition`` sdist on the package
    registry (its tests/test_images; cached): ``biden``, ``obama2`` (head turned 15 deg), ``obama3``.
    Skips when the registry cannot be reached."""
    import subprocess
    import sys
    import tarfile
    import tempfile

    from symmetry.images import read_image

    cache = Path(os.environ.get("SYMMETRY_TEST_CACHE", Path(tempfile.gettempdir()) / "symmetry-test-cache"))
    cache = cache / "face_recognition-1.3.0"
    names = ("biden", "obama2", "obama3")
    paths = {n: cache / f"{n}.jpg" for n in names}
    if not all(p.is_file() for p in paths.values()):
        cache.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory() as tmp:
            try:
                proc = subprocess.run(
                    [sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:",
                     "--disable-pip-version-check", "-q", "-d", tmp, _FACE_RECOGNITION],
                    capture_output=True, text=True, timeout=300, check=False,
                )
            except (OSError, subprocess.TimeoutExpired) as exc:
                pytest.skip(f"cannot fetch {_FACE_RECOGNITION}: {exc}")
            sdists = list(Path(tmp).glob("face_recognition-*.tar.gz"))
            if proc.returncode != 0 or not sdists:
                pytest.skip(f"cannot fetch {_FACE_RECOGNITION} from the registry: {proc.stderr.strip()[-200:]}")
            with tarfile.open(sdists[0]) as tar:
                for n, p in paths.items():
                    member = tar.extractfile(f"face_recognition-1.3.0/tests/test_images/{n}.jpg")
                    assert member is not None
                    part = p.with_suffix(".part")
                    part.write_bytes(member.read())
                    part.rename(p)
    return {n: read_image(p) for n, p in paths.items()}
