"""aiomqtt's Client, acknowledging QoS 1 messages only when fixgate says so.

aiomqtt 2.x has no public manual acknowledgement (its issue #345): paho-mqtt underneath
sends PUBACK as soon as `on_message` returns, i.e. as soon as aiomqtt has queued the
message, and aiomqtt drops messages silently when its queue is full. Neither may happen
to fixgate, so this one module reaches into aiomqtt's paho client, and nothing else does:

- paho's manual-ack mode is switched on; `ack(message)` sends the PUBACK;
- incoming messages go to an unbounded `inbox` deque instead of aiomqtt's queue. It is
  bounded by the broker instead: the broker sends at most its inflight window
  (Mosquitto's `max_inflight_messages`) of unacknowledged QoS 1 messages, and fixgate
  withholds acks while its own queue is over the high-water mark.

Draining the deque in bulk also skips aiomqtt's per-message task in its iterator, which
is most of its per-message cost.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable
from typing import Any

import aiomqtt
import paho.mqtt.client as paho


class AckingClient(aiomqtt.Client):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._client.manual_ack_set(True)
        self.inbox: deque[paho.MQTTMessage] = deque()
        self.on_inbox: Callable[[], None] | None = None
        """Called after each message lands in the inbox (the listener schedules a drain)."""

    def _on_message(self, client: paho.Client, userdata: Any, message: paho.MQTTMessage) -> None:
        self.inbox.append(message)
        if self.on_inbox is not None:
            self.on_inbox()

    def ack(self, mid: int, qos: int) -> None:
        """Send the PUBACK for a QoS 1 message (a no-op for QoS 0)."""
        if qos > 0:
            self._client.ack(mid, qos)

    @property
    def disconnected(self) -> asyncio.Future[None]:
        """Resolves (usually with an exception) when the connection is gone."""
        return self._disconnected
