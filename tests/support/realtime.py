"""Whether the real-time layer (the API's `/ws`, issue 11) is in this build: live browser
assertions need it and say so plainly until it is merged."""

from __future__ import annotations

import pytest

from api.app import create_app
from api.settings import ApiSettings
from tests.support.api import SECRET


def websocket_merged() -> bool:
    app = create_app(ApiSettings(api_secret=SECRET))  # connects nothing until its lifespan
    return any(getattr(route, "path", None) == "/ws" for route in app.routes)


def require_websocket() -> None:
    if not websocket_merged():
        pytest.xfail("the WebSocket layer (/ws, branch ws) is not merged: live updates untested")
