"""A process that dies between an action's commit and the relay of its events.

`python -m tests.support.outbox_crash TENANT TECHNICIAN REQUEST` (database, Redis and prefix
from `FIXGATE_*`) accepts the request as the technician through `api.lifecycle.accept` on a
state whose relay SIGKILLs the process when the accept hands it its committed rows: the transaction
(the state change and its outbox rows) is committed, nothing is on the stream, and nothing
of this process cleans up.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from collections.abc import Sequence
from typing import Any
from uuid import UUID

import asyncpg
import redis.asyncio as aioredis

from api import lifecycle
from api.outbox import Outbox
from api.principal import Principal, Role
from api.realtime.service import Realtime
from api.settings import ApiSettings
from api.state import ApiState
from gateway.process import Life


class DyingOutbox(Outbox):
    def committed(self, rows: Sequence[dict[str, Any]]) -> None:
        os.kill(os.getpid(), signal.SIGKILL)
        raise AssertionError("SIGKILL did not kill")  # pragma: no cover


async def main(tenant: str, technician: str, request_id: UUID) -> None:
    settings = ApiSettings(api_secret="x" * 32)
    pool = await asyncpg.create_pool(settings.database_url, min_size=1, max_size=2)
    client = aioredis.from_url(settings.redis_url)
    prefix = settings.redis_prefix
    state = ApiState(
        life=Life("outbox-crash", 5.0),
        settings=settings,
        pool=pool,
        redis=client,
        outbox=DyingOutbox(pool, client, prefix, settings.ws_replay_window_s),
        realtime=Realtime.build(client, prefix, settings.ws_presence_ttl_s),
        keys=settings.keys(),
    )
    principal = Principal(subject=technician, tenant=tenant, role=Role.TECHNICIAN)
    await lifecycle.accept(state, principal, request_id, None)
    raise AssertionError("the relay was not called")


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2], UUID(sys.argv[3])))
