"""The Teltonika listener: Codec 8/8E/16 over TCP, and Codec 8/8E over UDP, on one port.

TCP: one `devices.teltonika.TeltonikaSession` per connection (`TrackerConnection`): the
IMEI login answered 0x01 (registered and enabled) or 0x00 and closed; each AVL packet's
four-byte record count written once its records are committed or spooled.

UDP: each datagram is decoded whole (`devices.teltonika.udp.decode_udp`), its IMEI looked
up, its records submitted, and its acknowledgement sent once they are durable. Nothing is
sent for an unknown IMEI or a datagram that does not decode: the unit keeps the records
and sends them again. While the ingest queue is full, reading pauses (the kernel's socket
buffer fills and drops datagrams, which the units resend, unacknowledged).
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import ClassVar, cast

from devices.events import DecodeError
from devices.teltonika import TeltonikaSession, UdpAvlPacket, decode_udp
from gateway import metrics
from gateway.listeners.stream import StreamListener
from gateway.listeners.tracker import TrackerConnection
from gateway.registry.store import Device, check_identified

log = logging.getLogger(__name__)

MAX_UDP_LOOKUPS_IN_FLIGHT = 64
"""IMEIs not in the registry copy looked up at once for UDP; a datagram beyond that is
refused (the unit resends it). The registry's own rate limit bounds the database; this
bounds the tasks a flood of unknown IMEIs can start."""


class TeltonikaListener(StreamListener[TrackerConnection]):
    protocol: ClassVar[str] = "teltonika"
    listener_label: ClassVar[str] = "teltonika"

    udp: asyncio.DatagramTransport | None = None
    udp_reads: asyncio.ReadTransport | None = None
    """The same transport, typed for pause/resume (asyncio's selector datagram transport
    is a full `Transport`; typeshed declares only the datagram half)."""

    def connection(self) -> TrackerConnection:
        return TrackerConnection(self, TeltonikaSession())

    async def start(self) -> None:
        await super().start()
        assert self.server is not None
        port = self.server.sockets[0].getsockname()[1]  # the same port (also when given as 0)
        loop = asyncio.get_running_loop()
        self.udp, _ = await loop.create_datagram_endpoint(
            lambda: TeltonikaDatagrams(self), local_addr=(self.host, port)
        )
        assert isinstance(self.udp, asyncio.ReadTransport)
        self.udp_reads = self.udp
        log.info("teltonika: listening on %s:%d (udp)", self.host, port)
        if not self.flow.open.is_set():
            self.udp_reads.pause_reading()

    def _flow_changed(self, open_: bool) -> None:
        super()._flow_changed(open_)
        if self.udp_reads is not None and not self.udp_reads.is_closing():
            if open_:
                self.udp_reads.resume_reading()
            else:
                self.udp_reads.pause_reading()

    def drain(self) -> int:
        if self.udp_reads is not None:
            self.udp_reads.pause_reading()  # acknowledgements still go out as batches finish
        return super().drain()

    def close_all(self) -> int:
        if self.udp is not None:
            self.udp.close()
        return super().close_all()


class TeltonikaDatagrams(asyncio.DatagramProtocol):
    def __init__(self, listener: TeltonikaListener) -> None:
        self.listener = listener
        self.transport: asyncio.DatagramTransport | None = None
        self._looking_up: set[str] = set()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # asyncio's selector datagram transport does not subclass DatagramTransport (3.11).
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str | int, ...]) -> None:
        now = time.time()
        if self.listener.throttled(str(addr[0])):
            metrics.DATAGRAMS_REFUSED.labels("teltonika", "throttled").inc()
            return  # unanswered, whatever its IMEI: the unit keeps the records
        packet = decode_udp(data)
        if isinstance(packet, DecodeError):
            metrics.DECODE_ERRORS.labels("teltonika", packet.reason.value).inc()
            return
        device = self.listener.registry.by_imei.get(packet.imei)
        if device is not None:
            self._take(packet, device, addr, now)
        elif packet.imei in self._looking_up or len(self._looking_up) >= MAX_UDP_LOOKUPS_IN_FLIGHT:
            metrics.DATAGRAMS_REFUSED.labels("teltonika", "lookup_pending").inc()
        else:
            self._looking_up.add(packet.imei)
            self.listener.spawn(self._look_up(packet, addr, now))

    async def _look_up(self, packet: UdpAvlPacket, addr: tuple[str | int, ...], now: float) -> None:
        try:
            device = await self.listener.registry.imei(packet.imei)
        finally:
            self._looking_up.discard(packet.imei)
        self._take(packet, device, addr, now)

    def _take(
        self, packet: UdpAvlPacket, device: Device | None, addr: tuple[str | int, ...], now: float
    ) -> None:
        refused = check_identified(device, self.listener.protocol)
        if device is None or refused is not None:
            self.listener.refused(packet.imei, refused or "unknown_device", str(addr), str(addr[0]))
            metrics.DATAGRAMS_REFUSED.labels("teltonika", refused or "unknown_device").inc()
            return
        reply = packet.reply
        transport = self.transport

        def durable() -> None:
            if transport is not None and not transport.is_closing():
                transport.sendto(reply, addr)

        self.listener.ingest.submit(packet.fixes(device.id, device.tenant_id, now), now, durable)
        self.listener.writer.submitted()
