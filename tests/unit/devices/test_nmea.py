"""devices.nmea.NmeaDecoder: sentences to merged fixes.

Vectors are real captures where one exists (gpsd's and pynmea2's), built with
`with_checksum` where a case needs a sentence nobody captured. Every vector runs three ways
(whole, byte by byte, with trailing bytes: h11's `tr()`) and through both parsers, and
every fix passes `assert_sane_fix`.
"""

from __future__ import annotations

import functools
import json
import operator
from collections.abc import Iterable, Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from devices.checksum import with_checksum
from devices.events import CloseConnection, DecodeError, Ignored, LoginRequest
from devices.events import DecodeErrorReason as R
from devices.fix import Fix, Protocol
from devices.framing import LineFramer
from devices.nmea import DEFAULT_TIMEOUT_EPOCH_IDLE_S, NmeaDecoder, NmeaEvent, Parser
from devices.tcp_nmea import TcpNmeaSession, login_sentence
from devices.units import knots_to_mps
from tests.support.paths import corpus_file
from tests.support.paths import gpsd_log_bytes as log_bytes
from tests.support.sanity import assert_sane_fix

NOW = 1_700_000_000.0
DEVICE, TENANT = "truck-7", "acme"
GPS_EPOCH = datetime(1980, 1, 6, tzinfo=UTC)
"""The NMEA standard's own examples (pynmea2's vectors) are dated 1994: sanity starts here."""
TRAILING = b"$GPRMC,0935"  # an incomplete line: must stay buffered and change nothing

# -- helpers -------------------------------------------------------------------------------


def nmea(*bodies: str) -> bytes:
    """Sentences from their bodies (checksum added), CR LF terminated."""
    return b"".join(with_checksum(body.encode()) + b"\r\n" for body in bodies)


def raw(*lines: str) -> bytes:
    """Captured sentences as given (checksums included), CR LF terminated."""
    return b"".join(line.encode() + b"\r\n" for line in lines)


def drip(data: bytes) -> list[bytes]:
    return [data[i : i + 1] for i in range(len(data))]


def decode(
    chunks: Iterable[bytes], *, parser: Parser = "fast", eof: bool = True
) -> tuple[list[NmeaEvent], LineFramer]:
    """Frame and decode `chunks` received at NOW, then flush the pending epoch."""
    framer, decoder = LineFramer(), NmeaDecoder(DEVICE, TENANT, parser=parser)
    out: list[NmeaEvent] = []

    def take(items: list[bytes | DecodeError]) -> None:
        for item in items:
            out.extend([item] if isinstance(item, DecodeError) else decoder.feed_line(item, NOW))

    for chunk in chunks:
        take(framer.feed(chunk))
    if eof:
        take(framer.close())
    out.extend(decoder.flush(NOW))
    return out, framer


def events(data: bytes) -> list[NmeaEvent]:
    """Decode `data` whole, byte by byte, with trailing bytes and with pynmea2: all agree."""
    whole, _ = decode([data])
    assert decode(drip(data))[0] == whole, "byte by byte"
    trailing, framer = decode([data + TRAILING], eof=False)
    assert trailing == whole and framer.buffered_bytes == len(TRAILING), "trailing bytes"
    assert decode([data], parser="pynmea2")[0] == whole, "pynmea2 parser"
    for event in whole:
        if isinstance(event, Fix):
            assert_sane_fix(event, earliest=GPS_EPOCH)
    return whole


def fixes(data: bytes) -> list[Fix]:
    return [event for event in events(data) if isinstance(event, Fix)]


def fix(data: bytes) -> Fix:
    """The one fix `data` decodes to, without any error."""
    out = events(data)
    found = [event for event in out if isinstance(event, Fix)]
    assert len(found) == 1 and not [e for e in out if isinstance(e, DecodeError)], out
    return found[0]


def errors(data: bytes) -> list[R]:
    """The decode errors `data` produces; asserts it produces no fix."""
    out = events(data)
    assert not [event for event in out if isinstance(event, Fix)], out
    return [event.reason for event in out if isinstance(event, DecodeError)]


def brief(f: Fix) -> tuple[object, ...]:
    """time, lat, lon, speed (m/s), heading, valid: enough for a one-line assertion."""
    speed = None if f.speed is None else round(f.speed, 3)
    heading = None if f.heading is None else round(f.heading, 2)
    return (f.time.isoformat(), round(f.lat, 7), round(f.lon, 7), speed, heading, f.valid)


def stock(f: Fix) -> tuple[object, ...]:
    """altitude, hdop, satellites."""
    return (f.altitude, f.hdop, f.satellites)


# -- vectors: real captures ------------------------------------------------------------------

