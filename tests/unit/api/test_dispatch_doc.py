"""docs/dispatch.md opens with the lifecycle's table: the same one api/machine.py holds, so
the two cannot drift."""

from __future__ import annotations

from api.machine import table_rows
from tests.support.paths import REPO_ROOT

BEGIN = "<!-- lifecycle-table: generated from api.machine.table_rows() -->"
END = "<!-- /lifecycle-table -->"


def rendered() -> str:
    lines = ["| action | from | to | who | technician | announces |", "| --- " * 6 + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in table_rows()]
    return "\n".join(lines) + "\n"


def test_the_documented_table_is_the_machines() -> None:
    doc = (REPO_ROOT / "docs" / "dispatch.md").read_text()
    documented = doc.split(BEGIN, 1)[1].split(END, 1)[0].lstrip("\n")
    assert documented == rendered(), "paste this into docs/dispatch.md:\n" + rendered()
