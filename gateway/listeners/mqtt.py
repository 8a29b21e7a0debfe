"""The MQTT listener: QoS 1, persistent session, messages acknowledged once durable.

Each message's topic names the device (`fixgate/{tenant}/{device}/fix|nmea`,
`owntracks/{user}/{device}`); the registry copy says whether it may send. Its payload is
decoded, and the fixes of one drain pass (up to 2,000) are submitted to the ingest core
together, with one ack that fires when their batch is committed. PUBACKs go out in the
order the messages came in (MQTT 3.1.1, 4.6), whatever order batches commit in, one
write per pass. While the ingest queue is over its high-water mark the listener stops
taking messages from the inbox, so acks stop and the broker stops sending; the inbox
itself is bounded by payload bytes (`gateway.listeners.mqtt_client`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Coroutine
from typing import Any

import aiomqtt

from devices.events import DecodeError, DecodeErrorReason
from devices.fix import Fix
from devices.jsonfix import decode_json_fixes
from devices.nmea import NmeaDecoder
from devices.owntracks import decode_owntracks
from devices.topics import TopicKind, parse_topic, subscription_filters
from gateway import metrics
from gateway.config import Settings, mqtt_address, mqtt_tls
from gateway.flow import Flow
from gateway.listeners.mqtt_client import AckingClient, Message
from gateway.listeners.ordered import OrderedReplies
from gateway.logs import RateLimitedLog
from gateway.registry.broker import tls_context
from gateway.registry.cache import RegistryCache
from gateway.registry.store import Device, allows
from gateway.retry import backoff
from gateway.sinks.history import HistoryWriter
from ingest.pipeline import Ingest

log = logging.getLogger(__name__)
RECONNECT_BACKOFF_S = (0.5, 1.0, 2.0, 5.0, 10.0)
KEEPALIVE_S = 30


MAX_MESSAGES_PER_DRAIN = 2000
MAX_FIXES_PER_DRAIN = 2000
"""One drain pass takes at most this many messages or fixes (about 20-40 ms of work), then
yields to the event loop, so batch writes and /metrics are never held up for long."""


_PROTOCOL_OF = {TopicKind.FIX: "json", TopicKind.NMEA: "nmea", TopicKind.OWNTRACKS: "owntracks"}
"""The registry's protocol name (`Device.protocols`) of each topic kind."""


class AckQueue:
    """PUBACKs in arrival order: a group's acks go out once it and all before it are done.

    A group is the QoS 1 message ids of one drain pass; they are acknowledged together,
    in one write, when the batch holding their fixes is durable."""

    def __init__(self, client: AckingClient) -> None:
        self.client = client
        self._groups: OrderedReplies[list[int]] = OrderedReplies(self._release)

    def add(self, mids: list[int]) -> Callable[[], None]:
        """Queue a group; call the returned function once its batch is durable."""
        return self._groups.add(mids)

    def _release(self, groups: list[list[int]]) -> None:
        self.client.ack_many([mid for group in groups for mid in group])

    def __len__(self) -> int:
        return len(self._groups)


