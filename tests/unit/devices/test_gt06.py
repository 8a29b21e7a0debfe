"""GT06: every corpus packet, one-line captures, framing and session rules, fuzzing."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from devices.alarms import Alarm
from devices.events import CloseConnection, CloseReason, DecodeError, DeviceLogin, Ignored
from devices.events import DecodeErrorReason as R
from devices.fix import Fix, Protocol
from devices.gt06 import Gt06Packet, Gt06Session, SessionState, response
from devices.gt06.decoder import CellTower, Location, decode_frame
from devices.gt06.framer import Gt06Frame, Gt06Framer, build_frame
from devices.units import kmh_to_mps
from tests.support.vectors import NOW, chunked, drive, fixes_of, load_corpus, run_vector

CORPUS = load_corpus("gt06/gt06-packets.json")
by_id = {p["id"]: p for p in CORPUS}
DEVICE, TENANT = "van-3", "acme"
DOC_LOGIN = bytes.fromhex("78780D01012345678901234500018CDD0D0A")
DOC_IMEI = "123456789012345"
HEARTBEAT = build_frame(0x13, bytes.fromhex("4004040002"), 0x0099)
"""A well-formed heartbeat: the trailing bytes of every vector (they must not change it)."""


def packet_bytes(packet_id: str) -> bytes:
    return bytes.fromhex(by_id[packet_id]["hex"])


def logged_in(login: bytes = DOC_LOGIN, **bounds: Any) -> Gt06Session:
    session = Gt06Session(**bounds)
    (event,) = session.feed(login, NOW)
    assert isinstance(event, DeviceLogin)
    assert session.accept(DEVICE, TENANT).startswith(b"\x78\x78\x05\x01")
    return session


def events_of(packet_id: str) -> list[object]:
    return drive(logged_in(), [packet_bytes(packet_id)])


def one_packet(packet_id: str) -> Gt06Packet:
    (event,) = events_of(packet_id)
    assert isinstance(event, Gt06Packet), event
    return event


def fix_of(packet_id: str) -> Fix:
    (fix,) = one_packet(packet_id).fixes
    return fix


def first_frame(data: bytes) -> Gt06Frame:
    framer = Gt06Framer()
    framer.feed(data)
    frame = framer.next_frame()
    assert isinstance(frame, Gt06Frame), frame
    return frame


def is_login(packet: dict[str, Any]) -> bool:
    return bool(packet["frame"]["protocol"] == "0x01")


# -- the corpus: every packet -------------------------------------------------------------------


def test_corpus_is_all_here() -> None:
    assert len(CORPUS) == 184


@pytest.mark.parametrize("packet", CORPUS, ids=[p["id"] for p in CORPUS])
def test_corpus_packet(packet: dict[str, Any]) -> None:
    data = bytes.fromhex(packet["hex"])
    events = run_vector(Gt06Session if is_login(packet) else logged_in, data, trailing=HEARTBEAT)
    assert events
    assert all(isinstance(e, DeviceLogin | Gt06Packet | Ignored | DecodeError) for e in events)


LENGTH_NOT_OK = [p for p in CORPUS if not p["frame"]["length_ok"]]
CRC_NOT_OK = [p for p in CORPUS if p["frame"]["length_ok"] and not p["frame"].get("crc_ok", True)]


def test_the_corpus_holds_the_broken_frames_these_tests_need() -> None:
    assert (len(LENGTH_NOT_OK), len(CRC_NOT_OK)) == (16, 12)


@pytest.mark.parametrize("packet", LENGTH_NOT_OK, ids=[p["id"] for p in LENGTH_NOT_OK])
def test_frame_length_not_ok_gives_decode_errors_and_no_fix(packet: dict[str, Any]) -> None:
    events = drive(logged_in(), [bytes.fromhex(packet["hex"])])
    assert (fixes_of(events), isinstance(events[0], DecodeError)) == ([], True)


@pytest.mark.parametrize("packet", CRC_NOT_OK, ids=[p["id"] for p in CRC_NOT_OK])
def test_frame_crc_not_ok_gives_a_decode_error_and_no_fix(packet: dict[str, Any]) -> None:
    events = drive(logged_in(), [bytes.fromhex(packet["hex"])])
    # 0x787801080D0A is CRC-less and too short for one: an impossible length first.
    assert [getattr(e, "reason", None) for e in events] in ([R.BAD_CHECKSUM], [R.IMPOSSIBLE_LENGTH])


# -- expectations -------------------------------------------------------------------------------


def test_doc_login_is_the_imei_and_its_documented_reply() -> None:
    expect = by_id["gt06-doc-login"]["expect"]
    session = Gt06Session()
    assert session.feed(DOC_LOGIN, NOW) == [DeviceLogin(expect["imei"])]
    assert session.accept(DEVICE, TENANT).hex().upper() == expect["server_response_hex"]


def test_doc_location_matches_its_expectation() -> None:
    expect = by_id["gt06-doc-location"]["expect"]
    data = packet_bytes("gt06-doc-location")
    location = decode_frame(first_frame(data))
    assert isinstance(location, Location)
    assert (
        location.time.isoformat().replace("+00:00", "Z"), location.satellites,
        round(location.lat, 7), round(location.lon, 7), location.speed_kmh,
        location.course_deg, location.positioned, location.cell,
    ) == (
        expect["time"], expect["satellites"], expect["lat"], expect["lon"], expect["speed_kmh"],
        expect["course_deg"], expect["gps_positioned"],
        CellTower(expect["mcc"], expect["mnc"], expect["lac"], expect["cell_id"]),
    )  # fmt: skip
    assert (first_frame(data).serial, one_packet("gt06-doc-location").reply) == (
        expect["serial"],
        b"",
    )


def test_traccar_asserted_location_matches_its_expectation() -> None:
    expect = by_id["traccar-gt06-144"]["expect"]
    f = fix_of("traccar-gt06-144")
    assert (f.time.isoformat(), round(f.lat, 7), round(f.lon, 7), f.speed, f.heading) == (
        expect["time"].replace("Z", "+00:00"), expect["lat"], expect["lon"],
        kmh_to_mps(expect["speed_kmh"]), float(expect["course_deg"]),
    )  # fmt: skip
    assert (f.satellites, f.valid) == (expect["satellites"], expect["gps_positioned"])


# -- one-line captures (Traccar style) -----------------------------------------------------------


def test_location_fix_is_sane_and_identified() -> None:
    f = fix_of("gt06-doc-location")
    assert (f.device_id, f.tenant_id, f.protocol, f.valid) == (DEVICE, TENANT, Protocol.GT06, True)


def test_south_west_hemisphere() -> None:
    f = fix_of("traccar-gt06-150")
    assert (round(f.lat, 5), round(f.lon, 5)) == (-34.30438, -58.97528)


def test_traccars_copy_of_the_doc_example_has_a_bad_crc() -> None:
    assert [getattr(e, "reason", None) for e in events_of("traccar-gt06-146")] == [R.BAD_CHECKSUM]


def test_not_positioned_is_not_valid() -> None:
    assert fix_of("traccar-gt06-029").valid is False


def test_heartbeat_has_no_fix_but_its_reply() -> None:
    packet = one_packet("traccar-gt06-033")
    assert (packet.fixes, packet.reply) == ((), response(0x13, packet.serial))


def test_heartbeat_status_carries_ignition() -> None:
    status = one_packet("traccar-gt06-170").status  # terminal info 0x56: bit 1, ACC on
    assert status is not None and status.ignition is True


def test_alarm_packet_is_answered_with_its_own_protocol_number() -> None:
    packet = one_packet("traccar-gt06-136")
    assert packet.reply == build_frame(0x16, b"", packet.serial)


def test_alarm_power_cut() -> None:
    assert fix_of("traccar-gt06-136").alarm == Alarm.POWER_CUT


def test_alarm_overspeed() -> None:
    assert fix_of("traccar-gt06-159").alarm == Alarm.OVERSPEED


def test_alarm_vibration() -> None:
    assert fix_of("traccar-gt06-143").alarm == Alarm.VIBRATION


def test_newer_alarm_0x26_is_answered() -> None:
    packet = one_packet("traccar-gt06-065")
    assert packet.reply == response(0x26, packet.serial)


def test_location_0x22_takes_ignition_from_its_acc_byte() -> None:
    assert fix_of("traccar-gt06-027").ignition is True


def test_location_0x12_needs_no_reply() -> None:
    assert one_packet("traccar-gt06-144").reply == b""


def test_4g_location_0xa0_decodes() -> None:
    f = fix_of("traccar-gt06-181")
    assert (round(f.lat, 5), round(f.lon, 5), f.valid) == (23.11177, 114.40935, True)


def test_lbs_only_messages_are_ignored_not_errors() -> None:
    assert events_of("traccar-gt06-049") == [Ignored(kind="lbs_wifi")]


def test_information_0x94_is_ignored() -> None:
    assert events_of("traccar-gt06-007") == [Ignored(kind="information")]


def test_unknown_protocol_is_an_unsupported_message() -> None:
    assert events_of("traccar-gt06-005") == [
        DecodeError(R.UNSUPPORTED_MESSAGE, "7878 protocol 0x61")
    ]


def test_0d0a_inside_a_payload_does_not_split_the_frame() -> None:
    # 7979 0x9B: its content holds 0D0A; one frame, not two halves.
    assert events_of("traccar-gt06-031") == [
        DecodeError(R.UNSUPPORTED_MESSAGE, "7979 protocol 0x9B")
    ]


def test_several_frames_in_one_read() -> None:
    events = events_of("traccar-gt06-152")
    assert [getattr(e, "reason", None) for e in events] == [R.UNSUPPORTED_MESSAGE] * 3


def test_speed_is_converted_from_kmh() -> None:
    f = fix_of("traccar-gt06-035")
    assert f.speed == kmh_to_mps(first_frame(packet_bytes("traccar-gt06-035")).content[15])


def test_login_time_zone_is_taken_off_later_dates() -> None:
    session = logged_in(packet_bytes("traccar-gt06-155"))  # declares UTC-4:00
    (packet,) = session.feed(packet_bytes("gt06-doc-location"), NOW)
    assert isinstance(packet, Gt06Packet)
    assert (session.utc_offset_s, packet.fixes[0].time) == (
        -4 * 3600, datetime(2011, 8, 29, 17, 46, 16, tzinfo=UTC) + timedelta(hours=4)
    )  # fmt: skip


def test_login_without_time_zone_means_utc() -> None:
    assert logged_in().utc_offset_s == 0


# -- framing ------------------------------------------------------------------------------------


def test_garbage_before_a_frame_is_one_error_then_the_frame() -> None:
    events = logged_in().feed(b"\x00garbage\x78\x01" + packet_bytes("gt06-doc-location"), NOW)
    assert [type(e) for e in events] == [DecodeError, Gt06Packet]


def test_garbage_byte_by_byte_is_still_one_error() -> None:
    data = b"junk" * 20 + packet_bytes("gt06-doc-location")
    events = drive(logged_in(), [data[i : i + 1] for i in range(len(data))])
    assert [type(e) for e in events] == [DecodeError, Gt06Packet]


def test_a_wrong_length_resynchronises_on_the_next_frame() -> None:
    broken = bytearray(packet_bytes("gt06-doc-location"))
    broken[2] = 0x10  # shorter than the frame: no 0D0A where the length says
    events = logged_in().feed(bytes(broken) + packet_bytes("traccar-gt06-144"), NOW)
    assert [type(e) for e in events] == [DecodeError, Gt06Packet]


def test_eof_inside_a_frame_is_truncated() -> None:
    session = logged_in()
    session.feed(packet_bytes("gt06-doc-location")[:-3], NOW)
    assert [getattr(e, "reason", None) for e in session.close(NOW)] == [R.TRUNCATED]


def test_build_frame_round_trips_through_the_framer() -> None:
    frame = first_frame(build_frame(0x94, b"\x0d\x0a\x78\x78", 7, extended=True))
    assert frame == Gt06Frame(extended=True, protocol=0x94, content=b"\x0d\x0a\x78\x78", serial=7)


# -- the session ---------------------------------------------------------------------------------


def test_messages_before_the_login_are_not_logged_in() -> None:
    events = Gt06Session().feed(packet_bytes("gt06-doc-location"), NOW)
    assert [getattr(e, "reason", None) for e in events] == [R.NOT_LOGGED_IN]


def test_reject_sends_nothing_and_closes() -> None:
    session = Gt06Session()
    session.feed(DOC_LOGIN, NOW)
    assert (session.reject(), session.state, session.feed(HEARTBEAT, NOW)) == (
        b"", SessionState.CLOSED, []
    )  # fmt: skip


def test_frames_sent_before_the_answer_are_decoded_after_accept() -> None:
    session = Gt06Session()
    assert session.feed(DOC_LOGIN + packet_bytes("gt06-doc-location"), NOW) == [
        DeviceLogin(DOC_IMEI)
    ]
    session.accept(DEVICE, TENANT)
    assert [type(e) for e in session.feed(b"", NOW)] == [Gt06Packet]


def test_a_repeated_login_is_answered_again() -> None:
    (packet,) = logged_in().feed(DOC_LOGIN, NOW)
    assert isinstance(packet, Gt06Packet) and packet.reply == response(0x01, 1)


def test_a_login_as_another_imei_closes() -> None:
    events = logged_in().feed(packet_bytes("traccar-gt06-141"), NOW)
    assert [getattr(e, "reason", None) for e in events] == [R.BAD_LOGIN, CloseReason.PROTOCOL_ERROR]


def test_too_many_errors_in_a_row_close() -> None:
    bad = packet_bytes("traccar-gt06-005")  # an intact frame of an unknown protocol
    events = logged_in(max_errors=3).feed(bad * 5, NOW)
    assert [getattr(e, "reason", None) for e in events][-1] is CloseReason.TOO_MANY_ERRORS


def test_accept_in_the_wrong_state_is_a_caller_error() -> None:
    with pytest.raises(RuntimeError, match="accept"):
        Gt06Session().accept(DEVICE, TENANT)


# -- fuzzing: arbitrary bytes give events, never exceptions, whatever the reads ------------------

EVENT_TYPES = (DeviceLogin, Gt06Packet, Ignored, DecodeError, CloseConnection)
_markers = st.sampled_from([b"\x78\x78", b"\x79\x79", b"\x0d\x0a", b"\x00", b"\xff"])
gt06ish = st.lists(st.one_of(st.binary(max_size=40), _markers), max_size=30).map(b"".join)


@settings(max_examples=300)
@given(st.binary(max_size=600), st.lists(st.integers(0, 600), max_size=8))
def test_arbitrary_bytes_before_login_give_events(data: bytes, cuts: list[int]) -> None:
    events = drive(Gt06Session(), chunked(data, cuts))
    assert all(isinstance(e, EVENT_TYPES) for e in events)


@settings(max_examples=300)
@given(gt06ish, st.lists(st.integers(0, 600), max_size=8))
def test_marker_heavy_bytes_give_the_same_events_however_they_are_read(
    data: bytes, cuts: list[int]
) -> None:
    whole = drive(logged_in(), [data])
    assert drive(logged_in(), chunked(data, cuts)) == whole
    assert all(isinstance(e, EVENT_TYPES) for e in whole)


@settings(max_examples=300)
@given(st.integers(0, 255), st.binary(max_size=80), st.integers(0, 0xFFFF), st.booleans())
def test_any_well_framed_message_gives_events(
    protocol: int, content: bytes, serial: int, extended: bool
) -> None:
    data = build_frame(protocol, content, serial, extended=extended)
    events = drive(logged_in(), [data])
    assert all(isinstance(e, EVENT_TYPES) for e in events)
    for fix in fixes_of(events):
        assert -90 <= fix.lat <= 90 and -180 <= fix.lon <= 180
