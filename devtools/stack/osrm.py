"""OSRM, the routing engine, as the native stack's fourth service.

The binaries come from the `osrm-bindings` wheel on PyPI (self-contained: libc and
libstdc++ only), fetched with pip for Python 3.12 and unpacked, never installed into our
venv. The extract (devtools/stack/osrm_extracts.py, or the user's `FIXGATE_ROUTING_PBF`)
is prepared once for the MLD algorithm (osrm-extract, osrm-partition, osrm-customize)
and cached by the pbf's hash and the OSRM version. All of it lives under
`settings.stack_dir / "osrm"`; osrm-routed runs as our own process on a loopback port,
tracked by a pid file and stopped by PID.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import signal
import sys
import tempfile
import zipfile
from pathlib import Path

from devtools.stack.native import StackError, _pid_alive, _port_open, _run, _spawn, _stop_pid
from devtools.stack.osrm_extracts import EXTRACTS, ExtractError, fetch
from devtools.stack.settings import StackSettings

OSRM_BINDINGS = "osrm-bindings==26.10.0"
OSRM_VERSION = OSRM_BINDINGS.split("==")[1]
PROFILE = "car.lua"
# Suffix of the file osrm-customize writes last: its presence means the dataset is complete.
PREPARED_MARKER = ".osrm.mldgr"


class OsrmService:
    def __init__(self, settings: StackSettings) -> None:
        self.settings = settings
        self.dir = settings.stack_dir / "osrm"
        self.dist = self.dir / f"osrm-bindings-{OSRM_VERSION}"
        self.bin = self.dist / "osrm" / "bin"
        self.extracts = self.dir / "extracts"
        self.prepared_root = self.dir / "prepared"
        # Per port, like Redis's and Mosquitto's state, so a second stack can share the rest.
        self.run_dir = self.dir / f"routed-{settings.stack_osrm_port}"
        self.pid_file = self.run_dir / "osrm-routed.pid"
        self.log = self.run_dir / "osrm-routed.log"

    # ---- the binaries --------------------------------------------------------------

    def ensure_binaries(self) -> None:
        """Download and unpack the wheel once; a finished unpack carries a marker."""
        if (self.dist / ".fixgate-ready").exists():
            return
        self.dir.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=self.dir, prefix=".wheel-") as tmp:
            _run(
                [sys.executable, "-m", "pip", "download", "--disable-pip-version-check",
                 "--only-binary=:all:", "--python-version", "3.12", "--no-deps",
                 "-d", tmp, OSRM_BINDINGS]
            )  # fmt: skip
            wheels = list(Path(tmp).glob("*.whl"))
            if len(wheels) != 1:
                raise StackError(f"pip download left {wheels} in {tmp}, expected one wheel")
            unpacked = Path(tmp) / "unpacked"
            with zipfile.ZipFile(wheels[0]) as wheel:
                for info in wheel.infolist():
                    path = wheel.extract(info, unpacked)
                    # zipfile drops the mode bits; the wheel's binaries need their x bit.
                    mode = (info.external_attr >> 16) & 0o777
                    if mode:
                        os.chmod(path, mode)
            (unpacked / ".fixgate-ready").write_text(f"{OSRM_BINDINGS} unpacked\n")
            if self.dist.exists():
                shutil.rmtree(self.dist)
            unpacked.rename(self.dist)

    def tool(self, name: str) -> str:
        return str(self.bin / name)

    # ---- the extract ---------------------------------------------------------------

    def pbf(self) -> Path:
        """The .osm.pbf to route on: a named registry extract, or the user's file."""
        choice = self.settings.routing_pbf
        if choice in EXTRACTS:
            try:
                return fetch(choice, self.extracts)
            except ExtractError as e:
                raise StackError(str(e)) from None
        path = Path(choice).expanduser()
        if not path.is_file():
            raise StackError(
                f"FIXGATE_ROUTING_PBF={choice!r}: no such file (give an .osm.pbf, or one of {', '.join(EXTRACTS)})"
            )
        return path

    def _sha256(self, pbf: Path) -> str:
        """The pbf's hash, remembered by path, size and mtime so a country-sized file is
        not read again on every `stack up`."""
        st = pbf.stat()
        key = f"{pbf.resolve()}|{st.st_size}|{st.st_mtime_ns}"
        memo_file = self.dir / "pbf-hashes.json"
        try:
            memo: dict[str, str] = json.loads(memo_file.read_text())
        except (OSError, ValueError):
            memo = {}
        if key not in memo:
            with open(pbf, "rb") as f:
                memo[key] = hashlib.file_digest(f, "sha256").hexdigest()
            memo_file.write_text(json.dumps(memo, indent=1))
        return memo[key]

    def prepare(self, pbf: Path) -> Path:
        """The prepared dataset's base path (`.../region.osrm`), built once per pbf hash."""
        key = f"{self._sha256(pbf)[:16]}-osrm-{OSRM_VERSION}-{PROFILE.removesuffix('.lua')}"
        done = self.prepared_root / key
        base = done / "region.osrm"
        if (done / f"region{PREPARED_MARKER}").exists():
            return base
        building = self.prepared_root / f"{key}.building"
        if building.exists():
            shutil.rmtree(building)
        building.mkdir(parents=True)
        shutil.copyfile(pbf, building / "region.osm.pbf")
        profile = self.dist / "osrm" / "share" / "profiles" / PROFILE
        for cmd in (
            [self.tool("osrm-extract"), "-p", str(profile), str(building / "region.osm.pbf")],
            [self.tool("osrm-partition"), str(building / "region.osrm")],
            [self.tool("osrm-customize"), str(building / "region.osrm")],
        ):
            _run(cmd)
        (building / "region.osm.pbf").unlink()
        (building / "source.txt").write_text(f"{pbf}\n")
        if done.exists():
            shutil.rmtree(done)
        building.rename(done)
        return base

    # ---- osrm-routed ---------------------------------------------------------------

    def _tracked(self) -> tuple[int, str] | None:
        """(pid, dataset) of our running osrm-routed, from the pid file; None when it is gone
        (or the pid now belongs to another program)."""
        try:
            pid_text, dataset = self.pid_file.read_text().split("\n")[:2]
            pid = int(pid_text)
        except (OSError, ValueError):
            return None
        if not _pid_alive(pid):
            return None
        try:
            argv0 = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[0]
        except OSError:
            return None
        return (pid, dataset) if argv0.endswith(b"osrm-routed") else None

    def pid(self) -> int | None:
        tracked = self._tracked()
        return tracked[0] if tracked else None

    def start(self) -> None:
        self.ensure_binaries()
        base = self.prepare(self.pbf())
        port = self.settings.stack_osrm_port
        tracked = self._tracked()
        if tracked is not None:
            if tracked[1] == str(base) and _port_open(port):
                return
            # FIXGATE_ROUTING_PBF changed since it started: serve the new extract.
            self.stop()
        if _port_open(port):
            raise StackError(
                f"127.0.0.1:{port} is taken by another program; set FIXGATE_STACK_OSRM_PORT to a free port"
            )
        self.run_dir.mkdir(parents=True, exist_ok=True)
        cmd = [self.tool("osrm-routed"), "--algorithm", "mld", "-i", "127.0.0.1", "-p", str(port)]
        # osrm-routed writes no pid file: record its PID (and what it serves) ourselves.
        _spawn(
            [*cmd, str(base)],
            self.log,
            port,
            "osrm-routed",
            on_spawn=lambda pid: self.pid_file.write_text(f"{pid}\n{base}\n"),
        )

    def stop(self) -> bool:
        pid = self.pid()
        stopped = _stop_pid(pid, signal.SIGTERM, "osrm-routed")
        if pid is not None:
            # When this process started it (a test's own osrm-routed), reap it.
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, os.WNOHANG)
        self.pid_file.unlink(missing_ok=True)
        return stopped