# pynmea2 (test_types.py): the NMEA spec's RMC example.
RMC_1994 = "$GPRMC,225446,A,4916.45,N,12311.12,W,000.5,054.7,191194,020.3,E*68"
# gpsd bt451.log: one u-blox epoch of six sentences, driving at 56 km/h.
BT451_EPOCH = (
    "$GPRMC,143306.50,A,5546.82983,N,02334.72123,E,30.324,221.16,091209,,,A*52",
    "$GPVTG,221.16,T,,M,30.324,N,56.191,K,A*37",
    "$GPGGA,143306.50,5546.82983,N,02334.72123,E,1,09,1.26,128.9,M,26.9,M,,*50",
    "$GPGSA,A,3,32,09,19,11,14,03,22,06,26,,,,3.25,1.26,2.99*05",
    "$GPGLL,5546.82983,N,02334.72123,E,143306.50,A,A*66",
    "$GPZDA,143306.50,09,12,2009,00,00*61",
)
# gpsd quectelLC79D-1.log: NMEA 4.1 RMC whose navigational status is V on a good fix.
QUECTEL_EPOCH = (
    "$GNRMC,080359.00,A,5002.453527,N,01958.831794,E,0.0,16.6,301120,,,A,V*0D",
    "$GNGGA,080359.00,5002.453527,N,01958.831794,E,1,14,0.9,202.1,M,,M,,*66",
)
# pynmea2 examples/data.log: a GGA and no RMC anywhere.
GGA_1843 = "$GPGGA,184353.07,1929.045,S,02410.506,E,1,04,2.6,100.00,M,-33.9,M,,0000*6D"


def test_rmc_alone_is_a_fix() -> None:
    assert brief(fix(raw(RMC_1994))) == (
        "1994-11-19T22:54:46+00:00", 49.2741667, -123.1853333, 0.257, 54.7, True
    )  # fmt: skip


def test_an_epoch_of_six_sentences_is_one_fix() -> None:
    assert brief(fix(raw(*BT451_EPOCH))) == (
        "2009-12-09T14:33:06.500000+00:00", 55.7804972, 23.5786872, 15.6, 221.16, True
    )  # fmt: skip


def test_altitude_hdop_and_satellites_come_from_gga() -> None:
    assert stock(fix(raw(*BT451_EPOCH))) == (128.9, 1.26, 9)


def test_navigational_status_v_does_not_invalidate_a_fix() -> None:
    assert fix(raw(*QUECTEL_EPOCH)).valid is True


def test_fix_carries_identity_protocol_and_receive_time() -> None:
    f = fix(raw(RMC_1994))
    assert (f.device_id, f.tenant_id, f.protocol, f.received_at) == (
        DEVICE, TENANT, Protocol.NMEA, datetime.fromtimestamp(NOW, UTC)
    )  # fmt: skip


def test_fractional_seconds_are_kept() -> None:
    assert (
        fix(nmea("GPRMC,184353.07,A,1929.045,S,02410.506,E,,,010120,,")).time.microsecond == 70_000
    )


# -- epochs ------------------------------------------------------------------------------------


def test_an_epoch_is_emitted_when_the_next_time_of_day_arrives() -> None:
    decoder = NmeaDecoder(DEVICE, TENANT)
    lines = [*raw(*QUECTEL_EPOCH).splitlines(), nmea("GNGGA,080400.00,,,,,0,00,,,M,,M,,").strip()]
    assert [len(decoder.feed_line(line, NOW)) for line in lines] == [0, 0, 1]


def test_time_less_sentences_without_an_open_epoch_are_dropped() -> None:
    assert events(raw("$GPVTG,108.53,T,,M,0.04,N,0.07,K,A*31")) == []


def test_a_straggler_of_the_emitted_epoch_is_ignored() -> None:
    data = nmea(
        "GPRMC,120000.00,A,4807.038,N,01131.000,E,1.0,,230394,,",
        "GPRMC,120001.00,A,4807.038,N,01131.000,E,1.0,,230394,,",
        "GPGGA,120000.00,4807.038,N,01131.000,E,0,04,2.6,100.00,M,,M,,",
    )
    assert [type(e).__name__ for e in events(data)] == ["Fix", "Ignored", "Fix"]


def _epoch_lines(second: int, *kinds: str) -> list[bytes]:
    t = f"1200{second:02d}.00"
    body = {
        "RMC": f"GPRMC,{t},A,4807.038,N,01131.000,E,1.0,90.0,230394,,",
        "GGA": f"GPGGA,{t},4807.038,N,01131.000,E,1,04,2.6,100.00,M,,M,,",
        "GSA": "GPGSA,A,3,04,05,,09,12,,,24,,,,,2.5,1.3,2.1",
    }
    return nmea(*(body[k] for k in kinds)).splitlines()


