"""Dispatch events for the real-time layer: one entry per event on the Redis stream
`{prefix}dispatch`, with the specification's event name, payload and target groups.

Entry fields: `id` (uuid), `event` (name), `tenant`, `groups` (JSON list: `Request-{id}`,
`AllAdmins`, `Technician-{id}`, `Customer-{id}`), `payload` (JSON, camelCase), `at` (ISO).
"""

from __future__ import annotations

import json
import time
import uuid
from datetime import UTC, datetime
from typing import Any

import redis.asyncio as aioredis

MAX_STREAM_ENTRIES = 100_000
"""The stream feeds live consumers and replays to reconnecting ones, it is not history (the
audit table is): trim it by length as well as by age (the replay window)."""
DEFAULT_RETENTION_S = 600.0


def request_group(request_id: str) -> str:
    return f"Request-{request_id}"


def technician_group(technician_id: str) -> str:
    return f"Technician-{technician_id}"


def customer_group(customer_id: str) -> str:
    return f"Customer-{customer_id}"


ALL_ADMINS = "AllAdmins"


def _default(value: object) -> object:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, uuid.UUID):
        return str(value)
    raise TypeError(f"not JSON serializable: {type(value).__name__}")


class Publisher:
    def __init__(
        self, client: aioredis.Redis, prefix: str, retention_s: float = DEFAULT_RETENTION_S
    ) -> None:
        self.client = client
        self.stream = f"{prefix}dispatch"
        self.retention_ms = int(retention_s * 1000)

    async def publish(self, tenant: str, event: str, payload: Any, groups: list[str]) -> None:
        entry = {
            "id": str(uuid.uuid4()),
            "event": event,
            "tenant": tenant,
            "groups": json.dumps(groups),
            "payload": json.dumps(payload, default=_default),
            "at": datetime.now(UTC).isoformat(),
        }
        # Entry ids are Redis's clock in ms: MINID drops what is older than the window
        # (approximately: whole radix nodes, so a little more is kept, never less).
        oldest_ms = int(time.time() * 1000) - self.retention_ms
        pipe = self.client.pipeline(transaction=False)
        pipe.xadd(self.stream, entry, maxlen=MAX_STREAM_ENTRIES, approximate=True)  # type: ignore[arg-type]  # redis-py's stub wants a dict of its own union type
        pipe.xtrim(self.stream, minid=f"{oldest_ms}-0", approximate=True)
        await pipe.execute()
