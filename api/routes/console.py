"""The dispatcher console (`/console`) and the customer tracking page (`/track/{id}`): the
pages themselves (static HTML and JS from `api/static/`, Leaflet vendored beside them) and
the few reads they need beyond the request API: map settings, the road network, the
fleet with live positions, and the rings in progress."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from urllib.parse import urlsplit
from uuid import UUID

from fastapi import FastAPI
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

from api import queue
from api.deps import DbDep, PrincipalDep, SettingsDep, StaffDep, StateDep
from api.guard import guarded_router
from api.machine import RequestStatus
from api.models.common import Envelope
from api.models.console import (
    FleetTechnician,
    MapConfig,
    RingProgress,
    RoadNetwork,
    RungTechnician,
)
from api.models.tracking import TechnicianLocation
from api.settings import ApiSettings

router = guarded_router(tags=["console"])

STATIC = Path(__file__).resolve().parent.parent / "static"
"""The pages, their scripts and the vendored map library (package data)."""


def mount_static(app: FastAPI) -> None:
    app.mount("/static", StaticFiles(directory=STATIC), name="static")


def content_security_policy(tiles_url: str | None, connect: Sequence[str] = ()) -> str:
    """Only the page's own scripts and styles, and images from it and the tile server: a
    script injected into a page finds nowhere to run from and nowhere to send a token.
    `connect`: further origins the page's scripts may reach (the technician app: the
    gateway's HTTP listener it posts fixes to)."""
    tiles = ""
    if tiles_url:
        parts = urlsplit(tiles_url)
        host = parts.netloc.replace("{s}.", "*.")  # a {s} subdomain: any of the server's
        tiles = f" {parts.scheme}://{host}"
    sources = " ".join(("'self'", *connect))
    return (
        "default-src 'self'; script-src 'self'; style-src 'self'; "
        f"img-src 'self' data:{tiles}; connect-src {sources}; object-src 'none'; "
        "base-uri 'none'; frame-ancestors 'none'; form-action 'self'"
    )


def page(name: str, settings: ApiSettings, connect: Sequence[str] = ()) -> HTMLResponse:
    """A page of its own (the customer's tracking page, the field apps)."""
    return html((STATIC / name).read_text(encoding="utf-8"), settings, connect)


@dataclass(frozen=True, slots=True)
class StaffPage:
    """A console page: one layout (api/static/layout.html) around its own main part
    (api/static/pages/), its script and what it needs of the vendored libraries."""

    path: str
    name: str
    """Its navigation link's text and its title (lower case)."""
    part: str
    """Its main part's file in api/static/pages/ (without .html)."""
    script: str
    map: bool = True
    drawing: bool = False
    live: bool = False
    """Shows the WebSocket's state and how old the fleet's positions are."""


STAFF_PAGES = (
    StaffPage("/console", "Dispatch", "console", "console.js", live=True),
    StaffPage("/console/playback", "Playback", "playback", "playback.js"),
    StaffPage("/console/geofences", "Geofences", "geofences", "geofences.js", drawing=True),
    StaffPage("/console/devices", "Devices", "devices", "devices.js", map=False),
)
LEAFLET = ("/static/vendor/leaflet/leaflet.css", "/static/vendor/leaflet/leaflet.js")
GEOMAN = ("/static/vendor/geoman/leaflet-geoman.css", "/static/vendor/geoman/leaflet-geoman.min.js")


def _nav(active: str) -> str:
    current = ' aria-current="page"'
    links = "".join(
        f'\n      <a href="{p.path}"{current if p.path == active else ""}>{p.name}</a>'
        for p in STAFF_PAGES
    )
    return f'    <nav aria-label="Console pages">{links}\n    </nav>\n'


