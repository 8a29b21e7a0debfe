"""Teltonika over TCP and UDP: every corpus packet, one-line captures, session rules, fuzzing."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from devices.alarms import Alarm
from devices.events import CloseConnection, CloseReason, DecodeError, DeviceLogin, Ignored
from devices.events import DecodeErrorReason as R
from devices.fix import Fix, Protocol
from devices.teltonika import AvlPacket, SessionState, TeltonikaSession, UdpAvlPacket, decode_udp
from devices.teltonika.avl import SUPPORTED_CODECS, AvlRecord
from devices.teltonika.framer import MAX_AVL_DATA_BYTES
from devices.units import kmh_to_mps
from tests.support.sanity import assert_sane_fix
from tests.support.vectors import NOW, chunked, drive, fixes_of, load_corpus, run_vector

CORPUS = load_corpus("teltonika/teltonika-packets.json")
TCP = [p for p in CORPUS if p["transport"] == "tcp"]
UDP = [p for p in CORPUS if p["transport"] == "udp"]
IMEI = "356307042441013"
LOGIN = bytes.fromhex("000F333536333037303432343431303133")
DEVICE, TENANT = "truck-7", "acme"
KEEPALIVE = b"\xff"
RECEIVED_AT = datetime.fromtimestamp(NOW, UTC)

by_id = {p["id"]: p for p in CORPUS}


def packet_bytes(packet_id: str) -> bytes:
    return bytes.fromhex(by_id[packet_id]["hex"])


def logged_in(**bounds: Any) -> TeltonikaSession:
    session = TeltonikaSession(**bounds)
    assert session.feed(LOGIN, NOW) == [DeviceLogin(IMEI)]
    assert session.accept(DEVICE, TENANT) == b"\x01"
    return session


def one_packet(packet_id: str) -> AvlPacket:
    events = drive(logged_in(), [packet_bytes(packet_id)])
    (packet,) = events
    assert isinstance(packet, AvlPacket), events
    return packet


def fix_of(packet_id: str, index: int = 0) -> Fix:
    return one_packet(packet_id).fixes[index]


def record_as_corpus(record: AvlRecord) -> dict[str, Any]:
    """A record in the corpus's `expect` notation (IO keys as strings, NX as hex)."""
    out: dict[str, Any] = {
        "time": datetime.fromtimestamp(record.timestamp_ms / 1000, UTC)
        .isoformat(timespec="milliseconds")
        .replace("+00:00", "Z"),
        "timestamp_ms": record.timestamp_ms,
        "priority": record.priority,
        "lat": record.lat,
        "lon": record.lon,
        "altitude_m": record.altitude_m,
        "angle_deg": record.angle_deg,
        "satellites": record.satellites,
        "speed_kmh": record.speed_kmh,
        "event_io_id": record.event_io_id,
        "io": {
            str(k): v.hex().upper() if isinstance(v, bytes) else v for k, v in record.io.items()
        },
    }
    if record.generation_type is not None:
        out["generation_type"] = record.generation_type
    return out


# -- the corpus: every TCP packet ---------------------------------------------------------------


def test_corpus_is_all_here() -> None:
    assert (len(CORPUS), len(TCP), len(UDP)) == (61, 57, 4)


@pytest.mark.parametrize("packet", TCP, ids=[p["id"] for p in TCP])
def test_corpus_tcp_packet(packet: dict[str, Any]) -> None:
    frame, data = packet["frame"], bytes.fromhex(packet["hex"])
    kind = frame["kind"]
    if kind == "imei_login":
        session = TeltonikaSession()
        events = run_vector(TeltonikaSession, data, trailing=KEEPALIVE)
        assert events == [DeviceLogin(packet["expect"]["imei"])]
        session.feed(data, NOW)
        assert session.accept(DEVICE, TENANT).hex() == packet["expect"]["server_reply_hex"]
        return
    events = run_vector(logged_in, data, trailing=KEEPALIVE)
    if kind == "ping_byte":
        assert events == [Ignored(kind="keepalive")]
        return
    packets = [e for e in events if isinstance(e, AvlPacket)]
    errors = [e for e in events if isinstance(e, DecodeError)]
    intact = frame["length_ok"] and frame["crc16_ok"]
    decodable = intact and int(frame["codec"], 16) in SUPPORTED_CODECS
    if decodable and frame["parses_with_published_layout"]:
        (avl,) = packets
        declared = frame["records_declared"]
        assert (errors, len(avl.records), len(avl.fixes)) == ([], declared, declared)
        assert avl.reply == frame["records_declared"].to_bytes(4, "big")
        assert avl.codec == int(frame["codec"], 16)
    else:
        assert (packets, len(errors)) == ([], 1)


