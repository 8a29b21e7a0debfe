"""Load generators for bench/ingest.py: MQTT publishers and TCP NMEA senders.

Each runs in a process of its own, and does as little as it can per fix while the clock
runs: payloads are encoded before the measured phase, TCP data leaves in large `send()`
calls from one non-blocking selector loop, and the fixed-rate senders pace a global
schedule (event j is due at start + j / rate) instead of a timer per connection.

Every device's fixes are one second apart from a whole-second `t0`, so a live position's
fix time in Redis says how many of the device's fixes it covers (`index = ts - t0`).
"""

from __future__ import annotations

import multiprocessing as mp
import selectors
import socket
import time
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

from devices.checksum import nmea_checksum
from devices.fix import Fix, Protocol
from devices.jsonfix import encode_json_fixes
from devices.nmea_write import ddmm
from devices.tcp_nmea import login_sentence
from gateway.config import mqtt_address

TOPIC_PREFIX = "bench/"
MAX_UNACKED_PUBLISHES = 20_000
"""paho gives each unacknowledged message one of 65,535 ids: stay well below."""
SEND_CHUNK_BYTES = 64 * 1024
"""Bytes per send() in the TCP flood: few system calls per fix, small enough to share."""


def device_lat(device: str) -> float:
    return 48.0 + (sum(device.encode()) % 1000) * 1e-3


# ---- payloads --------------------------------------------------------------------------


def json_payloads(device: str, n: int, t0: int, per_message: int) -> list[bytes]:
    """The device's n fixes (t0 + i seconds) as fixgate JSON, `per_message` per payload."""
    start = datetime.fromtimestamp(t0, UTC)
    lat = device_lat(device)
    payloads = []
    for first in range(0, n, per_message):
        batch = [
            Fix(device_id=device, tenant_id="bench", time=start + timedelta(seconds=i), lat=lat + i * 1e-6,
                lon=11.0, speed=10.0, heading=90.0, protocol=Protocol.JSON)
            for i in range(first, min(n, first + per_message))
        ]  # fmt: skip
        payload = encode_json_fixes(batch)
        payloads.append(payload[1:-1] if per_message == 1 else payload)  # a lone object, not [obj]
    return payloads


def _sentence(body: str) -> bytes:
    raw = body.encode()
    return b"$%s*%02X\r\n" % (raw, nmea_checksum(raw))


def nmea_epochs(device: str, n: int, t0: int) -> list[bytes]:
    """The device's n epochs (RMC + GGA, t0 + i seconds), each as one bytes object.

    `devices.nmea_write.rmc_gga` with the date and time formatted by arithmetic, ~4x
    faster: a million epochs are built in seconds, before the clock starts."""
    lat0, lon = device_lat(device), ddmm(11.0, False)
    out = []
    dmy_day, dmy = -1, ""
    for i in range(n):
        day, second = divmod(t0 + i, 86400)
        if day != dmy_day:
            dmy_day, dmy = day, datetime.fromtimestamp(day * 86400, UTC).strftime("%d%m%y")
        hh, rest = divmod(second, 3600)
        hms = f"{hh:02d}{rest // 60:02d}{rest % 60:02d}.00"
        pos = f"{ddmm(lat0 + i * 1e-6, True)},{lon}"
        out.append(
            _sentence(f"GPRMC,{hms},A,{pos},10.0,90.0,{dmy},,,A")
            + _sentence(f"GPGGA,{hms},{pos},1,09,0.9,42.0,M,0.0,M,,")
        )
    return out


# ---- MQTT --------------------------------------------------------------------------------


def _interleaved(
    devices: Sequence[str], per_device: int, t0: int, per_message: int
) -> list[tuple[str, bytes]]:
    """Round-robin over the devices, as a fleet publishes: message k of every device, then k+1."""
    per = {d: json_payloads(d, per_device, t0, per_message) for d in devices}
    count = len(next(iter(per.values()))) if per else 0
    return [
        (f"{TOPIC_PREFIX}fixgate/bench/{d}/fix", per[d][k]) for k in range(count) for d in devices
    ]


def _mqtt_packet(first_byte: int, body: bytes) -> bytes:
    size, length = len(body), bytearray()
    while True:
        byte, size = size & 0x7F, size >> 7
        length.append(byte | (0x80 if size else 0))
        if not size:
            return bytes([first_byte]) + bytes(length) + body


