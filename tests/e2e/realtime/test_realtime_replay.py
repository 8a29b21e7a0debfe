"""Missed events: a client reconnecting with its last id gets exactly what it missed, then
the live feed, with no gap or duplicate at the seam; past the retention window it is told
to resync."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx

from api.principal import Role
from tests.support.api import Tenant
from tests.support.realtime import ApiProcess, connect, create_request, raw_token

REQUESTS_WHILE_AWAY = 5
REQUESTS_AROUND_RECONNECT = 8


async def _ids(client: Any) -> list[str]:
    return [m["id"] for m in client.messages if m["id"] is not None]


async def test_reconnect_replays_what_was_missed_without_gap_or_duplicate(
    apis: list[ApiProcess], http: httpx.AsyncClient
) -> None:
    one, two = apis
    acme = Tenant(http, "acme")
    service = await acme.service()
    _, vehicle, customer = await acme.customer()
    watcher = await connect(one.ws, raw_token(Role.ADMIN, "watcher", "acme"))
    admin = raw_token(Role.DISPATCHER, "roaming", "acme")
    first = await connect(two.ws, admin)
    created = [await create_request(http, vehicle, service, customer)]
    await first.event("new_service_request", requestId=created[0])
    await first.close()
    resume = first.last_id
    created += [
        await create_request(http, vehicle, service, customer) for _ in range(REQUESTS_WHILE_AWAY)
    ]

    async def keep_creating() -> None:
        for _ in range(REQUESTS_AROUND_RECONNECT):
            created.append(await create_request(http, vehicle, service, customer))
            await asyncio.sleep(0.02)

    # Events keep coming while the client reconnects (to the other process): the seam
    # between replay and live feed is crossed under traffic.
    traffic = asyncio.create_task(keep_creating())
    await asyncio.sleep(0.05)
    second = await connect(one.ws, admin, last_event_id=resume)
    await traffic
    for request_id in created:
        await watcher.event("new_service_request", requestId=request_id)
    for request_id in created[1:]:
        await second.event("new_service_request", requestId=request_id)
    await asyncio.sleep(0.5)
    assert second.welcome["data"]["replayed"] >= REQUESTS_WHILE_AWAY
    got = [m["id"] for m in first.messages] + await _ids(second)
    assert got == await _ids(watcher)
    assert len(got) == len(set(got))
    await watcher.close()
    await second.close()


async def test_a_customer_replay_holds_only_its_own_requests(
    apis: list[ApiProcess], http: httpx.AsyncClient
) -> None:
    acme = Tenant(http, "acme")
    service = await acme.service()
    me, my_vehicle, my_headers = await acme.customer()
    _, other_vehicle, other_headers = await acme.customer()
    token = raw_token(Role.CUSTOMER, me, "acme")
    first = await connect(apis[0].ws, token)
    await first.close()
    mine = await create_request(http, my_vehicle, service, my_headers)
    theirs = await create_request(http, other_vehicle, service, other_headers)
    canceled = await http.put(f"/service-request/{mine}/3", headers=my_headers)
    assert canceled.status_code == 200, canceled.text
    back = await connect(apis[1].ws, token, last_event_id=first.last_id)
    names = [(m["event"], m["data"].get("requestId")) for m in back.messages]
    assert ("new_service_request", mine) in names
    assert ("request_canceled", mine) in names
    assert all(theirs not in str(m) for m in back.messages)
    await back.close()


async def test_past_the_retention_window_the_client_is_told_to_resync(
    start_apis: Any, redis_prefix: str
) -> None:
    with start_apis(1, FIXGATE_WS_REPLAY_WINDOW_S="1") as [api]:
        async with httpx.AsyncClient(base_url=api.http, timeout=30) as http:
            acme = Tenant(http, "acme")
            service = await acme.service()
            _, vehicle, customer = await acme.customer()
            token = raw_token(Role.ADMIN, "a", "acme")
            first = await connect(api.ws, token)
            await first.close()
            await create_request(http, vehicle, service, customer)
            # Within the window: replayed.
            within = await connect(api.ws, token, last_event_id=first.last_id)
            assert within.events("new_service_request")
            assert not within.events("resync")
            await within.close()
            await asyncio.sleep(1.5)
            # Publishing trims what is older than the window, the missed event included.
            latest = await create_request(http, vehicle, service, customer)
            late = await connect(api.ws, token, last_event_id=first.last_id)
            assert [m["event"] for m in late.messages] == ["resync"]
            assert late.messages[0]["data"]["lastEventId"] == first.last_id
            # Live after the resync message.
            newer = await create_request(http, vehicle, service, customer)
            await late.event("new_service_request", requestId=newer)
            assert not [m for m in late.messages if latest in str(m)]
            await late.close()
