"""The ingest core, pure: batching by size and by age with time moved by assignment,
acknowledgements, late fixes, equal-time resends and the jump filter's effect on sinks."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import msgspec

from devices.fix import Fix, Protocol
from ingest.filters import FilterLimits, Reason
from ingest.pipeline import BatchLimits, Ingest

T0 = datetime(2026, 11, 21, 12, 0, tzinfo=UTC)
NOW = T0.timestamp() + 10.0  # the server clock, a little after the fixes


def fix(
    seconds: float, device: str = "d1", lat: float = 52.5, lon: float = 13.4, **kw: object
) -> Fix:
    return Fix(
        device_id=device, tenant_id="t", time=T0 + timedelta(seconds=seconds), lat=lat, lon=lon,
        protocol=Protocol.NMEA, **kw,  # type: ignore[arg-type]  # test helper: fields by name
    )  # fmt: skip


def core(max_fixes: int = 3, max_age_s: float = 0.05) -> Ingest:
    return Ingest(FilterLimits(), BatchLimits(max_batch_fixes=max_fixes, max_batch_age_s=max_age_s))


class Acks:
    def __init__(self) -> None:
        self.fired: list[str] = []

    def ack(self, name: str) -> Callable[[], None]:
        return lambda: self.fired.append(name)


def test_an_empty_core_has_no_deadline_and_no_batch() -> None:
    ingest = core()
    assert ingest.next_deadline() is None
    assert not ingest.ready(NOW)
    assert ingest.take() is None


def test_a_batch_closes_by_age_at_its_deadline() -> None:
    ingest = core(max_fixes=100, max_age_s=0.05)
    now = NOW
    ingest.submit([fix(0)], now)
    assert ingest.next_deadline() == now + 0.05
    now += 0.049
    assert not ingest.ready(now)
    now += 0.001
    assert ingest.ready(now)
    batch = ingest.take()
    assert batch is not None and [f.time for f in batch.rows] == [T0]
    assert ingest.next_deadline() is None and ingest.pending == 0


def test_a_batch_closes_when_full_before_its_deadline() -> None:
    ingest = core(max_fixes=3, max_age_s=10.0)
    ingest.submit([fix(0), fix(1)], NOW)
    assert not ingest.ready(NOW)
    ingest.submit([fix(2)], NOW)
    assert ingest.ready(NOW)
    batch = ingest.take()
    assert batch is not None and len(batch.rows) == 3


def test_the_deadline_is_the_first_fixs_not_the_last() -> None:
    ingest = core(max_fixes=100, max_age_s=1.0)
    ingest.submit([fix(0)], NOW)
    ingest.submit([fix(1)], NOW + 0.9)
    assert ingest.next_deadline() == NOW + 1.0


def test_an_ack_with_nothing_to_store_fires_at_once() -> None:
    ingest, acks = core(), Acks()
    ingest.submit([], NOW, acks.ack("empty"))
    assert acks.fired == ["empty"]
    assert ingest.take() is None


def test_an_ack_rides_in_its_batch_until_the_writer_fires_it() -> None:
    ingest, acks = core(), Acks()
    ingest.submit([fix(0)], NOW, acks.ack("m1"))
    ingest.submit([], NOW, acks.ack("m2"))  # an empty message behind m1 waits for m1's batch
    assert acks.fired == []
    batch = ingest.take()
    assert batch is not None
    for ack in batch.acks:
        ack()
    assert acks.fired == ["m1", "m2"]


def test_live_carries_every_fix_that_moves_a_device_forward_in_order() -> None:
    ingest = core(max_fixes=100)
    ingest.submit([fix(0), fix(1, "d2"), fix(2), fix(3)], NOW)
    batch = ingest.take()
    assert batch is not None
    assert [(f.device_id, f.time) for f in batch.live] == [
        ("d1", T0), ("d2", T0 + timedelta(seconds=1)),
        ("d1", T0 + timedelta(seconds=2)), ("d1", T0 + timedelta(seconds=3)),
    ]  # fmt: skip


def test_a_late_fix_goes_to_history_and_not_to_live() -> None:
    ingest = core(max_fixes=100)
    ingest.submit([fix(10)], NOW)
    ingest.take()
    ingest.submit([fix(5)], NOW)
    batch = ingest.take()
    assert batch is not None
    assert [f.time for f in batch.rows] == [T0 + timedelta(seconds=5)]
    assert batch.live == []
    assert ingest.counts.late == 1


def test_an_equal_time_resend_is_stored_again_and_moves_nothing() -> None:
    ingest = core(max_fixes=100)
    ingest.submit([fix(10)], NOW)
    ingest.take()
    ingest.submit([fix(10)], NOW)
    batch = ingest.take()
    assert batch is not None
    assert len(batch.rows) == 1  # the database's unique key stores it once
    assert batch.live == [] and ingest.counts.late == 0


def test_a_jump_is_kept_in_history_flagged_invalid_and_never_live() -> None:
    ingest = core(max_fixes=100)
    ingest.submit([fix(0)], NOW)
    ingest.take()
    ingest.submit([fix(1, lat=53.5)], NOW)  # 111 km in a second
    batch = ingest.take()
    assert batch is not None
    assert [f.valid for f in batch.rows] == [False]
    assert batch.live == []
    assert ingest.counts.rejected[Reason.JUMP] == 1
    # The next good fix is judged against the last good position, not the jump.
    ingest.submit([fix(2, lat=52.5001)], NOW)
    batch = ingest.take()
    assert batch is not None and [f.valid for f in batch.live] == [True]


def test_a_dropped_fix_reaches_no_sink_and_is_counted() -> None:
    ingest = core(max_fixes=100)
    ingest.submit([fix(0, lat=0.0, lon=0.0)], NOW)
    batch = ingest.take()
    assert batch is not None and batch.rows == [] and batch.live == []
    assert ingest.counts.rejected[Reason.ZERO] == 1


def test_received_counts_are_per_protocol() -> None:
    ingest = core(max_fixes=100)
    ingest.submit([fix(0), fix(1)], NOW)
    ingest.submit([msgspec.structs.replace(fix(2), protocol=Protocol.OWNTRACKS)], NOW)
    assert ingest.counts.received == {"nmea": 2, "owntracks": 1}


def received(seconds: float) -> dict[str, object]:
    return {"received_at": T0 + timedelta(seconds=seconds)}


def test_a_fix_far_ahead_is_refused_and_advances_nothing() -> None:
    """Issue 20: one fix dated 290 s ahead made every real fix "late" for five minutes."""
    ingest = Ingest(FilterLimits(max_clock_skew_s=30.0), BatchLimits())
    now = T0.timestamp()
    ingest.submit([fix(-1, **received(0))], now)
    ingest.submit([fix(290, lat=52.76, **received(0.5))], now + 0.5)  # 29 km away, refused
    ingest.submit([fix(1, lat=52.5001, **received(1))], now + 1)
    batch = ingest.take()
    assert batch is not None
    assert [f.time for f in batch.rows] == [T0 - timedelta(seconds=1), T0 + timedelta(seconds=1)]
    assert [f.lat for f in batch.live] == [52.5, 52.5001]
    assert ingest.counts.rejected[Reason.FUTURE] == 1 and ingest.counts.late == 0


def test_a_filtered_fix_is_history_but_never_the_devices_newest() -> None:
    ingest = core(max_fixes=100)
    ingest.submit([fix(0)], NOW)
    ingest.submit([fix(5, lat=40.0)], NOW)  # a jump: history, flagged
    ingest.submit([fix(3, lat=52.5001)], NOW)  # after the jump's time, but the newest good
    batch = ingest.take()
    assert batch is not None
    assert [(f.time, f.valid) for f in batch.rows][1] == (T0 + timedelta(seconds=5), False)
    assert [f.lat for f in batch.live] == [52.5, 52.5001]
    assert ingest.counts.late == 0


def test_within_the_skew_a_fix_ahead_counts_as_received_and_the_next_one_is_newer() -> None:
    """Newest by min(fix time, received time): 25 s ahead holds the live position only
    until the device's next real fix."""
    ingest = core(max_fixes=100)
    now = T0.timestamp()
    ingest.submit([fix(25, **received(0))], now)
    ingest.submit([fix(1, lat=52.5001, **received(1))], now + 1)
    batch = ingest.take()
    assert batch is not None and [f.lat for f in batch.live] == [52.5, 52.5001]
    assert ingest.counts.late == 0


def test_a_backlog_keeps_its_fix_time_order() -> None:
    """Stored fixes uploaded late (received long after): their own times order them."""
    ingest = core(max_fixes=100)
    now = T0.timestamp() + 600
    ingest.submit([fix(10, **received(600)), fix(5, **received(600))], now)
    batch = ingest.take()
    assert batch is not None and [f.time for f in batch.live] == [T0 + timedelta(seconds=10)]
    assert ingest.counts.late == 1
