"""Every engine setting is in the README's settings table."""

from __future__ import annotations

from gateway.engine.settings import EngineSettings
from tests.support.paths import REPO_ROOT


def test_every_engine_setting_is_documented() -> None:
    readme = (REPO_ROOT / "README.md").read_text()
    missing = [n for n in EngineSettings.model_fields if f"`FIXGATE_{n.upper()}`" not in readme]
    assert missing == []
