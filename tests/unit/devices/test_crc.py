"""devices.checksum's CRC-16s against the catalogue's check values and real frames."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from devices.checksum import crc16_ibm, crc16_x25

CHECK_INPUT = b"123456789"  # the CRC catalogue's "check" input


def crc_bitwise(data: bytes, *, poly_reflected: int, init: int, xorout: int) -> int:
    """The reference: one bit at a time, no table."""
    crc = init
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = (crc >> 1) ^ poly_reflected if crc & 1 else crc >> 1
    return crc ^ xorout


def test_crc16_ibm_check_value() -> None:
    assert crc16_ibm(CHECK_INPUT) == 0xBB3D  # CRC-16/ARC


def test_crc16_x25_check_value() -> None:
    assert crc16_x25(CHECK_INPUT) == 0x906E  # CRC-16/X-25 (CRC-ITU)


def test_crc16_of_nothing() -> None:
    assert (crc16_ibm(b""), crc16_x25(b"")) == (0x0000, 0x0000)


def test_crc16_ibm_of_the_teltonika_wiki_codec8_example() -> None:
    # Data field of the first Codec 8 example; its CRC field is 0000C7CF.
    data = bytes.fromhex(
        "08010000016B40D8EA30010000000000000000000000000000000105021503010101425E0F01F10000601A"
        "014E000000000000000001"
    )
    assert crc16_ibm(data) == 0xC7CF


def test_crc16_x25_of_the_gt06_document_login_reply() -> None:
    # 7878 05 01 0001 D9DC 0D0A: the CRC covers length .. serial.
    assert crc16_x25(bytes.fromhex("05010001")) == 0xD9DC


@given(st.binary(max_size=512))
def test_crc16_ibm_matches_the_bitwise_reference(data: bytes) -> None:
    assert crc16_ibm(data) == crc_bitwise(data, poly_reflected=0xA001, init=0, xorout=0)


@given(st.binary(max_size=512))
def test_crc16_x25_matches_the_bitwise_reference(data: bytes) -> None:
    expected = crc_bitwise(data, poly_reflected=0x8408, init=0xFFFF, xorout=0xFFFF)
    assert crc16_x25(data) == expected


def test_bytearray_and_memoryview_give_the_same_crc() -> None:
    assert crc16_ibm(bytearray(CHECK_INPUT)) == crc16_ibm(memoryview(CHECK_INPUT)) == 0xBB3D
