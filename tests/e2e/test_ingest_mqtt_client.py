"""gateway.listeners.mqtt_client.AckingClient against the real broker: the fast PUBLISH path, batched
PUBACKs, and the inbox bound, with a persistent session's backlog waiting at connect."""

from __future__ import annotations

import asyncio
import threading
import uuid
from collections.abc import Iterator

import paho.mqtt.client as paho
import pytest

from gateway.config import mqtt_address
from gateway.listeners.mqtt_client import AckingClient
from tests.support.broker import broker_device, device_client, login_options


def _preload(mqtt_url: str, client_id: str, topic: str, payloads: list[bytes]) -> None:
    """Create the persistent session (subscribed), disconnect it, then queue `payloads`,
    published by device `y` (`.../fixgate/x/y/fix`) logged in as itself."""
    host, port, user, password = mqtt_address(mqtt_url)
    session = paho.Client(
        paho.CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=False
    )
    session.username_pw_set(user, password)
    session.connect(host, port)
    session.loop_start()
    subscribed = threading.Event()
    session.on_subscribe = lambda *_: subscribed.set()
    session.subscribe(topic, qos=1)
    assert subscribed.wait(10)
    session.disconnect()
    session.loop_stop()
    publisher = device_client(mqtt_url, "y")
    infos = [publisher.publish(topic, p, qos=1) for p in payloads]
    for info in infos:
        info.wait_for_publish(10)
    publisher.disconnect()
    publisher.loop_stop()


async def _drain_all(
    url: str, client_id: str, topic: str, expected: int, max_inbox_bytes: int
) -> list[bytes]:
    host, port, _, _ = mqtt_address(url)
    got: list[bytes] = []
    async with AckingClient(
        host, port, identifier=client_id, clean_session=False, max_inbox_bytes=max_inbox_bytes,
        **login_options(url),
    ) as client:  # fmt: skip
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


@pytest.fixture
def device_y() -> Iterator[None]:
    with broker_device("y", "x"):
        yield


async def test_a_backlog_larger_than_the_inbox_bound_is_drained_in_order_and_acknowledged(
    gateway_mqtt_url: str, mqtt_prefix: str, device_y: None
) -> None:
    url = gateway_mqtt_url  # the session is the account's (tests/support/broker.py)
    client_id = f"t-acking-{uuid.uuid4().hex[:8]}"
    topic = f"{mqtt_prefix}fixgate/x/y/fix"
    payloads = [b"%05d:" % i + b"x" * 2000 for i in range(300)]  # ~600 KB, bound 32 KiB
    await asyncio.to_thread(_preload, url, client_id, topic, payloads)
    got = await _drain_all(url, client_id, topic, len(payloads), max_inbox_bytes=32 * 1024)
    assert got == payloads
    # Everything was acknowledged: a new connection of the session gets nothing again.
    host, port, _, _ = mqtt_address(url)
    async with AckingClient(
        host, port, identifier=client_id, clean_session=False, **login_options(url)
    ) as client:
        await asyncio.sleep(1.0)
        assert len(client.inbox) == 0
    _drop_session(url)


def _drop_session(url: str) -> None:
    host, port, user, password = mqtt_address(url)
    cleaner = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id="x", clean_session=True)
    cleaner.username_pw_set(user, password)
    cleaner.connect(host, port)
    cleaner.disconnect()


async def test_after_flush_the_broker_has_every_puback_even_if_the_session_reconnects_at_once(
    gateway_mqtt_url: str, mqtt_prefix: str, device_y: None
) -> None:
    """One write of thousands of PUBACKs, then leave and come straight back: a broker that
    had not yet read them all would hand the new connection the session and send the
    unread ones again. `flush()` returns only once the broker has handled them."""
    url = gateway_mqtt_url
    client_id = f"t-flush-{uuid.uuid4().hex[:8]}"
    topic = f"{mqtt_prefix}fixgate/x/y/fix"
    payloads = [b"%05d" % i for i in range(5000)]
    await asyncio.to_thread(_preload, url, client_id, topic, payloads)
    host, port, _, _ = mqtt_address(url)
    login = login_options(url)
    for attempt in range(3):
        async with AckingClient(
            host, port, identifier=client_id, clean_session=False, **login
        ) as client:
            full = asyncio.Event()
            client.on_inbox = lambda c=client, e=full: (
                e.set() if len(c.inbox) >= len(payloads) else None
            )
            await client.subscribe(topic, qos=1)
            await asyncio.wait_for(full.wait(), 30)
            assert [bytes(m.payload) for m in client.inbox] == payloads
            client.ack_many([m.mid for m in client.inbox])  # all at once, one write
            await client.flush()
        async with AckingClient(
            host, port, identifier=client_id, clean_session=False, **login
        ) as client:
            await client.subscribe(topic, qos=1)
            await asyncio.sleep(0.5)
            assert len(client.inbox) == 0, f"attempt {attempt}: {len(client.inbox)} redelivered"
        if attempt < 2:
            await asyncio.to_thread(_preload, url, client_id, topic, payloads)
    _drop_session(url)
