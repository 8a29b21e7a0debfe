"""Idempotency-Key (api/idempotency.py): a write sent again under its key acts once and
answers as it did the first time, whatever the write (a creation, a lifecycle action, a
refusal), also when two copies arrive at once and when the API died between the commit and
the answer; the same key with another request is 422."""

from __future__ import annotations

import asyncio
import os
import sys
import uuid
from typing import Any

import asyncpg
import httpx

from tests.support.api import SECRET, Tenant, eventually, running_app
from tests.support.paths import REPO_ROOT
from tests.support.ports import free_port
from tests.support.services import Services

KEY = "Idempotency-Key"


async def _count(pg: asyncpg.Connection, table: str) -> int:
    found: int = await pg.fetchval(f"SELECT count(*) FROM {table}")
    return found


def _request_body(vehicle_id: str, service: str) -> dict[str, Any]:
    return {"vehicleId": vehicle_id, "latitude": 1.0, "longitude": 2.0, "services": [service]}


async def _keyed(acme: Tenant) -> tuple[dict[str, Any], dict[str, str], dict[str, str]]:
    """A customer's new request body, their headers with a fresh key, and without it."""
    _, vehicle_id, customer = await acme.customer()
    body = _request_body(vehicle_id, await acme.service())
    return body, {KEY: str(uuid.uuid4()), **customer}, customer


async def test_a_creation_sent_twice_acts_once_and_answers_the_same(
    client: httpx.AsyncClient, pg: asyncpg.Connection
) -> None:
    acme = Tenant(client, "acme")
    body, key, customer = await _keyed(acme)
    first = await client.post("/service-request", json=body, headers=key)
    again = await client.post("/service-request", json=body, headers=key)
    assert first.status_code == again.status_code == 200, first.text
    assert again.content == first.content
    assert again.headers.get("idempotent-replayed") == "true"
    assert "idempotent-replayed" not in first.headers
    assert await _count(pg, "servicerequests") == 1
    # The same key with another request: refused, nothing done.
    other = await client.post("/service-request", json={**body, "latitude": 3.0}, headers=key)
    assert other.status_code == 422 and KEY in other.json()["message"]
    assert await _count(pg, "servicerequests") == 1
    # Another principal's key is theirs: the same string acts anew for them.
    _, other_vehicle, someone = await acme.customer()
    theirs = await client.post(
        "/service-request", json={**body, "vehicleId": other_vehicle},
        headers={KEY: key[KEY], **someone},
    )  # fmt: skip
    assert theirs.status_code == 200 and await _count(pg, "servicerequests") == 2
    # A malformed key is refused, naming it.
    bad = await client.post("/service-request", json=body, headers={KEY: "a key", **customer})
    assert bad.status_code == 422 and KEY in bad.json()["message"]


async def test_a_lifecycle_action_replayed_is_applied_once(
    client: httpx.AsyncClient, pg: asyncpg.Connection
) -> None:
    acme = Tenant(client, "acme")
    _, vehicle_id, customer = await acme.customer()
    service = await acme.service()
    technician_id, tech = await acme.technician()
    made = await client.post(
        "/service-request",
        json={**_request_body(vehicle_id, service), "serviceScheduleType": "Scheduled",
              "scheduledAt": "2099-01-01T10:00:00Z"},
        headers=customer,
    )  # fmt: skip
    request_id = made.json()["data"]["requestId"]
    accept = {KEY: str(uuid.uuid4()), **tech}
    answers = [
        await client.put(f"/service-request/{request_id}/1", headers=accept) for _ in range(3)
    ]
    assert [a.status_code for a in answers] == [200, 200, 200]
    assert len({a.content for a in answers}) == 1
    accepted = await pg.fetchval(
        "SELECT count(*) FROM dispatchaudit WHERE requestid = $1 AND action = 'accept'",
        uuid.UUID(request_id),
    )
    assert accepted == 1
    # A refusal is an answer too: replayed as it was, not acted again.
    start = {KEY: str(uuid.uuid4()), **tech}
    early = await client.put(
        f"/service-request/{request_id}", params={"workAction": 1}, headers=start
    )
    assert early.status_code == 409
    await client.post(f"/service-request/{request_id}/start-journey", headers=tech)
    still = await client.put(
        f"/service-request/{request_id}", params={"workAction": 1}, headers=start
    )
    assert (still.status_code, still.content) == (409, early.content)
    assert technician_id


async def test_two_copies_at_once_act_once(
    client: httpx.AsyncClient, pg: asyncpg.Connection
) -> None:
    body, key, _ = await _keyed(Tenant(client, "acme"))
    answers = await asyncio.gather(
        *(client.post("/service-request", json=body, headers=key) for _ in range(4))
    )
    assert {a.status_code for a in answers} == {200}
    assert len({a.content for a in answers}) == 1
    assert await _count(pg, "servicerequests") == 1


async def test_an_api_killed_between_commit_and_answer_answers_the_retry_with_the_first(
    services: Services, db_url: str, redis_prefix: str, pg: asyncpg.Connection, make_settings: Any
) -> None:
    port = free_port()
    env = {**os.environ, "FIXGATE_DATABASE_URL": db_url, "FIXGATE_REDIS_URL": services.redis_url,
           "FIXGATE_REDIS_PREFIX": redis_prefix, "FIXGATE_API_SECRET": SECRET}  # fmt: skip
    dying = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "tests.support.idempotency_crash", str(port), env=env, cwd=REPO_ROOT
    )
    base = f"http://127.0.0.1:{port}"
    try:
        async with httpx.AsyncClient(base_url=base, timeout=30) as http:

            async def up() -> bool:
                try:
                    return (await http.get("/healthz")).status_code == 200
                except httpx.TransportError:
                    return False

            await eventually(up, timeout_s=30)
            body, key, _ = await _keyed(Tenant(http, "acme"))
            try:
                await http.post("/service-request", json=body, headers=key)
                raise AssertionError("the write was answered: the crash did not happen")
            except httpx.TransportError:
                pass  # no answer: the process died after the commit
        async with asyncio.timeout(30):
            assert await dying.wait() == -9
        made = await pg.fetch("SELECT requestid, requestnumber FROM servicerequests")
        assert len(made) == 1  # committed, with its key
        async with running_app(make_settings()) as client:
            retry = await client.post("/service-request", json=body, headers=key)
        assert retry.status_code == 200 and retry.headers["idempotent-replayed"] == "true"
        assert retry.json()["data"] == {
            "requestId": str(made[0]["requestid"]), "requestNumber": made[0]["requestnumber"]
        }  # fmt: skip
        assert await _count(pg, "servicerequests") == 1
    finally:
        if dying.returncode is None:
            dying.kill()
            await dying.wait()
