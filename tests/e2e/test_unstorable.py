"""A spooled batch holding a value the database refuses must not block the spool forever.

Such a spool is what an older fixgate, whose filter let 99,999 satellites through, left
behind: the replay stores every other fix, drops and counts the refused one, and the
gateway then takes new fixes as usual."""

from __future__ import annotations

import asyncio
import socket
from datetime import UTC, datetime, timedelta
from pathlib import Path

import msgspec

from devices.fix import Fix, Protocol
from devices.tcp_nmea import login_sentence
from gateway.sinks.spool import Spool
from tests.support.gateway import running_gateway, wait_for
from tests.support.ingest import count, register, rmc_gga, rows
from tests.support.services import Services


def _spool_with_poison(directory: Path, t0: datetime) -> None:
    def fix(i: int, device: str = "trk-1", **odd: object) -> Fix:
        return Fix(
            device_id=device, tenant_id="acme", time=t0 + timedelta(seconds=i), lat=48.0 + i * 1e-4,
            lon=11.0, satellites=9, protocol=Protocol.NMEA, received_at=t0 + timedelta(seconds=i),
        ) if not odd else msgspec.structs.replace(fix(i, device), **odd)  # fmt: skip

    async def write() -> None:
        spool = Spool(directory, 64 * 1024 * 1024)
        spool.open()
        try:
            assert await spool.append([fix(i) for i in range(10)])
            poisoned = [fix(i) for i in range(10, 50)] + [fix(i, "trk-2") for i in range(40)]
            poisoned[7] = fix(17, satellites=99_999)
            poisoned[61] = fix(21, "trk-2", altitude=1e39)
            assert await spool.append(poisoned)
            assert await spool.append([fix(i) for i in range(50, 60)])
        finally:
            spool.close()

    asyncio.run(write())


def test_a_spooled_fix_the_database_refuses_is_dropped_and_the_rest_replayed(
    services: Services, db_url: str, fixgate_env: dict[str, str], tmp_path: Path
) -> None:
    t0 = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=1)
    spool_dir = tmp_path / "old-spool"
    _spool_with_poison(spool_dir, t0)
    token = register(db_url, "trk-3", "acme", "tracker")
    with running_gateway(fixgate_env, tmp_path, spool_dir=str(spool_dir)) as gw:
        # Ready means the start-up replay is done: it did not stall on the refused rows.
        assert count(db_url, "trk-1") == 59 and count(db_url, "trk-2") == 39
        assert gw.metric("fixgate_fixes_rejected_total", reason="unstorable") == 2
        assert gw.metric("fixgate_spool_fixes") == 0
        assert gw.metric("fixgate_sink_down", sink="timescaledb") == 0
        assert "trk-1 at" in gw.log() and "not storable" in gw.log()
        with socket.create_connection(("127.0.0.1", gw.tcp_port)) as s:
            s.sendall(login_sentence("trk-3", token) + rmc_gga(t0, 52.5, 13.4))
        assert wait_for(lambda: count(db_url, "trk-3") == 1), gw.log()
    stored = {r["time"] for r in rows(db_url, "trk-1")}
    assert t0 + timedelta(seconds=17) not in stored and len(stored) == 59
