"""The README is the manual: every setting is in its table, and the two commands are there."""

from __future__ import annotations

from api.settings import ApiSettings
from devtools.stack.settings import StackSettings
from gateway.config import Settings
from gateway.engine.settings import EngineSettings
from tests.support.paths import REPO_ROOT

SETTINGS_CLASSES = (Settings, StackSettings, ApiSettings, EngineSettings)


def test_every_setting_is_documented() -> None:
    readme = (REPO_ROOT / "README.md").read_text()
    names = [name for cls in SETTINGS_CLASSES for name in cls.model_fields]
    missing = [
        f"FIXGATE_{name.upper()}" for name in names if f"`FIXGATE_{name.upper()}`" not in readme
    ]
    assert missing == []


def test_ci_runs_the_readmes_test_command() -> None:
    readme = (REPO_ROOT / "README.md").read_text()
    assert "./run demo" in readme and "./run test" in readme
    ci = [
        line
        for line in (REPO_ROOT / ".ci" / "run").read_text().splitlines()
        if line and not line.startswith("#")
    ]
    assert "exec ./run test" in ci
