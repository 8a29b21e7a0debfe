"""Rate limits shared by every API process (Redis): a fixed window per principal and
action, one pipelined round trip per limited call."""

from __future__ import annotations

import time

from api.errors import ApiError
from api.principal import Principal
from gateway.redis_link import AnyRedis

WINDOW_S = 60


async def per_minute(
    client: AnyRedis, prefix: str, action: str, principal: Principal, limit: int, what: str
) -> None:
    """Count one `action` of the principal in this minute; 429 with Retry-After past `limit`."""
    now = time.time()
    window = int(now // WINDOW_S)
    key = f"{prefix}ratelimit:{action}:{principal.tenant}:{principal.role.value}:{principal.subject}:{window}"
    pipe = client.pipeline(transaction=False)
    pipe.incr(key)
    pipe.expire(key, WINDOW_S * 2)
    count, _ = await pipe.execute()
    if int(count) > limit:
        retry = max(1, int((window + 1) * WINDOW_S - now) + 1)
        raise ApiError(
            429,
            f"Too many requests: at most {limit} {what} a minute; try again in {retry} s",
            headers={"Retry-After": str(retry)},
        )
