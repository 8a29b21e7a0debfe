"""One runner for decoder test vectors: whole, byte by byte, and with trailing bytes.

h11's `tests/test_io.py` shape: the same bytes must give the same events however the
stream is split into reads, and bytes after a vector must not change the vector's own
events. Every fix an event carries passes the shared sanity check. The corpus is read
from `FIXGATE_SHARED_DIR` (or the `shared/` beside the repository); a missing corpus file
raises, so the tests that need it fail rather than skip.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Callable, Iterable, Sequence
from typing import Any, Protocol

from devices.events import FixBatch
from devices.fix import Fix
from tests.support.paths import corpus_file
from tests.support.sanity import assert_sane_fix

NOW = 1_717_000_000.0
"""The receive time every vector is fed at (2024-05-29T16:26:40Z)."""


class StreamSession(Protocol):
    """A sans-IO TCP session: `feed()` bytes, `close()` at EOF, both returning events."""

    def feed(self, data: bytes, now: float) -> Sequence[object]: ...

    def close(self, now: float) -> Sequence[object]: ...


def load_corpus(relative: str) -> list[dict[str, Any]]:
    """A corpus JSON file (e.g. `teltonika/teltonika-packets.json`); raises if missing."""
    path = corpus_file(*relative.split("/"))
    packets: list[dict[str, Any]] = json.loads(path.read_text())
    return packets


def fixes_of(events: Iterable[object]) -> list[Fix]:
    """Every fix the events carry, in order."""
    return [fix for event in events if isinstance(event, FixBatch) for fix in event.fixes]


def chunked(data: bytes, cuts: Iterable[int]) -> list[bytes]:
    """`data` split at `cuts` (taken modulo its length): arbitrary reads for property tests."""
    points = sorted({cut % (len(data) + 1) for cut in cuts})
    return [data[a:b] for a, b in itertools.pairwise([0, *points, len(data)])]


def drive(session: StreamSession, chunks: Iterable[bytes], now: float = NOW) -> list[object]:
    """Feed `chunks` in order, then EOF; every event, in order."""
    events: list[object] = []
    for chunk in chunks:
        events.extend(session.feed(chunk, now))
    events.extend(session.close(now))
    return events


def run_vector(
    new_session: Callable[[], StreamSession],
    data: bytes,
    *,
    trailing: bytes,
    now: float = NOW,
) -> list[object]:
    """The events of `data` on a fresh session, checked three ways; returned whole.

    - whole: one read, then EOF;
    - byte by byte: one read per byte, then EOF; must give the same events;
    - trailing: `data + trailing` in one read (no EOF); must start with the events that
      `data` alone gives before EOF (what the trailing bytes cause comes after).
    Every fix in the events passes `assert_sane_fix`.
    """
    whole = drive(new_session(), [data], now)
    bytewise = drive(new_session(), [data[i : i + 1] for i in range(len(data))], now)
    assert bytewise == whole
    before_eof = list(new_session().feed(data, now))
    with_trailing = list(new_session().feed(data + trailing, now))
    assert with_trailing[: len(before_eof)] == before_eof
    for fix in fixes_of(whole):
        assert_sane_fix(fix)
    return whole
