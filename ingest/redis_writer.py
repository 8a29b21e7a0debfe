"""Live positions in Redis: a GEO set per tenant and a hash per device, newest fix wins.

The "newest wins" check runs inside Redis (a small Lua script comparing fix times), so it
holds across gateway instances and restarts, and a late fix never moves a live position
back. A batch is one pipelined round trip: one script call per device plus one stream
entry carrying the batch's fixes for downstream consumers (geofence, ETA, WebSocket).

Keys, under the configured prefix P:
  P live:{tenant}       GEO set of device ids
  P device:{device_id}  hash: the device's newest fix
  P positions           stream: entries of msgpack-encoded fix lists
"""

from __future__ import annotations

from collections.abc import Iterable

import msgspec
import redis.asyncio as aioredis

from devices.fix import Fix

# Redis GEO accepts latitudes up to 85.05112878 (Web Mercator's limit).
MAX_GEO_LAT = 85.05112878
MAX_STREAM_ENTRIES = 100_000
"""The event stream is for live consumers, not history: trim it (approximately) here."""

_NEWEST_WINS = """
local current = redis.call('HGET', KEYS[1], 'ts')
if current and tonumber(current) >= tonumber(ARGV[1]) then return 0 end
redis.call('HSET', KEYS[1], 'ts', ARGV[1], unpack(ARGV, 5))
if ARGV[4] == '1' then redis.call('GEOADD', KEYS[2], ARGV[2], ARGV[3], ARGV[6]) end
return 1
"""

_encode = msgspec.msgpack.Encoder().encode
decode_fixes = msgspec.msgpack.Decoder(list[Fix]).decode


def _fields(fix: Fix) -> list[object]:
    # ARGV[5], ARGV[6] are ('device', id), which the script also uses as the GEO member.
    fields: list[object] = [
        "device", fix.device_id, "tenant", fix.tenant_id, "time", fix.time.isoformat(),
        "lat", repr(fix.lat), "lon", repr(fix.lon), "protocol", fix.protocol.value,
        "valid", int(fix.valid),
    ]  # fmt: skip
    for name in ("altitude", "speed", "heading", "accuracy", "hdop", "satellites", "battery"):
        value = getattr(fix, name)
        if value is not None:
            fields += [name, repr(value)]
    if fix.received_at is not None:
        fields += ["received_at", fix.received_at.isoformat()]
    return fields


class LiveWriter:
    def __init__(self, client: aioredis.Redis, prefix: str) -> None:
        self.client = client
        self.prefix = prefix
        self._script = client.register_script(_NEWEST_WINS)

    def device_key(self, device_id: str) -> str:
        return f"{self.prefix}device:{device_id}"

    def geo_key(self, tenant_id: str) -> str:
        return f"{self.prefix}live:{tenant_id}"

    @property
    def stream_key(self) -> str:
        return f"{self.prefix}positions"

    async def write(self, fixes: Iterable[Fix]) -> int:
        """Offer each device's newest fix; return how many moved a live position."""
        fixes = list(fixes)
        if not fixes:
            return 0
        pipe = self.client.pipeline(transaction=False)
        for fix in fixes:
            geo = "1" if abs(fix.lat) <= MAX_GEO_LAT else "0"
            await self._script(
                keys=[self.device_key(fix.device_id), self.geo_key(fix.tenant_id)],
                args=[fix.time.timestamp(), fix.lon, fix.lat, geo, *_fields(fix)],
                client=pipe,
            )
        pipe.xadd(self.stream_key, {"fixes": _encode(fixes)}, maxlen=MAX_STREAM_ENTRIES, approximate=True)
        results = await pipe.execute()
        return sum(results[:-1])
