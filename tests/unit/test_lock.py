"""Installs are reproducible: the virtualenv holds exactly what requirements.lock says."""

from __future__ import annotations

import re
import subprocess
import sys

from tests.support.paths import REPO_ROOT


def _name(requirement: str) -> str:
    return re.sub(r"[-_.]+", "-", requirement.split("==", 1)[0]).lower()


def locked() -> dict[str, str]:
    pins = {}
    for line in (REPO_ROOT / "requirements.lock").read_text().splitlines():
        if "==" in line and not line.startswith((" ", "#")):
            requirement = line.split()[0]
            pins[_name(requirement)] = requirement.split("==", 1)[1]
    return pins


def installed() -> dict[str, str]:
    frozen = subprocess.run(
        [sys.executable, "-m", "pip", "freeze", "--exclude-editable"],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    return {_name(line): line.split("==", 1)[1] for line in frozen.splitlines() if "==" in line}


def test_every_locked_package_has_a_hash() -> None:
    text = (REPO_ROOT / "requirements.lock").read_text()
    blocks = re.split(r"\n(?=\S)", text)
    pinned = [b for b in blocks if "==" in b.split("\n", 1)[0] and not b.startswith("#")]
    assert pinned and all("--hash=sha256:" in b for b in pinned)


def test_the_virtualenv_holds_exactly_the_locked_versions() -> None:
    assert installed() == locked()


def test_the_lock_covers_every_direct_dependency() -> None:
    import tomllib

    project = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]
    direct = [*project["dependencies"], *project["optional-dependencies"]["test"]]
    names = {_name(re.split(r"[<>=!~\[ ;]", d, maxsplit=1)[0]) for d in direct}
    assert names - set(locked()) == set()