@pytest.mark.parametrize(
    "packet",
    [p for p in TCP if p["expect"] and p["expect"]["type"] == "avl"],
    ids=lambda p: p["id"],
)
def test_corpus_tcp_expectation(packet: dict[str, Any]) -> None:
    avl = one_packet(packet["id"])
    expect = packet["expect"]
    assert [record_as_corpus(r) for r in avl.records] == expect["records"]
    assert (avl.reply.hex(), f"0x{avl.codec:02X}") == (expect["server_ack_hex"], expect["codec"])


BROKEN_LENGTH = [p for p in TCP if p["frame"].get("length_ok") is False]
BROKEN_CRC = [
    p for p in TCP if p["frame"].get("length_ok") and not p["frame"].get("crc16_ok", True)
]


@pytest.mark.parametrize("packet", BROKEN_LENGTH, ids=[p["id"] for p in BROKEN_LENGTH])
def test_frame_length_not_ok_is_an_impossible_length_or_a_truncated_frame(
    packet: dict[str, Any],
) -> None:
    events = drive(logged_in(), [bytes.fromhex(packet["hex"])])
    errors = [e.reason for e in events if isinstance(e, DecodeError)]
    assert (fixes_of(events), errors[:1]) in (([], [R.IMPOSSIBLE_LENGTH]), ([], [R.TRUNCATED]))


@pytest.mark.parametrize("packet", BROKEN_CRC, ids=[p["id"] for p in BROKEN_CRC])
def test_frame_crc_not_ok_is_a_bad_checksum(packet: dict[str, Any]) -> None:
    events = drive(logged_in(), [bytes.fromhex(packet["hex"])])
    assert [getattr(e, "reason", None) for e in events] == [R.BAD_CHECKSUM]


def test_the_corpus_holds_the_broken_frames_these_tests_need() -> None:
    assert (len(BROKEN_LENGTH), len(BROKEN_CRC)) == (4, 5)


# -- one-line captures (Traccar style) -----------------------------------------------------------


def test_legacy_four_records_keep_their_own_times_out_of_order() -> None:
    times = [f.time.isoformat() for f in one_packet("teltonika-legacy-codec8-4records").fixes]
    assert times == [
        "2007-07-25T06:46:38.335000+00:00",
        "2007-07-25T06:36:37.003000+00:00",
        "2007-07-25T06:55:05.029000+00:00",
        "2007-07-25T06:53:07.035000+00:00",
    ]


def test_legacy_first_record_is_a_valid_fix_in_lithuania() -> None:
    f = fix_of("teltonika-legacy-codec8-4records")
    assert (f.lat, f.lon, f.altitude, f.heading, f.satellites, f.valid) == (
        54.7146368, 25.3032016, 111.0, 214.0, 4, True
    )  # fmt: skip


def test_speed_is_converted_from_kmh() -> None:
    assert fix_of("teltonika-legacy-codec8-4records").speed == kmh_to_mps(4)


def test_zero_zero_without_satellites_is_not_a_valid_fix() -> None:
    assert fix_of("teltonika-wiki-codec8-ex1").valid is False


def test_fix_carries_identity_protocol_and_receive_time() -> None:
    f = fix_of("teltonika-wiki-codec8-ex1")
    assert (f.device_id, f.tenant_id, f.protocol, f.received_at) == (
        DEVICE, TENANT, Protocol.TELTONIKA, RECEIVED_AT
    )  # fmt: skip


def test_io_66_is_external_voltage_in_volts() -> None:
    assert fix_of("teltonika-wiki-codec8-ex1").power_v == 24.079