def _emitted_at(decoder: NmeaDecoder, *epochs: tuple[str, ...]) -> list[str]:
    """For each line fed, "Fix" when it emitted one, else "-"."""
    out = []
    for second, kinds in enumerate(epochs):
        for line in _epoch_lines(second, *kinds):
            got = [type(e).__name__ for e in decoder.feed_line(line, NOW + second)]
            out.append("Fix" if "Fix" in got else "-")
    return out


def test_the_learned_cycle_ender_emits_the_epoch_at_once() -> None:
    # Three epochs closed by their successor ended with GGA: from then on GGA ends a cycle.
    decoder = NmeaDecoder(DEVICE, TENANT)
    got = _emitted_at(decoder, *[("RMC", "GGA")] * 6)
    assert got == ["-", "-", "Fix", "-", "Fix", "-", "Fix", "Fix", "-", "Fix", "-", "Fix"]
    assert decoder.next_deadline() is None  # nothing left pending
    assert decoder.flush(NOW + 10) == []


def test_a_sentence_after_the_cycle_ender_switches_early_emission_off() -> None:
    decoder = NmeaDecoder(DEVICE, TENANT)
    got = _emitted_at(
        decoder, *[("RMC", "GGA")] * 4, ("RMC", "GGA", "GSA"), ("RMC", "GGA"), ("RMC", "GGA")
    )
    # The fifth epoch goes out at its GGA; its GSA finds no epoch (lost, once), and from
    # then on epochs wait for their successor again.
    assert got[8:] == ["-", "Fix", "-", "-", "-", "Fix", "-"]
    assert [f.time.second for f in decoder.flush(NOW + 10) if isinstance(f, Fix)] == [6]


def test_a_same_time_straggler_after_the_cycle_ender_switches_early_emission_off() -> None:
    decoder = NmeaDecoder(DEVICE, TENANT)
    got = _emitted_at(decoder, *[("RMC", "GGA")] * 4, ("GGA", "RMC"), ("RMC", "GGA"))
    assert got[8:] == ["Fix", "-", "-", "-"]  # the RMC after the early GGA: an ignored straggler
    assert [f.time.second for f in decoder.flush(NOW + 10) if isinstance(f, Fix)] == [5]


def test_a_second_position_in_one_epoch_does_not_move_the_fix() -> None:
    data = nmea(
        "GPRMC,120000.00,A,4807.038,N,01131.000,E,,,230394,,",
        "GPGGA,120000.00,4807.999,N,01131.999,E,1,04,2.6,100.00,M,,M,,",
    )
    assert brief(fix(data))[1:3] == (48.1173, 11.5166667)


# -- dates -------------------------------------------------------------------------------------


def test_gga_without_any_date_is_no_date_with_its_position_in_the_detail() -> None:
    (error,) = [e for e in events(raw(GGA_1843)) if isinstance(e, DecodeError)]
    assert (error.reason, "-19.4840833,24.1751000" in error.detail) == (R.NO_DATE, True)


def test_gga_takes_the_date_of_the_last_rmc() -> None:
    data = raw(RMC_1994) + nmea("GPGGA,225447,4916.45,N,12311.12,W,1,04,2.6,100.0,M,,M,,")
    assert fixes(data)[1].time == datetime(1994, 11, 19, 22, 54, 47, tzinfo=UTC)


def test_gga_after_midnight_takes_the_next_day() -> None:
    data = nmea(
        "GPRMC,235959.00,A,4807.038,N,01131.000,E,,,311299,,",
        "GPGGA,000001.00,4807.038,N,01131.000,E,1,04,2.6,100.0,M,,M,,",
    )
    assert fixes(data)[1].time == datetime(2000, 1, 1, 0, 0, 1, tzinfo=UTC)


def test_gga_from_before_midnight_takes_the_previous_day() -> None:
    data = nmea(
        "GPRMC,000001.00,A,4807.038,N,01131.000,E,,,010100,,",
        "GPGGA,235959.00,4807.038,N,01131.000,E,1,04,2.6,100.0,M,,M,,",
    )
    assert fixes(data)[1].time == datetime(1999, 12, 31, 23, 59, 59, tzinfo=UTC)


def test_a_log_spliced_52_minutes_back_stays_on_the_same_day() -> None:
    data = raw("$GPRMC,152508.50,A,5547.82156,N,02334.14086,E,0.296,,091209,,,A*76") + raw(
        "$GPGGA,143306.00,5546.83315,N,02334.72613,E,1,08,1.28,129.9,M,26.9,M,,*5B"
    )
    assert fixes(data)[1].time == datetime(2009, 12, 9, 14, 33, 6, tzinfo=UTC)


def test_zda_supplies_the_date() -> None:
    data = nmea("GPZDA,184353.07,01,02,2020,00,00") + raw(GGA_1843)
    assert fix(data).time == datetime(2020, 2, 1, 18, 43, 53, 70_000, tzinfo=UTC)


