"""The core does no I/O and reads no clock: none of its modules imports what would."""

from __future__ import annotations

import ast
from pathlib import Path

from gateway.config import REPO_ROOT

FORBIDDEN = {
    "asyncio",
    "asyncpg",
    "redis",
    "httpx",
    "socket",
    "logging",
    "time",
    "os",
    "subprocess",
    "gateway",
}


def test_the_geofence_core_imports_no_io() -> None:
    found: list[str] = []
    for path in sorted(Path(REPO_ROOT / "geofence").glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else []
            if isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            found += [f"{path.name}: {n}" for n in names if n.split(".")[0] in FORBIDDEN]
    assert found == []


def test_the_geofence_core_reads_no_clock() -> None:
    text = "\n".join(p.read_text() for p in Path(REPO_ROOT / "geofence").glob("*.py"))
    assert "datetime.now" not in text and "utcnow" not in text and ".today(" not in text