def test_io_16_is_the_odometer_in_metres() -> None:
    assert fix_of("teltonika-wiki-codec8e-ex1").odometer_m == 22_949_000.0


def test_io_239_is_ignition() -> None:
    assert (fix_of("traccar-teltonika-tcp-02").ignition, fix_of("traccar-teltonika-tcp-10").ignition) == (
        True, False
    )  # fmt: skip


def test_no_io_239_is_ignition_unknown() -> None:
    assert fix_of("teltonika-wiki-codec8-ex1").ignition is None


def test_crash_event_is_an_alarm() -> None:
    assert fix_of("traccar-teltonika-tcp-08").alarm == Alarm.CRASH


def test_alarm_event_236_is_a_general_alarm() -> None:
    assert fix_of("traccar-teltonika-tcp-12").alarm == Alarm.GENERAL


def test_an_event_without_alarm_meaning_is_no_alarm() -> None:
    assert fix_of("teltonika-wiki-codec16-ex1").alarm is None


def test_io_113_is_the_battery_level() -> None:
    assert fix_of("traccar-teltonika-tcp-08").battery == 87


def test_codec16_records_carry_their_generation_type() -> None:
    assert [r.generation_type for r in one_packet("teltonika-wiki-codec16-ex1").records] == [5, 5]


def test_codec8e_variable_length_io_is_bytes() -> None:
    records = one_packet("traccar-teltonika-tcp-08").records
    assert any(isinstance(v, bytes) for r in records for v in r.io.values())


def test_fourteen_records_are_acknowledged_as_fourteen() -> None:
    assert one_packet("traccar-teltonika-tcp-27").reply == b"\x00\x00\x00\x0e"


def test_command_frame_codec12_is_unsupported() -> None:
    (error,) = drive(logged_in(), [packet_bytes("traccar-teltonika-tcp-17")])
    assert error == DecodeError(R.UNSUPPORTED_CODEC, "codec 0x0C")


def test_codec7_is_unsupported() -> None:
    (error,) = drive(logged_in(), [packet_bytes("traccar-teltonika-tcp-32")])
    assert error == DecodeError(R.UNSUPPORTED_CODEC, "codec 0x07")


def test_non_published_layout_is_refused_not_misread() -> None:
    (error,) = drive(logged_in(), [packet_bytes("traccar-teltonika-tcp-46")])
    assert isinstance(error, DecodeError) and error.reason is R.OUT_OF_RANGE


# -- the session ---------------------------------------------------------------------------------


def test_reject_answers_00_and_closes() -> None:
    session = TeltonikaSession()
    session.feed(LOGIN, NOW)
    assert (session.reject(), session.state, session.feed(LOGIN, NOW)) == (
        b"\x00", SessionState.CLOSED, []
    )  # fmt: skip


def test_accept_before_login_is_a_caller_error() -> None:
    with pytest.raises(RuntimeError, match="accept"):
        TeltonikaSession().accept(DEVICE, TENANT)


def test_avl_data_before_login_closes() -> None:
    events = TeltonikaSession().feed(packet_bytes("teltonika-wiki-codec8-ex1"), NOW)
    assert [getattr(e, "reason", None) for e in events] == [
        R.NOT_LOGGED_IN, CloseReason.PROTOCOL_ERROR
    ]  # fmt: skip


def test_non_digit_imei_closes() -> None:
    events = TeltonikaSession().feed(b"\x00\x03ab1", NOW)
    assert [getattr(e, "reason", None) for e in events] == [R.BAD_LOGIN, CloseReason.PROTOCOL_ERROR]


def test_bytes_sent_before_the_answer_are_decoded_after_accept() -> None:
    session = TeltonikaSession()
    assert session.feed(LOGIN + packet_bytes("teltonika-wiki-codec8-ex1"), NOW) == [
        DeviceLogin(IMEI)
    ]
    session.accept(DEVICE, TENANT)
    assert [type(e) for e in session.feed(b"", NOW)] == [AvlPacket]