def test_two_digit_years_before_80_are_this_century() -> None:
    assert fix(nmea("GPRMC,120000,A,4807.038,N,01131.000,E,,,010179,,")).time.year == 2079


# -- speed and heading ---------------------------------------------------------------------


def test_vtg_fills_speed_and_heading_when_rmc_has_none() -> None:
    data = raw("$GPRMC,123519.00,A,4807.038,N,01131.000,E,,,230394,,*33")
    data += raw("$GPVTG,108.53,T,,M,0.04,N,0.07,K,A*31")  # pynmea2 test_types.py
    assert brief(fix(data))[3:5] == (round(knots_to_mps(0.04), 3), 108.53)


def test_vtg_does_not_override_rmc() -> None:
    data = raw(RMC_1994) + nmea("GPVTG,200.0,T,,M,9.0,N,16.7,K,A")
    assert brief(fix(data))[3:5] == (0.257, 54.7)


def test_vtg_in_the_old_layout_without_unit_letters() -> None:
    data = raw("$GPRMC,123519.00,A,4807.038,N,01131.000,E,,,230394,,*33")
    data += nmea("GPVTG,054.7,034.4,005.5,010.2")
    assert brief(fix(data))[3:5] == (round(knots_to_mps(5.5), 3), 54.7)


def test_vtg_in_kmh_only() -> None:
    data = raw("$GPRMC,123519.00,A,4807.038,N,01131.000,E,,,230394,,*33")
    data += nmea("GPVTG,,T,,M,,N,10.8,K,A")
    assert fix(data).speed == pytest.approx(3.0)


def test_a_track_of_360_is_north() -> None:
    assert fix(nmea("GPRMC,120000,A,4807.038,N,01131.000,E,3.0,360.0,230394,,")).heading == 0.0


# -- GSA ---------------------------------------------------------------------------------------


def test_gsa_supplies_hdop_and_satellites_without_gga() -> None:
    data = raw("$GPRMC,123519.00,A,4807.038,N,01131.000,E,,,230394,,*33")
    data += raw("$GPGSA,A,3,02,,,07,,09,24,26,,,,,1.6,1.6,1.0*3D")  # pynmea2 test_types.py
    assert stock(fix(data)) == (None, 1.6, 5)


def test_gsa_without_a_fix_invalidates() -> None:
    data = raw("$GPRMC,123519.00,A,4807.038,N,01131.000,E,,,230394,,*33")
    data += raw("$GPGSA,A,1,,,,,,,,,,,,,99.99,99.99,99.99*30")  # gpsd bt451.log
    assert fix(data).valid is False


# -- validity ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "mode", "valid"),
    [
        ("A", "", True),
        ("A", "A", True),
        ("A", "D", True),
        ("A", "E", True),  # dead reckoning is still the receiver's best position
        ("A", "N", False),
        ("A", "S", False),
        ("V", "A", False),
        ("", "A", False),
    ],
)
def test_rmc_status_and_faa_mode(status: str, mode: str, valid: bool) -> None:
    body = f"GPRMC,123519.00,{status},4807.038,N,01131.000,E,,,230394,,,{mode}"
    assert fix(nmea(body)).valid is valid


@pytest.mark.parametrize(("quality", "valid"), [("0", False), ("1", True), ("2", True),
                                                ("4", True), ("5", True), ("6", False),
                                                ("8", False), ("", False)])  # fmt: skip
def test_gga_quality(quality: str, valid: bool) -> None:
    data = nmea(
        "GPZDA,000000,01,01,2020,00,00",
        f"GPGGA,000000,4807.038,N,01131.000,E,{quality},04,2.6,100.0,M,,M,,",
    )
    assert fix(data).valid is valid


def test_gll_void_status_invalidates() -> None:
    data = raw("$GPRMC,123519.00,A,4807.038,N,01131.000,E,,,230394,,*33")
    data += nmea("GPGLL,4807.038,N,01131.000,E,123519.00,V,N")
    assert fix(data).valid is False


def test_zero_zero_is_not_a_valid_position() -> None:
    # gpsd gp-320fw coldboot.log: a simulator reboot reporting 0,0 (and status V anyway).
    assert fix(nmea("GPRMC,235948.00,A,0000.0000,N,00000.0000,E,,,161206,,,A")).valid is False


@pytest.mark.parametrize(
    "talker", ["GP", "GN", "GL", "GA", "GB", "BD", "QZ", "IN"]
)  # GPS, multi-GNSS, GLONASS, Galileo, BeiDou (both ids), QZSS, NavIC
def test_every_talker_is_decoded(talker: str) -> None:
    assert fix(nmea(f"{talker}RMC,120000,A,4807.038,N,01131.000,E,,,230394,,")).valid is True


