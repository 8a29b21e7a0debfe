"""How fast the MQTT JSON decoders are, on one core.

    .venv/bin/python bench/json_decode.py [--seconds 2]

Prints messages/s for single-fix messages (fixgate JSON, OwnTracks, topic parsing) and
fixes/s for 100-fix batches. The target (DESIGN, MQTT path): 15k messages/s and 40k
fixes/s in batches on 2 shared cores, for everything, not just decoding; decoding should
take a small fraction of that budget. The process is pinned to one CPU where the OS allows.
"""

from __future__ import annotations

import argparse
import os
import platform
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import msgspec

from devices.fix import Fix
from devices.jsonfix import decode_json_fixes, encode_json_fixes
from devices.owntracks import decode_owntracks
from devices.topics import parse_topic

NOW = 1_717_000_060.0
START = datetime(2024, 5, 29, 16, 0, tzinfo=UTC)


def sample_fix(i: int) -> Fix:
    return Fix(
        device_id="truck-7",
        tenant_id="acme",
        time=START + timedelta(seconds=i),
        lat=48.856826 + i * 1e-5,
        lon=2.292713 + i * 1e-5,
        altitude=154.2,
        speed=12.34,
        heading=271.5,
        accuracy=4.8,
        hdop=0.9,
        satellites=11,
        battery=53,
    )


OWNTRACKS = msgspec.json.encode(
    {
        "_type": "location", "tst": 1717000000, "lat": 48.85833, "lon": 2.29513,
        "acc": 5, "alt": 167, "vac": 21, "vel": 61, "cog": 271, "batt": 41,
        "tid": "JJ", "conn": "m", "t": "u", "created_at": 1717000001,
    }
)  # fmt: skip


def rate(label: str, unit: str, per_call: int, call: Callable[[], object], seconds: float) -> None:
    call()  # warm up
    calls = 0
    started = time.perf_counter()
    deadline = started + seconds
    while (now := time.perf_counter()) < deadline:
        for _ in range(100):
            call()
        calls += 100
    elapsed = now - started
    per_second = calls * per_call / elapsed
    print(f"{label:<44} {per_second:>12,.0f} {unit}/s  ({elapsed / calls * 1e6:6.2f} us/call)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=2.0, help="time per measurement")
    seconds = parser.parse_args().seconds
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})
    print(f"Python {platform.python_version()}, msgspec {msgspec.__version__}, one core\n")

    single = encode_json_fixes([sample_fix(0)])[1:-1]  # one object, not a batch of one
    batch = encode_json_fixes([sample_fix(i) for i in range(100)])
    assert decode_json_fixes(single, "truck-7", "acme", NOW)[1] == ()
    assert len(decode_json_fixes(batch, "truck-7", "acme", NOW)[0]) == 100

    rate(
        f"fixgate JSON, 1 fix/message ({len(single)} B)",
        "messages",
        1,
        lambda: decode_json_fixes(single, "truck-7", "acme", NOW),
        seconds,
    )
    rate(
        f"fixgate JSON, 100 fixes/message ({len(batch) // 1024} KiB)",
        "fixes",
        100,
        lambda: decode_json_fixes(batch, "truck-7", "acme", NOW),
        seconds,
    )
    rate(
        f"OwnTracks location ({len(OWNTRACKS)} B)",
        "messages",
        1,
        lambda: decode_owntracks(OWNTRACKS, "phone-jane", "acme", NOW),
        seconds,
    )
    rate(
        "parse_topic fixgate/{tenant}/{device}/fix",
        "topics",
        1,
        lambda: parse_topic("test123/fixgate/acme/truck-7/fix", "test123/"),
        seconds,
    )


if __name__ == "__main__":
    main()
