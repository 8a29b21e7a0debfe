"""gateway.listeners.mqtt_client.AckingClient against the real broker: the fast PUBLISH path, batched
PUBACKs, and the inbox bound, with a persistent session's backlog waiting at connect."""

from __future__ import annotations

import asyncio
import threading
import uuid

import paho.mqtt.client as paho

from gateway.config import mqtt_address
from gateway.listeners.mqtt_client import AckingClient
from tests.support.services import Services


def _preload(mqtt_url: str, client_id: str, topic: str, payloads: list[bytes]) -> None:
    """Create the persistent session (subscribed), disconnect it, then queue `payloads`."""
    host, port, _, _ = mqtt_address(mqtt_url)
    session = paho.Client(
        paho.CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=False
    )
    session.connect(host, port)
    session.loop_start()
    subscribed = threading.Event()
    session.on_subscribe = lambda *_: subscribed.set()
    session.subscribe(topic, qos=1)
    assert subscribed.wait(10)
    session.disconnect()
    session.loop_stop()
    publisher = paho.Client(
        paho.CallbackAPIVersion.VERSION2, client_id=f"pub-{uuid.uuid4().hex[:8]}"
    )
    publisher.connect(host, port)
    publisher.loop_start()
    infos = [publisher.publish(topic, p, qos=1) for p in payloads]
    for info in infos:
        info.wait_for_publish(10)
    publisher.disconnect()
    publisher.loop_stop()


async def _drain_all(
    services: Services, client_id: str, topic: str, expected: int, max_inbox_bytes: int
) -> list[bytes]:
    host, port, _, _ = mqtt_address(services.mqtt_url)
    got: list[bytes] = []
    async with AckingClient(
        host, port, identifier=client_id, clean_session=False, max_inbox_bytes=max_inbox_bytes
    ) as client:
        largest_inbox = 0
        done = asyncio.Event()

        def drain() -> None:
            nonlocal largest_inbox
            largest_inbox = max(largest_inbox, client.inbox_bytes)
            mids, size = [], 0
            while client.inbox:
                msg = client.inbox.popleft()
                got.append(bytes(msg.payload))
                size += len(msg.payload)
                mids.append(msg.mid)
            client.taken(size)
            client.ack_many(mids)
            if len(got) >= expected:
                done.set()

        # As the listener does: drain before the SUBACK, which comes behind the backlog
        # (the bound pauses reading until the backlog drains, then subscribing completes).
        client.on_inbox = lambda: asyncio.get_running_loop().call_soon(drain)
        drain()
        await client.subscribe(topic, qos=1)
        await asyncio.wait_for(done.wait(), 30)
        await client.flush()
    # Reading pauses past the bound; the read that crossed it may overshoot by its size.
    assert largest_inbox <= max_inbox_bytes + 64 * 1024 + 2048
    return got


async def test_a_backlog_larger_than_the_inbox_bound_is_drained_in_order_and_acknowledged(
    services: Services,
) -> None:
    client_id = f"t-acking-{uuid.uuid4().hex[:8]}"
    topic = f"t{uuid.uuid4().hex[:8]}/fixgate/x/y/fix"
    payloads = [b"%05d:" % i + b"x" * 2000 for i in range(300)]  # ~600 KB, bound 32 KiB
    await asyncio.to_thread(_preload, services.mqtt_url, client_id, topic, payloads)
    got = await _drain_all(services, client_id, topic, len(payloads), max_inbox_bytes=32 * 1024)
    assert got == payloads
    # Everything was acknowledged: a new connection of the session gets nothing again.
    host, port, _, _ = mqtt_address(services.mqtt_url)
    async with AckingClient(host, port, identifier=client_id, clean_session=False) as client:
        await asyncio.sleep(1.0)
        assert len(client.inbox) == 0
    cleaner = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=True)
    cleaner.connect(host, port)
    cleaner.disconnect()


async def test_after_flush_the_broker_has_every_puback_even_if_the_session_reconnects_at_once(
    services: Services,
) -> None:
    """One write of thousands of PUBACKs, then leave and come straight back: a broker that
    had not yet read them all would hand the new connection the session and send the
    unread ones again. `flush()` returns only once the broker has handled them."""
    client_id = f"t-flush-{uuid.uuid4().hex[:8]}"
    topic = f"t{uuid.uuid4().hex[:8]}/fixgate/x/y/fix"
    payloads = [b"%05d" % i for i in range(5000)]
    await asyncio.to_thread(_preload, services.mqtt_url, client_id, topic, payloads)
    host, port, _, _ = mqtt_address(services.mqtt_url)
    for attempt in range(3):
        async with AckingClient(host, port, identifier=client_id, clean_session=False) as client:
            full = asyncio.Event()
            client.on_inbox = lambda c=client, e=full: (
                e.set() if len(c.inbox) >= len(payloads) else None
            )
            await client.subscribe(topic, qos=1)
            await asyncio.wait_for(full.wait(), 30)
            assert [bytes(m.payload) for m in client.inbox] == payloads
            client.ack_many([m.mid for m in client.inbox])  # all at once, one write
            await client.flush()
        async with AckingClient(host, port, identifier=client_id, clean_session=False) as client:
            await client.subscribe(topic, qos=1)
            await asyncio.sleep(0.5)
            assert len(client.inbox) == 0, f"attempt {attempt}: {len(client.inbox)} redelivered"
        if attempt < 2:
            await asyncio.to_thread(_preload, services.mqtt_url, client_id, topic, payloads)
    cleaner = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=True)
    cleaner.connect(host, port)
    cleaner.disconnect()
