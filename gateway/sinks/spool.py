"""The disk spool: where acknowledged batches wait while TimescaleDB is away or too slow.

A directory of append-only segment files (`0000000000000001.fgs`, ...) holding records
of `ingest.spool_records`. `append` writes one batch and fsyncs before it returns, so a
batch may be acknowledged as soon as it is spooled. The replayer takes records oldest
first (`peek`, then `consume` once the database has them); a segment is deleted when all
of its records are in the database. The replay position is not persisted: after a crash
the oldest segment is replayed from its start, which the database's dedup makes harmless.

Bounded by `max_bytes` on disk: an append that would pass it is refused (`append`
returns False) and the caller keeps the batch, unacknowledged, until the database or the
spool takes it. All file work runs on one worker thread, in order, off the event loop.

One gateway per spool directory: a lock file enforces it.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import logging
import os
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import msgspec

from devices.fix import Fix
from gateway import metrics
from ingest.spool_records import (
    HEADER,
    Damaged,
    decode_payload,
    encode_record,
    next_intact,
    parse_header,
    survey,
)

log = logging.getLogger(__name__)

SUFFIX = ".fgs"
SEGMENT_MODE = 0o600
"""Segments hold devices' positions: readable by the gateway's user only."""
MAX_SEGMENT_BYTES = 8 * 1024 * 1024
"""Small segments free disk space soon after the replay passes them."""


class SpoolError(RuntimeError):
    """The spool cannot be used (the message says why and what to do)."""


class Segment(msgspec.Struct):
    seq: int
    path: Path
    size: int
    fixes: int
    sealed: bool


class Cursor(msgspec.Struct, frozen=True):
    """A record handed out by `peek`: where the replay stands once it is consumed."""

    seq: int
    end: int
    fixes: int


class Spool:
    def __init__(self, directory: Path, max_bytes: int) -> None:
        self.directory = directory
        self.max_bytes = max_bytes
        self.segment_bytes = min(MAX_SEGMENT_BYTES, max(64 * 1024, max_bytes // 8))
        self.bytes = 0
        self.fixes = 0
        self.full = False
        self._refused_bytes = 0  # the last record refused: room for it ends `full`
        self._segments: deque[Segment] = deque()
        self._active: int | None = None  # fd of the last segment, open for appending
        self._read_offset = 0  # in the oldest segment
        self._lock_fd: int | None = None
        self._worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="spool")

    # ---- start and stop ------------------------------------------------------------

    def open(self) -> None:
        """Lock the directory and take stock of what a previous run left behind."""
        try:
            # Fixes are personal data (where a technician is): the owner's alone, whatever
            # the umask, and a folder made by an older release is closed up too.
            self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
            self.directory.chmod(0o700)
            self._lock_fd = os.open(self.directory / "lock", os.O_RDWR | os.O_CREAT, 0o600)
            for segment in self.directory.glob(f"*{SUFFIX}"):
                segment.chmod(SEGMENT_MODE)
        except OSError as e:
            raise SpoolError(f"cannot use spool directory {self.directory}: {e}") from e
        try:
            fcntl.flock(self._lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise SpoolError(
                f"spool directory {self.directory} is in use by another gateway; give each its own FIXGATE_SPOOL_DIR"
            ) from None
        paths = sorted(
            p for p in self.directory.iterdir() if p.suffix == SUFFIX and p.stem.isdigit()
        )
        for i, path in enumerate(paths):
            size, fixes = _take_stock(path, last=i == len(paths) - 1)
            if size == 0:
                path.unlink()
                continue
            self._segments.append(Segment(int(path.stem), path, size, fixes, sealed=True))
            self.bytes += size
            self.fixes += fixes
        if self.fixes:
            log.warning(
                "spool: %d fixes (%d bytes) from an earlier run wait in %s; replaying them",
                self.fixes, self.bytes, self.directory,
            )  # fmt: skip
        self._publish()

    def close(self) -> None:
        self._worker.shutdown(wait=True)
        if self._active is not None:
            os.close(self._active)
            self._active = None
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    # ---- async facade --------------------------------------------------------------

    async def append(self, rows: list[Fix]) -> bool:
        """Write the batch and fsync it; False (nothing written) when the spool is full."""
        record = encode_record(rows)
        return await asyncio.get_running_loop().run_in_executor(
            self._worker, self._append, record, len(rows)
        )

    async def peek(self, max_fixes: int = 1) -> tuple[Cursor, list[Fix]] | None:
        """The oldest records not yet replayed, or None when the spool is empty: one
        record, then more of the same segment while fewer than `max_fixes` are taken
        (one database write for many small spooled batches)."""
        return await asyncio.get_running_loop().run_in_executor(self._worker, self._peek, max_fixes)

    async def consume(self, cursor: Cursor) -> None:
        """The record is in the database: move past it, delete its segment when done."""
        await asyncio.get_running_loop().run_in_executor(self._worker, self._consume, cursor)

    # ---- the worker thread's side ----------------------------------------------------

    def _append(self, record: bytes, fixes: int) -> bool:
        if self.bytes + len(record) > self.max_bytes:
            self._refused_bytes = len(record)
            if not self.full:
                self.full = True
                log.error(
                    "spool: full (%d of %d bytes, %d fixes): intake is paused, nothing is acknowledged"
                    " until TimescaleDB takes the spooled fixes back",
                    self.bytes, self.max_bytes, self.fixes,
                )  # fmt: skip
                self._publish()
            return False
        segment = self._segments[-1] if self._segments and not self._segments[-1].sealed else None
        if segment is None:
            segment = self._new_segment()
        assert self._active is not None
        try:
            _write_all(self._active, record)
            os.fdatasync(self._active)
        except OSError:
            # Whatever part was written is an incomplete record: cut it off, then report.
            with contextlib.suppress(OSError):
                os.ftruncate(self._active, segment.size)
            raise
        segment.size += len(record)
        segment.fixes += fixes
        self.bytes += len(record)
        self.fixes += fixes
        metrics.SPOOL_WRITTEN.inc(fixes)
        self._has_room()
        if segment.size >= self.segment_bytes:
            self._seal()
        self._publish()
        return True

    def _new_segment(self) -> Segment:
        seq = self._segments[-1].seq + 1 if self._segments else 1
        path = self.directory / f"{seq:016d}{SUFFIX}"
        self._active = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, SEGMENT_MODE)
        _fsync_directory(self.directory)  # the new file's name must survive a crash too
        segment = Segment(seq, path, 0, 0, sealed=False)
        self._segments.append(segment)
        return segment

    def _seal(self) -> None:
        if self._active is not None:
            os.close(self._active)
            self._active = None
        if self._segments:
            self._segments[-1].sealed = True

    def _peek(self, max_fixes: int) -> tuple[Cursor, list[Fix]] | None:
        while self._segments:
            segment = self._segments[0]
            if self._read_offset >= segment.size:
                if not segment.sealed:
                    return None  # caught up with the writer
                self._drop_oldest()
                continue
            if not segment.sealed:
                self._seal()  # the replay reads sealed segments only; appends start a new one
            found = self._read_records(segment, max_fixes)
            if found is not None:
                return found
        return None

    def _read_records(self, segment: Segment, max_fixes: int) -> tuple[Cursor, list[Fix]] | None:
        """Records from the read offset on; damage is counted, logged and stepped over
        when it comes first, else left for the next call (it ends this one)."""
        offset, fixes = self._read_offset, 0
        rows: list[Fix] = []
        with open(segment.path, "rb") as f:
            f.seek(offset)
            while offset < segment.size and (not rows or len(rows) < max_fixes):
                raw = f.read(HEADER.size)
                try:
                    header = parse_header(raw) if len(raw) == HEADER.size else None
                    if header is None:
                        raise Damaged("segment ends inside a record header")
                    rows.extend(decode_payload(header, f.read(header.payload_bytes)))
                except Damaged as e:
                    if rows:
                        break
                    f.seek(offset)
                    self._skip(segment, f.read(), str(e))
                    return None
                offset += header.record_bytes
                fixes += header.fixes
        return Cursor(segment.seq, offset, fixes), rows

    def _skip(self, segment: Segment, rest: bytes, why: str) -> None:
        """Step from damage at the read offset to the next intact record (or the end)."""
        found = next_intact(rest, 1)
        skipped = len(rest) if found is None else found
        metrics.SPOOL_DAMAGED.inc()
        log.error(
            "spool: damaged record in %s at byte %d (%s): skipping %d bytes, the fixes in them are lost",
            segment.path.name, self._read_offset, why, skipped,
        )  # fmt: skip
        self._read_offset += skipped

    def _consume(self, cursor: Cursor) -> None:
        if not self._segments or self._segments[0].seq != cursor.seq:
            return
        segment = self._segments[0]
        self._read_offset = cursor.end
        self.fixes -= cursor.fixes
        segment.fixes -= cursor.fixes
        metrics.SPOOL_REPLAYED.inc(cursor.fixes)
        if self._read_offset >= segment.size and segment.sealed:
            self._drop_oldest()
        self._publish()

    def _drop_oldest(self) -> None:
        segment = self._segments.popleft()
        self.fixes -= segment.fixes  # left over only when damage was skipped
        self.bytes -= segment.size
        self._read_offset = 0
        with contextlib.suppress(FileNotFoundError):
            segment.path.unlink()
        if not self._segments or self.bytes + self._refused_bytes <= self.max_bytes:
            self._has_room()
        self._publish()

    def _has_room(self) -> None:
        if self.full:
            self.full = False
            log.warning("spool: has room again (%d of %d bytes)", self.bytes, self.max_bytes)

    def _publish(self) -> None:
        metrics.SPOOL_BYTES.set(self.bytes)
        metrics.SPOOL_FIXES.set(self.fixes)
        metrics.SPOOL_FULL.set(1 if self.full else 0)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def _fsync_directory(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _take_stock(path: Path, last: bool) -> tuple[int, int]:
    """Size and intact fixes of a segment an earlier run left. The last one may end in a
    write a crash cut short (never acknowledged): that tail is cut off."""
    data = path.read_bytes()
    found = survey(data)
    if found.damaged:
        log.error(
            "spool: %s has %d damaged stretches; the replay will skip them",
            path.name,
            found.damaged,
        )
    if last and found.intact_end < len(data):
        log.warning(
            "spool: cutting %d bytes after the last intact record of %s (a write cut short, never acknowledged)",
            len(data) - found.intact_end, path.name,
        )  # fmt: skip
        with open(path, "r+b") as f:
            f.truncate(found.intact_end)
            os.fsync(f.fileno())
        return found.intact_end, found.fixes
    return len(data), found.fixes
