"""Backpressure: the flow closes at the high-water mark and opens again at half of it,
telling the listeners once per change."""

from __future__ import annotations

from gateway.flow import Flow


def test_closes_at_high_water_and_opens_at_low_water_once_each() -> None:
    flow = Flow(high_water=100)
    changes: list[bool] = []
    flow.on_change.append(changes.append)
    flow.update(99)
    assert flow.open.is_set() and changes == []
    flow.update(100)
    assert not flow.open.is_set() and changes == [False]
    flow.update(150)
    flow.update(51)  # between the marks: stays closed (no flapping around one mark)
    assert not flow.open.is_set() and changes == [False]
    flow.update(50)
    assert flow.open.is_set() and changes == [False, True]
    flow.update(10)
    assert changes == [False, True]
