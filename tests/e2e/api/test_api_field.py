"""What the field apps read of the signed-in technician and customer, and the technician's
credentials for the gateway (docs/field-apps.md): through the running app and its
database."""

from __future__ import annotations

import asyncpg
import httpx

from api.principal import Role
from gateway.registry.store import check_app_login, get_device
from tests.support.api import Tenant, add_device, fresh_minute, token


async def test_a_technician_reads_themselves_and_nobody_else_does(
    client: httpx.AsyncClient,
) -> None:
    acme = Tenant(client, "acme")
    technician_id, tech = await acme.technician(availability="OnBreak")
    me = await client.get("/technician/me", headers=tech)
    assert me.status_code == 200
    assert (me.json()["data"]["technicianId"], me.json()["data"]["availabilityStatus"]) == (
        technician_id,
        "OnBreak",
    )
    _, _, customer = await acme.customer()
    assert (await client.get("/technician/me", headers=customer)).status_code == 403
    assert (await client.get("/technician/me", headers=acme.admin)).status_code == 403
    stranger = token(Role.TECHNICIAN, technician_id, "other-tenant")
    assert (await client.get("/technician/me", headers=stranger)).status_code == 404


async def test_device_credentials_register_and_link_a_phone_when_there_is_none(
    client: httpx.AsyncClient, pg: asyncpg.Connection
) -> None:
    acme = Tenant(client, "acme")
    technician_id, tech = await acme.technician()
    first = await client.post("/technician/device-credentials", headers=tech)
    assert first.status_code == 200, first.text
    creds = first.json()["data"]
    device_id = f"app-{technician_id}"
    assert creds == {
        "url": "http://127.0.0.1:5055/owntracks",  # FIXGATE_OSMAND_HOST/PORT's defaults
        "protocol": "owntracks",
        "deviceId": device_id,
        "user": device_id,
        "device": "app",
        "token": creds["token"],
    }
    linked = await pg.fetchval(
        "SELECT device_id FROM technicianmaster WHERE technicianid = $1", technician_id
    )
    assert linked == device_id
    device = await get_device(pg, device_id)
    assert device is not None and (device.tenant_id, device.kind) == ("acme", "phone")
    assert check_app_login(device, creds["token"]) is None
    assert len(creds["token"]) >= 40  # 256 bits, URL-safe base64

    # Again (another tab, a reload without the session): a new token, the old one ends.
    again = (await client.post("/technician/device-credentials", headers=tech)).json()["data"]
    assert again["deviceId"] == device_id and again["token"] != creds["token"]
    device = await get_device(pg, device_id)
    assert check_app_login(device, again["token"]) is None
    assert check_app_login(device, creds["token"]) == "wrong_token"
    assert await pg.fetchval("SELECT count(*) FROM devices") == 1

    # Staff link the technician to another device: the app token ends at once.
    await add_device(pg, "van-9", "acme")
    relinked = await client.patch(
        f"/technicians/{technician_id}", json={"deviceId": "van-9"}, headers=acme.admin
    )
    assert relinked.status_code == 200
    assert check_app_login(await get_device(pg, device_id), again["token"]) == "wrong_token"


async def test_device_credentials_for_a_linked_device_keep_its_own_token(
    client: httpx.AsyncClient, pg: asyncpg.Connection
) -> None:
    acme = Tenant(client, "acme")
    await add_device(pg, "phone-7", "acme")
    technician_id, tech = await acme.technician(device_id="phone-7")
    creds = (await client.post("/technician/device-credentials", headers=tech)).json()["data"]
    assert (creds["deviceId"], creds["user"], creds["device"]) == ("phone-7", "phone-7", "app")
    row = await pg.fetchrow(
        "SELECT token_hash, owntracks_user, owntracks_device FROM devices WHERE id = 'phone-7'"
    )
    assert dict(row) == {"token_hash": "x", "owntracks_user": "phone-7", "owntracks_device": "app"}

    # A disabled technician's app token ends; a disabled device gets none.
    disabled = await client.post(f"/technicians/{technician_id}/disable", headers=acme.admin)
    assert disabled.status_code == 200
    assert check_app_login(await get_device(pg, "phone-7"), creds["token"]) == "wrong_token"
    other_id, other = await acme.technician()
    await add_device(pg, "phone-8", "acme")
    await client.patch(f"/technicians/{other_id}", json={"deviceId": "phone-8"}, headers=acme.admin)
    await pg.execute("UPDATE devices SET enabled = false WHERE id = 'phone-8'")
    refused = await client.post("/technician/device-credentials", headers=other)
    assert refused.status_code == 409
    assert "disabled" in refused.json()["message"]


async def test_only_a_technician_takes_device_credentials_and_only_so_often(
    client: httpx.AsyncClient,
) -> None:
    acme = Tenant(client, "acme")
    _, _, customer = await acme.customer()
    for who in (customer, acme.admin):
        assert (await client.post("/technician/device-credentials", headers=who)).status_code == 403
    _, tech = await acme.technician()
    await fresh_minute()
    codes = [
        (await client.post("/technician/device-credentials", headers=tech)).status_code
        for _ in range(11)
    ]
    assert codes == [200] * 10 + [429]


async def test_a_customer_reads_themselves_and_their_vehicles_in_service(
    client: httpx.AsyncClient,
) -> None:
    acme = Tenant(client, "acme")
    customer_id, vehicle_id, customer = await acme.customer()
    retired = await acme.post(
        f"/customers/{customer_id}/vehicles", {"vin": "VF1OLD", "make": "Renault"}
    )
    await client.post(f"/customers/{customer_id}/vehicles/{retired}/disable", headers=acme.admin)
    _, others, _ = await acme.customer()

    me = (await client.get("/customer/me", headers=customer)).json()["data"]
    assert (me["customerId"], me["firstName"], me["userId"]) == (customer_id, "John", None)
    vehicles = (await client.get("/customer/vehicles", headers=customer)).json()
    assert [v["vehicleId"] for v in vehicles["data"]] == [vehicle_id] != [others]
    assert vehicles["totalNumber"] == 1
    _, tech = await acme.technician()
    assert (await client.get("/customer/vehicles", headers=tech)).status_code == 403
    assert (await client.get("/customer/me", headers=acme.admin)).status_code == 403