@lru_cache(maxsize=16)
def render(main: str, title: str, css: tuple[str, ...], js: tuple[str, ...], header: str,
           body_class: str = "") -> str:  # fmt: skip
    """The layout filled in (cached: the files ship with the package)."""
    layout = (STATIC / "layout.html").read_text(encoding="utf-8")
    return layout.format(
        title=title,
        styles="".join(f'  <link rel="stylesheet" href="{c}">\n' for c in css),
        body_class=f' class="{body_class}"' if body_class else "",
        header=header,
        main=(STATIC / "pages" / f"{main}.html").read_text(encoding="utf-8"),
        scripts="".join(f'  <script src="{j}"></script>\n' for j in js),
    )


def _staff_html(p: StaffPage) -> str:
    libraries = (LEAFLET,) * p.map + (GEOMAN,) * p.drawing
    live = (
        '    <span id="live" class="live off">offline</span>\n'
        '    <span id="fleet-lag" class="muted" title="age of the newest positions shown"></span>\n'
    ) if p.live else ""  # fmt: skip
    header = (
        _nav(p.path) + '    <span id="who" class="muted"></span>\n' + live
        + '    <span id="status" role="status"></span>\n    <span class="spacer"></span>\n'
        '    <button id="logout" type="button">Log out</button>\n'
    )  # fmt: skip
    css = tuple(css for css, _ in libraries)
    js = (*(js for _, js in libraries), "/static/common.js", f"/static/{p.script}")
    return render(p.part, p.name.lower(), css, js, header, "" if p.map else "page")


def html(text: str, settings: ApiSettings, connect: Sequence[str] = ()) -> HTMLResponse:
    # no-store: a page holds no data, but an old copy would load old scripts.
    headers = {
        "Cache-Control": "no-store",
        "Content-Security-Policy": content_security_policy(settings.map_tiles_url, connect),
    }
    return HTMLResponse(text, headers=headers)


def _staff_route(p: StaffPage) -> Callable[[ApiSettings], Awaitable[HTMLResponse]]:
    async def show(settings: SettingsDep) -> HTMLResponse:
        return html(_staff_html(p), settings)

    return show


for _page in STAFF_PAGES:  # staff log in at /login, or with #token=... (never sent)
    router.add_api_route(_page.path, _staff_route(_page), methods=["GET"],
                         include_in_schema=False)  # fmt: skip


def login_html() -> str:
    return render("login", "log in", (), ("/static/login.js",), "", "login-page")


@router.get("/track/{requestId}", include_in_schema=False)
async def track_page(requestId: str, settings: SettingsDep) -> HTMLResponse:
    return page("track.html", settings)


@lru_cache(maxsize=4)
def _roads(path: str, mtime_ns: int) -> RoadNetwork:
    # Keyed by mtime: a re-prepared extract is read again, an unchanged one once.
    loaded = json.loads(Path(path).read_text(encoding="utf-8"))
    features = [f for f in loaded.get("features", []) if isinstance(f, dict)]
    return RoadNetwork(features=features)


def _roads_file(path: str | None) -> Path | None:
    if path is None or not Path(path).is_file():
        return None
    return Path(path)


@router.get("/map/config")
async def map_config(state: StateDep, principal: PrincipalDep) -> Envelope[MapConfig]:
    settings = state.settings
    data = MapConfig(
        tiles_url=settings.map_tiles_url,
        attribution=settings.map_tiles_attribution,
        has_roads=_roads_file(settings.map_roads_path) is not None,
    )
    return Envelope[MapConfig](status=200, message="OK", data=data)


@router.get("/map/roads")
async def map_roads(state: StateDep, principal: PrincipalDep) -> Envelope[RoadNetwork]:
    """The routing extract's roads (FIXGATE_MAP_ROADS_PATH), empty when there is none."""
    path = _roads_file(state.settings.map_roads_path)
    data = _roads(str(path), path.stat().st_mtime_ns) if path else RoadNetwork(features=[])
    return Envelope[RoadNetwork](status=200, message="OK", data=data)


