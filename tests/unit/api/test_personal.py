"""Personal data by need (api/personal.py), as a table: what each principal sees of a
request in each state, when the technician's position is theirs, and what the redaction
leaves of a payload."""

from __future__ import annotations

import uuid

import pytest

from api.machine import RequestStatus
from api.personal import Sight, may_track, redact, sight
from api.principal import Principal, Role

TECH, OTHER, CUSTOMER, STRANGER = (uuid.UUID(int=n) for n in (1, 2, 11, 12))
WHO = {
    "staff": Principal("admin-1", "acme", Role.DISPATCHER),
    "its technician": Principal(str(TECH), "acme", Role.TECHNICIAN),
    "another technician": Principal(str(OTHER), "acme", Role.TECHNICIAN),
    "its customer": Principal(str(CUSTOMER), "acme", Role.CUSTOMER),
    "another customer": Principal(str(STRANGER), "acme", Role.CUSTOMER),
}
W, C, D, N = Sight.WHOLE, Sight.CUSTOMER, Sight.DECIDING, Sight.NONE

# fmt: off
SIGHTS = [
    # state          ringing  staff its-tech other-tech its-cust other-cust
    ("Pending",      False,   (W,   D,       D,         C,       N)),
    ("Ringing",      True,    (W,   D,       D,         C,       N)),
    ("Ringing",      False,   (W,   N,       N,         C,       N)),
    ("Assigned",     False,   (W,   W,       N,         C,       N)),
    ("EnRoute",      False,   (W,   W,       N,         C,       N)),
    ("InProgress",   False,   (W,   W,       N,         C,       N)),
    ("Completed",    False,   (W,   N,       N,         C,       N)),
    ("Canceled",     False,   (W,   N,       N,         C,       N)),
]
TRACKING = [
    # state          arrived  staff its-tech other-tech its-cust other-cust
    ("Ringing",      False,   (True, False,  False,     False,   False)),
    ("Assigned",     False,   (True, True,   False,     False,   False)),
    ("EnRoute",      False,   (True, True,   False,     True,    False)),
    ("EnRoute",      True,    (True, True,   False,     False,   False)),
    ("InProgress",   True,    (True, True,   False,     False,   False)),
    ("Completed",    True,    (True, False,  False,     False,   False)),
]
# fmt: on


@pytest.mark.parametrize(("state", "ringing", "expected"), SIGHTS)
def test_what_each_principal_sees(state: str, ringing: bool, expected: tuple[Sight, ...]) -> None:
    status = RequestStatus(state)
    technician = None if state in ("Pending", "Ringing") else TECH
    for (who, principal), want in zip(WHO.items(), expected, strict=True):
        ringing_them = ringing and principal.role is Role.TECHNICIAN
        got = sight(principal, status=status, technician=technician, customer=CUSTOMER,
                    ringing_them=ringing_them)  # fmt: skip
        assert got is want, (state, who)


@pytest.mark.parametrize(("state", "arrived", "expected"), TRACKING)
def test_who_follows_the_technician(state: str, arrived: bool, expected: tuple[bool, ...]) -> None:
    status = RequestStatus(state)
    technician = None if state == "Ringing" else TECH
    for (who, principal), want in zip(WHO.items(), expected, strict=True):
        got = may_track(principal, status=status, technician=technician, customer=CUSTOMER,
                        arrived=arrived)  # fmt: skip
        assert got is want, (state, arrived, who)


PAYLOAD = {
    "serviceRequestInfo": {"requestId": "r", "customerId": str(CUSTOMER)},
    "customerInfo": {"customerId": str(CUSTOMER), "userId": "u1", "firstName": "Jo",
                     "lastName": "Doe", "email": "j@x.org", "phoneNumber": "+1", "customerCode": "C1"},
    "vehicle": {"vin": "WBA123", "make": "BMW", "model": "320"},
    "technicianInfo": {"technicianId": str(TECH), "deviceId": "van-1", "userId": "u2",
                       "firstName": "Mike"},
    "technicianLocation": {"latitude": 1.0, "longitude": 2.0},
    "etaInSec": 300,
    "rating": 5,
}  # fmt: skip


def test_a_deciding_technician_gets_where_and_what_but_nobodys_personal_data() -> None:
    seen = redact(PAYLOAD, Sight.DECIDING, tracking=False)
    assert seen["customerInfo"] == {
        "customerId": str(CUSTOMER), "userId": None, "firstName": None, "lastName": None,
        "email": None, "phoneNumber": None, "customerCode": "C1",
    }  # fmt: skip
    assert seen["vehicle"] == {"vin": None, "make": "BMW", "model": "320"}
    assert seen["technicianLocation"] is None and seen["etaInSec"] is None
    assert seen["rating"] is None
    assert PAYLOAD["customerInfo"]["firstName"] == "Jo"  # a new value: the event is shared


def test_a_customer_gets_no_fleet_ids_and_the_position_only_when_tracking() -> None:
    on_the_way = redact(PAYLOAD, Sight.CUSTOMER, tracking=True)
    assert on_the_way["technicianInfo"]["deviceId"] is None
    assert on_the_way["technicianInfo"]["userId"] is None
    assert on_the_way["customerInfo"]["userId"] is None
    assert on_the_way["customerInfo"]["firstName"] == "Jo"
    assert on_the_way["technicianLocation"] == {"latitude": 1.0, "longitude": 2.0}
    assert redact(PAYLOAD, Sight.CUSTOMER, tracking=False)["technicianLocation"] is None
    assert redact(PAYLOAD, Sight.WHOLE) == PAYLOAD