# -- refused sentences -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        ("GPRMC,120000,A,9900.000,N,01131.000,E,,,230394,,", R.BAD_SENTENCE),  # lat 99
        ("GPRMC,120000,A,4807.038,N,18100.000,E,,,230394,,", R.BAD_SENTENCE),  # lon 181
        ("GPRMC,120000,A,4860.000,N,01131.000,E,,,230394,,", R.BAD_SENTENCE),  # 60 minutes
        ("GPRMC,120000,A,-4807.03,N,01131.000,E,,,230394,,", R.BAD_SENTENCE),
        ("GPRMC,120000,A,4807.038,X,01131.000,E,,,230394,,", R.BAD_SENTENCE),
        ("GPRMC,120000,A,4807.038,N,,E,,,230394,,", R.BAD_SENTENCE),  # half a position
        ("GPRMC,120000,A,4807.038,N,01131.000,E,-1.0,,230394,,", R.BAD_SENTENCE),
        ("GPRMC,120000,A,4807.038,N,01131.000,E,,361.0,230394,,", R.BAD_SENTENCE),
        ("GPRMC,120000,A,4807.038,N,01131.000,E,nan,,230394,,", R.BAD_SENTENCE),
        ("GPRMC,120000,A,4807.038,N,01131.000,E,,,310299,,", R.BAD_SENTENCE),  # 31 Feb
        ("GPRMC,240000,A,4807.038,N,01131.000,E,,,230394,,", R.BAD_SENTENCE),
        ("GPRMC,12:00:00,A,4807.038,N,01131.000,E,,,230394,,", R.BAD_SENTENCE),
        ("GPRMC,,A,4807.038,N,01131.000,E,,,230394,,", R.NO_TIME),
        ("GPGGA,120000,4807.038,N,01131.000,E,1,x4,2.6,100.0,M,,M,,", R.BAD_SENTENCE),
        ("GPGGA,120000,4807.038,N,01131.000,E,1,04,2.6,inf,M,,M,,", R.BAD_SENTENCE),
        ("GPZDA,120000,01,01,9999,00,00", R.BAD_SENTENCE),
        ("GP,00,0.0,,M,,M,,", R.BAD_SENTENCE),  # broken talker id (gpsd coldboot.log)
    ],
)
def test_bad_fields_refuse_the_sentence(body: str, reason: R) -> None:
    assert errors(nmea(body)) == [reason]


def test_decimal_degrees_where_ddmm_belongs_are_refused() -> None:
    line = "$GPGGA,161405.680,37.352387,N,121.953086,W,1,10,0.01,-110.342552,M,0.000000,M,,0000,*4E"
    assert errors(raw(line)) == [R.BAD_SENTENCE]  # pynmea2 test_types.py


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        (GGA_1843[:-2] + "00", R.BAD_CHECKSUM),
        (GGA_1843[:-3], R.MISSING_CHECKSUM),
        ("$GPGSV,3,3,09,24,03,046,*47\\", R.MALFORMED_CHECKSUM),
        ("foobar", R.NOT_NMEA),
    ],
)
def test_checksum_failures_are_errors(line: str, reason: R) -> None:
    assert errors(raw(line)) == [reason]


def test_non_ascii_is_refused() -> None:
    assert errors(with_checksum("GPTXT,01,01,02,\u00e9t\u00e9".encode()) + b"\n") == [
        R.BAD_SENTENCE
    ]


@pytest.mark.parametrize(
    ("data", "kind"),
    [
        (raw("$GPGSV,3,3,09,24,03,046,*47"), "nmea_unsupported"),
        (raw("$GNTXT,01,01,02,ROM BASE 2.01 (75331) Oct 29 2013 13:28:17*44"), "nmea_unsupported"),
        (raw("$CCGPQ,GGA*2B"), "nmea_unsupported"),  # a query
        (raw("$PGRME,15.0,M,45.0,M,25.0,M*1C"), "nmea_proprietary"),
        (nmea("PFXGL,truck-7,secret"), "nmea_proprietary"),  # a login repeated after login
    ],
)
def test_sentences_without_fixes_are_ignored(data: bytes, kind: str) -> None:
    assert events(data) == [Ignored(kind)]


def test_a_sentence_restarted_mid_line_is_decoded_from_its_last_dollar() -> None:
    # gpsd coldboot.log: a GSV cut short by the GGA that follows it on the same line.
    data = raw(
        "$GPRMC,000002.00,V,0000.0000,N,00000.0000,E,,,260910,,,N*48",
        "$GPGSV,3,3,12,06,08,270,,16,01,090,,02,16,270,"
        "$GPGGA,000410.00,0000.0000,N,00000.0000,E,0,00,0.0,,M,,M,,*58",
    )
    assert [f.time.isoformat() for f in fixes(data)] == [
        "2010-09-26T00:00:02+00:00", "2010-09-26T00:04:10+00:00"
    ]  # fmt: skip


