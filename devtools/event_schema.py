"""Regenerate docs/events.schema.json from the engine's event Structs:
`python -m devtools.event_schema` (a test fails while the committed file is stale)."""

from __future__ import annotations

from pathlib import Path

from geofence.schema import render

TARGET = Path(__file__).resolve().parents[1] / "docs" / "events.schema.json"

if __name__ == "__main__":  # pragma: no cover
    TARGET.write_text(render())
