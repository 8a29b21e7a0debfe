"""MQTT topics: which device a message is from, and what the gateway subscribes to.

The topic trees (DESIGN, "Inputs"), each optionally under a deployment prefix such as
`test123/` (to isolate test runs and deployments sharing a broker):

    {prefix}fixgate/{tenant}/{device}/fix    fixgate's JSON fix, one or a batch
    {prefix}fixgate/{tenant}/{device}/nmea   raw NMEA 0183 lines
    {prefix}owntracks/{user}/{device}        OwnTracks JSON (location, lwt)

Only these exact shapes are routes. OwnTracks sub-topics (`.../event`, `.../cmd`,
`.../waypoint`, `.../info`...) carry no position; they are not subscribed to, and if one
arrives anyway `parse_topic` returns None, like any other topic that is not a route.

The identity in a topic is only a claim: the broker's ACLs decide who may publish where,
and the gateway still checks (tenant, device) or (user, device) against the registry.
`parse_topic` runs once per message, so it is a bounded split and dict lookup, no regex.
"""

from __future__ import annotations

import enum
from typing import Final

import msgspec

__all__ = ["TopicKind", "TopicRoute", "check_prefix", "parse_topic", "subscription_filters"]

FIXGATE_ROOT: Final = "fixgate"
OWNTRACKS_ROOT: Final = "owntracks"


class TopicKind(enum.StrEnum):
    """Which decoder a message goes to (also a metrics label)."""

    FIX = "fix"
    NMEA = "nmea"
    OWNTRACKS = "owntracks"


class TopicRoute(msgspec.Struct, frozen=True, gc=False):
    """Where a message came from, as its topic says."""

    kind: TopicKind
    tenant_or_user: str
    """The tenant for `fixgate/...` topics, the OwnTracks user for `owntracks/...`."""
    device: str


_FIXGATE_LEAVES: Final = {"fix": TopicKind.FIX, "nmea": TopicKind.NMEA}


def parse_topic(topic: str, prefix: str = "") -> TopicRoute | None:
    """The route of a received message's topic, or None if the topic is not a route.

    `prefix` is the deployment prefix the gateway subscribed with (see `check_prefix`).
    Empty tenant, user or device levels (`fixgate//dev/fix`) are not routes.

    Raises:
        ValueError: `prefix` is not empty and does not end in "/" (a configuration bug that
            would otherwise silently drop every message).
    """
    if prefix:
        if prefix[-1] != "/":
            raise ValueError(f"topic prefix must end with '/': {prefix!r}")
        if not topic.startswith(prefix):
            return None
        topic = topic[len(prefix) :]
    # maxsplit=4: a fifth part means "too many levels", and a long topic costs no more.
    levels = topic.split("/", 4)
    if len(levels) == 4 and levels[0] == FIXGATE_ROOT:
        kind = _FIXGATE_LEAVES.get(levels[3])
        if kind is None or not levels[1] or not levels[2]:
            return None
        return TopicRoute(kind, levels[1], levels[2])
    if len(levels) == 3 and levels[0] == OWNTRACKS_ROOT and levels[1] and levels[2]:
        return TopicRoute(TopicKind.OWNTRACKS, levels[1], levels[2])
    return None


def subscription_filters(prefix: str = "", share_group: str | None = None) -> list[str]:
    """The MQTT topic filters the gateway subscribes to, one per route.

    With `share_group`, each filter becomes a shared subscription
    (`$share/{group}/{prefix}fixgate/+/+/fix`, MQTT 5, also EMQX and Mosquitto on 3.1.1),
    so gateway instances in one group split the messages between them. Messages of one
    device can then land on different instances, so per-device state must not assume
    otherwise (DESIGN, "Scaling past one machine").

    Raises:
        ValueError: a malformed prefix or share group (see `check_prefix`).
    """
    check_prefix(prefix)
    share = ""
    if share_group is not None:
        if not share_group or any(c in share_group for c in "/+#\0"):
            raise ValueError(f"share group must be one non-empty topic level: {share_group!r}")
        share = f"$share/{share_group}/"
    base = f"{share}{prefix}"
    return [
        f"{base}{FIXGATE_ROOT}/+/+/{TopicKind.FIX}",
        f"{base}{FIXGATE_ROOT}/+/+/{TopicKind.NMEA}",
        f"{base}{OWNTRACKS_ROOT}/+/+",
    ]


def check_prefix(prefix: str) -> None:
    """Refuse a prefix that cannot be put in front of a topic filter.

    A prefix is empty or one or more non-empty levels each followed by "/" (`test123/`,
    `site-a/staging/`), with no wildcards, and not starting with "$" (reserved for the
    broker's own topics, `$SYS`, `$share`).

    Raises:
        ValueError: the prefix breaks one of these rules.
    """
    if not prefix:
        return
    levels = prefix.split("/")
    if (
        levels[-1] != ""
        or not all(levels[:-1])
        or prefix[0] == "$"
        or any(c in prefix for c in "+#\0")
    ):
        raise ValueError(
            "topic prefix must be non-empty levels each ending in '/', with no wildcards "
            f"and no leading '$': {prefix!r}"
        )
