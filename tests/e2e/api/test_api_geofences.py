"""Geofence management in the API: the engine's fences of the principal's tenant, managed by
admins and read by dispatchers too; polygons, multipolygons and circles; another tenant's
are 404;
and a fence created over the API is the running engine's within a second."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis.asyncio as aioredis

from api.principal import Role
from tests.support.api import running_app, token
from tests.support.engine import EngineProcess, feed, register, wait_events
from tests.support.geofence import fix, offset

LAT, LON = 43.7384, 7.4246  # Monaco
ADMIN = token(Role.ADMIN, "admin-1", "acme")
DISPATCHER = token(Role.DISPATCHER, "disp-1", "acme")
OTHER_TENANT = token(Role.ADMIN, "admin-1", "beta")


def square(half_m: float, centre: tuple[float, float] = (LAT, LON)) -> list[list[list[float]]]:
    s, w = offset(*centre, -half_m, -half_m)
    n, e = offset(*centre, half_m, half_m)
    return [[[w, s], [e, s], [e, n], [w, n], [w, s]]]


async def _create(client: httpx.AsyncClient, body: dict[str, Any], who: dict[str, str]) -> str:
    got = await client.post("/geofences", json=body, headers=who)
    assert got.status_code == 200, got.text
    fid: str = got.json()["data"]["id"]
    return fid


async def test_polygons_multipolygons_and_circles_are_created_listed_and_removed(
    client: httpx.AsyncClient,
) -> None:
    yard = await _create(
        client,
        {"name": "yard", "kind": "depot", "dwellS": 120,
         "geometry": {"type": "Polygon", "coordinates": square(100)}},
        ADMIN,
    )  # fmt: skip
    far = offset(LAT, LON, 2000, 0)
    body = {"name": "area", "kind": "service_area",
            "geometry": {"type": "MultiPolygon", "coordinates": [square(50), square(50, far)]}}  # fmt: skip
    # Only an admin manages geofences; a dispatcher runs requests (and reads the fences).
    refused = await client.post("/geofences", json=body, headers=DISPATCHER)
    assert refused.status_code == 403
    area = await _create(client, body, ADMIN)
    circle = await _create(
        client,
        {"name": "customer", "kind": "customer", "radiusM": 30,
         "geometry": {"type": "Feature", "properties": {},
                      "geometry": {"type": "Point", "coordinates": [LON, LAT]}}},
        ADMIN,
    )  # fmt: skip
    listed = await client.get("/geofences", headers=ADMIN)
    assert listed.status_code == 200
    body = listed.json()
    assert body["status"] == 200 and body["totalNumber"] == 3
    by_id = {str(g["geofenceId"]): g for g in body["data"]}
    assert by_id[yard]["geometryType"] == "POLYGON" and by_id[yard]["dwellS"] == 120
    assert by_id[yard]["kind"] == "depot" and by_id[yard]["radiusM"] is None
    # GeoJSON out to 9 decimals (PostGIS's default): about 0.1 mm.
    assert by_id[yard]["geometry"]["coordinates"][0][0] == pytest.approx(square(100)[0][0])
    assert by_id[area]["geometryType"] == "MULTIPOLYGON"
    assert len(by_id[area]["geometry"]["coordinates"]) == 2
    assert by_id[circle]["geometryType"] == "POINT" and by_id[circle]["radiusM"] == 30
    assert by_id[circle]["geometry"] == {"type": "Point", "coordinates": [LON, LAT]}
    depots = (await client.get("/geofences?kind=depot", headers=ADMIN)).json()
    assert [str(g["geofenceId"]) for g in depots["data"]] == [yard]
    page = (await client.get("/geofences?rowsPerPage=2&pageNumber=2", headers=ADMIN)).json()
    assert len(page["data"]) == 1 and page["hasPreviousPage"] and page["totalPages"] == 2

    one = await client.get(f"/geofences/{area}", headers=DISPATCHER)
    assert one.status_code == 200 and one.json()["data"]["name"] == "area"
    gone = await client.delete(f"/geofences/{area}", headers=ADMIN)
    assert gone.status_code == 200 and gone.json()["message"] == "Geofence removed"
    assert (await client.get(f"/geofences/{area}", headers=ADMIN)).status_code == 404
    assert (await client.delete(f"/geofences/{area}", headers=ADMIN)).status_code == 404
    assert (await client.get("/geofences", headers=ADMIN)).json()["totalNumber"] == 2


async def test_only_staff_of_the_tenant_see_a_geofence(client: httpx.AsyncClient) -> None:
    fid = await _create(
        client, {"name": "yard", "geometry": {"type": "Polygon", "coordinates": square(80)}}, ADMIN
    )
    # Another tenant's fence is one that does not exist.
    assert (await client.get(f"/geofences/{fid}", headers=OTHER_TENANT)).status_code == 404
    assert (await client.delete(f"/geofences/{fid}", headers=OTHER_TENANT)).status_code == 404
    assert (await client.get("/geofences", headers=OTHER_TENANT)).json()["data"] == []
    assert (await client.get(f"/geofences/{fid}", headers=ADMIN)).status_code == 200
    # The same name in another tenant is another fence.
    await _create(
        client,
        {"name": "yard", "geometry": {"type": "Polygon", "coordinates": square(80)}},
        OTHER_TENANT,
    )
    for role, subject in ((Role.TECHNICIAN, "t-1"), (Role.CUSTOMER, "c-1")):
        who = token(role, subject, "acme")
        assert (await client.get("/geofences", headers=who)).status_code == 403
        assert (await client.delete(f"/geofences/{fid}", headers=who)).status_code == 403
    assert (await client.get("/geofences")).status_code == 401


async def test_bad_geofences_are_refused_naming_the_field(client: httpx.AsyncClient) -> None:
    polygon = {"type": "Polygon", "coordinates": square(80)}
    cases: list[tuple[dict[str, Any], int, str]] = [
        ({"name": "p", "geometry": {"type": "Point", "coordinates": [LON, LAT]}}, 422, "radiusM"),
        ({"name": "p", "radiusM": 20, "geometry": polygon}, 422, "radiusM"),
        ({"name": "p", "geometry": {"type": "LineString", "coordinates": [[7, 43], [8, 44]]}},
         422, "geometry"),
        ({"name": "p", "geometry": {"type": "Polygon", "coordinates": [[[0, 0], [1, 1], [1, 0],
                                                                       [0, 1], [0, 0]]]}},
         422, "geometry"),  # a bow tie: self-intersecting
        ({"name": "p", "geometry": {"type": "Polygon",
                                    "coordinates": [[[0, 0], [0, 200], [1, 0], [0, 0]]]}},
         422, "geometry"),  # latitude 200
        ({"name": "p", "geometry": {"type": "Nonsense"}}, 422, "geometry"),
        ({"name": "p", "kind": "harbour", "geometry": polygon}, 422, "kind"),
        ({"name": "p", "dwellS": -1, "geometry": polygon}, 422, "dwellS"),
        ({"name": "", "geometry": polygon}, 422, "name"),
    ]  # fmt: skip
    for body, status, field in cases:
        got = await client.post("/geofences", json=body, headers=ADMIN)
        assert got.status_code == status, (body, got.text)
        assert field in got.json()["message"], (body, got.text)
    await _create(client, {"name": "yard", "geometry": polygon}, ADMIN)
    again = await client.post(
        "/geofences", json={"name": "yard", "geometry": polygon}, headers=ADMIN
    )
    assert again.status_code == 409 and "yard" in again.json()["message"]
    assert (await client.get("/geofences/0", headers=ADMIN)).status_code == 422


async def test_a_fence_created_over_the_api_is_the_running_engines(
    make_settings: Any,
    fixgate_env: dict[str, str],
    db_url: str,
    redis_client: aioredis.Redis,
    redis_prefix: str,
    tmp_path: Path,
) -> None:
    await register(db_url, "truck-1", "acme")
    engine = EngineProcess(fixgate_env, tmp_path / "engine.log")
    try:
        await asyncio.to_thread(engine.wait_ready)
        # The app only for the write (its engine-event consumer is not what is tested here).
        async with running_app(make_settings()) as client:
            fid = await _create(
                client,
                {"name": "yard", "geometry": {"type": "Polygon", "coordinates": square(100)}},
                ADMIN,
            )
        await asyncio.sleep(1.0)  # the engine's reload: within a second of the change
        drive = [
            fix(t, *offset(LAT, LON, 0.0, -300.0 + 10.0 * t), device="truck-1", tenant="acme")
            for t in range(61)
        ]
        await feed(redis_client, redis_prefix, [drive[i : i + 5] for i in range(0, 61, 5)])
        got = await wait_events(redis_client, redis_prefix, 2)
    finally:
        assert engine.stop() == 0
    assert [(e["type"], e["geofence"]) for e in got] == [
        ("geofence_enter", int(fid)),
        ("geofence_exit", int(fid)),
    ]


async def test_a_fence_is_edited_in_place_keeping_its_id_and_service_area(
    client: httpx.AsyncClient,
) -> None:
    fid = await _create(client, {"name": "East", "kind": "service_area",
                                 "geometry": {"type": "Polygon", "coordinates": square(200)}},
                        ADMIN)  # fmt: skip
    area = await client.post("/service-areas", json={"geofenceId": int(fid)}, headers=ADMIN)
    assert area.status_code == 200, area.text
    bigger = {"name": "East (wider)", "geometry": {"type": "Polygon", "coordinates": square(400)},
              "dwellS": 30}  # fmt: skip
    assert (
        await client.patch(f"/geofences/{fid}", json=bigger, headers=DISPATCHER)
    ).status_code == 403
    changed = await client.patch(f"/geofences/{fid}", json=bigger, headers=ADMIN)
    assert changed.status_code == 200, changed.text
    got = (await client.get(f"/geofences/{fid}", headers=ADMIN)).json()["data"]
    assert (got["name"], got["kind"], got["dwellS"]) == ("East (wider)", "service_area", 30)
    wider = [[[round(x, 9), round(y, 9)] for x, y in ring] for ring in square(400)]
    assert got["geometry"]["coordinates"] == wider  # PostGIS writes 9 decimals
    areas = (await client.get("/service-areas", headers=ADMIN)).json()["data"]
    assert [a["geofenceId"] for a in areas] == [int(fid)]
    # A circle's radius comes with its centre; a polygon has none.
    circle = {"geometry": {"type": "Point", "coordinates": [LON, LAT]}, "radiusM": 150}
    assert (await client.patch(f"/geofences/{fid}", json=circle, headers=ADMIN)).status_code == 200
    got = (await client.get(f"/geofences/{fid}", headers=ADMIN)).json()["data"]
    assert (got["geometryType"], got["radiusM"]) == ("POINT", 150)
    lone = await client.patch(f"/geofences/{fid}", json={"radiusM": 90}, headers=ADMIN)
    assert lone.status_code == 422
    assert (await client.patch(f"/geofences/{fid}", json={"name": "x"},
                               headers=OTHER_TENANT)).status_code == 404  # fmt: skip
