"""The field apps' pages: the technician app (`/tech`) and the customer app (`/help`),
mobile-first pages installable as web apps, each with its web manifest and its service
worker (which keeps the app shell for when the phone has no connection) served under the
page's own path, so its scope is the app (docs/field-apps.md). Their scripts, styles and
icons are static files (`api/static/tech/`, `help/`, `field/`)."""

from __future__ import annotations

from typing import Final, Literal
from urllib.parse import urlsplit

from fastapi import Response
from fastapi.responses import FileResponse, HTMLResponse

from api.deps import SettingsDep
from api.guard import guarded_router
from api.routes.console import STATIC, page

router = guarded_router(tags=["field apps"])

App = Literal["tech", "help"]
NO_STORE: Final = {"Cache-Control": "no-store"}
"""A service worker and a manifest are checked for a new version on every visit anyway;
no HTTP cache between them and the browser keeps an old one around."""


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


@router.get("/tech", include_in_schema=False)
async def tech_page(settings: SettingsDep) -> HTMLResponse:
    """The technician app; sign in with `/tech#code=...` (a one-time link) or
    `#token=...`. Its scripts may reach the gateway's HTTP listener (its fixes)."""
    return page("tech/index.html", settings, connect=(_origin(settings.phone_gateway()),))


@router.get("/help", include_in_schema=False)
async def help_page(settings: SettingsDep) -> HTMLResponse:
    """The customer app; sign in with `/help#code=...` or `#token=...`."""
    return page("help/index.html", settings)


def _manifest(app: App) -> Response:
    return FileResponse(
        STATIC / app / "manifest.webmanifest",
        media_type="application/manifest+json",
        headers=NO_STORE,
    )


def _service_worker(app: App) -> Response:
    # One worker for both apps: it reads its app from its own path. Served under the
    # page's path so that it may control the page (`/tech` is outside `/tech/`'s default
    # scope: the header widens it to exactly the app).
    return FileResponse(
        STATIC / "field" / "sw.js",
        media_type="text/javascript",
        headers={**NO_STORE, "Service-Worker-Allowed": f"/{app}"},
    )


@router.get("/tech/manifest.webmanifest", include_in_schema=False)
async def tech_manifest() -> Response:
    return _manifest("tech")


@router.get("/help/manifest.webmanifest", include_in_schema=False)
async def help_manifest() -> Response:
    return _manifest("help")


@router.get("/tech/sw.js", include_in_schema=False)
async def tech_worker() -> Response:
    return _service_worker("tech")


@router.get("/help/sw.js", include_in_schema=False)
async def help_worker() -> Response:
    return _service_worker("help")