def _connect_packet(login: str, token: str | None) -> bytes:
    """CONNECT (MQTT 3.1.1, clean, no keepalive) as `login` with its token (None: anonymous)."""

    def field(value: str) -> bytes:
        raw = value.encode()
        return len(raw).to_bytes(2, "big") + raw

    if token is None:
        return _mqtt_packet(0x10, b"\x00\x04MQTT\x04\x02\x00\x00" + field(login))
    flags = b"\xc2"  # user name, password, clean session
    body = b"\x00\x04MQTT\x04" + flags + b"\x00\x00" + field(login) + field(login) + field(token)
    return _mqtt_packet(0x10, body)


def raw_publish_worker(
    mqtt_url: str, devices: list[str], per_device: int, per_message: int, t0: int, rate: float,
    ready: mp.Event, go: mp.Event, done: mp.Queue, tokens: dict[str, str] | None = None,
) -> None:  # fmt: skip
    """QoS 1 PUBLISH packets encoded up front and written in few large sends (all at once,
    or paced at `rate` messages/s), PUBACKs counted off the sockets; paho's publish()
    (~7,000 messages/s, less on a busy machine) made preloading a million messages take
    minutes and could not offer 10,000/s. At most MAX_UNACKED_PUBLISHES unacknowledged.

    Each device publishes on a connection of its own, logged in with its token (`tokens`;
    None: one anonymous connection for all, for a broker without authentication)."""
    host, port, _, _ = mqtt_address(mqtt_url)
    packets: list[tuple[str, bytes]] = []
    for i, (topic, payload) in enumerate(_interleaved(devices, per_device, t0, per_message)):
        raw_topic = topic.encode()
        mid = i % 65535 + 1
        body = len(raw_topic).to_bytes(2, "big") + raw_topic + mid.to_bytes(2, "big") + payload
        packets.append((topic.split("/")[-2], _mqtt_packet(0x32, body)))
    logins = devices if tokens is not None else [f"bench-pub-{uuid.uuid4().hex[:8]}"]
    socks: dict[str, socket.socket] = {}
    for login in logins:
        sock = socket.create_connection((host, port))
        sock.sendall(_connect_packet(login, tokens[login] if tokens is not None else None))
        if sock.recv(4)[:4] != b"\x20\x02\x00\x00":
            raise RuntimeError(f"the broker did not let {login} in")
        socks[login] = sock
    route = (lambda device: socks[device]) if tokens is not None else (lambda _d: socks[logins[0]])
    ready.set()
    go.wait()
    start = time.monotonic()
    acked = sent = 0
    pending = dict.fromkeys(socks.values(), b"")
    sel = selectors.DefaultSelector()
    for sock in socks.values():
        sel.register(sock, selectors.EVENT_READ)
    while acked < len(packets):
        due = len(packets) if rate <= 0 else int((time.monotonic() - start) * rate) + 1
        stop = min(len(packets), sent + 500, acked + MAX_UNACKED_PUBLISHES, due)
        if stop > sent:
            out: dict[socket.socket, list[bytes]] = {}
            for device, packet in packets[sent:stop]:
                out.setdefault(route(device), []).append(packet)
            for sock, chunk in out.items():
                sock.sendall(b"".join(chunk))
            sent = stop
            timeout = 0.0
        else:
            timeout = 0.002 if sent < len(packets) else 1.0
        for key, _ in sel.select(timeout):
            sock = key.fileobj  # type: ignore[assignment]
            data = pending[sock] + sock.recv(65536)
            whole = len(data) // 4 * 4  # a PUBACK is 4 bytes, and the broker sends nothing else
            acked += whole // 4
            pending[sock] = data[whole:]
    elapsed = time.monotonic() - start
    for sock in socks.values():
        sock.sendall(b"\xe0\x00")  # DISCONNECT
        sock.close()
    done.put((len(packets), elapsed))


def publish(
    mqtt_url: str,
    devices: list[str],
    per_device: int,
    per_message: int,
    t0: int,
    rate: float = 0.0,
    workers: int = 2,
    tokens: dict[str, str] | None = None,
) -> tuple[int, float]:
    """Run `workers` publisher processes over the devices; (messages, seconds publishing).
    With `tokens`, every device logs in as itself (an authenticating broker)."""
    ready = [mp.Event() for _ in range(workers)]
    go, done = mp.Event(), mp.Queue()
    procs = [
        mp.Process(target=raw_publish_worker, args=(
            mqtt_url, devices[i::workers], per_device, per_message, t0, rate / workers, ready[i], go, done,
            {d: tokens[d] for d in devices[i::workers]} if tokens is not None else None))
        for i in range(workers)
    ]  # fmt: skip
    for p in procs:
        p.start()
    for r in ready:
        r.wait()
    go.set()
    results = [done.get() for _ in procs]
    for p in procs:
        p.join()
    return sum(n for n, _ in results), max(s for _, s in results)