# -- timer -------------------------------------------------------------------------------------


def test_a_quiet_device_gets_its_pending_epoch_out_after_the_idle_timeout() -> None:
    decoder = NmeaDecoder(DEVICE, TENANT)
    decoder.feed_line(RMC_1994.encode(), now=100.0)
    deadline = decoder.next_deadline()
    early, due = decoder.on_timer(now=101.9), decoder.on_timer(now=102.0)
    assert (deadline, early, [type(e) for e in due], decoder.next_deadline()) == (
        100.0 + DEFAULT_TIMEOUT_EPOCH_IDLE_S, [], [Fix], None
    )  # fmt: skip


def test_every_sentence_of_the_epoch_pushes_the_deadline() -> None:
    decoder = NmeaDecoder(DEVICE, TENANT)
    decoder.feed_line(RMC_1994.encode(), now=100.0)
    decoder.feed_line(b"$GPVTG,108.53,T,,M,0.04,N,0.07,K,A*31", now=101.0)
    assert decoder.next_deadline() == 101.0 + DEFAULT_TIMEOUT_EPOCH_IDLE_S


def test_no_deadline_without_a_pending_epoch() -> None:
    assert NmeaDecoder(DEVICE, TENANT).next_deadline() is None


def test_decoder_arguments_are_checked() -> None:
    with pytest.raises(ValueError):
        NmeaDecoder(DEVICE, TENANT, parser="regex")  # type: ignore[arg-type]


# -- corpus: gpsd logs -----------------------------------------------------------------------


def corpus_dir() -> Path:
    return corpus_file("nmea", "gpsd-bt451.log").parent  # fails when the corpus is missing


GPSD_LOGS = ["bt451", "quectelLC79D-1", "gp-320fw-2019-04-07-coldboot", "gpsdf"]


def gpsd_expected(name: str) -> list[dict[str, Any]]:
    text = (corpus_dir() / f"gpsd-{name}.expected.jsonl").read_text()
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def time_of_day(moment: datetime) -> timedelta:
    return moment - moment.replace(hour=0, minute=0, second=0, microsecond=0)


@pytest.mark.parametrize("name", GPSD_LOGS)
def test_gpsd_log_gives_every_expected_fix(name: str) -> None:
    out, _ = decode([log_bytes(f"gpsd-{name}.log")])
    found = [event for event in out if isinstance(event, Fix)]
    for fix_ in found:
        assert_sane_fix(fix_)
    for want in gpsd_expected(name):
        at = datetime.fromisoformat(want["time"])
        if want["date_ok"]:
            (got,) = [f for f in found if f.time == at]
        else:  # gpsd guessed the day (README): compare the time of day only
            (got,) = [f for f in found if time_of_day(f.time) == time_of_day(at)]
        assert got.valid, got
        assert (got.lat, got.lon) == pytest.approx((want["lat"], want["lon"]), abs=2e-6)
        # Where gpsd reported speed and track, so must we (None compares unequal); except in
        # the one cycle whose date gpsd guessed (GGA/GLL only: its speed and track are
        # carried over from an earlier cycle, not measured in this one).
        measured = want.get("date_ok", True)
        assert not (measured and "speed" in want) or got.speed == pytest.approx(
            want["speed"], abs=0.01
        ), got
        assert not (measured and "track" in want) or got.heading == pytest.approx(
            want["track"], abs=0.01
        ), got


@pytest.mark.parametrize("name", GPSD_LOGS)
def test_gpsd_log_gives_valid_extra_fixes_only_where_gpsd_closes_no_cycle(name: str) -> None:
    # gpsd reports a cycle when its learned last sentence arrives, so it never reports the
    # first position (no date yet, reported without a time), the last cycle of a file, or
    # the last cycle before a splice where the time of day jumps back. We close those
    # epochs too; any other valid fix gpsd did not report would be a decoder bug. Invalid
    # fixes (status V, 0,0) are not positions: ingest counts and drops them.
    out, _ = decode([log_bytes(f"gpsd-{name}.log")])
    found = [event for event in out if isinstance(event, Fix)]
    expected = {datetime.fromisoformat(want["time"]) for want in gpsd_expected(name)}
    expected_tod = {time_of_day(t) for t in expected}
    for i, f in enumerate(found):
        if not f.valid or f.time in expected or time_of_day(f.time) in expected_tod:
            continue
        first, last = i == 0, i == len(found) - 1
        before_splice = not last and found[i + 1].time < f.time
        assert first or last or before_splice, f


