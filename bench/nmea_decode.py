"""How fast does the NMEA core decode? Sentences/s and fixes/s through `TcpNmeaSession`.

A synthetic fleet (every device sending RMC + GGA once a second, as most trackers do) is
fed through one `TcpNmeaSession` per device on a single core, with no I/O, so the figure is
the protocol core's ceiling. By default each `feed()` carries one device's epoch (about
150 bytes), which is what a TCP read returns for a 1 Hz tracker; `--chunk-bytes` feeds a
replayed log in large reads instead.

    .venv/bin/python bench/nmea_decode.py                 # both parsers, 1,000 devices
    .venv/bin/python bench/nmea_decode.py --parser fast --devices 200 --seconds 300 --cpu 0

The target is 20,000 fixes/s for the whole gateway on two cores shared with PostgreSQL,
so the decoder alone should manage several times that.
"""

from __future__ import annotations

import argparse
import gc
import math
import os
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import get_args

from devices.checksum import with_checksum
from devices.events import DecodeError
from devices.fix import Fix
from devices.nmea import Parser
from devices.tcp_nmea import TcpNmeaSession, login_sentence

_START = datetime(2024, 5, 17, 6, 0, tzinfo=UTC)


def _ddmm(degrees: float, width: int) -> str:
    whole = int(abs(degrees))
    minutes = (abs(degrees) - whole) * 60.0
    return f"{whole:0{width - 2}d}{minutes:07.4f}"


def epoch_bytes(device: int, second: int) -> bytes:
    """One epoch of one device: an RMC and a GGA, CR LF terminated."""
    at = _START + timedelta(seconds=second)
    lat = 48.1 + device * 1e-3 + second * 1e-5
    lon = 11.5 + math.sin(second / 60.0) * 1e-2
    hhmmss, ddmmyy = at.strftime("%H%M%S.00"), at.strftime("%d%m%y")
    lat_f, lon_f = f"{_ddmm(lat, 4)},N", f"{_ddmm(lon, 5)},E"
    rmc = (
        f"GPRMC,{hhmmss},A,{lat_f},{lon_f},{12.5 + device % 7:.1f},{second % 360:.1f},{ddmmyy},,,A"
    )
    gga = f"GPGGA,{hhmmss},{lat_f},{lon_f},1,09,0.9,{500 + device % 50:.1f},M,47.0,M,,"
    return b"".join(with_checksum(s.encode()) + b"\r\n" for s in (rmc, gga))


def workload(devices: int, seconds: int) -> Iterator[tuple[int, bytes]]:
    """(device, epoch) in arrival order: every device's second N before anyone's N + 1."""
    for second in range(seconds):
        for device in range(devices):
            yield device, epoch_bytes(device, second)


def logged_in_sessions(devices: int, parser: Parser) -> list[TcpNmeaSession]:
    sessions = []
    for device in range(devices):
        session = TcpNmeaSession(parser=parser)
        session.feed(login_sentence(f"dev{device}", "bench-token-0123456789"), 0.0)
        session.accept(f"dev{device}", "bench", 0.0)
        sessions.append(session)
    return sessions


def run(parser: Parser, feeds: list[tuple[int, bytes]], devices: int) -> tuple[float, int, int]:
    """Feed everything; return (seconds, fixes, decode errors)."""
    sessions = logged_in_sessions(devices, parser)
    fixes = errors = 0
    now = 1_715_925_600.0
    gc.collect()
    started = time.perf_counter()
    for device, data in feeds:
        for event in sessions[device].feed(data, now):
            if isinstance(event, Fix):
                fixes += 1
            elif isinstance(event, DecodeError):
                errors += 1
        now += 1e-4
    for session in sessions:
        fixes += sum(isinstance(event, Fix) for event in session.close(now))
    return time.perf_counter() - started, fixes, errors


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--parser", choices=[*get_args(Parser), "both"], default="both")
    parser.add_argument("--devices", type=int, default=1000)
    parser.add_argument("--seconds", type=int, default=60, help="epochs per device")
    parser.add_argument("--chunk-bytes", type=int, default=0, help="0: one feed per epoch")
    parser.add_argument("--repeat", type=int, default=3, help="report the best of N runs")
    parser.add_argument("--cpu", type=int, default=None, help="pin to this CPU")
    args = parser.parse_args()
    if args.cpu is not None:
        os.sched_setaffinity(0, {args.cpu})

    feeds = list(workload(args.devices, args.seconds))
    if args.chunk_bytes:
        # One device replaying the whole stream in large reads.
        stream = b"".join(data for _, data in workload(1, args.devices * args.seconds))
        feeds = [
            (0, stream[i : i + args.chunk_bytes]) for i in range(0, len(stream), args.chunk_bytes)
        ]
        args.devices = 1
    sentences = 2 * len(feeds) if not args.chunk_bytes else stream.count(b"\n")
    parsers: list[Parser] = list(get_args(Parser)) if args.parser == "both" else [args.parser]
    print(
        f"{sentences:,} sentences (RMC+GGA) from {args.devices:,} device(s), python {sys.version.split()[0]}"
    )
    for name in parsers:
        elapsed, fixes, errors = min(run(name, feeds, args.devices) for _ in range(args.repeat))
        print(
            f"{name:8} {sentences / elapsed:>10,.0f} sentences/s {fixes / elapsed:>10,.0f} fixes/s"
            f"  ({fixes:,} fixes, {errors} errors, {elapsed:.2f} s)"
        )


if __name__ == "__main__":
    main()
