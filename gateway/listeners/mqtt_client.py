"""aiomqtt's Client, acknowledging QoS 1 messages only when fixgate says so.

aiomqtt 2.x has no public manual acknowledgement (its issue #345): paho-mqtt underneath
sends PUBACK as soon as `on_message` returns, i.e. as soon as aiomqtt has queued the
message, and aiomqtt drops messages silently when its queue is full. Neither may happen
to fixgate, so this one module reaches into aiomqtt's paho client, and nothing else does:

- paho's manual-ack mode is switched on; `ack_many(mids)` sends the PUBACKs, all in one
  write (paho would make one packet, and one `send()`, per ack);
- incoming messages go to an unbounded `inbox` deque instead of aiomqtt's queue. It is
  bounded twice: by the broker, which sends at most its inflight window (Mosquitto's
  `max_inflight_messages`) of unacknowledged QoS 1 messages, and by the bytes it holds:
  past `max_inbox_bytes` the socket is not read until the listener has taken half, so
  TCP pushes back on the broker (a window of 20,000 messages of 100 fixes each would be
  hundreds of megabytes);
- the socket is read through a 64 KiB buffer: paho asks for each packet's header bytes
  one `recv()` at a time, three or more system calls per message otherwise;
- whole QoS 0/1 PUBLISH packets in that buffer (MQTT 3.1.1) are parsed here into small
  `InboundMessage`s; paho's reader, its MQTTMessage (with a threading.Condition each)
  and its topic-callback matching were over half the gateway's CPU per message. Every
  other packet (CONNACK, SUBACK, PINGRESP, QoS 2, anything odd) still goes to paho.

Draining the deque in bulk also skips aiomqtt's per-message task in its iterator, which
is most of its per-message cost.
"""

from __future__ import annotations

import asyncio
import ssl
import struct
import time
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any

import aiomqtt
import paho.mqtt.client as paho
from paho.mqtt.client import time_func
from paho.mqtt.enums import MQTTErrorCode


class InboundMessage:
    """What the listener reads of a PUBLISH (paho's MQTTMessage has the same attributes)."""

    __slots__ = ("mid", "payload", "qos", "topic")

    def __init__(self, topic: str, payload: bytes, mid: int, qos: int) -> None:
        self.topic = topic
        self.payload = payload
        self.mid = mid
        self.qos = qos


Message = InboundMessage | paho.MQTTMessage

RECV_BUFFER_BYTES = 64 * 1024
"""One `recv()` takes this much: about 500 one-fix messages, or a few 100-fix ones."""
DEFAULT_MAX_INBOX_BYTES = 16 * 1024 * 1024
"""Payload bytes held in the inbox before the socket is left unread: ~150,000 one-fix
messages (more than the broker's window, so never reached) or ~1,500 of 100 fixes."""
MAX_READ_PAUSE_S = 5.0
"""A paused socket is read again after this long whatever the inbox holds: unread, the
broker's PINGRESP would go unseen and paho would drop the connection after its keepalive
(30 s), and a SUBACK behind the backlog would time out (aiomqtt waits 10 s). A stall that
long (the database away) falls back to the broker's window."""
_PUBACK = paho.PUBACK


