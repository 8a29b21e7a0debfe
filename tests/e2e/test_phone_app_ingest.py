"""The technician app's side of the gateway's HTTP listener, end to end (`fixgate gateway`
-> TimescaleDB): a browser's CORS preflight for an allowed origin and none other, the
app's own token for the technician's device (and its end when the technician's link to the
device changes), a batch of fixes taken offline stored whole and answered after the
commit, and a malformed batch refused whole."""

from __future__ import annotations

import asyncio
import base64
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg
import httpx

from gateway.registry.store import set_app_token
from tests.support.gateway import running_gateway, wait_for
from tests.support.ingest import count, register, rows
from tests.support.services import Services

PAGE = "http://127.0.0.1:8123"
"""The origin of the API's pages in this test (allowed by the gateway's setting)."""


def basic(user: str, secret: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{secret}".encode()).decode()


def mint(db_url: str, device: str) -> str:
    async def go() -> str:
        conn = await asyncpg.connect(db_url)
        try:
            return await set_app_token(conn, device)
        finally:
            await conn.close()

    return asyncio.run(go())


def execute(db_url: str, sql: str, *args: object) -> None:
    async def go() -> None:
        conn = await asyncpg.connect(db_url)
        try:
            await conn.execute(sql, *args)
        finally:
            await conn.close()

    asyncio.run(go())


def location(at: datetime, lat: float = 43.7384, lon: float = 7.4246) -> dict[str, object]:
    return {"_type": "location", "tst": int(at.timestamp()), "lat": lat, "lon": lon, "acc": 5}


def test_the_technician_app_posts_fixes_from_a_browser_page(
    services: Services, db_url: str, fixgate_env: dict[str, str], tmp_path: Path
) -> None:
    own_token = register(db_url, "phone-web", "acme", "phone", owntracks="phone-web/app")
    app_token = mint(db_url, "phone-web")
    t0 = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=5)
    app = {
        "Origin": PAGE,
        "X-Limit-U": "phone-web",
        "X-Limit-D": "app",
        "Authorization": basic("phone-web", app_token),
    }
    settings = {"http_cors_origins": f"{PAGE}, http://localhost:8123"}
    with running_gateway(fixgate_env, tmp_path, **settings) as gw, httpx.Client(timeout=15) as http:
        url = f"http://127.0.0.1:{gw.osmand_port}/owntracks"

        # The preflight the browser sends before a POST with these headers.
        asking = {
            "Origin": PAGE,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization,content-type,x-limit-u,x-limit-d",
        }
        preflight = http.options(url, headers=asking)
        assert preflight.status_code == 204
        assert preflight.headers["access-control-allow-origin"] == PAGE
        assert preflight.headers["access-control-allow-methods"] == "POST"
        allowed = {
            h.strip().lower() for h in preflight.headers["access-control-allow-headers"].split(",")
        }
        assert allowed >= {"authorization", "content-type", "x-limit-u", "x-limit-d"}
        stranger = http.options(url, headers={**asking, "Origin": "http://evil.example"})
        assert stranger.status_code == 403
        assert "access-control-allow-origin" not in stranger.headers
        assert count(db_url, "phone-web") == 0  # a preflight stores nothing

        # One fix with the app's token: answered after the commit, readable by the page.
        one = http.post(url, json=location(t0), headers=app)
        assert (one.status_code, one.json()) == (200, [])
        assert one.headers["access-control-allow-origin"] == PAGE
        assert count(db_url, "phone-web") == 1

        # The fixes taken offline, in one request, in their own times.
        batch = [location(t0 + timedelta(seconds=s), lon=7.4246 + s * 1e-4) for s in (5, 10, 15)]
        answer = http.post(url, json=batch, headers=app)
        assert (answer.status_code, answer.json()) == (200, [])
        assert count(db_url, "phone-web") == 4  # read the moment the answer came

        # A malformed element refuses the batch whole: nothing of it is stored.
        bad = [location(t0 + timedelta(seconds=20)), {"_type": "location", "lat": 1}]
        refused = http.post(url, json=bad, headers=app)
        assert refused.status_code == 400
        assert refused.headers["access-control-allow-origin"] == PAGE  # the page reads why
        assert count(db_url, "phone-web") == 4

        # The device's own token still works beside the app's (another sender of it).
        own = {**app, "Authorization": basic("phone-web", own_token)}
        assert (
            http.post(url, json=location(t0 + timedelta(seconds=25)), headers=own).status_code
            == 200
        )
        # A request from a page not allowed is stored (the listener is no browser) but
        # carries no CORS header, so that page cannot read the answer.
        elsewhere = http.post(
            url,
            json=location(t0 + timedelta(seconds=30)),
            headers={**app, "Origin": "http://evil.example"},
        )
        assert elsewhere.status_code == 200
        assert "access-control-allow-origin" not in elsewhere.headers

        # A technician linked to the device, then linked to none: the app token ends.
        execute(
            db_url,
            "INSERT INTO technicianmaster (tenant_id, techniciancode, firstname, lastname,"
            " device_id) VALUES ('acme', 'T-1', 'Ana', 'Lopez', 'phone-web')",
        )
        execute(db_url, "UPDATE technicianmaster SET device_id = NULL WHERE techniciancode = 'T-1'")

        def app_token_refused() -> bool:
            late = location(t0 + timedelta(seconds=35))
            return http.post(url, json=late, headers=app).status_code == 401

        assert wait_for(app_token_refused, timeout_s=10)
        assert (
            http.post(url, json=location(t0 + timedelta(seconds=40)), headers=own).status_code
            == 200
        )
        assert gw.metric("fixgate_http_requests_total", protocol="preflight", status="204") == 1
        assert gw.metric("fixgate_http_requests_total", protocol="preflight", status="403") == 1

    stored = rows(db_url, "phone-web")
    assert [r["time"] for r in stored][:4] == [t0 + timedelta(seconds=s) for s in (0, 5, 10, 15)]
    assert {r["protocol"] for r in stored} == {"owntracks"}