def test_several_frames_in_one_read_are_several_packets() -> None:
    data = (
        packet_bytes("teltonika-wiki-codec8-ex1")
        + KEEPALIVE
        + packet_bytes("teltonika-wiki-codec8-ex3")
    )
    events = logged_in().feed(data, NOW)
    assert [getattr(e, "reply", e) for e in events] == [
        b"\x00\x00\x00\x01", Ignored(kind="keepalive"), b"\x00\x00\x00\x02"
    ]  # fmt: skip


def test_bad_crc_skips_the_frame_and_goes_on() -> None:
    data = packet_bytes("traccar-teltonika-tcp-23") + packet_bytes("teltonika-wiki-codec8-ex1")
    events = logged_in().feed(data, NOW)
    assert [type(e) for e in events] == [DecodeError, AvlPacket]


def test_wrong_preamble_closes() -> None:
    events = logged_in().feed(b"\x00\x00\x00\x01\x00\x00\x00\x10", NOW)
    assert [getattr(e, "reason", None) for e in events] == [R.BAD_FRAME, CloseReason.PROTOCOL_ERROR]


def test_a_length_over_the_maximum_closes_before_buffering_it() -> None:
    header = b"\x00" * 4 + (MAX_AVL_DATA_BYTES + 1).to_bytes(4, "big")
    events = logged_in().feed(header, NOW)
    assert [getattr(e, "reason", None) for e in events] == [
        R.FRAME_TOO_LARGE, CloseReason.PROTOCOL_ERROR
    ]  # fmt: skip


def test_bytes_held_during_login_are_bounded() -> None:
    session = TeltonikaSession(max_avl_data_bytes=100)
    session.feed(LOGIN, NOW)
    events = session.feed(b"\x00" * 200, NOW)
    assert [getattr(e, "reason", None) for e in events] == [
        R.PENDING_OVERFLOW, CloseReason.PROTOCOL_ERROR
    ]  # fmt: skip


def test_too_many_errors_in_a_row_close() -> None:
    bad = packet_bytes("traccar-teltonika-tcp-17")  # codec 12: an intact, unsupported frame
    events = logged_in(max_errors=2).feed(bad * 3, NOW)
    assert [getattr(e, "reason", None) for e in events][-1] is CloseReason.TOO_MANY_ERRORS


def test_a_good_frame_resets_the_error_count() -> None:
    bad, good = packet_bytes("traccar-teltonika-tcp-17"), packet_bytes("teltonika-wiki-codec8-ex1")
    events = logged_in(max_errors=2).feed((bad * 2 + good) * 3, NOW)
    assert not any(isinstance(e, CloseConnection) for e in events)


def test_eof_inside_a_frame_is_truncated() -> None:
    session = logged_in()
    session.feed(packet_bytes("teltonika-wiki-codec8-ex1")[:-1], NOW)
    (error,) = session.close(NOW)
    assert isinstance(error, DecodeError) and error.reason is R.TRUNCATED


def test_nothing_is_ever_sent_by_the_session_itself() -> None:
    # The acknowledgement is data on the event: the shell sends it after durability.
    packet = one_packet("teltonika-wiki-codec8-ex3")
    assert (packet.reply, len(packet.fixes)) == (b"\x00\x00\x00\x02", 2)


# -- UDP -------------------------------------------------------------------------------------------


def udp_decoded(packet_id: str) -> UdpAvlPacket:
    result = decode_udp(packet_bytes(packet_id))
    assert isinstance(result, UdpAvlPacket), result
    return result


@pytest.mark.parametrize("packet", UDP, ids=[p["id"] for p in UDP])
def test_corpus_udp_packet_whole_prefixes_and_trailing(packet: dict[str, Any]) -> None:
    data = bytes.fromhex(packet["hex"])
    for cut in range(len(data)):
        assert isinstance(decode_udp(data[:cut]), DecodeError)
    assert isinstance(decode_udp(data + b"\x00"), DecodeError)
    result = decode_udp(data)
    if packet["frame"]["parses_with_published_layout"]:
        assert isinstance(result, UdpAvlPacket)
        for fix in result.fixes(DEVICE, TENANT, NOW):
            assert_sane_fix(fix)
    else:
        assert isinstance(result, DecodeError) and result.reason is R.BAD_RECORD


