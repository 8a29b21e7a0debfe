"""devices.checksum: the NMEA XOR checksum and sentence splitting."""

from __future__ import annotations

import functools
import operator

import pytest
from hypothesis import given
from hypothesis import strategies as st

from devices.checksum import nmea_checksum, split_sentence, with_checksum
from devices.events import DecodeErrorReason as R

GGA = b"$GPGGA,184353.07,1929.045,S,02410.506,E,1,04,2.6,100.00,M,-33.9,M,,0000*6D"


def xor_reference(body: bytes) -> int:
    return functools.reduce(operator.xor, body, 0)


def test_checksum_of_a_pynmea2_example() -> None:
    assert nmea_checksum(GGA[1:-3]) == 0x6D


def test_checksum_of_nothing_is_zero() -> None:
    assert nmea_checksum(b"") == 0


@given(st.binary(max_size=9000))  # past the fold's mask table (4096 bytes) too
def test_checksum_matches_a_plain_xor(body: bytes) -> None:
    assert nmea_checksum(body) == xor_reference(body)


def test_split_returns_the_body() -> None:
    assert split_sentence(GGA) == GGA[1:-3]


def test_split_accepts_lowercase_hex() -> None:
    assert split_sentence(b"$IIMWV,271.0,R,000.2,N,A*3b") == b"IIMWV,271.0,R,000.2,N,A"


def test_split_accepts_encapsulated_sentences() -> None:
    assert split_sentence(with_checksum(b"AIVDM,1,1,,A,13aEOK?P00PD2wVMdLDRhgvL289?,0", b"!"))


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        (GGA[:-2] + b"00", R.BAD_CHECKSUM),
        (b"$GPGSV,3,3,09,24,03,046,*47\\", R.MALFORMED_CHECKSUM),  # pynmea2's trailing backslash
        (b"$GPGGA,1*4", R.MALFORMED_CHECKSUM),
        (b"$GPGGA,1*4G", R.MALFORMED_CHECKSUM),
        (b"$GPGGA,1*", R.MALFORMED_CHECKSUM),
        (b"$GPGGA,1* 4", R.MALFORMED_CHECKSUM),
        (b"$GPRMC,172142.00,A,4805.30256324,N,11629.09084774,W,0.D", R.MISSING_CHECKSUM),
        (b"$GPABC,1,2,3", R.MISSING_CHECKSUM),
        (b"$", R.MISSING_CHECKSUM),
        (b"foobar", R.NOT_NMEA),
        (b"", R.NOT_NMEA),
        (b" $GPGGA,1*4E", R.NOT_NMEA),
    ],
)
def test_split_says_why_a_line_is_refused(line: bytes, reason: R) -> None:
    assert split_sentence(line) == reason


def test_with_checksum_builds_what_split_accepts() -> None:
    assert split_sentence(with_checksum(b"GPTXT,01,01,02,hello")) == b"GPTXT,01,01,02,hello"


def test_with_checksum_refuses_a_body_that_cannot_be_framed() -> None:
    with pytest.raises(ValueError, match="cannot contain"):
        with_checksum(b"GPTXT,*")
