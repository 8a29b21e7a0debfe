"""The stack's services answer, through real clients."""

from __future__ import annotations

import subprocess
import threading
import uuid

import paho.mqtt.client as paho
import redis.asyncio as aioredis

from gateway.config import mqtt_address
from tests.support.broker import broker_device, token_of


async def test_a_value_round_trips_through_redis(
    redis_client: aioredis.Redis, redis_prefix: str
) -> None:
    key = f"{redis_prefix}roundtrip"
    await redis_client.set(key, "42.1234567,13.7654321")
    assert await redis_client.get(key) == b"42.1234567,13.7654321"


def test_an_mqtt_message_reaches_a_subscriber_through_mosquitto(
    gateway_mqtt_url: str, mqtt_prefix: str
) -> None:
    host, port, user, password = mqtt_address(gateway_mqtt_url)
    topic = f"{mqtt_prefix}fixgate/acme/truck-1/fix"
    received: list[bytes] = []
    subscribed, arrived = threading.Event(), threading.Event()

    def on_message(_c: object, _u: object, msg: paho.MQTTMessage) -> None:
        received.append(msg.payload)
        arrived.set()

    sub = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id=f"sub-{uuid.uuid4().hex[:8]}")
    sub.on_subscribe = lambda *_: subscribed.set()
    sub.on_message = on_message
    sub.username_pw_set(user, password)
    sub.connect(host, port)
    sub.subscribe(topic, qos=1)
    sub.loop_start()
    try:
        assert subscribed.wait(5), "no SUBACK from the broker"
        payload = '{"time":"2026-01-01T00:00:00Z","lat":52.5,"lon":13.4}'
        with broker_device("truck-1", "acme"):
            login = ["-u", "truck-1", "-P", token_of("truck-1")]
            subprocess.run(
                ["mosquitto_pub", "-h", host, "-p", str(port), *login, "-q", "1", "-t", topic,
                 "-m", payload],
                check=True, timeout=10,
            )  # fmt: skip
        arrived.wait(5)
    finally:
        sub.loop_stop()
        sub.disconnect()
    assert received == [payload.encode()]
