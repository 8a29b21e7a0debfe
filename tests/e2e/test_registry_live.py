"""A device works the moment it is registered, and stops the moment it is disabled, in a
gateway that is already running (the registry's LISTEN/NOTIFY path)."""

from __future__ import annotations

import asyncio
import socket
import subprocess
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg

from devices.tcp_nmea import login_sentence
from gateway.registry.store import add_device
from tests.support.gateway import running_gateway, wait_for
from tests.support.ingest import count, register, rmc_gga
from tests.support.paths import FIXGATE_BIN

BURST_DEVICES = 100


async def _register_and_connect(pool: asyncpg.Pool, port: int, n: int, t: datetime) -> None:
    """Like a provisioning script: register, then connect at once and send one fix."""
    device_id = f"burst-{n:03d}"
    async with pool.acquire() as conn:
        token = await add_device(conn, device_id, tenant_id="acme", kind="tracker")
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(login_sentence(device_id, token) + rmc_gga(t, 52.5 + n * 1e-4, 13.4))
    await writer.drain()
    writer.write_eof()
    await asyncio.wait_for(reader.read(), 20)  # the gateway closes once it has read it all
    writer.close()


def test_a_burst_of_devices_registered_while_running_is_never_refused(
    db_url: str, fixgate_env: dict[str, str], tmp_path: Path
) -> None:
    t = datetime.now(UTC).replace(microsecond=0)

    async def burst(port: int) -> None:
        pool = await asyncpg.create_pool(db_url, min_size=4, max_size=20)
        try:
            await asyncio.gather(
                *(_register_and_connect(pool, port, n, t) for n in range(BURST_DEVICES))
            )
        finally:
            await pool.close()

    with running_gateway(fixgate_env, tmp_path) as gw:
        asyncio.run(burst(gw.tcp_port))
        assert wait_for(lambda: count(db_url) == BURST_DEVICES), (count(db_url), gw.log())
        assert gw.metric("fixgate_auth_refused_total", listener="tcp", reason="unknown_device") == 0


def test_a_device_disabled_while_connected_is_disconnected_within_a_second(
    db_url: str, fixgate_env: dict[str, str], tmp_path: Path
) -> None:
    token = register(db_url, "van-7", "acme", "service_van")
    with running_gateway(fixgate_env, tmp_path) as gw:
        with socket.create_connection(("127.0.0.1", gw.tcp_port), timeout=10) as s:
            now = datetime.now(UTC)
            # The next epoch closes the first (NMEA has no end-of-epoch marker).
            s.sendall(
                login_sentence("van-7", token)
                + rmc_gga(now, 52.5, 13.4)
                + rmc_gga(now + timedelta(seconds=1), 52.5, 13.4)
            )
            assert wait_for(lambda: count(db_url, "van-7") >= 1), gw.log()
            subprocess.run([FIXGATE_BIN, "device", "disable", "van-7"], env=fixgate_env, check=True)
            disabled_at = time.monotonic()
            s.settimeout(5)
            assert s.recv(4096) == b""  # closed by the gateway
            assert time.monotonic() - disabled_at < 1.0
        # Logging in again is refused from now on.
        with socket.create_connection(("127.0.0.1", gw.tcp_port), timeout=10) as s:
            s.sendall(login_sentence("van-7", token))
            s.settimeout(5)
            assert s.recv(4096) == b""  # refused: closed without an answer
        assert wait_for(
            lambda: (
                gw.metric("fixgate_auth_refused_total", listener="tcp", reason="disabled_device")
                == 1
            )
        ), gw.log()
