"""The GT06 (Concox) listener: TCP, one `devices.gt06.Gt06Session` per connection.

The login is answered at once once the registry knows the IMEI; an unknown or disabled
IMEI is closed without an answer (GT06 has no refusal message). Heartbeats and alarms are
answered once whatever they carry is durable; locations have no answer in the protocol.
"""

from __future__ import annotations

from typing import ClassVar

from devices.gt06 import Gt06Session
from gateway.listeners.stream import StreamListener
from gateway.listeners.tracker import TrackerConnection


class Gt06Listener(StreamListener[TrackerConnection]):
    protocol: ClassVar[str] = "gt06"
    listener_label: ClassVar[str] = "gt06"

    def connection(self) -> TrackerConnection:
        return TrackerConnection(self, Gt06Session())
