"""The binary trackers' connection (Teltonika, GT06): IMEI login, fixes, replies once durable.

Both sessions speak the same events (`devices.events`): `DeviceLogin(imei)` is looked up
in the registry and answered with what `accept()` or `reject()` returns; each `FixBatch`
is submitted to the ingest core with its reply queued behind the connection's earlier
replies (`OrderedReplies`), written once its batch is committed or spooled. So a device is
told "got it" only for records that survive a crash, and a kill before that makes it send
them again (stored once: same device, same fix time).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Protocol

from devices.events import CloseConnection, DecodeError, DeviceLogin, FixBatch, Ignored
from gateway.listeners.stream import StreamConnection, StreamListener
from gateway.registry.store import check_identified

TrackerEvent = DeviceLogin | FixBatch | Ignored | DecodeError | CloseConnection


class TrackerSession(Protocol):
    """What `devices.teltonika.TeltonikaSession` and `devices.gt06.Gt06Session` share."""

    def feed(self, data: bytes | bytearray | memoryview, now: float) -> Sequence[TrackerEvent]: ...

    def accept(self, device_id: str, tenant_id: str) -> bytes: ...

    def reject(self) -> bytes: ...

    def close(self, now: float) -> Sequence[TrackerEvent]: ...


class TrackerConnection(StreamConnection):
    def __init__(
        self, listener: StreamListener[TrackerConnection], session: TrackerSession
    ) -> None:
        super().__init__(listener)
        self.session = session

    def feed(self, data: bytes, now: float) -> None:
        self._act(self.session.feed(data, now), now)

    def end_session(self, now: float) -> None:
        self._act(self.session.close(now), now)

    def _act(self, events: Sequence[TrackerEvent], now: float) -> None:
        listener = self.listener
        submitted = False
        for event in events:
            if isinstance(event, FixBatch):
                # Queued before submitting: an empty batch's ack fires inside submit().
                durable = self.replies.add(event.reply)
                listener.ingest.submit(event.fixes, now, ack=durable)
                submitted = True
            elif isinstance(event, DecodeError):
                self.count_error(listener.protocol, event.reason.value, event.detail)
            elif isinstance(event, DeviceLogin):
                self.busy = True
                self.set_reading(False)
                listener.spawn(self._verify(event.imei))
            elif isinstance(event, CloseConnection):
                self.close_now(str(event.reason))
        if submitted:
            listener.writer.submitted()

    async def _verify(self, imei: str) -> None:
        device = await self.listener.registry.imei(imei)
        refused = check_identified(device, self.listener.protocol)
        self.busy = False
        if self.closed:
            return
        if device is None or refused is not None:
            self.listener.refused(imei, refused or "unknown_device", self.peer, self.address)
            self.write(self.session.reject())  # Teltonika's 0x00; GT06 has none
            self.abort("login_refused")
            return
        self.logged_in = True
        self.device_id = device.id
        self.write(self.session.accept(device.id, device.tenant_id))
        self.feed(b"", time.time())  # what the device sent before the answer
        self.set_reading(True)