# ---- TCP --------------------------------------------------------------------------------


def tcp_sender(
    port: int, jobs: list[tuple[str, str, int]], t0: int, rate: float,
    ready: mp.Event, go: mp.Event, done: mp.Queue,
) -> None:  # fmt: skip
    """One process, a connection per (device, token, n) job; flood, or `rate` epochs/s overall.

    Logins go out when connecting, so the gateway has verified them before the clock starts."""
    epochs = [nmea_epochs(device, n, t0) for device, _, n in jobs]
    socks = []
    for device, token, _ in jobs:
        s = socket.create_connection(("127.0.0.1", port))
        s.sendall(login_sentence(device, token))
        socks.append(s)
    time.sleep(1.0)  # let the logins be verified
    ready.set()
    go.wait()
    start = time.monotonic()
    if rate > 0:
        _send_paced(socks, epochs, rate, start)
    else:
        _send_flood(socks, [b"".join(e) for e in epochs])
    elapsed = time.monotonic() - start
    for s in socks:
        s.shutdown(socket.SHUT_WR)
    _await_close(socks, 120.0)
    done.put((sum(n for *_, n in jobs), elapsed))


def _send_flood(socks: list[socket.socket], payloads: list[bytes]) -> None:
    sel = selectors.DefaultSelector()
    views = [memoryview(p) for p in payloads]
    offsets = [0] * len(socks)
    for i, s in enumerate(socks):
        s.setblocking(False)
        sel.register(s, selectors.EVENT_WRITE, i)
    active = len(socks)
    while active:
        for key, _ in sel.select(1.0):
            i = key.data
            try:
                sent = socks[i].send(views[i][offsets[i] : offsets[i] + SEND_CHUNK_BYTES])
            except BlockingIOError:
                continue
            offsets[i] += sent
            if offsets[i] >= len(views[i]):
                sel.unregister(socks[i])
                active -= 1
    sel.close()


def _send_paced(
    socks: list[socket.socket], epochs: list[list[bytes]], rate: float, start: float
) -> None:
    """Event j (connection j % n, its epoch j // n) is due at start + j / rate."""
    n = len(socks)
    total = sum(len(e) for e in epochs)
    j = 0
    while j < total:
        due = min(total, int((time.monotonic() - start) * rate) + 1)
        while j < due:
            i, k = j % n, j // n
            if k < len(epochs[i]):
                socks[i].sendall(epochs[i][k])  # blocking: a gateway that pushes back slows us
            j += 1
        time.sleep(0.002)


def _await_close(socks: list[socket.socket], timeout_s: float) -> None:
    sel = selectors.DefaultSelector()
    for s in socks:
        s.setblocking(False)
        sel.register(s, selectors.EVENT_READ)
    open_ = len(socks)
    deadline = time.monotonic() + timeout_s
    while open_ and time.monotonic() < deadline:
        for key, _ in sel.select(1.0):
            try:
                data = key.fileobj.recv(65536)  # type: ignore[union-attr]
            except BlockingIOError:
                continue
            except ConnectionError:
                data = b""
            if not data:
                sel.unregister(key.fileobj)
                open_ -= 1
    sel.close()
    for s in socks:
        s.close()


class TcpLoad:
    """The senders, started and connected; `go()` starts the clock, `wait()` their result."""

    def __init__(
        self, port: int, jobs: list[tuple[str, str, int]], t0: int, rate: float, processes: int
    ) -> None:
        self.ready = [mp.Event() for _ in range(processes)]
        self.go_event, self.done = mp.Event(), mp.Queue()
        self.procs = [
            mp.Process(target=tcp_sender, args=(
                port, jobs[i::processes], t0, rate / processes, self.ready[i], self.go_event, self.done))
            for i in range(processes)
        ]  # fmt: skip
        for p in self.procs:
            p.start()

    def wait_ready(self, timeout_s: float) -> None:
        for r in self.ready:
            if not r.wait(timeout_s):
                raise RuntimeError("TCP senders did not get ready")

    def go(self) -> float:
        self.go_event.set()
        return time.monotonic()

    def wait(self, timeout_s: float) -> tuple[int, float]:
        results = [self.done.get(timeout=timeout_s) for _ in self.procs]
        for p in self.procs:
            p.join()
        return sum(n for n, _ in results), max(s for _, s in results)
