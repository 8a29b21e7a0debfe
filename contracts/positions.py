"""The positions stream: every valid fix that moved its device forward, for the engine and
the dispatcher console's fleet map.

One entry per gateway batch and shard (at most `MAX_FIXES_PER_ENTRY` fixes), with one field,
`fixes`: a MessagePack array of `devices.fix.Fix`, in the order the gateway took them, so
a device's fixes keep their order within its shard's stream (contracts.keys).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, Final

import msgspec

from contracts.keys import shard_of
from devices.fix import Fix

FIELD: Final = "fixes"
FIELD_BYTES: Final = FIELD.encode()
MAX_FIXES_PER_ENTRY: Final = 5000
"""Fixes per entry: one gateway batch (`FIXGATE_BATCH_MAX_FIXES`) is one entry per shard, so
a consumer reads a whole batch at once; a replayed backlog is split."""
MAX_ENTRIES: Final = 100_000
"""Each shard's stream is for live consumers, not history: trimmed (approximately) here."""

encode_fixes = msgspec.msgpack.Encoder().encode
decode_fixes = msgspec.msgpack.Decoder(list[Fix]).decode


def entry_fixes(fields: Mapping[Any, Any]) -> list[Fix]:
    """The fixes of one stream entry (its fields as redis-py returns them); [] when none."""
    raw = fields.get(FIELD_BYTES, fields.get(FIELD))
    if not isinstance(raw, bytes | bytearray | str):
        return []
    return decode_fixes(raw.encode() if isinstance(raw, str) else raw)


def by_shard(fixes: Iterable[Fix], shards: int) -> dict[int, list[Fix]]:
    """The fixes grouped by their device's shard, each group in the given order."""
    out: dict[int, list[Fix]] = {}
    for fix in fixes:
        out.setdefault(shard_of(fix.device_id, shards), []).append(fix)
    return out
