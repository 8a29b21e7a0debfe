"""The README is the manual: every setting is in its table, and the two commands are there."""

from __future__ import annotations

from gateway.config import REPO_ROOT, Settings


def test_every_setting_is_documented() -> None:
    readme = (REPO_ROOT / "README.md").read_text()
    missing = [f"FIXGATE_{name.upper()}" for name in Settings.model_fields if f"`FIXGATE_{name.upper()}`" not in readme]
    assert missing == []


def test_ci_runs_the_readmes_test_command() -> None:
    readme = (REPO_ROOT / "README.md").read_text()
    assert "./run demo" in readme and "./run test" in readme
    ci = [line for line in (REPO_ROOT / ".ci" / "run").read_text().splitlines() if line and not line.startswith("#")]
    assert "exec ./run test" in ci
