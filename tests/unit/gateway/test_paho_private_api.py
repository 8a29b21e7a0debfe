"""`gateway/listeners/mqtt_client.py` reaches into paho-mqtt's private parts (to
acknowledge only once fixes are durable, and to read PUBLISH packets in bulk). paho is
pinned to the exact version that code was written against; this test says clearly what
broke when a paho upgrade changes any of those parts."""

from __future__ import annotations

import inspect
from importlib.metadata import version

import paho.mqtt.client as paho

from tests.support.paths import REPO_ROOT

WRITTEN_AGAINST = "2.2.0"
"""The paho-mqtt release `AckingClient` was written and measured against."""

# (attribute, what AckingClient does with it)
PRIVATE_METHODS = {
    "_sock_recv": ("self", "bufsize"),  # replaced by the buffered reader
    "_handle_pingresp": ("self",),  # wrapped to count PINGRESPs (flush waits for one)
    "_send_pingreq": ("self",),  # flush's round trip to the broker
    "_packet_queue": ("self", "command", "packet", "mid", "qos", "info"),  # batched PUBACKs
}
PRIVATE_ATTRIBUTES = ("_sock", "_in_packet", "_ping_t", "_last_bytes_received")


def locked_paho_version() -> str:
    for line in (REPO_ROOT / "requirements.lock").read_text().splitlines():
        if line.startswith("paho-mqtt=="):
            return line.split("==", 1)[1].split()[0]
    raise AssertionError("paho-mqtt is not pinned in requirements.lock")


def test_paho_is_the_locked_version() -> None:
    assert locked_paho_version() == WRITTEN_AGAINST, "re-check AckingClient against the new paho"
    assert version("paho-mqtt") == locked_paho_version(), (
        "paho-mqtt differs from requirements.lock: AckingClient relies on its private API"
    )


def test_the_private_methods_acking_client_uses_keep_their_signatures() -> None:
    for name, params in PRIVATE_METHODS.items():
        method = getattr(paho.Client, name, None)
        assert method is not None, (
            f"paho.Client.{name} is gone: update gateway/listeners/mqtt_client.py"
        )
        got = tuple(inspect.signature(method).parameters)
        assert got[: len(params)] == params, f"paho.Client.{name}{got} changed: update AckingClient"


def test_the_private_attributes_acking_client_reads_are_set_by_paho() -> None:
    client = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id="probe")
    missing = [name for name in PRIVATE_ATTRIBUTES if not hasattr(client, name)]
    assert missing == [], f"paho.Client no longer has {missing}: update AckingClient"
    assert set(client._in_packet) >= {"command", "remaining_length", "packet"}
