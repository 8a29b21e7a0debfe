"""A real `fixgate engine` process for a test, fixes fed through the gateway's own
LiveWriter, and the events stream read back (validated against the documented schema)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import asyncpg
import jsonschema
import redis.asyncio as aioredis
from redis.exceptions import ResponseError

from contracts.keys import DEFAULT_SHARDS, Keys
from devices.fix import Fix
from gateway.engine.fences import load_fences
from gateway.registry.store import add_device
from gateway.sinks.live import LiveWriter
from geofence.config import EngineConfig
from geofence.events import encode_event
from tests.support.geofence import Driver
from tests.support.paths import REPO_ROOT
from tests.support.ports import free_port

FIXGATE_BIN = str(Path(sys.executable).parent / "fixgate")
SCHEMA = json.loads((REPO_ROOT / "docs" / "events.schema.json").read_text())


class EngineProcess:
    def __init__(self, env: dict[str, str], log: Path, **settings: str) -> None:
        self.port = free_port()
        full = {
            **env,
            "FIXGATE_ENGINE_PORT": str(self.port),
            "FIXGATE_ENGINE_LEASE_S": "2",
            **settings,
        }
        self.log = log
        self.proc = subprocess.Popen(
            [FIXGATE_BIN, "engine"], env=full, stdout=log.open("ab"), stderr=subprocess.STDOUT
        )

    def wait_ready(self, timeout_s: float = 30.0) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(
                    f"engine exited {self.proc.returncode}: {self.log.read_text()[-3000:]}"
                )
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/readyz", timeout=1) as r:
                    if r.status == 200:
                        return
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass
            time.sleep(0.1)
        raise AssertionError(f"engine not ready: {self.log.read_text()[-3000:]}")

    def get(self, path: str) -> str:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}{path}", timeout=5) as r:
            body: bytes = r.read()
            return body.decode()

    def metric(self, name: str, **labels: str) -> float:
        """A sample of the engine's /metrics (0 when absent)."""
        want = ",".join(f'{k}="{v}"' for k, v in labels.items())
        sample = f"{name}{{{want}}}" if want else name
        for line in self.get("/metrics").splitlines():
            if line.startswith(sample + " "):
                return float(line.split()[-1])
        return 0.0

    def kill(self) -> None:
        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(10)

    def stop(self) -> int:
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                os.kill(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)
        return self.proc.returncode


async def wait_split(
    *engines: EngineProcess, shards: int = DEFAULT_SHARDS, timeout_s: float = 20
) -> None:
    """Until the engines hold every shard between them, each some."""
    deadline = time.monotonic() + timeout_s
    held: list[float] = []
    while time.monotonic() < deadline:
        held = [e.metric("fixgate_engine_shards") for e in engines]
        if sum(held) == shards and all(held):
            return
        await asyncio.sleep(0.2)
    raise AssertionError(f"shards held {held}, not all {shards} split")


def fixgate_lines(env: dict[str, str], *args: str) -> list[str]:
    """Run `fixgate ARGS`; the lines it printed."""
    out = subprocess.run([FIXGATE_BIN, *args], env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    return out.stdout.strip().splitlines()


def fixgate(env: dict[str, str], *args: str) -> str:
    """Run `fixgate ARGS`; its last line (the new id, for add/start)."""
    return fixgate_lines(env, *args)[-1]


async def register(db_url: str, device: str, tenant: str) -> None:
    conn = await asyncpg.connect(db_url)
    try:
        await add_device(conn, device, tenant_id=tenant, kind="tracker")
    finally:
        await conn.close()


async def feed(
    client: aioredis.Redis, prefix: str, batches: list[list[Fix]], pause_s: float = 0.0
) -> None:
    """Each batch as the gateway's live writer writes it: each device's newest fix to its
    live position, and every fix of the batch to the positions stream."""
    writer = LiveWriter(client, prefix)
    for batch in batches:
        newest: dict[str, Fix] = {}
        for f in batch:
            if f.device_id not in newest or f.time >= newest[f.device_id].time:
                newest[f.device_id] = f
        await writer.write(list(newest.values()), batch)
        if pause_s:
            await asyncio.sleep(pause_s)


async def events(client: Any, prefix: str) -> list[dict[str, Any]]:
    """Every event of every shard's stream in the order Redis appended them (a device's
    order is its shard's), each validated against docs/events.schema.json."""
    found: list[tuple[tuple[int, int], dict[str, Any]]] = []
    for stream in Keys(prefix).all_events():
        for entry_id, fields in await client.xrange(stream):
            event = json.loads(fields[b"event"])
            jsonschema.validate(event, SCHEMA)
            ms, _, seq = entry_id.partition(b"-")
            found.append(((int(ms), int(seq)), event))
    return [event for _, event in sorted(found, key=lambda f: f[0])]


async def hold(client: Any, prefix: str, consumer: str, count: int | None = None) -> int:
    """A consumer of the engine's group that reads entries of every shard's positions
    stream (up to `count` each) and never acknowledges them; how many it holds."""
    held = 0
    for stream in Keys(prefix).all_positions():
        with contextlib.suppress(ResponseError):  # BUSYGROUP: there already
            await client.xgroup_create(stream, "engine", id="0", mkstream=True)
        for _, entries in await client.xreadgroup("engine", consumer, {stream: ">"}, count=count):
            held += len(entries)
    return held


async def pending(client: Any, prefix: str) -> int:
    """Entries read and not acknowledged in the engine's group, all shards."""
    total = 0
    for stream in Keys(prefix).all_positions():
        with contextlib.suppress(ResponseError):  # no group yet: nothing pending
            total += (await client.xpending(stream, "engine"))["pending"]
    return total


async def xadd_event(client: Any, prefix: str, event: dict[str, Any]) -> None:
    """An engine-shaped event on the stream the engine writes the device's events to."""
    await client.xadd(Keys(prefix).device_events(event["device"]), {"event": json.dumps(event)})


async def wait_events(
    client: aioredis.Redis, prefix: str, count: int, timeout_s: float = 30.0
) -> list[dict[str, Any]]:
    deadline = time.monotonic() + timeout_s
    got: list[dict[str, Any]] = []
    while time.monotonic() < deadline:
        got = await events(client, prefix)
        if len(got) >= count:
            return got
        await asyncio.sleep(0.1)
    return got


async def reference(
    db_url: str, batches: list[list[Fix]], config: EngineConfig | None = None
) -> list[dict[str, Any]]:
    """What the core says these fixes yield, with the database's fences: the expectation."""
    conn = await asyncpg.connect(db_url)
    try:
        fences = [f for fs in (await load_fences(conn)).values() for f in fs]
    finally:
        await conn.close()
    d = Driver(fences, config or EngineConfig(routing_enabled=False))
    for batch in batches:
        d.feed(batch)
    return [json.loads(encode_event(e)) for e in d.events]


def key(event: dict[str, Any]) -> tuple[str, str, str, str]:
    return (
        event["id"],
        event["type"],
        str(event.get("geofence", event.get("trip"))),
        str(event["fix_time"]),
    )
