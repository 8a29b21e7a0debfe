"""What the broker is told: each device's topics by protocol and prefix, the gateway's
read-only patterns (pure functions of gateway.registry.broker)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from devtools.stack import broker_init
from gateway.registry.broker import (
    ANY_PREFIX,
    HEALTH_TOPIC,
    device_topics,
    gateway_acls,
    login_name,
)
from gateway.registry.store import Device


def device(**fields: object) -> Device:
    base: dict[str, object] = {
        "id": "van-1", "tenant_id": "acme", "kind": "service_van", "token_hash": "",
        "enabled": True, "created_at": datetime(2026, 1, 1, tzinfo=UTC),
    }  # fmt: skip
    return Device(**{**base, **fields})  # type: ignore[arg-type]


def test_a_device_publishes_on_its_own_topics_only_for_its_protocols() -> None:
    assert device_topics(device()) == ["fixgate/acme/van-1/fix", "fixgate/acme/van-1/nmea"]
    assert device_topics(device(protocols=("nmea",)), "site-a/") == [
        "site-a/fixgate/acme/van-1/nmea"
    ]
    assert device_topics(device(protocols=("teltonika",))) == []


def test_an_owntracks_phone_logs_in_as_its_user_and_publishes_under_its_identity() -> None:
    phone = device(
        id="p-1", owntracks_user="jane", owntracks_device="pixel", protocols=("owntracks",)
    )
    assert login_name(phone) == "jane"
    assert device_topics(phone, ANY_PREFIX) == ["+/owntracks/jane/pixel/#"]


def test_prefixes_are_checked_and_the_gateway_only_reads() -> None:
    with pytest.raises(ValueError, match="prefix"):
        device_topics(device(), "a/#/")
    acls = gateway_acls("t1/")
    assert not [a for a in acls if a["acltype"] == "publishClientSend"]
    assert "$share/+/t1/fixgate/+/+/fix" in {a["topic"] for a in acls}
    assert all(a["topic"].startswith(("t1/", "$share/+/t1/", HEALTH_TOPIC)) for a in acls)


def test_the_stacks_first_gateway_role_is_the_registrys() -> None:
    """devtools/stack/broker_init.py is standard-library only (compose runs it alone), so
    it has its own copy of the gateway's ACLs: the same."""
    made = {(a["acltype"], a["topic"]) for a in broker_init.gateway_acls()}
    assert made == {(a["acltype"], a["topic"]) for a in gateway_acls()}