@pytest.mark.parametrize("name", GPSD_LOGS)
def test_gpsd_log_sentences_with_bad_checksums_are_dropped(name: str) -> None:
    decoder = NmeaDecoder(DEVICE, TENANT)
    for line in log_bytes(f"gpsd-{name}.log").splitlines():
        if has_bad_checksum(line):
            out = decoder.feed_line(line.rstrip(b"\r"), NOW)
            assert [e.reason for e in out if isinstance(e, DecodeError)] == [R.BAD_CHECKSUM]
            assert len(out) == 1, out


def test_gpsdf_has_the_46_bad_checksums_the_corpus_readme_counts() -> None:
    lines = log_bytes("gpsd-gpsdf.log").splitlines()
    assert sum(has_bad_checksum(line) for line in lines) == 46


def has_bad_checksum(line: bytes) -> bool:
    """An independent reading: `$body*hh` whose hh differs from the XOR of body, with no
    later `$` in the line starting a sentence that does check out (gpsd's resync)."""
    line = line.rstrip(b"\r")
    if not line.startswith(b"$") or not looks_checksummed(line):
        return False
    return not any(checks_out(line[i:]) for i in range(len(line)) if line[i] == ord("$"))


def looks_checksummed(sentence: bytes) -> bool:
    star = sentence.rfind(b"*")
    return star == len(sentence) - 3 and all(c in b"0123456789ABCDEFabcdef" for c in sentence[-2:])


def checks_out(sentence: bytes) -> bool:
    if not looks_checksummed(sentence):
        return False
    return functools.reduce(operator.xor, sentence[1:-3], 0) == int(sentence[-2:], 16)


@pytest.mark.parametrize("name", GPSD_LOGS)
def test_gpsd_log_decodes_the_same_in_any_chunking_and_with_pynmea2(name: str) -> None:
    data = log_bytes(f"gpsd-{name}.log")
    whole, _ = decode([data])
    assert decode(drip(data))[0] == whole
    assert decode(chunked(data, 1460))[0] == whole  # one TCP segment at a time
    assert decode([data], parser="pynmea2")[0] == whole


def chunked(data: bytes, size: int) -> Iterator[bytes]:
    return (data[i : i + size] for i in range(0, len(data), size))


# -- corpus: pynmea2 ---------------------------------------------------------------------------


def test_pynmea2_example_log_without_a_date_is_one_no_date_carrying_the_position() -> None:
    # The log's only position is a GGA and it has no RMC or ZDA: the decoder never takes a
    # date from the server's clock, so the epoch is NO_DATE, with the decoded position in
    # its detail. `foobar` is not NMEA; RTE, R00 and MWV are ignored.
    out, _ = decode([(corpus_dir() / "pynmea2-examples-data.log").read_bytes()])
    summary = [e.reason if isinstance(e, DecodeError) else e for e in out]
    no_date = next(e for e in out if isinstance(e, DecodeError) and e.reason is R.NO_DATE)
    assert (summary, no_date.detail) == (
        [Ignored("nmea_unsupported"), Ignored("nmea_unsupported"), R.NOT_NMEA,
         Ignored("nmea_unsupported"), R.NO_DATE],
        "epoch 18:43:53.070000 at -19.4840833,24.1751000: no RMC/ZDA date seen yet",
    )  # fmt: skip


def test_pynmea2_example_log_with_a_date_is_exactly_one_fix() -> None:
    # The same log after a ZDA (time-less sentences cannot be placed): the position itself.
    data = (
        nmea("GPZDA,184350.00,01,02,2020,00,00")
        + (corpus_dir() / "pynmea2-examples-data.log").read_bytes()
    )
    out, _ = decode([data])
    (only,) = [event for event in out if isinstance(event, Fix)]
    assert (brief(only), only.altitude) == (
        ("2020-02-01T18:43:53.070000+00:00", -19.4840833, 24.1751, None, None, True), 100.0
    )  # fmt: skip


def pynmea2_sentences() -> list[dict[str, Any]]:
    entries: list[dict[str, Any]] = json.loads(
        (corpus_dir() / "pynmea2-test-sentences.json").read_text()
    )
    assert len(entries) == 119
    return entries


def primed(entry: dict[str, Any]) -> bytes:
    """The sentence, after whatever its epoch needs to become a fix: a ZDA for the date of
    a GGA/GLL (same time of day), an RMC without speed and track to carry a VTG."""
    sentence = str(entry["sentence"]).encode() + b"\r\n"
    expect = entry["expect"]
    if expect["type"] in ("GGA", "GLL"):
        hhmmss = str(expect["time"]).replace(":", "")
        return nmea(f"GPZDA,{hhmmss},01,02,2020,00,00") + sentence
    if expect["type"] == "VTG":
        return raw("$GPRMC,123519.00,A,4807.038,N,01131.000,E,,,230394,,*33") + sentence
    return sentence


