"""Every Redis key that more than one process reads or writes, spelled once.

Devices are split into a fixed number of shards (`FIXGATE_POSITION_SHARDS`) by a hash of
the device id. Everything the product keeps about the devices of one shard lives under one
Redis Cluster hash tag, `{sN}`, so that one Lua call or MULTI touching several of them
stays in one slot: the shard's positions stream, its devices' live hashes and its part of
each tenant's GEO set, its devices' engine state, its events stream, and the engine lease
that says which engine process evaluates it. On a single Redis the tags are just part of
the names.

Keys, under the configured prefix P (which must not contain `{`: the first `{...}` of a
key is its hash tag):
  P{sN}positions            stream: entries of fixes (contracts.positions), per shard
  P{sN}device:{device}      hash: the device's newest fix (contracts.live)
  P{sN}live:{tenant}        GEO set: the tenant's devices of shard N (their newest fix)
  P{sN}engine:device:{id}   hash: the engine's state of the device (rev, state)
  P{sN}events               stream: the engine's events of the shard's devices
  P{sN}lease                string: the engine holding shard N (expires unless renewed)
  P{sN}fence                integer: the shard's fencing token, raised on every take-over
  Pengines                  sorted set: live engine processes, scored by their expiry (ms)
"""

from __future__ import annotations

import zlib
from typing import Final

DEFAULT_SHARDS: Final = 16
"""Enough for 16 engine processes (one shard each at most) and for the shards to spread
over a few Redis Cluster masters; a larger fleet raises it offline (docs/scaling.md)."""
MAX_SHARDS: Final = 1024


def shard_of(device_id: str, shards: int) -> int:
    """The device's shard: CRC-32 of its id (stable across processes, hosts, versions)."""
    return zlib.crc32(device_id.encode()) % shards


def same_slot_as(prefix: str, key: str) -> str:
    """A key prefix (starting with `prefix`) whose keys share `key`'s Redis Cluster slot:
    `key` as their hash tag (a key without a tag hashes whole, a tag hashes its content).
    For keys that a script touches together with a stream named without a tag."""
    return f"{prefix}{{{key}}}"


class Keys:
    """The key names of one deployment (prefix) with its shard count."""

    __slots__ = ("_tags", "prefix", "shards")

    def __init__(self, prefix: str, shards: int = DEFAULT_SHARDS) -> None:
        if "{" in prefix or "}" in prefix:
            raise ValueError(f"a Redis prefix must not contain braces (hash tags): {prefix!r}")
        if not 1 <= shards <= MAX_SHARDS:
            raise ValueError(f"shards must be 1-{MAX_SHARDS}, not {shards}")
        self.prefix = prefix
        self.shards = shards
        self._tags = [f"{prefix}{{s{n}}}" for n in range(shards)]

    def shard(self, device_id: str) -> int:
        return shard_of(device_id, self.shards)

    def tag(self, shard: int) -> str:
        """The shard's key prefix, hash tag included."""
        return self._tags[shard]

    def positions(self, shard: int) -> str:
        return f"{self._tags[shard]}positions"

    def all_positions(self) -> list[str]:
        return [self.positions(n) for n in range(self.shards)]

    def device(self, device_id: str) -> str:
        """The device's live position (a hash)."""
        return f"{self._tags[self.shard(device_id)]}device:{device_id}"

    def device_prefix(self, shard: int) -> str:
        """What `device` puts before the id, for scripts that read hashes by member name."""
        return f"{self._tags[shard]}device:"

    def geo(self, tenant_id: str, shard: int) -> str:
        """The tenant's devices of one shard by newest position (a GEO set)."""
        return f"{self._tags[shard]}live:{tenant_id}"

    def all_geo(self, tenant_id: str) -> list[str]:
        return [self.geo(tenant_id, n) for n in range(self.shards)]

    def engine_state(self, device_id: str) -> str:
        return f"{self._tags[self.shard(device_id)]}engine:device:{device_id}"

    def events(self, shard: int) -> str:
        return f"{self._tags[shard]}events"

    def all_events(self) -> list[str]:
        return [self.events(n) for n in range(self.shards)]

    def device_events(self, device_id: str) -> str:
        """The events stream the device's events go to."""
        return self.events(self.shard(device_id))

    def lease(self, shard: int) -> str:
        return f"{self._tags[shard]}lease"

    def fence(self, shard: int) -> str:
        return f"{self._tags[shard]}fence"

    @property
    def engines(self) -> str:
        return f"{self.prefix}engines"

    @property
    def dispatch(self) -> str:
        """The API's dispatch events for WebSocket clients (docs/realtime.md)."""
        return f"{self.prefix}dispatch"
