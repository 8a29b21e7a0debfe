"""Fixes through a real gateway, as trackers send them: a device registered through the API
(the token it answers with), then a TCP NMEA connection (login line, one RMC+GGA epoch
per fix)."""

from __future__ import annotations

import asyncio
from datetime import datetime

import httpx

from devices.nmea_write import rmc_gga
from devices.tcp_nmea import login_sentence

KNOT_MPS = 1852 / 3600


async def register(
    client: httpx.AsyncClient, admin: dict[str, str], device: str, kind: str = "service_van"
) -> str:
    """Register a device through `POST /devices`; its token."""
    made = await client.post("/devices", json={"deviceId": device, "kind": kind}, headers=admin)
    assert made.status_code == 200, made.text
    token: str = made.json()["data"]["token"]
    return token


class NmeaTracker:
    """One tracker's TCP connection to the gateway's NMEA listener."""

    def __init__(self, writer: asyncio.StreamWriter, reader: asyncio.StreamReader) -> None:
        self.writer, self.reader = writer, reader

    @classmethod
    async def connect(cls, port: int, device: str, token: str) -> NmeaTracker:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(login_sentence(device, token))
        await writer.drain()
        return cls(writer, reader)

    async def fix(
        self, at: datetime, lat: float, lon: float, speed_mps: float = 8.0, course: float = 0.0
    ) -> None:
        self.writer.write(rmc_gga(at, lat, lon, speed_mps / KNOT_MPS, course))
        await self.writer.drain()

    async def close(self) -> None:
        self.writer.close()
        await self.writer.wait_closed()