def test_pynmea2_sentences_with_checksum_trouble_are_refused() -> None:
    want = {"bad": R.BAD_CHECKSUM, "missing": R.MISSING_CHECKSUM, "malformed": R.MALFORMED_CHECKSUM}
    for entry in pynmea2_sentences():
        if entry["checksum"] != "ok":
            assert errors(entry["sentence"].encode() + b"\r\n") == [want[entry["checksum"]]], entry


def test_pynmea2_sentences_follow_the_validity_policy_and_values() -> None:
    usable = 0
    for entry in pynmea2_sentences():
        expect = entry["expect"]
        if entry["checksum"] != "ok" or not expect or expect["type"] not in ("RMC", "GGA", "GLL"):
            continue
        found = fixes(primed(entry))
        if expect["lat"] is None:
            assert found == [], entry
            continue
        (got,) = found
        assert got.valid is expect["position_usable"], entry
        assert (got.lat, got.lon) == pytest.approx((expect["lat"], expect["lon"]), abs=1e-8)
        assert got.time.time().isoformat().startswith(expect["time"]), entry
        if expect["type"] == "RMC":
            assert got.time.date() == date.fromisoformat(expect["date"]), entry
            assert (got.speed is None) == (expect["speed_mps"] is None), entry
            if got.speed is not None:
                assert got.speed == pytest.approx(expect["speed_mps"], abs=1e-4), entry
            assert got.heading == pytest.approx(expect["track_deg"]), entry
        usable += got.valid
    assert usable == 9  # the corpus README: nine sentences carry a usable position


def test_pynmea2_vtg_sentences_give_speed_and_track() -> None:
    for entry in pynmea2_sentences():
        expect = entry["expect"]
        if entry["checksum"] == "ok" and expect and expect["type"] == "VTG":
            got = fix(primed(entry))
            knots = expect["speed_knots"]
            assert (got.speed, got.heading) == (
                pytest.approx(knots_to_mps(knots)) if knots is not None else None,
                expect["track_deg"],
            ), entry


def test_pynmea2_sentences_without_expectations_give_no_fix_and_no_crash() -> None:
    for entry in pynmea2_sentences():
        if entry["expect"] is None:
            out = events(entry["sentence"].encode() + b"\r\n")
            assert not [e for e in out if isinstance(e, Fix)], entry
            if entry["kind"] == "proprietary" and entry["checksum"] == "ok":
                assert out == [Ignored("nmea_proprietary")], entry


# -- property: arbitrary bytes are events, never exceptions ------------------------------------

SESSION_EVENTS = (Fix, DecodeError, Ignored, LoginRequest, CloseConnection)
FIELD = st.text(alphabet="0123456789.,-+NSEWAVTMKD ", max_size=14)
SENTENCE = st.builds(
    lambda address, fields: with_checksum(",".join([address, *fields]).encode()) + b"\r\n",
    st.sampled_from(["GPRMC", "GNGGA", "GPGLL", "GPVTG", "GPGSA", "GPZDA", "GPGSV", "PFXGL"]),
    st.lists(FIELD, max_size=16),
)
STREAM = st.lists(
    st.one_of(SENTENCE, st.binary(max_size=40), st.sampled_from([b"\r\n", b"\n", b"$", b"*"])),
    max_size=40,
).map(b"".join)


def feed_session(data: bytes, cuts: list[int]) -> list[object]:
    session = TcpNmeaSession(max_line_bytes=128, max_errors=1000)
    out: list[object] = [*session.feed(login_sentence(DEVICE, "secret-token-0001"), NOW)]
    out += session.accept(DEVICE, TENANT, NOW)
    at = 0
    for size in cuts:
        out += session.feed(data[at : at + size], NOW)
        at += size
    out += session.feed(data[at:], NOW)
    out += session.close(NOW)
    return out


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(STREAM, st.lists(st.integers(0, 64), max_size=20))
def test_any_bytes_give_events_never_exceptions(data: bytes, cuts: list[int]) -> None:
    whole = feed_session(data, [])
    assert all(isinstance(event, SESSION_EVENTS) for event in whole)
    for event in whole:
        if isinstance(event, Fix):
            assert_sane_fix(event, earliest=GPS_EPOCH)
    assert feed_session(data, cuts) == whole


@settings(max_examples=100, deadline=None)
@given(st.binary(max_size=600), st.lists(st.integers(1, 50), max_size=20))
def test_raw_bytes_before_login_give_events_never_exceptions(data: bytes, cuts: list[int]) -> None:
    session, now, at = TcpNmeaSession(max_errors=5), NOW, 0
    for size in [*cuts, len(data)]:
        for event in session.feed(data[at : at + size], now):
            assert isinstance(event, SESSION_EVENTS)
        at += size
        now += 1.0
        session.on_timer(now)
    assert all(isinstance(event, SESSION_EVENTS) for event in session.close(now))
