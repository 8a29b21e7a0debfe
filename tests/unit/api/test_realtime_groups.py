"""The membership rules of api/realtime/groups.py, the stream ids and the resync rule."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from api.principal import Principal, Role
from api.realtime.groups import Admission, admit, home_groups, request_facts
from api.realtime.protocol import format_stream_id, message, parse_entry, parse_stream_id
from api.realtime.replay import MAX_SEQ, Seam, must_resync

REQ = "11111111-1111-1111-1111-111111111111"
ME = "22222222-2222-2222-2222-222222222222"
OTHER = "33333333-3333-3333-3333-333333333333"
CUSTOMER = "44444444-4444-4444-4444-444444444444"

TECH = Principal(subject=ME, tenant="acme", role=Role.TECHNICIAN)
CUST = Principal(subject=CUSTOMER, tenant="acme", role=Role.CUSTOMER)
ADMIN = Principal(subject="a", tenant="acme", role=Role.DISPATCHER)


def _basic(technician: str | None, status: str) -> dict[str, object]:
    return {"requestId": REQ, "technicianId": technician, "requestStatus": status}


def _admit(
    p: Principal, groups: set[str], event: str, entry: set[str], payload: object
) -> Admission:
    eg = frozenset(entry)
    return admit(p, frozenset(groups), event, eg, request_facts(eg, payload))


def test_home_groups_by_role() -> None:
    assert home_groups(ADMIN) == {"AllAdmins"}
    assert home_groups(CUST) == {f"Customer-{CUSTOMER}"}
    assert home_groups(TECH) == {f"Technician-{ME}"}


def test_a_ring_adds_the_request_for_the_technician_rung() -> None:
    payload = {"serviceRequestInfo": _basic(None, "Ringing")}
    got = _admit(TECH, {f"Technician-{ME}"}, "ring_notification_received",
                 {f"Technician-{ME}"}, payload)  # fmt: skip
    assert got.deliver and f"Request-{REQ}" in got.after


def test_another_technicians_accept_takes_the_request_away_before_delivery() -> None:
    groups = {f"Technician-{ME}", f"Request-{REQ}"}
    accepted = {"serviceRequestInfo": _basic(OTHER, "Assigned")}
    entry = {f"Request-{REQ}", f"Technician-{OTHER}", "AllAdmins"}
    got = _admit(TECH, groups, "request_accepted", entry, accepted)
    assert not got.deliver and f"Request-{REQ}" not in got.after
    # The status change that names them (Technician group) still reaches them.
    status = _admit(TECH, groups, "request_status_changed", entry | {f"Technician-{ME}"},
                    _basic(OTHER, "Assigned"))  # fmt: skip
    assert status.deliver and f"Request-{REQ}" not in status.after


def test_the_end_of_a_request_or_an_unassign_removes_it_after_delivery() -> None:
    groups = {f"Technician-{ME}", f"Request-{REQ}"}
    for payload in (_basic(ME, "Completed"), _basic(None, "Pending")):
        got = _admit(TECH, groups, "request_status_changed", {f"Request-{REQ}"}, payload)
        assert got.deliver and f"Request-{REQ}" not in got.after


def test_a_location_update_changes_nothing() -> None:
    groups = {f"Technician-{ME}", f"Request-{REQ}"}
    payload = {"serviceRequestInfo": {"requestId": REQ}, "etaInSec": 60}
    got = _admit(TECH, groups, "LocationUpdated", {f"Request-{REQ}"}, payload)
    assert got.deliver and got.after == groups


def test_a_customer_joins_its_new_request_and_never_anothers() -> None:
    mine = {"requestId": REQ, "technician": None, "requestStatus": "Ringing"}
    got = _admit(CUST, {f"Customer-{CUSTOMER}"}, "new_service_request",
                 {f"Request-{REQ}", f"Customer-{CUSTOMER}", "AllAdmins"}, mine)  # fmt: skip
    assert got.deliver and f"Request-{REQ}" in got.after
    theirs = _admit(CUST, {f"Customer-{CUSTOMER}"}, "new_service_request",
                    {f"Request-{REQ}", f"Customer-{OTHER}", "AllAdmins"}, mine)  # fmt: skip
    assert not theirs.deliver and f"Request-{REQ}" not in theirs.after


def test_staff_get_admin_events_only() -> None:
    assert _admit(ADMIN, {"AllAdmins"}, "QueueUpdated", {"AllAdmins"}, {}).deliver
    assert not _admit(ADMIN, {"AllAdmins"}, "LocationUpdated", {f"Request-{REQ}"}, {}).deliver


def test_the_request_of_a_detailed_or_nested_payload() -> None:
    detailed = {"requestId": REQ, "technician": {"technicianId": ME}, "requestStatus": "x"}
    assert request_facts(frozenset(), detailed).technician == ME
    journey = {"requestId": REQ, "requestDetails": {**detailed, "technician": None}}
    assert request_facts(frozenset(), journey).technician is None


@given(st.integers(0, 2**48), st.integers(0, 2**64 - 1))
def test_stream_ids_round_trip_and_order(ms: int, seq: int) -> None:
    assert parse_stream_id(format_stream_id((ms, seq))) == (ms, seq)
    assert parse_stream_id(f"{ms}") == (ms, 0)


@pytest.mark.parametrize("bad", ["", "-1", "abc", "1-", "1-x", "1.5-0"])
def test_malformed_stream_ids_are_refused(bad: str) -> None:
    with pytest.raises(ValueError):
        parse_stream_id(bad)


def test_an_entry_becomes_one_message_text() -> None:
    fields = {b"event": b"x", b"tenant": b"acme", b"groups": b'["AllAdmins"]',
              b"payload": b'{"a": 1}', b"at": b"2026-01-01T00:00:00+00:00", b"id": b"u"}  # fmt: skip
    entry = parse_entry(b"5-1", fields)
    assert entry is not None
    assert json.loads(entry.text) == {"event": "x", "id": "5-1", "data": {"a": 1}}
    assert entry.text == message("x", "5-1", '{"a": 1}')
    assert parse_entry(b"5-2", {b"event": b"x"}) is None


WINDOW_S = 600.0
NOW = 10_000_000


def test_resync_only_when_events_after_the_id_may_be_gone() -> None:
    seam = Seam(sid=(NOW, 0), first=(NOW - 5000, 0), now_ms=NOW)
    assert not must_resync((NOW - 4000, 0), seam, WINDOW_S)  # the stream holds it all
    assert not must_resync((NOW, 0), seam, WINDOW_S)  # nothing missed
    assert not must_resync((NOW + 9, 0), seam, WINDOW_S)  # an id from the future
    assert must_resync((NOW - 6000, 0), seam, WINDOW_S)  # trimmed away
    empty = Seam(sid=(NOW, 0), first=None, now_ms=NOW)
    assert must_resync((NOW - 1000, 0), empty, WINDOW_S)
    # A seam taken while the stream was empty, still within the window: no loss.
    assert not must_resync((NOW - 6000, MAX_SEQ), seam, WINDOW_S)
    assert must_resync((NOW - 601_000, MAX_SEQ), seam, WINDOW_S)
