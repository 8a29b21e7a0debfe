"""PUBACK only after the commit: what the gateway has not stored, the broker still has.

The database is made to hang (the positions table locked by another session) with the
spool turned off, so a received message cannot become durable. The gateway is then killed
with SIGKILL: had it acknowledged on receipt, as aiomqtt does by itself, the broker would
have dropped those messages and they would be lost. Instead the broker redelivers them
to the next gateway, which stores them.
"""

from __future__ import annotations

import os
import signal
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg

from gateway.listeners.mqtt import AckQueue
from tests.support.gateway import running_gateway, wait_for
from tests.support.ingest import NumberedPublisher, count, register
from tests.support.services import Services


def test_puback_waits_for_the_commit(
    services: Services, db_url: str, fixgate_env: dict[str, str], mqtt_prefix: str, tmp_path: Path
) -> None:
    register(db_url, "dev-0", "acme")
    base = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=1)
    pub = NumberedPublisher(services.mqtt_url, mqtt_prefix + "fixgate/acme/{device}/fix", base)
    with (
        running_gateway(fixgate_env, tmp_path, spool_max_bytes="0") as gw,
        psycopg.connect(db_url) as locker,
    ):
        locker.execute("LOCK TABLE positions IN ACCESS EXCLUSIVE MODE")  # held until rollback
        pub.start(count=20, rate=100)
        pub.join()
        assert len(pub.acknowledged()) == 20
        assert wait_for(lambda: gw.metric("fixgate_mqtt_messages_received_total") == 20), gw.log()
        time.sleep(0.5)  # time enough for any (wrong) PUBACK to reach the broker
        os.kill(gw.proc.pid, signal.SIGKILL)
        gw.proc.wait(5)
        locker.rollback()
    assert count(db_url, "dev-0") == 0
    with running_gateway(fixgate_env, tmp_path, spool_max_bytes="0") as gw:
        assert wait_for(lambda: count(db_url, "dev-0") == 20), gw.log()
        assert gw.metric("fixgate_mqtt_messages_received_total") == 20, (
            "the broker redelivered every message"
        )
    assert sorted(pub.stored(db_url)) == list(range(20))


class RecordingClient:
    """Stands in for the broker connection: records the PUBACKs in the order sent."""

    def __init__(self) -> None:
        self.sent: list[int] = []

    def ack_many(self, mids: list[int]) -> None:
        self.sent += mids


def test_pubacks_go_out_in_arrival_order_whatever_order_batches_commit_in() -> None:
    client = RecordingClient()
    acks = AckQueue(client)  # type: ignore[arg-type]
    first, second, third = acks.add([1, 2]), acks.add([3]), acks.add([4, 5])
    third()  # its batch committed first
    second()
    assert client.sent == []  # messages 1 and 2 are not durable yet: nothing may be acknowledged
    first()
    assert client.sent == [1, 2, 3, 4, 5]
    assert len(acks) == 0