@pytest.mark.parametrize("packet", [p for p in UDP if p["expect"]], ids=lambda p: p["id"])
def test_corpus_udp_expectation(packet: dict[str, Any]) -> None:
    expect = packet["expect"]
    if expect.get("io_layout"):  # the 0x8E header over a Codec 8 IO block: refused, see README
        assert decode_udp(bytes.fromhex(packet["hex"])) == DecodeError(
            R.BAD_RECORD, "IO element past byte 139"
        )
        return
    result = udp_decoded(packet["id"])
    assert [record_as_corpus(r) for r in result.records] == expect["records"]
    assert (result.imei, result.avl_packet_id) == (expect["imei"], expect["avl_packet_id"])


def test_udp_acknowledgement_names_the_packet_and_the_record_count() -> None:
    assert udp_decoded("teltonika-wiki-udp-codec8").reply == bytes.fromhex("0005CAFE010501")


def test_udp_fixes_carry_the_registered_identity() -> None:
    (fix,) = udp_decoded("teltonika-wiki-udp-codec8e").fixes(DEVICE, TENANT, NOW)
    assert (fix.device_id, fix.tenant_id, fix.odometer_m) == (DEVICE, TENANT, 22_949_000.0)


# -- fuzzing: arbitrary bytes give events, never exceptions ----------------------------------------

EVENT_TYPES = (DeviceLogin, AvlPacket, Ignored, DecodeError, CloseConnection)


@settings(max_examples=300)
@given(st.binary(max_size=600), st.lists(st.integers(0, 600), max_size=8))
def test_arbitrary_bytes_before_login_give_events(data: bytes, cuts: list[int]) -> None:
    events = drive(TeltonikaSession(), chunked(data, cuts))
    assert all(isinstance(e, EVENT_TYPES) for e in events)


@settings(max_examples=300)
@given(st.binary(max_size=600), st.lists(st.integers(0, 600), max_size=8))
def test_arbitrary_bytes_after_login_give_events(data: bytes, cuts: list[int]) -> None:
    events = drive(logged_in(), chunked(data, cuts))
    assert all(isinstance(e, EVENT_TYPES) for e in events)


@settings(max_examples=300)
@given(st.binary(max_size=400), st.lists(st.integers(0, 400), max_size=8))
def test_corrupted_frames_after_login_give_events(noise: bytes, cuts: list[int]) -> None:
    # A real frame with bytes flipped keeps the preamble and length plausible: the deep path.
    frame = bytearray(packet_bytes("traccar-teltonika-tcp-08"))
    for i, byte in enumerate(noise):
        frame[(i * 37 + byte) % len(frame)] ^= byte
    events = drive(logged_in(), chunked(bytes(frame), cuts))
    assert all(isinstance(e, EVENT_TYPES) for e in events)
    for fix in fixes_of(events):
        assert -90 <= fix.lat <= 90 and -180 <= fix.lon <= 180


@settings(max_examples=500)
@given(st.binary(max_size=600))
def test_arbitrary_datagrams_give_a_packet_or_an_error(data: bytes) -> None:
    assert isinstance(decode_udp(data), UdpAvlPacket | DecodeError)


@settings(max_examples=300)
@given(st.binary(max_size=200))
def test_corrupted_datagrams_give_a_packet_or_an_error(noise: bytes) -> None:
    datagram = bytearray(packet_bytes("teltonika-wiki-udp-codec8e"))
    for i, byte in enumerate(noise):
        datagram[(i * 31 + byte) % len(datagram)] ^= byte
    assert isinstance(decode_udp(bytes(datagram)), UdpAvlPacket | DecodeError)


@settings(max_examples=300)
@given(st.binary(max_size=400), st.lists(st.integers(0, 400), max_size=8))
def test_the_same_bytes_give_the_same_events_however_they_are_read(
    noise: bytes, cuts: list[int]
) -> None:
    stream = packet_bytes("teltonika-wiki-codec8-ex3") + KEEPALIVE + noise
    assert drive(logged_in(), chunked(stream, cuts)) == drive(logged_in(), [stream])
