"""Devices from the API (issue 22 items 4 and 6): an admin registers a device (the token
shown once), lists the tenant's devices with when each was last seen, by which protocol,
live or stale, disables and enables them; a device's track holds its stored fixes, and the
same range exports as CSV, GPX 1.1 (valid against its schema) and GeoJSON holding exactly
those fixes."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import httpx

from api.principal import Role
from gateway.registry.tokens import verify_token
from tests.support.api import Tenant, place, token
from tests.support.exports import from_csv, from_geojson, from_gpx

T0 = datetime(2026, 12, 1, 8, 0, tzinfo=UTC)


async def test_an_admin_registers_lists_disables_and_enables_devices(
    client: httpx.AsyncClient, pg: asyncpg.Connection, redis_client: Any, redis_prefix: str
) -> None:
    acme = Tenant(client, "acme")
    body = {"deviceId": "van-7", "kind": "service_van", "imei": "356307042441013",
            "traccarId": "traccar-van-7", "owntracks": "mike/van7"}  # fmt: skip
    made = await client.post("/devices", json=body, headers=acme.admin)
    assert made.status_code == 200, made.text
    secret = made.json()["data"]["token"]
    stored = await pg.fetchrow("SELECT tenant_id, token_hash, imei FROM devices WHERE id = 'van-7'")
    assert stored["tenant_id"] == "acme" and stored["imei"] == "356307042441013"
    assert secret not in stored["token_hash"] and verify_token(secret, stored["token_hash"])

    dispatcher = token(Role.DISPATCHER, "d-1", "acme")
    assert (await client.post("/devices", json={**body, "deviceId": "x-1"},
                              headers=dispatcher)).status_code == 403  # fmt: skip
    for taken in ({"deviceId": "van-7"}, {"deviceId": "van-8"}):  # the id, then the IMEI
        again = await client.post("/devices", json={**body, **taken}, headers=acme.admin)
        assert again.status_code == 409, again.text
    assert (await client.post("/devices", json={"deviceId": "a/b", "kind": "phone"},
                              headers=acme.admin)).status_code == 422  # fmt: skip

    listed = (await client.get("/devices", headers=dispatcher)).json()
    assert listed["totalNumber"] == 1
    van = listed["data"][0]
    assert (van["deviceId"], van["state"], van["enabled"]) == ("van-7", "never", True)
    assert van["owntracks"] == "mike/van7" and "token" not in van

    await place(redis_client, redis_prefix, "van-7", "acme", 43.7, 7.4)
    van = (await client.get("/devices/van-7", headers=dispatcher)).json()["data"]
    assert (van["state"], van["lastProtocol"]) == ("live", "json")
    assert datetime.fromisoformat(van["lastSeenAt"]) > datetime.now(UTC) - timedelta(minutes=1)
    await place(redis_client, redis_prefix, "van-7", "acme", 43.7, 7.4, age_s=3600)
    # (older than the live one: the live position only moves forward; a new device shows it)
    await client.post("/devices", json={"deviceId": "old-1", "kind": "tracker"},
                      headers=acme.admin)  # fmt: skip
    await place(redis_client, redis_prefix, "old-1", "acme", 43.7, 7.4, age_s=3600)
    old = (await client.get("/devices/old-1", headers=dispatcher)).json()["data"]
    assert old["state"] == "stale"
    searched = await client.get("/devices?search=OLD", headers=dispatcher)
    assert [d["deviceId"] for d in searched.json()["data"]] == ["old-1"]

    assert (await client.post("/devices/van-7/disable", headers=acme.admin)).status_code == 200
    assert not await pg.fetchval("SELECT enabled FROM devices WHERE id = 'van-7'")
    assert (await client.post("/devices/van-7/enable", headers=acme.admin)).status_code == 200
    assert await pg.fetchval("SELECT enabled FROM devices WHERE id = 'van-7'")
    globex = token(Role.ADMIN, "a-1", "globex")
    assert (await client.post("/devices/van-7/disable", headers=globex)).status_code == 404
    assert (await client.get("/devices/van-7", headers=globex)).status_code == 404
    assert (await client.post("/devices/van-7/disable", headers=dispatcher)).status_code == 403


async def _stored(pg: asyncpg.Connection, device: str, n: int, step_s: float) -> list[Any]:
    """n fixes of a drive north-east with their time, stored as the gateway stores them
    (and one invalid fix, which is never drawn or exported)."""
    rows = [
        (T0 + timedelta(seconds=i * step_s), device, "acme", 43.7301 + i * 0.000123456789,
         7.4101 + i * 0.0000987654321, 12.5, 8.25, 45.0, 5.0, 1.2, 9, True, "json", T0)
        for i in range(n)
    ]  # fmt: skip
    rows.append((T0 + timedelta(seconds=0.5), device, "acme", 0.0, 0.0, None, None, None, None,
                 None, None, False, "json", T0))  # fmt: skip
    await pg.copy_records_to_table(
        "positions", records=rows,
        columns=["time", "device_id", "tenant_id", "lat", "lon", "altitude", "speed", "heading",
                 "accuracy", "hdop", "satellites", "valid", "protocol", "received_at"],
    )  # fmt: skip
    return await pg.fetch(
        "SELECT time, lat, lon FROM positions WHERE device_id = $1 AND valid ORDER BY time",
        device,
    )


async def test_a_track_holds_the_stored_fixes_and_exports_them_exactly(
    client: httpx.AsyncClient, pg: asyncpg.Connection
) -> None:
    acme = Tenant(client, "acme")
    await client.post("/devices", json={"deviceId": "tow-1", "kind": "tow_truck"},
                      headers=acme.admin)  # fmt: skip
    stored = await _stored(pg, "tow-1", 120, 1.0)
    expected = [(r["time"], r["lat"], r["lon"]) for r in stored]
    span = {"fromTime": T0.isoformat(), "toTime": (T0 + timedelta(minutes=5)).isoformat()}
    dispatcher = token(Role.DISPATCHER, "d-1", "acme")

    track = (await client.get("/devices/tow-1/track", params=span, headers=dispatcher)).json()
    assert track["data"]["bucketSeconds"] == 0
    points = [(datetime.fromisoformat(p["time"]), p["latitude"], p["longitude"])
              for p in track["data"]["points"]]  # fmt: skip
    assert points == expected

    readers = {"csv": from_csv, "geojson": from_geojson}
    for fmt, media in (("csv", "text/csv"), ("gpx", "application/gpx+xml"),
                       ("geojson", "application/geo+json")):  # fmt: skip
        got = await client.get("/devices/tow-1/track/export", params={**span, "format": fmt},
                               headers=dispatcher)  # fmt: skip
        assert got.status_code == 200, got.text
        assert got.headers["content-type"].startswith(media)
        assert got.headers["content-disposition"] == (
            f'attachment; filename="tow-1_20261201T080000Z_20261201T080500Z.{fmt}"'
        )
        fixes = from_gpx(got.content) if fmt == "gpx" else readers[fmt](got.text)
        assert fixes == expected, fmt  # every stored fix, exactly, in order
    # Other tenants, customers and technicians get nothing.
    assert (await client.get("/devices/tow-1/track/export", params={**span, "format": "csv"},
                             headers=token(Role.ADMIN, "a", "globex"))).status_code == 404  # fmt: skip
    assert (await client.get("/devices/tow-1/track/export", params={**span, "format": "csv"},
                             headers=token(Role.CUSTOMER, "c", "acme"))).status_code == 403  # fmt: skip


async def test_a_long_track_is_averaged_and_a_long_export_streams_every_fix(
    make_settings: Any, pg: asyncpg.Connection, redis_client: Any
) -> None:
    from tests.support.api import running_app

    async with running_app(make_settings(track_max_points=50)) as client:
        acme = Tenant(client, "acme")
        await client.post("/devices", json={"deviceId": "tow-2", "kind": "tow_truck"},
                          headers=acme.admin)  # fmt: skip
        stored = await _stored(pg, "tow-2", 6000, 1.0)  # more than one page of an export
        span = {"fromTime": T0.isoformat(), "toTime": (T0 + timedelta(hours=2)).isoformat()}
        track = (await client.get("/devices/tow-2/track", params=span,
                                  headers=acme.admin)).json()["data"]  # fmt: skip
        assert track["bucketSeconds"] == 7200 / 50 and len(track["points"]) <= 51
        got = await client.get("/devices/tow-2/track/export", params={**span, "format": "csv"},
                               headers=acme.admin)  # fmt: skip
        assert from_csv(got.text) == [(r["time"], r["lat"], r["lon"]) for r in stored]
