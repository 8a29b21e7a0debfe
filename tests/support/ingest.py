"""Helpers for end-to-end tests: register devices, build NMEA, read what was stored."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from datetime import datetime, timedelta

import asyncpg
import paho.mqtt.client as paho
import psycopg
import redis

from contracts.keys import Keys
from devices.nmea_write import ddmm, rmc_gga, sentence
from gateway.registry.broker import ANY_PREFIX, BrokerSync, register_device
from tests.support import broker

__all__ = ["NumberedPublisher", "count", "ddmm", "live", "register", "rmc_gga", "rows", "sentence"]


def register(
    db_url: str,
    device_id: str,
    tenant: str,
    kind: str = "tracker",
    owntracks: str | None = None,
    *,
    imei: str | None = None,
    traccar_id: str | None = None,
    protocols: tuple[str, ...] = (),
) -> str:
    """Register a device, with its broker account (any one-level topic prefix), as the
    product does; return its token. A second phone of an OwnTracks user shares the
    user's token (one broker login, one secret)."""
    sync = BrokerSync(admin, ANY_PREFIX) if (admin := broker.admin_url()) else None
    login = owntracks.partition("/")[0] if owntracks else device_id
    shared = broker.shared_token(login, db_url) if owntracks else None

    async def go() -> str:
        conn = await asyncpg.connect(db_url)
        try:
            return await register_device(
                conn, sync, device_id, tenant_id=tenant, kind=kind, owntracks=owntracks,
                imei=imei, traccar_id=traccar_id, protocols=protocols, token=shared,
            )  # fmt: skip
        finally:
            await conn.close()

    token = asyncio.run(go())
    broker.remember(login, token, db_url)
    return token


def rows(db_url: str, device_id: str) -> list[dict[str, object]]:
    with psycopg.connect(db_url) as conn, conn.cursor(row_factory=psycopg.rows.dict_row) as cur:
        cur.execute("SELECT * FROM positions WHERE device_id = %s ORDER BY time", (device_id,))
        return cur.fetchall()


def register_fleet(env: dict[str, str], devices: int = 3) -> tuple[str, str, str]:
    """dev-0 .. dev-N of tenant acme registered in the environment's database; its
    database URL, Redis URL and Redis prefix."""
    db_url, redis_url, prefix = (
        env[k] for k in ("FIXGATE_DATABASE_URL", "FIXGATE_REDIS_URL", "FIXGATE_REDIS_PREFIX")
    )
    for d in range(devices):
        register(db_url, f"dev-{d}", "acme")
    return db_url, redis_url, prefix


def count(db_url: str, device_id: str | None = None) -> int:
    with psycopg.connect(db_url) as conn:
        if device_id is None:
            return conn.execute("SELECT count(*) FROM positions").fetchone()[0]  # type: ignore[index]
        return conn.execute(
            "SELECT count(*) FROM positions WHERE device_id = %s", (device_id,)
        ).fetchone()[0]  # type: ignore[index]


def live(redis_url: str, prefix: str, device_id: str) -> dict[str, str]:
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    try:
        return client.hgetall(Keys(prefix).device(device_id))  # type: ignore[return-value]
    finally:
        client.close()


class NumberedPublisher:
    """Publishes fix number n (fix time `base` + n seconds) with QoS 1, at a steady rate,
    from a thread; afterwards `acknowledged()` says which numbers the broker acknowledged."""

    def __init__(self, mqtt_url: str, topic: str, base: datetime, devices: int = 1) -> None:
        self.topic, self.base, self.devices = topic, base, devices
        # Each device logs in as itself (tests/support/broker.py).
        self.clients = {
            f"dev-{d}": broker.device_client(mqtt_url, f"dev-{d}") for d in range(devices)
        }
        self.sent: list[tuple[int, str, paho.MQTTMessageInfo]] = []
        self._thread: threading.Thread | None = None

    FIXES_PER_S = 1.0
    """Fix n's time is `base` + n / FIXES_PER_S."""

    def payload(self, n: int, device: str) -> bytes:
        t = (self.base + timedelta(seconds=n / self.FIXES_PER_S)).isoformat().replace("+00:00", "Z")
        return json.dumps(
            {"time": t, "lat": 47.0 + n * 1e-5, "lon": 8.0 + n * 1e-5, "speed": 1.0}
        ).encode()

    def start(self, count: int, rate: float) -> None:
        def go() -> None:
            started = time.monotonic()
            for n in range(count):
                for d in range(self.devices):
                    device = f"dev-{d}"
                    info = self.clients[device].publish(
                        self.topic.format(device=device), self.payload(n, device), qos=1
                    )
                    self.sent.append((n, device, info))
                pause = started + (n + 1) / rate - time.monotonic()
                if pause > 0:
                    time.sleep(pause)

        self._thread = threading.Thread(target=go, daemon=True)
        self._thread.start()

    def join(self) -> None:
        assert self._thread is not None
        self._thread.join()
        for _, _, info in self.sent:
            info.wait_for_publish(30)
        for client in self.clients.values():
            client.disconnect()
            client.loop_stop()

    def acknowledged(self, device: str = "dev-0") -> set[int]:
        return {n for n, d, info in self.sent if d == device and info.is_published()}

    def stored(self, db_url: str, device: str = "dev-0") -> list[int]:
        """The numbers of the device's fixes in `positions` (a list: duplicates would show)."""
        with psycopg.connect(db_url) as conn:
            times = conn.execute(
                "SELECT time FROM positions WHERE device_id = %s", (device,)
            ).fetchall()
        return sorted(round((t - self.base).total_seconds() * self.FIXES_PER_S) for (t,) in times)