@router.get("/console/fleet")
async def fleet(state: StateDep, db: DbDep, principal: StaffDep) -> Envelope[list[FleetTechnician]]:
    """The tenant's enabled technicians, their van and live position (Redis)."""
    rows = await db.fetch(
        """
        SELECT t.technicianid, t.techniciancode, t.firstname, t.lastname,
               t.availabilitystatus, t.device_id, v.vannumber
        FROM technicianmaster t LEFT JOIN vanmaster v ON v.vanid = t.vanid
        WHERE t.tenant_id = $1 AND t.enabled
        ORDER BY t.techniciancode
        """,
        principal.tenant,
    )
    positions = await queue.live_positions(
        state.redis, state.keys, [row["device_id"] for row in rows]
    )
    out: list[FleetTechnician] = []
    for row, where in zip(rows, positions, strict=True):
        location = None
        if where is not None and where["tenant"] == principal.tenant:
            location = TechnicianLocation(
                latitude=where["latitude"],
                longitude=where["longitude"],
                heading=where["heading"],
                speed=where["speed"],
                accuracy=where["accuracy"],
                updated_at=where["updatedAt"],
            )
        out.append(
            FleetTechnician(
                technician_id=row["technicianid"],
                technician_code=row["techniciancode"],
                name=f"{row['firstname']} {row['lastname']}".strip(),
                availability_status=row["availabilitystatus"],
                device_id=row["device_id"],
                van_number=row["vannumber"],
                location=location,
            )
        )
    return Envelope[list[FleetTechnician]](status=200, message="OK", data=out)


@router.get("/console/rings")
async def rings(state: StateDep, db: DbDep, principal: StaffDep) -> Envelope[list[RingProgress]]:
    """Every request of the tenant still ringing: its phase, when it ends, who was rung
    (the ring log) and what each did (their latest engagement)."""
    radii = state.settings.ring_radii_miles
    ringing = await db.fetch(
        """
        SELECT r.requestid, r.requestnumber, s.nextphase, s.dueat
        FROM servicerequests r JOIN ringschedule s ON s.requestid = r.requestid
        WHERE r.tenant_id = $1 AND r.requeststatus = $2
        ORDER BY r.requestedat
        """,
        principal.tenant,
        RequestStatus.RINGING.value,
    )
    ids: list[UUID] = [row["requestid"] for row in ringing]
    rung_rows = await db.fetch(
        """
        SELECT l.requestid, l.technicianid, l.phase, l.ringstartedat, l.ringendedat,
               t.firstname, t.lastname,
               (SELECT e.action FROM technicianengagementdetails e
                WHERE e.requestid = l.requestid AND e.technicianid = l.technicianid
                ORDER BY e.time DESC LIMIT 1) AS action
        FROM technicianringlog l JOIN technicianmaster t ON t.technicianid = l.technicianid
        WHERE l.tenant_id = $1 AND l.requestid = ANY($2::uuid[])
        ORDER BY l.phase, l.ringstartedat
        """,
        principal.tenant,
        ids,
    )
    rung: dict[UUID, list[RungTechnician]] = {i: [] for i in ids}
    for row in rung_rows:
        rung[row["requestid"]].append(
            RungTechnician(
                technician_id=row["technicianid"],
                name=f"{row['firstname']} {row['lastname']}".strip(),
                phase=row["phase"],
                ring_started_at=row["ringstartedat"],
                ring_ended_at=row["ringendedat"],
                action=row["action"] or "NOTIFIED",
            )
        )
    out: list[RingProgress] = []
    for row in ringing:
        phase = min(int(row["nextphase"]) - 1, len(radii) - 1)
        out.append(
            RingProgress(
                request_id=row["requestid"],
                request_number=row["requestnumber"],
                phase=phase,
                phase_count=len(radii),
                min_radius_miles=radii[phase - 1] if phase > 0 else 0.0,
                max_radius_miles=radii[max(phase, 0)],
                phase_ends_at=row["dueat"],
                rung=rung[row["requestid"]],
            )
        )
    return Envelope[list[RingProgress]](status=200, message="OK", data=out)
