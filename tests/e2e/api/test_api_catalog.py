"""Catalog CRUD, authentication and tenant isolation, through the running app."""

from __future__ import annotations

import httpx

from api.principal import Role
from tests.support.api import Tenant, token


async def test_health_and_readiness(client: httpx.AsyncClient) -> None:
    assert (await client.get("/healthz")).json()["status"] == 200
    ready = await client.get("/readyz")
    assert ready.status_code == 200 and ready.json()["message"] == "ready"
    metrics = await client.get("/metrics")
    assert "fixgate_api_request_seconds" in metrics.text


async def test_no_token_or_bad_token_is_401_in_the_envelope(client: httpx.AsyncClient) -> None:
    missing = await client.get("/customers")
    assert missing.status_code == 401
    assert missing.json()["status"] == 401
    bad = await client.get("/customers", headers={"Authorization": "Bearer not.a.jwt"})
    assert bad.status_code == 401
    assert bad.json()["message"].startswith("Invalid token")


async def test_wrong_role_is_403(client: httpx.AsyncClient) -> None:
    response = await client.get("/customers", headers=token(Role.CUSTOMER, "c", "acme"))
    assert response.status_code == 403
    assert response.json() == {
        "status": 403,
        "message": "Only admin, dispatcher may do this (you are customer)",
        "data": None,
    }


async def test_customer_crud_camel_case_and_paging(client: httpx.AsyncClient) -> None:
    acme = Tenant(client, "acme")
    customer_id, vehicle_id, _ = await acme.customer()
    got = (await client.get(f"/customers/{customer_id}", headers=acme.admin)).json()["data"]
    assert got["customerId"] == customer_id and got["firstName"] == "John"
    assert got["enabled"] is True
    patched = await client.patch(
        f"/customers/{customer_id}", json={"lastName": "Roe"}, headers=acme.admin
    )
    assert patched.status_code == 200
    got = (await client.get(f"/customers/{customer_id}", headers=acme.admin)).json()["data"]
    assert got["lastName"] == "Roe"
    vehicles = (await client.get(f"/customers/{customer_id}/vehicles", headers=acme.admin)).json()
    assert [v["vehicleId"] for v in vehicles["data"]] == [vehicle_id]
    assert vehicles["totalNumber"] == 1 and vehicles["totalPages"] == 1
    await acme.customer()
    page = (await client.get("/customers", params={"rowsPerPage": 1}, headers=acme.admin)).json()
    assert page["totalNumber"] == 2 and page["hasNextPage"] is True and len(page["data"]) == 1
    disabled = await client.post(f"/customers/{customer_id}/disable", headers=acme.admin)
    assert disabled.status_code == 200
    got = (await client.get(f"/customers/{customer_id}", headers=acme.admin)).json()["data"]
    assert got["enabled"] is False


async def test_another_tenants_object_is_404_like_a_missing_one(
    client: httpx.AsyncClient,
) -> None:
    acme, other = Tenant(client, "acme"), Tenant(client, "other")
    customer_id, _, _ = await acme.customer()
    service_id = await acme.service()
    for path in (f"/customers/{customer_id}", f"/services/{service_id}"):
        response = await client.get(path, headers=other.admin)
        assert response.status_code == 404, path
        assert response.json()["message"].endswith("not found")
    listed = (await client.get("/services", headers=other.admin)).json()
    assert listed["data"] == [] and listed["totalNumber"] == 0
    missing = await client.get(
        "/customers/00000000-0000-0000-0000-000000000000", headers=acme.admin
    )
    assert missing.status_code == 404


async def test_bad_input_names_the_field(client: httpx.AsyncClient) -> None:
    acme = Tenant(client, "acme")
    response = await client.post(
        "/services",
        json={"serviceCode": "X", "serviceName": "Y", "servicePrice": -1},
        headers=acme.admin,
    )
    assert response.status_code == 422
    assert "servicePrice" in response.json()["message"]


async def test_technician_links_a_device_of_its_tenant_only(
    client: httpx.AsyncClient, pg: object
) -> None:
    import asyncpg

    assert isinstance(pg, asyncpg.Connection)
    await pg.execute(
        "INSERT INTO devices (id, tenant_id, kind, token_hash) VALUES"
        " ('van-a', 'acme', 'service_van', 'x'), ('van-b', 'other', 'service_van', 'x')"
    )
    acme = Tenant(client, "acme")
    technician_id, tech = await acme.technician(device_id="van-a")
    response = await client.post(
        "/technicians", json={"technicianCode": "T2", "deviceId": "van-b"}, headers=acme.admin
    )
    assert response.status_code == 422 and "deviceId" in response.json()["message"]
    set_break = await client.put(
        "/technician/availability", json={"availabilityStatus": "OnBreak"}, headers=tech
    )
    assert set_break.status_code == 200
    got = (await client.get(f"/technicians/{technician_id}", headers=acme.admin)).json()["data"]
    assert got["availabilityStatus"] == "OnBreak" and got["deviceId"] == "van-a"
