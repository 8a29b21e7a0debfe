"""The per-address bounds, pure: time moved by assignment."""

from __future__ import annotations

from gateway.listeners.guard import AddressGuard, ConnectionCounts


def test_an_address_over_its_failures_is_blocked_for_the_block_time_alone() -> None:
    guard = AddressGuard(max_failures=3, window_s=60, block_s=300)
    now = 1000.0
    assert [guard.failed("10.0.0.1", now + i) for i in range(4)] == [False, False, False, True]
    assert guard.blocked("10.0.0.1", now + 4)
    assert not guard.blocked("10.0.0.2", now + 4)  # another address: untouched
    assert guard.blocked("10.0.0.1", now + 3 + 299.9)
    assert not guard.blocked("10.0.0.1", now + 3 + 300)


def test_failures_spread_over_windows_never_block() -> None:
    guard = AddressGuard(max_failures=3, window_s=60, block_s=300)
    for minute in range(10):
        for i in range(3):
            assert not guard.failed("10.0.0.1", minute * 60.0 + i)
    assert not guard.blocked("10.0.0.1", 600.0)


def test_memory_is_bounded_and_expired_entries_go_first() -> None:
    guard = AddressGuard(max_failures=1, window_s=60, block_s=300, max_addresses=3)
    guard.failed("a", 0.0)
    guard.failed("a", 1.0)  # blocked until 301
    guard.failed("b", 2.0)
    guard.failed("c", 3.0)
    guard.failed("d", 100.0)  # b and c expired: they go, the blocked a stays
    assert len(guard) == 2 and guard.blocked("a", 100.0)
    for i, address in enumerate("efgh"):
        guard.failed(address, 101.0 + i)
    assert len(guard) == 3


def test_connections_per_address_are_capped_and_released() -> None:
    counts = ConnectionCounts(max_per_address=2)
    assert counts.opened("a") and counts.opened("a")
    assert not counts.opened("a")
    assert counts.opened("b")
    counts.closed("a")
    assert counts.opened("a")
