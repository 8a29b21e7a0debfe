"""Where things are, for tests: the repository, the shared corpus, the `fixgate` command."""

from __future__ import annotations

import os
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
# The `fixgate` command of the interpreter running the tests (the venv need not be on PATH).
FIXGATE_BIN = str(Path(sys.executable).parent / "fixgate")
SHARED_DIR = Path(os.environ.get("FIXGATE_SHARED_DIR", REPO_ROOT.parent / "shared"))
CORPUS_DIR = SHARED_DIR / "corpus"


def corpus_file(*parts: str) -> Path:
    """A file of the shared corpus; a missing one fails the test that needs it (a run
    without the corpus must not pass by testing nothing)."""
    path = CORPUS_DIR.joinpath(*parts)
    if not path.is_file():
        raise FileNotFoundError(f"corpus file missing: {path} (set FIXGATE_SHARED_DIR)")
    return path


def gpsd_log_bytes(name: str) -> bytes:
    """A gpsd log of the corpus without gpsd's `#` comment lines (not receiver output)."""
    lines = corpus_file("nmea", name).read_bytes().splitlines(keepends=True)
    return b"".join(line for line in lines if not line.startswith(b"#"))
