"""The real-time layer's figures, against a real `fixgate api` process on a fresh database:

1. ring delivery: request created (POST) -> `ring_notification_received` at each rung
   technician's socket, p50/p99, with `--technicians` connected technicians spread over
   a 100 x 100 mile square (phase 1, 20 miles, rings about an eighth of them);
2. `LocationUpdated` delivery lag: an engine-shaped `trip_update` XADDed to
   `{prefix}events` -> at the customer's socket (through the API's engine-event consumer
   and the dispatch stream). The position engine was not merged when this branch forked:
   this drives its stream the way it does, with the contract's fields, so the figure is
   the real-time path's alone (not the gateway's or the engine's share);
3. capacity: customers each receiving `LocationUpdated` at 1 Hz, in steps, until the
   delivery p99 passes 1 s.

The load (sockets and XADDs) runs in this one process, so on a small machine the client
side's own delay is in the figures.

    PYTHONPATH=. python bench/realtime.py [--technicians 1000] [--steps 200,400,800]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import subprocess
import sys
import time
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import psycopg
import redis.asyncio as aioredis
import websockets

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from api.auth import issue_token  # noqa: E402
from api.principal import Role  # noqa: E402
from contracts.keys import Keys  # noqa: E402
from devices.fix import Fix  # noqa: E402
from devtools.ws_client import ws_url  # noqa: E402
from gateway.sinks.live import LiveWriter  # noqa: E402

SECRET = "bench-secret-" + "x" * 32
TENANT = "bench"
ORIGIN = (40.0, -74.0)
SQUARE_MILES = 100.0
DEG_PER_MILE_LAT = 1 / 69.0


def pct(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


def token(role: Role, subject: str) -> str:
    return issue_token(SECRET, subject=subject, tenant=TENANT, role=role, ttl_s=3600)


class Bench:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.prefix = f"bench{uuid.uuid4().hex[:8]}:"
        self.db_name = f"bench_{uuid.uuid4().hex[:8]}"
        admin = args.admin_db
        self.db_url = admin.rsplit("/", 1)[0] + f"/{self.db_name}"
        self.port = args.port
        self.proc: subprocess.Popen[bytes] | None = None
        self.admin = {"Authorization": f"Bearer {token(Role.ADMIN, 'bench')}"}
        self.service_id = ""
        self.readers: set[asyncio.Task[None]] = set()

    def start(self) -> None:
        with psycopg.connect(self.args.admin_db, autocommit=True) as conn:
            conn.execute(f"CREATE DATABASE {self.db_name}")
        env = {**os.environ, "FIXGATE_DATABASE_URL": self.db_url,
               "FIXGATE_REDIS_URL": self.args.redis, "FIXGATE_REDIS_PREFIX": self.prefix,
               "FIXGATE_API_SECRET": SECRET, "FIXGATE_API_PORT": str(self.port),
               "FIXGATE_RING_PHASE_S": "60", "FIXGATE_WS_SEND_QUEUE_MAX": "1024",
               # Its customers create requests by the hundred: their bounds are lifted.
               "FIXGATE_CUSTOMER_OPEN_REQUESTS_MAX": "100000",
               "FIXGATE_CREATE_REQUESTS_PER_MIN": "1000000",
               "PYTHONPATH": str(REPO)}  # fmt: skip
        fixgate = str(Path(sys.executable).parent / "fixgate")
        subprocess.run([fixgate, "migrate"], env=env, check=True, capture_output=True)
        self.proc = subprocess.Popen(
            [fixgate, "api"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(f"http://127.0.0.1:{self.port}/readyz").status_code == 200:
                    return
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "fixgate api did not start"
            time.sleep(0.1)

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(timeout=30)
        with psycopg.connect(self.args.admin_db, autocommit=True) as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {self.db_name} WITH (FORCE)")

    async def new_service(self, http: httpx.AsyncClient) -> str:
        r = await http.post("/services", json={"serviceCode": "OIL", "serviceName": "Oil",
                            "servicePrice": 50, "durationMinutes": 30}, headers=self.admin)  # fmt: skip
        assert r.status_code == 200, r.text
        service_id: str = r.json()["data"]["id"]
        return service_id

    async def customer(
        self, http: httpx.AsyncClient, with_service: str | None = None
    ) -> tuple[dict[str, str], str, str]:
        code = f"C-{uuid.uuid4().hex[:8]}"
        r = await http.post("/customers", json={"customerCode": code, "firstName": "B",
                            "lastName": "C", "email": "b@c.org"}, headers=self.admin)  # fmt: skip
        customer_id = r.json()["data"]["id"]
        r = await http.post(f"/customers/{customer_id}/vehicles", json={"vin": "WBADT43452G915187"},
                            headers=self.admin)  # fmt: skip
        vehicle_id = r.json()["data"]["id"]
        headers = {"Authorization": f"Bearer {token(Role.CUSTOMER, customer_id)}"}
        return headers, vehicle_id, with_service or self.service_id

    @property
    def ws(self) -> str:
        return f"ws://127.0.0.1:{self.port}/ws"

    async def connect_all(self, tokens: list[str], on_message: Any) -> list[Any]:
        async def one(raw: str) -> Any:
            ws = await websockets.connect(await ws_url(self.ws, raw), max_queue=None)
            while json.loads(await ws.recv())["event"] != "welcome":
                pass

            async def read() -> None:
                try:
                    async for text in ws:
                        on_message(time.time(), json.loads(text))
                except websockets.ConnectionClosed:
                    pass

            self.readers.add(asyncio.create_task(read()))
            return ws

        sockets = []
        for first in range(0, len(tokens), 100):
            sockets += await asyncio.gather(*(one(t) for t in tokens[first : first + 100]))
        return sockets


async def ring_delivery(b: Bench, http: httpx.AsyncClient, pg: asyncpg.Connection,
                        redis: aioredis.Redis) -> None:  # fmt: skip
    n = b.args.technicians
    rng = random.Random(7)
    devices = [f"bench-{i}" for i in range(n)]
    await pg.executemany(
        "INSERT INTO devices (id, tenant_id, kind, token_hash) VALUES ($1, $2, 'service_van', 'x')",
        [(d, TENANT) for d in devices],
    )
    ids = []
    for d in devices:
        r = await http.post("/technicians", json={"technicianCode": f"T-{d}", "firstName": "B",
                            "lastName": "T", "availabilityStatus": "Available", "deviceId": d},
                            headers=b.admin)  # fmt: skip
        assert r.status_code == 200, r.text
        ids.append(r.json()["data"]["id"])
    now = datetime.now(UTC)
    fixes = [
        Fix(device_id=d, tenant_id=TENANT, time=now, received_at=now,
            lat=ORIGIN[0] + rng.uniform(-0.5, 0.5) * SQUARE_MILES * DEG_PER_MILE_LAT,
            lon=ORIGIN[1] + rng.uniform(-0.5, 0.5) * SQUARE_MILES * DEG_PER_MILE_LAT * 1.3)
        for d in devices
    ]  # fmt: skip
    await LiveWriter(redis, b.prefix).write(fixes)
    created: dict[str, float] = {}
    lags: list[float] = []

    def on_message(at: float, m: dict[str, Any]) -> None:
        if m["event"] == "ring_notification_received":
            rid = m["data"]["serviceRequestInfo"]["requestId"]
            if rid in created:
                lags.append(at - created[rid])

    started = time.monotonic()
    sockets = await b.connect_all([token(Role.TECHNICIAN, t) for t in ids], on_message)
    print(f"  {n} technicians connected in {time.monotonic() - started:.1f} s")
    customer, vehicle, service = await b.customer(http)
    for _ in range(b.args.requests):
        t0 = time.time()
        r = await http.post("/service-request", json={"vehicleId": vehicle, "latitude": ORIGIN[0],
                            "longitude": ORIGIN[1], "services": [service]}, headers=customer)  # fmt: skip
        assert r.status_code == 200, r.text
        created[r.json()["data"]["requestId"]] = t0
        await asyncio.sleep(0.5)
    await asyncio.sleep(2.0)
    rung = await pg.fetchval("SELECT count(*) FROM technicianringlog")
    print(f"  {len(created)} requests, {rung} rings logged, {len(lags)} delivered")
    print(f"  ring delivery (POST -> socket): p50 {pct(lags, 0.5) * 1000:.0f} ms,"
          f" p99 {pct(lags, 0.99) * 1000:.0f} ms, max {max(lags) * 1000:.0f} ms")  # fmt: skip
    for ws in sockets:
        await ws.close()


async def location_lag(b: Bench, http: httpx.AsyncClient, redis: aioredis.Redis) -> None:
    steps = [int(s) for s in b.args.steps.split(",")]
    clients: list[tuple[str, str]] = []  # (request id, customer token)
    started = time.monotonic()
    sem = asyncio.Semaphore(8)

    async def make() -> tuple[str, str]:
        async with sem:
            headers, vehicle, service = await b.customer(http, with_service=b.service_id)
            r = await http.post("/service-request", json={"vehicleId": vehicle,
                                "latitude": ORIGIN[0] + 3, "longitude": ORIGIN[1],
                                "services": [service]}, headers=headers)  # fmt: skip
            assert r.status_code == 200, r.text
            return r.json()["data"]["requestId"], headers["Authorization"].split()[1]

    clients = list(await asyncio.gather(*(make() for _ in range(max(steps)))))
    print(f"  {len(clients)} customers with a request in {time.monotonic() - started:.1f} s")
    sent: dict[tuple[str, int], float] = {}
    lags: list[float] = []

    def on_message(at: float, m: dict[str, Any]) -> None:
        if m["event"] == "LocationUpdated":
            key = (m["data"]["serviceRequestInfo"]["requestId"], m["data"]["etaInSec"])
            if key in sent:
                lags.append(at - sent.pop(key))

    stream = Keys(b.prefix).device_events("none")  # the shard of the events' device
    sockets: list[Any] = []
    for n in steps:
        sockets += await b.connect_all([t for _, t in clients[len(sockets) : n]], on_message)
        lags.clear()
        seq = 0
        t_start = time.monotonic()
        while time.monotonic() - t_start < b.args.step_s:
            tick = time.monotonic()
            seq += 1
            pipe = redis.pipeline(transaction=False)
            for rid, _ in clients[:n]:
                event = {"type": "trip_update", "id": str(uuid.uuid4()), "tenant": TENANT,
                         "device": "none", "trip": str(uuid.uuid4()), "ref": rid,
                         "fix_time": datetime.now(UTC).isoformat(),
                         "detected_at": datetime.now(UTC).isoformat(), "distance_m": 1000.0,
                         "eta_s": seq, "calculation": "local", "polyline": "_p~iF~ps|U",
                         "polyline_version": seq, "queue": []}  # fmt: skip
                sent[(rid, seq)] = time.time()
                pipe.xadd(stream, {"event": json.dumps(event)})
            await pipe.execute()
            await asyncio.sleep(max(0.0, 1.0 - (time.monotonic() - tick)))
        await asyncio.sleep(1.5)
        expected = n * seq
        p99 = pct(lags, 0.99)
        print(f"  {n:5d} clients at 1 Hz: {len(lags)}/{expected} delivered,"
              f" p50 {pct(lags, 0.5) * 1000:.0f} ms, p99 {p99 * 1000:.0f} ms")  # fmt: skip
        sent.clear()
        if p99 > 1.0 or len(lags) < 0.99 * expected:
            print(f"  -> past 1 s p99 (or losing updates) at {n} clients")
            break
    for ws in sockets:
        await ws.close()


async def main(args: argparse.Namespace) -> None:
    b = Bench(args)
    b.start()
    try:
        redis = aioredis.from_url(args.redis)
        pg = await asyncpg.connect(b.db_url)
        limits = httpx.Limits(max_connections=16)
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{b.port}", timeout=60,
                                     limits=limits) as http:  # fmt: skip
            b.service_id = await b.new_service(http)
            print("ring notification delivery")
            await ring_delivery(b, http, pg, redis)
            print("LocationUpdated delivery (engine-shaped trip_update XADDed to an events stream)")
            await location_lag(b, http, redis)
        await pg.close()
        keys = [k async for k in redis.scan_iter(match=f"{b.prefix}*")]
        if keys:
            await redis.delete(*keys)
        await redis.aclose()
    finally:
        b.stop()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--technicians", type=int, default=1000)
    parser.add_argument("--requests", type=int, default=20)
    parser.add_argument("--steps", default="200,400,800,1200")
    parser.add_argument("--step-s", type=float, default=8.0)
    parser.add_argument("--port", type=int, default=18731)
    parser.add_argument("--admin-db", default="postgresql://postgres@127.0.0.1:55432/postgres")
    parser.add_argument("--redis", default="redis://127.0.0.1:56379/0")
    asyncio.run(main(parser.parse_args()))
