"""The disk spool on a real file system: order, fsync'd appends, crash tails, damage, bound."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from devices.fix import Fix, Protocol
from gateway import metrics
from gateway.sinks.spool import SUFFIX, Spool, SpoolError
from ingest.spool_records import (
    HEADER,
    Damaged,
    Survey,
    decode_payload,
    encode_record,
    parse_header,
    survey,
)

T0 = datetime(2026, 11, 21, 8, 0, tzinfo=UTC)


def batch(first: int, n: int, device: str = "truck-1") -> list[Fix]:
    return [
        Fix(
            device_id=device,
            tenant_id="acme",
            time=T0 + timedelta(seconds=first + i),
            lat=48.0 + (first + i) * 1e-5,
            lon=11.0,
            speed=12.5,
            satellites=9,
            protocol=Protocol.NMEA,
            received_at=T0 + timedelta(seconds=first + i, milliseconds=300),
        )
        for i in range(n)
    ]


async def drain(spool: Spool) -> list[list[Fix]]:
    out = []
    while (found := await spool.peek()) is not None:
        cursor, rows = found
        out.append(rows)
        await spool.consume(cursor)
    return out


def segments(directory: Path) -> list[Path]:
    return sorted(p for p in directory.iterdir() if p.suffix == SUFFIX)


def test_record_round_trip_keeps_every_field() -> None:
    rows = batch(0, 3)
    record = encode_record(rows)
    header = parse_header(record[: HEADER.size])
    assert header.fixes == 3 and header.record_bytes == len(record)
    assert decode_payload(header, record[HEADER.size :]) == rows


def test_record_damage_is_detected() -> None:
    record = bytearray(encode_record(batch(0, 2)))
    record[-1] ^= 0x01
    header = parse_header(bytes(record[: HEADER.size]))
    with pytest.raises(Damaged):
        decode_payload(header, bytes(record[HEADER.size :]))
    with pytest.raises(Damaged):
        parse_header(b"XXXX" + bytes(record[4 : HEADER.size]))


def test_survey_tells_a_cut_tail_from_damage_in_the_middle() -> None:
    a, b, c = encode_record(batch(0, 2)), encode_record(batch(2, 5)), encode_record(batch(7, 1))
    assert survey(a + b) == Survey(len(a) + len(b), 7, 0)
    assert survey(a + b[:-3]) == Survey(len(a), 2, 0)  # a crash in the middle of an append
    assert survey(a + b[: HEADER.size - 1]) == Survey(len(a), 2, 0)
    rotten = bytearray(b)
    rotten[HEADER.size + 3] ^= 0xFF
    assert survey(a + bytes(rotten) + c) == Survey(len(a) + len(b) + len(c), 3, 1)


async def test_replays_in_append_order_across_segments(tmp_path: Path) -> None:
    spool = Spool(tmp_path, max_bytes=1024 * 1024)
    spool.segment_bytes = 2048  # many small segments
    spool.open()
    written = [batch(i * 10, 10) for i in range(20)]
    for rows in written:
        assert await spool.append(rows)
    assert spool.fixes == 200
    assert len(segments(tmp_path)) > 3
    assert await drain(spool) == written
    assert spool.fixes == 0 and spool.bytes == 0
    assert segments(tmp_path) == []  # replayed segments are deleted
    spool.close()


async def test_a_new_spool_replays_what_the_last_one_left(tmp_path: Path) -> None:
    first = Spool(tmp_path, max_bytes=1024 * 1024)
    first.open()
    for i in range(3):
        await first.append(batch(i * 5, 5))
    first.close()
    second = Spool(tmp_path, max_bytes=1024 * 1024)
    second.open()
    assert second.fixes == 15
    assert [r[0].time for r in await drain(second)] == [
        T0,
        T0 + timedelta(seconds=5),
        T0 + timedelta(seconds=10),
    ]
    second.close()


async def test_a_write_cut_short_by_a_crash_is_cut_off_at_start(tmp_path: Path) -> None:
    spool = Spool(tmp_path, max_bytes=1024 * 1024)
    spool.open()
    await spool.append(batch(0, 4))
    await spool.append(batch(4, 4))
    spool.close()
    (path,) = segments(tmp_path)
    intact = path.stat().st_size
    # What a crash in the middle of a third append leaves:
    path.write_bytes(path.read_bytes() + encode_record(batch(8, 4))[:-10])
    reopened = Spool(tmp_path, max_bytes=1024 * 1024)
    reopened.open()
    assert reopened.fixes == 8
    assert path.stat().st_size == intact
    assert [len(rows) for rows in await drain(reopened)] == [4, 4]
    reopened.close()


async def reopened_with_rot(tmp_path: Path, records: int, rotten: int) -> Spool:
    """A spool of `records` 3-fix records whose record number `rotten` (0-based) has a
    flipped byte in its payload, reopened."""
    spool = Spool(tmp_path, max_bytes=1024 * 1024)
    spool.open()
    for i in range(records):
        await spool.append(batch(i * 3, 3))
    spool.close()
    (path,) = segments(tmp_path)
    data = bytearray(path.read_bytes())
    data[rotten * len(encode_record(batch(0, 3))) + HEADER.size + 5] ^= 0xFF
    path.write_bytes(bytes(data))
    reopened = Spool(tmp_path, max_bytes=1024 * 1024)
    reopened.open()
    return reopened


async def test_a_damaged_record_is_counted_and_skipped(tmp_path: Path) -> None:
    damaged_before = metrics.SPOOL_DAMAGED._value.get()
    reopened = await reopened_with_rot(tmp_path, records=3, rotten=1)
    replayed = await drain(reopened)
    assert [rows[0].time for rows in replayed] == [T0, T0 + timedelta(seconds=6)]
    assert metrics.SPOOL_DAMAGED._value.get() == damaged_before + 1
    assert reopened.fixes == 0 and segments(tmp_path) == []
    reopened.close()


async def test_records_are_merged_up_to_a_bound_within_a_segment(tmp_path: Path) -> None:
    spool = Spool(tmp_path, max_bytes=1024 * 1024)
    spool.segment_bytes = len(encode_record(batch(0, 10))) * 5  # five records per segment
    spool.open()
    written = [batch(i * 10, 10) for i in range(8)]
    for rows in written:
        assert await spool.append(rows)
    taken = []
    while (found := await spool.peek(max_fixes=25)) is not None:
        cursor, rows = found
        taken.append(rows)
        await spool.consume(cursor)
    # 30 (three records reach 25), 20 (the first segment's end), then the second segment's 30.
    assert [len(rows) for rows in taken] == [30, 20, 30]
    assert [f for rows in taken for f in rows] == [f for rows in written for f in rows]
    assert spool.fixes == 0 and segments(tmp_path) == []
    spool.close()


async def test_damage_ends_a_merge_and_is_skipped_by_the_next_peek(tmp_path: Path) -> None:
    reopened = await reopened_with_rot(tmp_path, records=4, rotten=2)
    cursor, rows = await reopened.peek(max_fixes=100)  # type: ignore[misc]
    assert [f.time for f in rows] == [T0 + timedelta(seconds=s) for s in range(6)]
    await reopened.consume(cursor)
    cursor, rows = await reopened.peek(max_fixes=100)  # type: ignore[misc]
    assert [f.time for f in rows] == [T0 + timedelta(seconds=s) for s in range(9, 12)]
    await reopened.consume(cursor)
    assert await reopened.peek(max_fixes=100) is None
    reopened.close()


async def test_a_full_spool_refuses_and_takes_again_once_replayed(tmp_path: Path) -> None:
    one = len(encode_record(batch(0, 50)))
    spool = Spool(tmp_path, max_bytes=one * 4 + 10)
    spool.segment_bytes = one * 2
    spool.open()
    for i in range(4):
        assert await spool.append(batch(i * 50, 50))
    assert not await spool.append(batch(200, 50))
    assert spool.full and metrics.SPOOL_FULL._value.get() == 1
    assert spool.fixes == 200  # the refused batch was not written
    # Replaying the first sealed segment frees its space.
    for _ in range(2):
        cursor, _rows = await spool.peek()  # type: ignore[misc]
        await spool.consume(cursor)
    assert await spool.append(batch(200, 50))
    assert not spool.full and metrics.SPOOL_FULL._value.get() == 0
    assert [rows[0].time for rows in await drain(spool)] == [
        T0 + timedelta(seconds=s) for s in (100, 150, 200)
    ]
    spool.close()


def test_one_gateway_per_spool_directory(tmp_path: Path) -> None:
    first = Spool(tmp_path, max_bytes=1024)
    first.open()
    with pytest.raises(SpoolError, match="in use by another gateway"):
        Spool(tmp_path, max_bytes=1024).open()
    first.close()
    again = Spool(tmp_path, max_bytes=1024)
    again.open()
    again.close()


async def test_the_spool_is_readable_by_its_owner_alone(tmp_path: Path) -> None:
    """Fixes say where people are: segments 0600, the folder 0700, also those an older
    release left world-readable."""
    directory = tmp_path / "spool"
    directory.mkdir(mode=0o755)
    old = directory / f"{0:020d}{SUFFIX}"
    old.write_bytes(b"")
    old.chmod(0o644)
    spool = Spool(directory, max_bytes=1024 * 1024)
    spool.open()
    assert await spool.append(batch(0, 3))
    assert directory.stat().st_mode & 0o777 == 0o700
    for path in directory.iterdir():
        assert path.stat().st_mode & 0o077 == 0, path
    spool.close()
