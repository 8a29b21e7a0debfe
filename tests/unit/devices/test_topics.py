"""MQTT topic -> identity, and the subscription filters that must agree with it."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from devices.topics import TopicKind, TopicRoute, check_prefix, parse_topic, subscription_filters

K = TopicKind

ROUTES = [
    ("fixgate/acme/truck-7/fix", TopicRoute(K.FIX, "acme", "truck-7")),
    ("fixgate/acme/truck-7/nmea", TopicRoute(K.NMEA, "acme", "truck-7")),
    ("owntracks/jane/iphone", TopicRoute(K.OWNTRACKS, "jane", "iphone")),
    ("fixgate/fixgate/fix/fix", TopicRoute(K.FIX, "fixgate", "fix")),
    ("owntracks/a b/ü", TopicRoute(K.OWNTRACKS, "a b", "ü")),
]
NOT_ROUTES = [
    "",
    "/",
    "fixgate",
    "fixgate/acme/truck-7",
    "fixgate/acme/truck-7/fix/extra",
    "fixgate/acme/truck-7/status",
    "fixgate/acme/truck-7/FIX",
    "fixgate//truck-7/fix",
    "fixgate/acme//fix",
    "/fixgate/acme/truck-7/fix",
    "Fixgate/acme/truck-7/fix",
    "owntracks/jane",
    "owntracks/jane/",
    "owntracks//iphone",
    "owntracks/jane/iphone/",
    "owntracks/jane/iphone/event",  # transitions: no position
    "owntracks/jane/iphone/cmd",
    "owntracks/jane/iphone/waypoint",
    "owntracks/jane/iphone/info",
    "$SYS/broker/uptime",
    "test123/fixgate/acme/truck-7/fix",  # prefixed, but parsed without the prefix
]


@pytest.mark.parametrize(("topic", "route"), ROUTES)
def test_route(topic: str, route: TopicRoute) -> None:
    assert parse_topic(topic) == route


@pytest.mark.parametrize("topic", NOT_ROUTES)
def test_not_a_route(topic: str) -> None:
    assert parse_topic(topic) is None


@pytest.mark.parametrize(("topic", "route"), ROUTES)
def test_route_under_a_prefix(topic: str, route: TopicRoute) -> None:
    assert parse_topic(f"test123/{topic}", "test123/") == route
    assert parse_topic(f"site/a/{topic}", "site/a/") == route


@pytest.mark.parametrize(("topic", "route"), ROUTES)
def test_a_prefix_is_required_when_configured(topic: str, route: TopicRoute) -> None:
    assert (parse_topic(topic, "test123/"), parse_topic(f"test1234/{topic}", "test123/")) == (
        None,
        None,
    )


def test_route_is_a_small_frozen_value() -> None:
    route = parse_topic("fixgate/acme/truck-7/fix")
    assert route is not None and route.kind == "fix" and hash(route) == hash(route)
    with pytest.raises(AttributeError):
        route.device = "other"  # type: ignore[misc]


def test_prefix_without_slash_is_a_caller_bug() -> None:
    with pytest.raises(ValueError, match="end with '/'"):
        parse_topic("test123/fixgate/acme/truck-7/fix", "test123")


def test_filters() -> None:
    assert subscription_filters("", None) == [
        "fixgate/+/+/fix",
        "fixgate/+/+/nmea",
        "owntracks/+/+",
    ]


def test_filters_with_prefix_and_share_group() -> None:
    assert subscription_filters("test123/", "gateways") == [
        "$share/gateways/test123/fixgate/+/+/fix",
        "$share/gateways/test123/fixgate/+/+/nmea",
        "$share/gateways/test123/owntracks/+/+",
    ]


@pytest.mark.parametrize("prefix", ["test123", "/", "a//", "+/", "a/#/", "$test/", "a/b"])
def test_bad_prefix_is_refused(prefix: str) -> None:
    with pytest.raises(ValueError, match="prefix"):
        subscription_filters(prefix, None)


@pytest.mark.parametrize("prefix", ["", "test123/", "site-a/staging/", "x/"])
def test_good_prefix_is_accepted(prefix: str) -> None:
    check_prefix(prefix)


@pytest.mark.parametrize("group", ["", "a/b", "+", "#", "g#"])
def test_bad_share_group_is_refused(group: str) -> None:
    with pytest.raises(ValueError, match="share group"):
        subscription_filters("", group)


def matches(topic_filter: str, topic: str) -> bool:
    """MQTT 3.1.1 section 4.7 topic matching, for `+` filters (all the gateway uses)."""
    if topic_filter.startswith("$share/"):
        topic_filter = topic_filter.split("/", 2)[2]
    levels, wanted = topic.split("/"), topic_filter.split("/")
    return len(levels) == len(wanted) and all(
        w in ("+", t) for w, t in zip(wanted, levels, strict=True)
    )


@pytest.mark.parametrize("prefix", ["", "test123/"])
@pytest.mark.parametrize("topic", [t for t, _ in ROUTES] + NOT_ROUTES)
def test_filters_and_routes_agree(prefix: str, topic: str) -> None:
    """A message arrives if and only if it is a route (empty levels aside: see below)."""
    topic = prefix + topic
    arrives = any(matches(f, topic) for f in subscription_filters(prefix, "g"))
    # `+` matches an empty level, so the broker delivers `fixgate//x/fix`; the parser
    # refuses it. Nothing else may differ.
    if arrives and "//" not in topic and not topic.endswith("/"):
        assert parse_topic(topic, prefix) is not None
    if parse_topic(topic, prefix) is not None:
        assert arrives


@given(
    st.text(alphabet=st.sampled_from("fixgatenmowrck/+#$ \x00é"), max_size=40),
    st.sampled_from(["", "p/"]),
)
def test_any_topic_gives_a_route_or_none_never_an_exception(topic: str, prefix: str) -> None:
    route = parse_topic(topic, prefix)
    if route is not None:
        leaf = "" if route.kind is K.OWNTRACKS else f"/{route.kind}"
        root = "owntracks" if route.kind is K.OWNTRACKS else "fixgate"
        assert f"{prefix}{root}/{route.tenant_or_user}/{route.device}{leaf}" == topic


@given(st.text(max_size=200))
def test_arbitrary_text_never_raises(topic: str) -> None:
    parse_topic(topic)
    parse_topic(topic, "test123/")