class MqttListener:
    def __init__(
        self,
        settings: Settings,
        registry: RegistryCache,
        ingest: Ingest,
        writer: HistoryWriter,
        flow: Flow,
    ) -> None:
        self.settings = settings
        self.registry = registry
        self.ingest = ingest
        self.writer = writer
        self.flow = flow
        self.connected = False
        self.prefix = settings.mqtt_topic_prefix
        self.device_log = RateLimitedLog(log)
        self._nmea: dict[str, NmeaDecoder] = {}
        self._client: AckingClient | None = None
        self._acks: AckQueue | None = None
        self._drain_scheduled = False
        self._resolving = False
        self._looked_up: Message | None = None
        self.tasks: set[asyncio.Task[None]] = set()
        flow.on_change.append(self._flow_changed)

    async def run(self, stop: asyncio.Event) -> None:
        host, port, user, password = mqtt_address(self.settings.mqtt_url)
        tls = tls_context(self.settings.mqtt_ca_file) if mqtt_tls(self.settings.mqtt_url) else None
        filters = subscription_filters(self.prefix, self.settings.mqtt_share_group)
        attempt = 0
        while not stop.is_set():
            try:
                async with AckingClient(
                    host, port, username=user, password=password, identifier=self.settings.mqtt_client_id,
                    clean_session=False, keepalive=KEEPALIVE_S, tls_context=tls,
                ) as client:  # fmt: skip
                    # Take messages before the SUBACK: a persistent session's backlog comes
                    # first, and the inbox bound only lets the SUBACK through as it drains.
                    self._start_consuming(client)
                    await client.subscribe([(f, 1) for f in filters])
                    self.connected = True
                    attempt = 0
                    log.info(
                        "mqtt: connected to %s:%d, subscribed to %s", host, port, ", ".join(filters)
                    )
                    await self._consume(client, stop)
            except aiomqtt.MqttError as e:
                if self.connected or attempt == 0:
                    log.warning("mqtt: connection lost or refused (%s); reconnecting", e)
            finally:
                self.connected = False
            if stop.is_set():
                break
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), backoff(RECONNECT_BACKOFF_S, attempt))
            attempt += 1

    def _start_consuming(self, client: AckingClient) -> None:
        self._client, self._acks = client, AckQueue(client)
        client.on_inbox = self._schedule_drain
        self._schedule_drain()

    async def _consume(self, client: AckingClient, stop: asyncio.Event) -> None:
        """Take messages until stopped or disconnected; unacknowledged ones are redelivered.

        Messages are handled in a plain callback scheduled once per burst of socket reads
        (`_drain`), not by a task woken per message: that wake-up was most of the cost."""
        stopped = asyncio.ensure_future(stop.wait())
        try:
            await asyncio.wait((stopped, client.disconnected), return_when=asyncio.FIRST_COMPLETED)
            if stop.is_set():
                await client.flush()
        finally:
            stopped.cancel()
            client.on_inbox = None
            self._client = self._acks = None
        if not stop.is_set():
            raise aiomqtt.MqttError("disconnected")

    def _flow_changed(self, open_: bool) -> None:
        if open_:
            self._schedule_drain()

    def _schedule_drain(self) -> None:
        if not self._drain_scheduled and self._client is not None:
            self._drain_scheduled = True
            asyncio.get_running_loop().call_soon(self._drain)

    def _drain(self) -> None:
        self._drain_scheduled = False
        client, acks = self._client, self._acks
        if client is None or acks is None or self._resolving:
            return
        inbox = client.inbox
        now = time.time()
        prefix = self.prefix
        flow_open = self.flow.open.is_set
        by_kind: dict[TopicKind, list[Fix]] = {}
        mids: list[int] = []
        taken = taken_bytes = taken_fixes = 0
        while (
            inbox
            and taken < MAX_MESSAGES_PER_DRAIN
            and taken_fixes < MAX_FIXES_PER_DRAIN
            and flow_open()
        ):
            msg = inbox[0]
            route = parse_topic(msg.topic, prefix)
            device = None
            if route is not None:
                device = self._cached_device(route.kind, route.tenant_or_user, route.device)
                if device is None and msg is not self._looked_up:
                    # Maybe registered a moment ago: reload the registry, then try again.
                    self._resolving = True
                    self._spawn(self._resolve(msg, route.kind, route.tenant_or_user, route.device))
                    break
            inbox.popleft()
            taken += 1
            taken_bytes += len(msg.payload)
            if msg.qos:
                mids.append(msg.mid)
            if route is None:
                self._error(
                    "mqtt",
                    DecodeError(
                        DecodeErrorReason.WRONG_TYPE, f"not a fixgate topic: {msg.topic[:100]}"
                    ),
                    "?",
                    now,
                )
                continue
            if device is None:
                self._refuse(route.tenant_or_user, route.device, "unknown_device")
                continue
            if not self._allowed(device, route.kind, route.tenant_or_user, route.device):
                continue  # nothing to store, ever: redelivery would not help
            fixes = self._decode(route.kind, msg, device, now)
            if fixes:
                taken_fixes += len(fixes)
                kind_fixes = by_kind.get(route.kind)
                if kind_fixes is None:
                    by_kind[route.kind] = fixes
                else:
                    kind_fixes += fixes
        if not taken:
            return
        client.taken(taken_bytes)
        # One submission per protocol and one ack for the whole pass: the fixes all land
        # in the open batch (nothing can take it meanwhile), so the pass's messages are
        # acknowledged when that batch is durable, or at once when nothing is to be stored.
        for fixes in by_kind.values():
            self.ingest.submit(fixes, now)
        self.ingest.submit((), now, ack=acks.add(mids))
        metrics.MESSAGES_RECEIVED.inc(taken)
        self.writer.submitted()
        if inbox and not self._resolving:
            self._schedule_drain()  # the rest after other callbacks had their turn

    def _cached_device(self, kind: TopicKind, owner: str, device_name: str) -> Device | None:
        if kind is TopicKind.OWNTRACKS:
            return self.registry.by_owntracks.get((owner, device_name))
        return self.registry.by_id.get(device_name)

    async def _resolve(self, msg: Message, kind: TopicKind, owner: str, device_name: str) -> None:
        try:
            if kind is TopicKind.OWNTRACKS:
                await self.registry.owntracks(owner, device_name)
            else:
                await self.registry.device(device_name)
        finally:
            self._looked_up = msg  # decided now, found or not
            self._resolving = False
            self._schedule_drain()

    def _allowed(self, device: Device, kind: TopicKind, owner: str, device_name: str) -> bool:
        """The broker's ACLs already said yes; the gateway checks the claim again."""
        refused = None
        if kind is not TopicKind.OWNTRACKS and device.tenant_id != owner:
            refused = "wrong_tenant"
        elif not device.enabled:
            refused = "disabled_device"
        elif not allows(device, _PROTOCOL_OF[kind]):
            refused = "wrong_protocol"
        if refused is None:
            return True
        self._refuse(owner, device_name, refused)
        return False

    def _refuse(self, owner: str, device_name: str, reason: str) -> None:
        metrics.AUTH_REFUSED.labels("mqtt", reason).inc()
        self.device_log.warning(
            ("mqtt", owner, device_name, reason), time.time(),
            "mqtt: refused %s/%s reason=%s", owner, device_name, reason,
        )  # fmt: skip

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.ensure_future(coro)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    def _decode(self, kind: TopicKind, msg: Message, device: Device, now: float) -> list[Fix]:
        payload = msg.payload
        if kind is TopicKind.FIX:
            fixes, errors = decode_json_fixes(payload, device.id, device.tenant_id, now)
            for error in errors:
                self._error("json", error, device.id, now)
            return fixes
        if kind is TopicKind.OWNTRACKS:
            result = decode_owntracks(payload, device.id, device.tenant_id, now)
            if type(result) is Fix:
                return [result]
            if type(result) is DecodeError:
                self._error("owntracks", result, device.id, now)
            return []
        return self._decode_nmea(payload, device, now)

    def _decode_nmea(self, payload: bytes | bytearray, device: Device, now: float) -> list[Fix]:
        """A message carries whole epochs: its lines are merged and flushed at its end.
        The decoder is kept per device for the date GGA/GLL borrow from an earlier RMC.

        Bounded per message, so one message never holds the loop for others: bytes
        (refused whole), lines and decode errors (the rest of the message is refused).
        A refused message is still acknowledged with its pass: redelivery cannot help."""
        settings = self.settings
        if len(payload) > settings.mqtt_nmea_max_bytes:
            self._refuse_message(DecodeErrorReason.PAYLOAD_TOO_LARGE, device.id, len(payload), now)
            return []
        decoder = self._nmea.get(device.id)
        if decoder is None:
            decoder = self._nmea[device.id] = NmeaDecoder(device.id, device.tenant_id)
        events: list[object] = []
        lines = errors = 0
        for line in payload.splitlines():
            if not line.strip():
                continue
            lines += 1
            if lines > settings.mqtt_nmea_max_lines:
                self._refuse_message(DecodeErrorReason.TOO_MANY_LINES, device.id, len(payload), now)
                break
            for decoded in decoder.feed_line(line.strip(), now):
                events.append(decoded)
                errors += type(decoded) is DecodeError
            if errors > settings.mqtt_nmea_max_errors:
                self._refuse_message(
                    DecodeErrorReason.TOO_MANY_ERRORS, device.id, len(payload), now
                )
                break
        events += decoder.flush(now)
        fixes = []
        for event in events:
            if type(event) is Fix:
                fixes.append(event)
            elif type(event) is DecodeError:
                self._error("nmea", event, device.id, now)
        return fixes

    def _refuse_message(self, reason: DecodeErrorReason, who: str, size: int, now: float) -> None:
        metrics.MESSAGES_REFUSED.labels("nmea", reason.value).inc()
        self._error("nmea", DecodeError(reason, f"message of {size} bytes"), who, now)

    def _error(self, protocol: str, error: DecodeError, who: str, now: float) -> None:
        metrics.DECODE_ERRORS.labels(protocol, error.reason.value).inc()
        self.device_log.warning(
            ("mqtt", who, error.reason.value), now,
            "mqtt: decode error device=%s protocol=%s reason=%s detail=%s",
            who, protocol, error.reason.value, error.detail[:160],
        )  # fmt: skip
