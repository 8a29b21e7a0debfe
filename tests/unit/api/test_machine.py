"""The request lifecycle's table, cell by cell (api/machine.py), the way h11 tests its state
machine: every (action, state, who) with what `decide` answers, then each action's own
checks and the columns it sets, with time moved by assignment. No service is needed.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest

from api.machine import (
    RINGABLE,
    TABLE,
    Action,
    Attempt,
    AvailabilityStatus,
    Event,
    Move,
    Refusal,
    RequestStatus,
    RequestView,
    TechnicianView,
    decide,
    roles_of,
    table_rows,
)
from api.principal import Principal, Role

NOW = datetime(2026, 12, 7, 9, 30, tzinfo=UTC)
TECH, RUNG, OTHER = uuid.UUID(int=1), uuid.UUID(int=2), uuid.UUID(int=3)
CUSTOMER, STRANGER = uuid.UUID(int=11), uuid.UUID(int=12)
REQUEST = uuid.UUID(int=99)

WHO: dict[str, Principal | None] = {
    "admin": Principal("admin-1", "acme", Role.ADMIN),
    "dispatcher": Principal("disp-1", "acme", Role.DISPATCHER),
    "its technician": Principal(str(TECH), "acme", Role.TECHNICIAN),
    "a rung technician": Principal(str(RUNG), "acme", Role.TECHNICIAN),
    "another technician": Principal(str(OTHER), "acme", Role.TECHNICIAN),
    "its customer": Principal(str(CUSTOMER), "acme", Role.CUSTOMER),
    "another customer": Principal(str(STRANGER), "acme", Role.CUSTOMER),
    "fixgate": None,
}
"""The columns of CELLS, in order. A Ringing or Pending request has no technician yet (its
column is `.`); the rung technician was rung for the request whatever its state now."""

# What `decide` answers: ok (the table's move), 403 (the role may never), 404 (may not see
# the request: as if it did not exist), 409 (not in this state, or not theirs), . (no such
# principal), - (not an action of this principal: a programming error, ValueError).
# Columns: admin, dispatcher, its technician, a rung technician, another technician, its
# customer, another customer, fixgate (WHO's order).
# fmt: off
CELLS = [
    #                                 adm dsp its rng oth its oth fxg
    #                                         tec tec tec cus cus
    # ring
    ('ring'          , 'Pending'   , "403 403   . 403 403 403 403  ok"),
    ('ring'          , 'Ringing'   , "403 403   . 403 403 403 403  ok"),
    ('ring'          , 'Assigned'  , "403 403 403 403 403 403 403 409"),
    ('ring'          , 'EnRoute'   , "403 403 403 403 403 403 403 409"),
    ('ring'          , 'InProgress', "403 403 403 403 403 403 403 409"),
    ('ring'          , 'Completed' , "403 403 403 403 403 403 403 409"),
    ('ring'          , 'Canceled'  , "403 403 403 403 403 403 403 409"),
    ('ring'          , 'Stopped'   , "403 403 403 403 403 403 403 409"),
    ('ring'          , 'Accepted'  , "403 403 403 403 403 403 403 409"),
    # ring_timeout
    ('ring_timeout'  , 'Pending'   , "403 403   . 403 403 403 403 409"),
    ('ring_timeout'  , 'Ringing'   , "403 403   . 403 403 403 403  ok"),
    ('ring_timeout'  , 'Assigned'  , "403 403 403 403 403 403 403 409"),
    ('ring_timeout'  , 'EnRoute'   , "403 403 403 403 403 403 403 409"),
    ('ring_timeout'  , 'InProgress', "403 403 403 403 403 403 403 409"),
    ('ring_timeout'  , 'Completed' , "403 403 403 403 403 403 403 409"),
    ('ring_timeout'  , 'Canceled'  , "403 403 403 403 403 403 403 409"),
    ('ring_timeout'  , 'Stopped'   , "403 403 403 403 403 403 403 409"),
    ('ring_timeout'  , 'Accepted'  , "403 403 403 403 403 403 403 409"),
    # accept
    ('accept'        , 'Pending'   , "403 403   .  ok  ok 403 403   -"),
    ('accept'        , 'Ringing'   , "403 403   .  ok 404 403 403   -"),
    ('accept'        , 'Assigned'  , "403 403 409 409 404 403 403   -"),
    ('accept'        , 'EnRoute'   , "403 403 409 409 404 403 403   -"),
    ('accept'        , 'InProgress', "403 403 409 409 404 403 403   -"),
    ('accept'        , 'Completed' , "403 403 409 409 404 403 403   -"),
    ('accept'        , 'Canceled'  , "403 403 409 409 404 403 403   -"),
    ('accept'        , 'Stopped'   , "403 403 409 409 404 403 403   -"),
    ('accept'        , 'Accepted'  , "403 403 409 409 404 403 403   -"),
    # reject
    ('reject'        , 'Pending'   , "403 403   .  ok  ok 403 403   -"),
    ('reject'        , 'Ringing'   , "403 403   .  ok 404 403 403   -"),
    ('reject'        , 'Assigned'  , "403 403 409 409 404 403 403   -"),
    ('reject'        , 'EnRoute'   , "403 403 409 409 404 403 403   -"),
    ('reject'        , 'InProgress', "403 403 409 409 404 403 403   -"),
    ('reject'        , 'Completed' , "403 403 409 409 404 403 403   -"),
    ('reject'        , 'Canceled'  , "403 403 409 409 404 403 403   -"),
    ('reject'        , 'Stopped'   , "403 403 409 409 404 403 403   -"),
    ('reject'        , 'Accepted'  , "403 403 409 409 404 403 403   -"),
    # assign
    ('assign'        , 'Pending'   , " ok  ok   . 403 403 403 403   -"),
    ('assign'        , 'Ringing'   , " ok  ok   . 403 403 403 403   -"),
    ('assign'        , 'Assigned'  , "409 409 403 403 403 403 403   -"),
    ('assign'        , 'EnRoute'   , "409 409 403 403 403 403 403   -"),
    ('assign'        , 'InProgress', "409 409 403 403 403 403 403   -"),
    ('assign'        , 'Completed' , "409 409 403 403 403 403 403   -"),
    ('assign'        , 'Canceled'  , "409 409 403 403 403 403 403   -"),
    ('assign'        , 'Stopped'   , "409 409 403 403 403 403 403   -"),
    ('assign'        , 'Accepted'  , "409 409 403 403 403 403 403   -"),
    # unassign
    ('unassign'      , 'Pending'   , "409 409   . 403 403 403 403   -"),
    ('unassign'      , 'Ringing'   , "409 409   . 403 403 403 403   -"),
    ('unassign'      , 'Assigned'  , " ok  ok 403 403 403 403 403   -"),
    ('unassign'      , 'EnRoute'   , " ok  ok 403 403 403 403 403   -"),
    ('unassign'      , 'InProgress', "409 409 403 403 403 403 403   -"),
    ('unassign'      , 'Completed' , "409 409 403 403 403 403 403   -"),
    ('unassign'      , 'Canceled'  , "409 409 403 403 403 403 403   -"),
    ('unassign'      , 'Stopped'   , "409 409 403 403 403 403 403   -"),
    ('unassign'      , 'Accepted'  , "409 409 403 403 403 403 403   -"),
    # cancel
    ('cancel'        , 'Pending'   , " ok  ok   . 409 409  ok 404   -"),
    ('cancel'        , 'Ringing'   , " ok  ok   . 409 404  ok 404   -"),
    ('cancel'        , 'Assigned'  , " ok  ok  ok 409 404  ok 404   -"),
    ('cancel'        , 'EnRoute'   , " ok  ok  ok 409 404  ok 404   -"),
    ('cancel'        , 'InProgress', " ok  ok  ok 409 404  ok 404   -"),
    ('cancel'        , 'Completed' , "409 409 409 409 404 409 404   -"),
    ('cancel'        , 'Canceled'  , "409 409 409 409 404 409 404   -"),
    ('cancel'        , 'Stopped'   , "409 409 409 409 404 409 404   -"),
    ('cancel'        , 'Accepted'  , "409 409 409 409 404 409 404   -"),
    # start_journey
    ('start_journey' , 'Pending'   , "403 403   . 409 409 403 403   -"),
    ('start_journey' , 'Ringing'   , "403 403   . 409 404 403 403   -"),
    ('start_journey' , 'Assigned'  , "403 403  ok 409 404 403 403   -"),
    ('start_journey' , 'EnRoute'   , "403 403 409 409 404 403 403   -"),
    ('start_journey' , 'InProgress', "403 403 409 409 404 403 403   -"),
    ('start_journey' , 'Completed' , "403 403 409 409 404 403 403   -"),
    ('start_journey' , 'Canceled'  , "403 403 409 409 404 403 403   -"),
    ('start_journey' , 'Stopped'   , "403 403 409 409 404 403 403   -"),
    ('start_journey' , 'Accepted'  , "403 403 409 409 404 403 403   -"),
    # arrived
    ('arrived'       , 'Pending'   , "403 403   . 403 403 403 403 409"),
    ('arrived'       , 'Ringing'   , "403 403   . 403 403 403 403 409"),
    ('arrived'       , 'Assigned'  , "403 403 403 403 403 403 403 409"),
    ('arrived'       , 'EnRoute'   , "403 403 403 403 403 403 403  ok"),
    ('arrived'       , 'InProgress', "403 403 403 403 403 403 403 409"),
    ('arrived'       , 'Completed' , "403 403 403 403 403 403 403 409"),
    ('arrived'       , 'Canceled'  , "403 403 403 403 403 403 403 409"),
    ('arrived'       , 'Stopped'   , "403 403 403 403 403 403 403 409"),
    ('arrived'       , 'Accepted'  , "403 403 403 403 403 403 403 409"),
    # start_work
    ('start_work'    , 'Pending'   , "403 403   . 409 409 403 403   -"),
    ('start_work'    , 'Ringing'   , "403 403   . 409 404 403 403   -"),
    ('start_work'    , 'Assigned'  , "403 403 409 409 404 403 403   -"),
    ('start_work'    , 'EnRoute'   , "403 403  ok 409 404 403 403   -"),
    ('start_work'    , 'InProgress', "403 403 409 409 404 403 403   -"),
    ('start_work'    , 'Completed' , "403 403 409 409 404 403 403   -"),
    ('start_work'    , 'Canceled'  , "403 403 409 409 404 403 403   -"),
    ('start_work'    , 'Stopped'   , "403 403 409 409 404 403 403   -"),
    ('start_work'    , 'Accepted'  , "403 403 409 409 404 403 403   -"),
    # complete
    ('complete'      , 'Pending'   , "403 403   . 409 409 403 403   -"),
    ('complete'      , 'Ringing'   , "403 403   . 409 404 403 403   -"),
    ('complete'      , 'Assigned'  , "403 403 409 409 404 403 403   -"),
    ('complete'      , 'EnRoute'   , "403 403 409 409 404 403 403   -"),
    ('complete'      , 'InProgress', "403 403  ok 409 404 403 403   -"),
    ('complete'      , 'Completed' , "403 403 409 409 404 403 403   -"),
    ('complete'      , 'Canceled'  , "403 403 409 409 404 403 403   -"),
    ('complete'      , 'Stopped'   , "403 403 409 409 404 403 403   -"),
    ('complete'      , 'Accepted'  , "403 403 409 409 404 403 403   -"),
    # feedback
    ('feedback'      , 'Pending'   , "403 403   . 403 403 409 404   -"),
    ('feedback'      , 'Ringing'   , "403 403   . 403 403 409 404   -"),
    ('feedback'      , 'Assigned'  , "403 403 403 403 403 409 404   -"),
    ('feedback'      , 'EnRoute'   , "403 403 403 403 403 409 404   -"),
    ('feedback'      , 'InProgress', "403 403 403 403 403 409 404   -"),
    ('feedback'      , 'Completed' , "403 403 403 403 403  ok 404   -"),
    ('feedback'      , 'Canceled'  , "403 403 403 403 403 409 404   -"),
    ('feedback'      , 'Stopped'   , "403 403 403 403 403 409 404   -"),
    ('feedback'      , 'Accepted'  , "403 403 403 403 403 409 404   -"),
    # escalate
    ('escalate'      , 'Pending'   , " ok  ok   . 403 403 403 403   -"),
    ('escalate'      , 'Ringing'   , " ok  ok   . 403 403 403 403   -"),
    ('escalate'      , 'Assigned'  , " ok  ok 403 403 403 403 403   -"),
    ('escalate'      , 'EnRoute'   , " ok  ok 403 403 403 403 403   -"),
    ('escalate'      , 'InProgress', " ok  ok 403 403 403 403 403   -"),
    ('escalate'      , 'Completed' , "409 409 403 403 403 403 403   -"),
    ('escalate'      , 'Canceled'  , "409 409 403 403 403 403 403   -"),
    ('escalate'      , 'Stopped'   , "409 409 403 403 403 403 403   -"),
    ('escalate'      , 'Accepted'  , "409 409 403 403 403 403 403   -"),
    # reorder
    ('reorder'       , 'Pending'   , "409 409   . 403 403 403 403   -"),
    ('reorder'       , 'Ringing'   , "409 409   . 403 403 403 403   -"),
    ('reorder'       , 'Assigned'  , " ok  ok 403 403 403 403 403   -"),
    ('reorder'       , 'EnRoute'   , " ok  ok 403 403 403 403 403   -"),
    ('reorder'       , 'InProgress', " ok  ok 403 403 403 403 403   -"),
    ('reorder'       , 'Completed' , "409 409 403 403 403 403 403   -"),
    ('reorder'       , 'Canceled'  , "409 409 403 403 403 403 403   -"),
    ('reorder'       , 'Stopped'   , "409 409 403 403 403 403 403   -"),
    ('reorder'       , 'Accepted'  , "409 409 403 403 403 403 403   -"),
    # sla_violation
    ('sla_violation' , 'Pending'   , "403 403   . 403 403 403 403  ok"),
    ('sla_violation' , 'Ringing'   , "403 403   . 403 403 403 403  ok"),
    ('sla_violation' , 'Assigned'  , "403 403 403 403 403 403 403  ok"),
    ('sla_violation' , 'EnRoute'   , "403 403 403 403 403 403 403  ok"),
    ('sla_violation' , 'InProgress', "403 403 403 403 403 403 403 409"),
    ('sla_violation' , 'Completed' , "403 403 403 403 403 403 403 409"),
    ('sla_violation' , 'Canceled'  , "403 403 403 403 403 403 403 409"),
    ('sla_violation' , 'Stopped'   , "403 403 403 403 403 403 403 409"),
    ('sla_violation' , 'Accepted'  , "403 403 403 403 403 403 403 409"),
]
# fmt: on


def _request(state: RequestStatus, who: str, **facts: object) -> RequestView:
    technician = None if state in RINGABLE else TECH
    return RequestView(
        id=REQUEST, status=state, version=7, customer=CUSTOMER, technician=technician,
        rung=who == "a rung technician", **facts,  # type: ignore[arg-type]
    )  # fmt: skip


def _attempt(action: Action, principal: Principal | None, **fields: object) -> Attempt:
    acting = TECH if principal is None or principal.role is not Role.TECHNICIAN else None
    me = acting or uuid.UUID(principal.subject)  # type: ignore[union-attr]
    technician = TechnicianView(me, AvailabilityStatus.AVAILABLE, queued=0)
    defaults: dict[str, object] = {"technician": technician, "priority": 3, "position": 1}
    return Attempt(action, **{**defaults, **fields})  # type: ignore[arg-type]


def _cells() -> list[tuple[str, str, str, str]]:
    found = []
    for action, state, row in CELLS:
        for who, outcome in zip(WHO, row.split(), strict=True):
            found.append((action, state, who, outcome))
    return found


def test_the_cells_cover_every_action_state_and_principal() -> None:
    seen = {(a, s, w) for a, s, w, _ in _cells()}
    every = {(a.value, s.value, w) for a in Action if a is not Action.CREATE
             for s in RequestStatus for w in WHO}  # fmt: skip
    assert seen == every


@pytest.mark.parametrize(("action", "state", "who", "outcome"), _cells())
def test_cell(action: str, state: str, who: str, outcome: str) -> None:
    status = RequestStatus(state)
    principal = WHO[who]
    if outcome == ".":
        assert status in RINGABLE  # nobody is its technician yet
        return
    attempt = _attempt(Action(action), principal)
    request = _request(status, who)
    if outcome == "-":
        with pytest.raises(ValueError):
            decide(attempt, request, principal, NOW)
        return
    decision = decide(attempt, request, principal, NOW)
    if outcome == "ok":
        assert isinstance(decision, Move), decision
        rule = TABLE[Action(action)]
        assert decision.old is status
        assert decision.new is (rule.target or status)
        assert decision.announces == rule.announces
        assert decision.audit.action is Action(action)
        assert (decision.audit.old, decision.audit.new) == (status, decision.new)
        assert decision.audit.outcome == "ok"
    else:
        assert isinstance(decision, Refusal), decision
        assert decision.status == int(outcome)
        if decision.status == 409:
            assert decision.state is status  # the 409 says where the request is
            assert decision.audited
        else:
            assert not decision.audited  # 403 and 404 leave no trace of the request


# ---- creation ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("scheduled", "state", "ring_start"), [(False, "Ringing", NOW), (True, "Pending", None)]
)
def test_a_customer_creates_on_demand_ringing_and_scheduled_pending(
    scheduled: bool, state: str, ring_start: datetime | None
) -> None:
    customer = WHO["its customer"]
    move = decide(Attempt(Action.CREATE, scheduled=scheduled), None, customer, NOW)
    assert isinstance(move, Move)
    assert (move.old, move.new) == (None, RequestStatus(state))
    assert move.changes == {"ringstarttime": ring_start}
    assert move.announces == (Event.NEW_SERVICE_REQUEST,)


@pytest.mark.parametrize("who", ["admin", "dispatcher"])
@pytest.mark.parametrize("scheduled", [False, True])
def test_staff_create_for_the_customer_they_name(who: str, scheduled: bool) -> None:
    move = decide(Attempt(Action.CREATE, scheduled=scheduled, customer=CUSTOMER), None,
                  WHO[who], NOW)  # fmt: skip
    assert isinstance(move, Move)
    assert move.new is (RequestStatus.PENDING if scheduled else RequestStatus.RINGING)
    assert move.audit.detail == f"for customer {CUSTOMER}"  # the audit's actor is staff
    assert move.announces == (Event.NEW_SERVICE_REQUEST,)


@pytest.mark.parametrize("who", ["admin", "dispatcher"])
def test_staff_name_the_customer_they_create_for(who: str) -> None:
    refusal = decide(Attempt(Action.CREATE), None, WHO[who], NOW)
    assert isinstance(refusal, Refusal) and refusal.status == 422
    assert refusal.message.startswith("customerId: ")


def test_a_customer_creates_for_themselves_only() -> None:
    mine = decide(Attempt(Action.CREATE, customer=CUSTOMER), None, WHO["its customer"], NOW)
    assert isinstance(mine, Move) and mine.audit.detail is None
    theirs = decide(Attempt(Action.CREATE, customer=STRANGER), None, WHO["its customer"], NOW)
    assert isinstance(theirs, Refusal) and theirs.status == 403


@pytest.mark.parametrize("who", ["its technician", "a rung technician"])
def test_technicians_do_not_create(who: str) -> None:
    refusal = decide(Attempt(Action.CREATE, customer=CUSTOMER), None, WHO[who], NOW)
    assert isinstance(refusal, Refusal) and refusal.status == 403


def test_fixgate_does_not_create() -> None:
    with pytest.raises(ValueError):
        decide(Attempt(Action.CREATE), None, None, NOW)


def test_an_unknown_request_is_404_for_everyone() -> None:
    for who, principal in WHO.items():
        if principal is None:
            continue
        for action in roles_of_actions(principal):
            refusal = decide(Attempt(action), None, principal, NOW)
            assert isinstance(refusal, Refusal) and refusal.status == 404, (who, action)


def roles_of_actions(principal: Principal) -> list[Action]:
    return [a for a in Action if a is not Action.CREATE and principal.role in roles_of(a)]


# ---- each action's own checks and the columns it sets ---------------------------------------


def _tech(queued: int = 0, availability: str = "Available", busy: str | None = None,
          who: uuid.UUID = RUNG) -> TechnicianView:  # fmt: skip
    return TechnicianView(who, AvailabilityStatus(availability), queued, busy)


def test_accept_sets_the_technician_its_place_in_the_queue_and_ends_the_ring() -> None:
    ringing = _request(RequestStatus.RINGING, "a rung technician")
    move = decide(Attempt(Action.ACCEPT, _tech(queued=2)), ringing, WHO["a rung technician"], NOW)
    assert isinstance(move, Move)
    assert move.changes == {
        "currenttechnicianid": RUNG, "assignedat": NOW, "queueposition": 3, "ringendtime": NOW,
    }  # fmt: skip
    assert move.technician_id == RUNG and move.requeues
    # The ring's end is kept when the ring had ended before (it timed out to Pending).
    ended = NOW - timedelta(minutes=3)
    pending = _request(RequestStatus.PENDING, "another technician", ring_ended_at=ended)
    later = decide(Attempt(Action.ACCEPT, _tech(who=OTHER)), pending, WHO["another technician"],
                   NOW + timedelta(seconds=5))  # fmt: skip
    assert isinstance(later, Move) and later.changes["ringendtime"] == ended


@pytest.mark.parametrize(
    ("technician", "message"),
    [
        (None, "Technician not found"),
        (_tech(availability="Offline"), "You are Offline: set your availability first"),
        (_tech(queued=5), "Your queue is full (5 of 5)"),
    ],
)
def test_accept_refuses_an_unknown_offline_or_full_technician(
    technician: TechnicianView | None, message: str
) -> None:
    ringing = _request(RequestStatus.RINGING, "a rung technician")
    refusal = decide(Attempt(Action.ACCEPT, technician, queue_limit=5), ringing,
                     WHO["a rung technician"], NOW)  # fmt: skip
    assert isinstance(refusal, Refusal) and refusal.message == message


def test_accept_of_a_taken_request_says_so_and_of_an_ended_one_says_which() -> None:
    rung = WHO["a rung technician"]
    taken = decide(Attempt(Action.ACCEPT, _tech()), _request(RequestStatus.ASSIGNED, "a rung technician"), rung, NOW)  # fmt: skip
    assert isinstance(taken, Refusal) and "taken" in taken.message
    done = decide(Attempt(Action.ACCEPT, _tech()), _request(RequestStatus.CANCELED, "a rung technician"), rung, NOW)  # fmt: skip
    assert isinstance(done, Refusal) and done.message == "Request is Canceled"


def test_assign_to_a_full_queue_is_refused_and_otherwise_sets_the_time_given() -> None:
    pending = _request(RequestStatus.PENDING, "admin")
    full = decide(Attempt(Action.ASSIGN, _tech(queued=5, who=OTHER)), pending, WHO["admin"], NOW)
    assert isinstance(full, Refusal) and full.message == "The technician's queue is full (5)"
    at = NOW + timedelta(hours=2)
    move = decide(Attempt(Action.ASSIGN, _tech(who=OTHER), scheduled_at=at), pending, WHO["admin"], NOW)  # fmt: skip
    assert isinstance(move, Move)
    assert move.changes["scheduledat"] == at and move.changes["currenttechnicianid"] == OTHER
    assert move.audit.detail == f"technician {OTHER}"


@pytest.mark.parametrize(
    ("state", "freed"),
    [("Assigned", False), ("EnRoute", True), ("InProgress", True)],
)
def test_cancel_frees_the_technician_only_of_the_job_under_way(state: str, freed: bool) -> None:
    request = _request(RequestStatus(state), "its customer")
    move = decide(Attempt(Action.CANCEL, reason="no longer needed"), request, WHO["its customer"], NOW)  # fmt: skip
    assert isinstance(move, Move)
    assert move.changes["cancelledby"] == f"customer:{CUSTOMER}"
    assert move.changes["cancellationreason"] == "no longer needed"
    assert (move.technician is not None) is freed
    if move.technician is not None:
        assert move.technician.to is AvailabilityStatus.AVAILABLE
        assert move.technician_id == TECH


def test_start_journey_waits_for_the_job_under_way() -> None:
    assigned = _request(RequestStatus.ASSIGNED, "its technician")
    me = WHO["its technician"]
    busy = decide(Attempt(Action.START_JOURNEY, _tech(busy="REQ-1", who=TECH)), assigned, me, NOW)
    assert isinstance(busy, Refusal) and busy.message == "Finish REQ-1 first"
    move = decide(Attempt(Action.START_JOURNEY, _tech(who=TECH)), assigned, me, NOW)
    assert isinstance(move, Move)
    assert move.changes == {"journeystartedat": NOW}
    assert move.technician is not None and move.technician.to is AvailabilityStatus.EN_ROUTE
    assert move.with_changes(tripid="t-1").changes == {"journeystartedat": NOW, "tripid": "t-1"}


def test_arrival_is_recorded_once_and_work_keeps_the_arrival_time() -> None:
    en_route = _request(RequestStatus.EN_ROUTE, "fixgate")
    first = decide(Attempt(Action.ARRIVE), en_route, None, NOW)
    assert isinstance(first, Move) and first.changes == {"arrivedat": NOW}
    arrived = _request(RequestStatus.EN_ROUTE, "fixgate", arrived_at=NOW)
    again = decide(Attempt(Action.ARRIVE), arrived, None, NOW + timedelta(seconds=1))
    assert isinstance(again, Refusal) and not again.audited
    later = NOW + timedelta(minutes=2)
    work = decide(Attempt(Action.START_WORK), arrived, WHO["its technician"], later)
    assert isinstance(work, Move) and work.changes == {"startedat": later, "arrivedat": NOW}
    unarrived = decide(Attempt(Action.START_WORK), en_route, WHO["its technician"], later)
    assert isinstance(unarrived, Move) and unarrived.changes["arrivedat"] == later


def test_complete_records_mileage_evidence_and_price() -> None:
    working = _request(RequestStatus.IN_PROGRESS, "its technician")
    attempt = Attempt(Action.COMPLETE, mileage=12.5, evidences=("photo",), price=99.98)
    move = decide(attempt, working, WHO["its technician"], NOW)
    assert isinstance(move, Move)
    assert move.changes == {"completedat": NOW, "mileage": 12.5, "evidences": ["photo"],
                            "subtotal": 99.98, "queueposition": None}  # fmt: skip
    assert move.audit.detail == "price 99.98"
    assert move.technician is not None and move.technician.to is AvailabilityStatus.AVAILABLE


def test_feedback_once() -> None:
    customer = WHO["its customer"]
    done = _request(RequestStatus.COMPLETED, "its customer")
    move = decide(Attempt(Action.FEEDBACK, rating=4, feedback="quick"), done, customer, NOW)
    assert isinstance(move, Move)
    assert move.changes == {"rating": 4, "feedback": "quick", "feedbackat": NOW}
    rated = _request(RequestStatus.COMPLETED, "its customer", rated=True)
    again = decide(Attempt(Action.FEEDBACK, rating=5), rated, customer, NOW)
    assert isinstance(again, Refusal) and again.message == "Feedback was already given"


def test_escalation_only_goes_up() -> None:
    high = _request(RequestStatus.RINGING, "admin", priority=2)
    down = decide(Attempt(Action.ESCALATE, priority=1), high, WHO["admin"], NOW)
    assert isinstance(down, Refusal)
    assert down.message == "Can only escalate to a higher priority (it is High)"
    up = decide(Attempt(Action.ESCALATE, priority=3, reason="on a motorway"), high, WHO["admin"], NOW)  # fmt: skip
    assert isinstance(up, Move) and up.changes == {"priority": 3}
    assert up.audit.detail == "priority High -> Critical: on a motorway"


def test_an_sla_violation_raises_the_priority_once_and_not_after_arrival() -> None:
    high = _request(RequestStatus.RINGING, "fixgate", priority=2)
    move = decide(Attempt(Action.SLA_VIOLATION, target_minutes=15), high, None, NOW)
    assert isinstance(move, Move) and move.changes == {"slaviolatedat": NOW, "priority": 3}
    assert move.announces == (Event.SLA_VIOLATED, Event.ESCALATED)
    assert move.audit.detail == "nobody there 15 min after the request; priority High -> Critical"
    # Critical stays Critical: violated, not escalated.
    critical = _request(RequestStatus.RINGING, "fixgate", priority=3)
    kept = decide(Attempt(Action.SLA_VIOLATION, target_minutes=15), critical, None, NOW)
    assert isinstance(kept, Move) and kept.changes == {"slaviolatedat": NOW}
    assert kept.announces == (Event.SLA_VIOLATED,)
    for done in (
        _request(RequestStatus.RINGING, "fixgate", sla_violated=True),
        _request(RequestStatus.EN_ROUTE, "fixgate", arrived_at=NOW),
    ):
        assert isinstance(decide(Attempt(Action.SLA_VIOLATION), done, None, NOW), Refusal)


def test_the_ring_starts_a_scheduled_request_and_times_out_to_pending() -> None:
    pending = _request(RequestStatus.PENDING, "fixgate")
    start = decide(Attempt(Action.RING), pending, None, NOW)
    assert isinstance(start, Move) and start.new is RequestStatus.RINGING
    assert start.changes == {"ringstarttime": NOW}
    ringing = _request(RequestStatus.RINGING, "fixgate")
    phase = decide(Attempt(Action.RING), ringing, None, NOW)
    assert isinstance(phase, Move) and phase.changes == {}
    timeout = decide(Attempt(Action.RING_TIMEOUT), ringing, None, NOW)
    assert isinstance(timeout, Move) and timeout.new is RequestStatus.PENDING
    assert timeout.changes == {"ringendtime": NOW}


def test_unassign_clears_the_journey() -> None:
    en_route = _request(RequestStatus.EN_ROUTE, "admin", arrived_at=NOW)
    move = decide(Attempt(Action.UNASSIGN), en_route, WHO["dispatcher"], NOW)
    assert isinstance(move, Move) and move.new is RequestStatus.PENDING
    for column in (
        "currenttechnicianid",
        "queueposition",
        "tripid",
        "journeystartedat",
        "arrivedat",
    ):
        assert move.changes[column] is None, column
    assert move.technician is not None and move.technician_id == TECH


def test_the_readable_table_has_a_row_per_action() -> None:
    rows = table_rows()
    assert [r[0] for r in rows] == [a.value for a in TABLE]
    accept = next(r for r in rows if r[0] == "accept")
    assert accept[1:4] == (
        "Pending, Ringing",
        "Assigned",
        "a technician it rings (or any, once Pending)",
    )
