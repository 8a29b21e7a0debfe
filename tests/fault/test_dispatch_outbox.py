"""The dispatch events' outbox under crashes: events an API process committed but never
relayed (it was SIGKILLed in between) reach the stream exactly once through another API
process, and a relay that dies between XADD and DELETE does not double them.

These kill only processes the tests start themselves: they run on the shared stack.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import pytest
import redis.asyncio as aioredis

from api.events import ALL_ADMINS, to_json
from api.outbox import RELAY_POLL_S, Outbox
from api.store import outbox as outbox_store
from api.unit_of_work import UnitOfWork
from tests.support.api import Tenant, dispatch_events, eventually, running_app, settings_for
from tests.support.paths import REPO_ROOT
from tests.support.realtime import api_processes
from tests.support.services import Services

pytestmark = pytest.mark.fault

CRASH_TIMEOUT_S = 60
ACCEPT_EVENTS = [
    "request_accepted",
    "request_status_changed",
    "QueueUpdated",
    "QueuePositionChanged",
]


@pytest.fixture
async def pool(db_url: str) -> AsyncIterator[asyncpg.Pool]:
    created = await asyncpg.create_pool(db_url, min_size=1, max_size=2)
    yield created
    await created.close()


async def _outbox_rows(pg: asyncpg.Connection) -> list[asyncpg.Record]:
    return list(
        await pg.fetch(f"SELECT {outbox_store.ROW_COLUMNS} FROM dispatchoutbox ORDER BY seq")
    )


async def _write(
    pool: asyncpg.Pool, *events: tuple[str, dict[str, Any], uuid.UUID | None]
) -> list[int]:
    """Events committed to the outbox as an action's unit of work writes them; their seqs."""
    async with pool.acquire() as conn, conn.transaction():
        uow = UnitOfWork(conn, "acme", None)
        for name, payload, event_id in events:
            uow.announce(name, payload, [ALL_ADMINS], event_id=event_id)
        written = await outbox_store.write(conn, uow.audits, uow.events)
    return [int(row["seq"]) for row in written]


async def test_events_of_an_api_killed_before_relaying_reach_the_stream_once(
    services: Services,
    db_url: str,
    redis_prefix: str,
    redis_client: aioredis.Redis,
    pg: asyncpg.Connection,
) -> None:
    async with running_app(settings_for(db_url, services.redis_url, redis_prefix)) as http:
        acme = Tenant(http, "acme")
        service = await acme.service()
        _, vehicle, customer = await acme.customer()
        technician, _ = await acme.technician()
        # Scheduled: Pending, so any technician of the tenant may accept it, and no ring.
        created = await http.post(
            "/service-request",
            json={
                "vehicleId": vehicle,
                "serviceScheduleType": "Scheduled",
                "scheduledAt": (datetime.now(UTC) + timedelta(days=1)).isoformat(),
                "latitude": 45.0,
                "longitude": 7.0,
                "services": [service],
            },
            headers=customer,
        )
        assert created.status_code == 200, created.text
        request_id: str = created.json()["data"]["requestId"]
    before = await redis_client.xrange(f"{redis_prefix}dispatch")
    assert [e for e, _, _ in await dispatch_events(redis_client, redis_prefix)] == [
        "new_service_request"
    ]
    env = {
        **os.environ,
        "FIXGATE_DATABASE_URL": db_url,
        "FIXGATE_REDIS_URL": services.redis_url,
        "FIXGATE_REDIS_PREFIX": redis_prefix,
    }
    crashing = await asyncio.create_subprocess_exec(
        *[sys.executable, "-m", "tests.support.outbox_crash", "acme", technician, request_id],
        env=env,
        cwd=REPO_ROOT,
    )
    async with asyncio.timeout(CRASH_TIMEOUT_S):
        assert await crashing.wait() == -signal.SIGKILL
    # Committed: the accept and its events; relayed: nothing.
    status = await pg.fetchval(
        "SELECT requeststatus FROM servicerequests WHERE requestid = $1", uuid.UUID(request_id)
    )
    assert status == "Assigned"
    rows = await _outbox_rows(pg)
    assert [r["event"] for r in rows] == ACCEPT_EVENTS
    assert await redis_client.xrange(f"{redis_prefix}dispatch") == before

    async def relayed() -> bool:
        return not await pg.fetchval("SELECT count(*) FROM dispatchoutbox")

    with api_processes(1, db_url, services.redis_url, redis_prefix):
        await eventually(relayed)
        await asyncio.sleep(3 * RELAY_POLL_S)  # more relay passes: nothing goes out again
    entries = (await redis_client.xrange(f"{redis_prefix}dispatch"))[len(before) :]
    got = [
        (
            f[b"id"].decode(),
            f[b"event"].decode(),
            f[b"tenant"].decode(),
            json.loads(f[b"groups"]),
            json.loads(f[b"payload"]),
            f[b"at"].decode(),
        )
        for _, f in entries
    ]
    assert got == [
        (
            str(r["eventid"]),
            r["event"],
            "acme",
            json.loads(r["groups"]),
            json.loads(r["payload"]),
            r["createdat"].isoformat(),
        )
        for r in rows
    ]
    assert got[0][4]["serviceRequestInfo"]["requestId"] == request_id


async def test_a_relay_dead_between_xadd_and_delete_does_not_double_events(
    pool: asyncpg.Pool, redis_prefix: str, redis_client: aioredis.Redis, pg: asyncpg.Connection
) -> None:
    stream = f"{redis_prefix}dispatch"
    outbox = Outbox(pool, redis_client, redis_prefix)
    seqs = await _write(pool, *((f"event-{n}", {"zeta": n, "alpha": 1.5}, None) for n in range(3)))
    rows = await _outbox_rows(pg)
    # The relay that died: its script added the first two rows' entries, the DELETE of its
    # transaction never committed.
    for row in rows[:2]:
        assert await outbox.xadd(row) is not None
    assert await outbox.relay_rows(seqs) == 3
    assert await outbox.relay_rows(seqs) == 0
    assert await _outbox_rows(pg) == []
    entries = await redis_client.xrange(stream)
    assert [(f[b"id"].decode(), f[b"event"].decode()) for _, f in entries] == [
        (str(r["eventid"]), r["event"]) for r in rows
    ]
    # The payload's text as the action wrote it (key order and numbers untouched).
    assert entries[1][1][b"payload"] == to_json({"zeta": 1, "alpha": 1.5}).encode()
    # A row whose event went out already (the same event id, e.g. the LocationUpdated of a
    # redelivered engine event) is deleted without a second entry.
    again = await _write(pool, ("event-0", {"zeta": 0}, rows[0]["eventid"]))
    assert await outbox.relay_rows(again) == 1
    assert await _outbox_rows(pg) == []
    assert len(await redis_client.xrange(stream)) == len(rows)