class AckingClient(aiomqtt.Client):
    def __init__(
        self, *args: Any, max_inbox_bytes: int = DEFAULT_MAX_INBOX_BYTES, **kwargs: Any
    ) -> None:
        super().__init__(*args, **kwargs)
        paho_client = self._client
        paho_client.manual_ack_set(True)
        # paho's private reader hook (paho-mqtt pinned in the lock; tests/unit/gateway/
        # test_paho_private_api.py fails loudly if a release changes it).
        setattr(paho_client, "_sock_recv", self._buffered_recv)  # noqa: B010
        self.max_inbox_bytes = max_inbox_bytes
        self.inbox: deque[Message] = deque()
        self.inbox_bytes = 0
        self.on_inbox: Callable[[], None] | None = None
        """Called after each message lands in the inbox (the listener schedules a drain).
        Set it, and drain, before subscribing: see `_maybe_pause`."""
        self._rbuf = b""
        self._rpos = 0
        self._recvs_left = 0
        self._fileno = -1
        self._paused_at: float | None = None
        self._pause_timer: asyncio.TimerHandle | None = None
        self._v311 = int(paho_client.protocol) == paho.MQTTv311
        """MQTT 3.1.1: PUBLISH parsed here, PUBACKs batched (MQTT 5 adds properties to both)."""
        self._pingresps = 0
        handle_pingresp = paho_client._handle_pingresp

        def counting_pingresp() -> MQTTErrorCode:
            self._pingresps += 1
            return handle_pingresp()

        setattr(paho_client, "_handle_pingresp", counting_pingresp)  # noqa: B010 (as above)

    # ---- reading ------------------------------------------------------------------------

    def _buffered_recv(self, size: int) -> bytes:
        """paho's `_sock_recv`, served from a buffer refilled by one large `recv()`."""
        buf, pos = self._rbuf, self._rpos
        if pos >= len(buf):
            sock = self._client._sock
            if sock is None:
                raise ConnectionError("not connected")
            if self._recvs_left <= 0:
                # One recv() per readable callback: a broker that keeps sending must not
                # keep us reading while nothing else runs. paho resumes the packet later.
                raise BlockingIOError
            self._recvs_left -= 1
            try:
                buf = sock.recv(max(size, RECV_BUFFER_BYTES))  # BlockingIOError: paho retries later
            except ssl.SSLWantReadError as exc:
                raise BlockingIOError from exc
            if not buf:
                return b""  # EOF
            self._rbuf, pos = buf, 0
        end = pos + size
        self._rpos = end
        return buf[pos:end] if pos or end < len(buf) else buf

    def _buffered(self) -> bool:
        if self._rpos < len(self._rbuf):
            return True
        sock = self._client._sock
        return isinstance(sock, ssl.SSLSocket) and sock.pending() > 0  # decrypted, unsignalled

    def _on_socket_open(self, client: paho.Client, userdata: Any, sock: Any) -> None:
        # aiomqtt's own reader would stop after one packet while the rest waits in our
        # buffer (the socket is no longer readable): ours reads until the buffer is empty.
        super()._on_socket_open(client, userdata, sock)
        self._fileno = sock.fileno()
        self._loop.call_soon_threadsafe(self._loop.add_reader, self._fileno, self._on_readable)

    def _on_readable(self) -> None:
        self._recvs_left = 1
        client = self._client
        try:
            while self._paused_at is None:
                if (
                    self._v311
                    and client._in_packet["command"] == 0
                    and self._rpos < len(self._rbuf)
                ):
                    self._parse_publishes()
                    if self._paused_at is not None:
                        break
                if not self._buffered() and self._recvs_left <= 0:
                    break
                # An empty buffer (paho reads the next packet, one recv()), or a packet we
                # leave to paho: one packet, then back to the fast path.
                if client.loop_read() != paho.MQTT_ERR_SUCCESS:
                    break
                if not self._buffered() and self._recvs_left <= 0:
                    break
        except Exception as exc:  # a broken connection: aiomqtt's reader does the same
            if not self._disconnected.done():
                self._disconnected.set_exception(exc)

    def _parse_publishes(self) -> None:
        """Take the whole QoS 0/1 PUBLISH packets at the head of the buffer into the inbox;
        stop at anything else (left to paho) or at an incomplete packet."""
        buf, pos, end = self._rbuf, self._rpos, len(self._rbuf)
        inbox = self.inbox
        count = payload_bytes = 0
        while pos < end:
            first = buf[pos]
            if first & 0xF0 != 0x30 or first & 0x06 == 0x06 or first & 0x06 == 0x04:
                break  # not PUBLISH, or QoS 2 (paho runs its handshake)
            # Remaining length: 1-4 bytes, 7 bits each, least significant first.
            i, length, shift = pos + 1, 0, 0
            while i < end and shift < 28:
                byte = buf[i]
                i += 1
                length |= (byte & 0x7F) << shift
                shift += 7
                if not byte & 0x80:
                    break
            else:
                break  # header incomplete (or malformed: paho says so)
            stop = i + length
            qos = (first >> 1) & 3
            if stop > end or length < 2:
                break
            topic_end = i + 2 + ((buf[i] << 8) | buf[i + 1])
            body = topic_end + 2 if qos else topic_end
            if body > stop:
                break  # malformed: paho reports it
            try:
                topic = buf[i + 2 : topic_end].decode()
            except UnicodeDecodeError:
                break
            mid = (buf[topic_end] << 8) | buf[topic_end + 1] if qos else 0
            payload = buf[body:stop]
            inbox.append(InboundMessage(topic, payload, mid, qos))
            payload_bytes += stop - body
            count += 1
            pos = stop
        self._rpos = pos
        if count:
            self._client._last_bytes_received = time_func()  # paho's keepalive reads this
            self.inbox_bytes += payload_bytes
            self._maybe_pause()
            if self.on_inbox is not None:
                self.on_inbox()

    def _on_message(self, client: paho.Client, userdata: Any, message: paho.MQTTMessage) -> None:
        self.inbox.append(message)
        self.inbox_bytes += len(message.payload)
        self._maybe_pause()
        if self.on_inbox is not None:
            self.on_inbox()

    def taken(self, payload_bytes: int) -> None:
        """The listener took messages of this many payload bytes out of the inbox."""
        self.inbox_bytes -= payload_bytes
        if self._paused_at is not None and self.inbox_bytes <= self.max_inbox_bytes // 2:
            self._resume_reading()

    def _maybe_pause(self) -> None:
        # The SUBACK may sit behind a persistent session's backlog: whoever subscribes must
        # already be draining (set `on_inbox` first), or it waits for MAX_READ_PAUSE_S.
        if self.inbox_bytes > self.max_inbox_bytes and self._paused_at is None:
            self._pause_reading()

    def _pause_reading(self) -> None:
        if self._fileno < 0:
            return
        self._paused_at = time.monotonic()
        self._loop.remove_reader(self._fileno)
        self._pause_timer = self._loop.call_later(MAX_READ_PAUSE_S, self._resume_reading)

    def _resume_reading(self) -> None:
        if self._paused_at is None:
            return
        self._paused_at = None
        if self._pause_timer is not None:
            self._pause_timer.cancel()
            self._pause_timer = None
        if self._client._sock is None:
            return
        self._loop.add_reader(self._fileno, self._on_readable)
        if self._buffered():
            self._loop.call_soon(self._on_readable)  # the socket will not say so

    def _on_socket_close(self, client: paho.Client, userdata: Any, sock: Any) -> None:
        if self._pause_timer is not None:
            self._pause_timer.cancel()
        self._paused_at = None
        self._fileno = -1
        super()._on_socket_close(client, userdata, sock)

    # ---- acknowledging ------------------------------------------------------------------

    def ack_many(self, mids: Sequence[int]) -> None:
        """Send the PUBACKs of these QoS 1 messages, in this order, in one write."""
        if not mids:
            return
        if not self._v311:  # MQTT 5's PUBACK differs: let paho build each one
            for mid in mids:
                self._client.ack(mid, 1)
            return
        packet = struct.pack(f"!{len(mids)}I", *((_PUBACK << 24) | (2 << 16) | mid for mid in mids))
        self._client._packet_queue(_PUBACK, packet, 0, 0)

    async def flush(self, timeout_s: float = 5.0) -> None:
        """Wait (bounded) until the broker has processed every packet queued so far,
        PUBACKs above all. Written to the socket is not enough: a new connection of the
        same session that reaches the broker before it has read the old socket takes the
        session over, and the messages whose PUBACKs were still unread are sent again.
        So after the write, one PINGREQ: the broker handles a connection's packets in
        order, and its PINGRESP comes after it has handled the PUBACKs before it."""
        deadline = time.monotonic() + timeout_s
        client = self._client
        # paho signals no event for "written" or for a PINGRESP: poll.
        while client.want_write() and not self._disconnected.done() and time.monotonic() < deadline:  # noqa: ASYNC110
            await asyncio.sleep(0.005)
        if self._disconnected.done() or client._sock is None:
            return
        # A keepalive PINGREQ already in flight answers first: wait for both.
        wanted = self._pingresps + (2 if client._ping_t > 0 else 1)
        if client._send_pingreq() != paho.MQTT_ERR_SUCCESS:
            return

        def waiting() -> bool:
            return (
                self._pingresps < wanted
                and not self._disconnected.done()
                and time.monotonic() < deadline
            )

        # Polled: paho's callbacks run on aiomqtt's loop and set no event we can await.
        while waiting():  # noqa: ASYNC110
            await asyncio.sleep(0.005)

    @property
    def disconnected(self) -> asyncio.Future[None]:
        """Resolves (usually with an exception) when the connection is gone."""
        return self._disconnected
