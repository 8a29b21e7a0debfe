"""A simulated fleet (`fixgate simulate`, and the fleet of `fixgate demo`).

Trucks log in over TCP and stream NMEA (RMC+GGA, one epoch per fix); phones publish over
MQTT, half as the OwnTracks app does (`owntracks/{user}/{device}`) and half as fixgate
JSON (`fixgate/{tenant}/{device}/fix`), QoS 1. Every vehicle drives from random waypoint
to random waypoint inside a disc around `--center`, along great circles, at a speed drawn
per leg; fix times come from the wall clock.

Devices register themselves: ids are `sim-{tenant}-truck-01`, `sim-{tenant}-ot-01`
(OwnTracks, identity `{tenant}/sim-{tenant}-ot-01`) and `sim-{tenant}-phone-01` (JSON).
The registry stores only token hashes, so the simulator keeps its tokens, and each
vehicle's last position, in a state file (`FIXGATE_STACK_DIR/simulator.json` unless
`--state` says otherwise, mode 0600). A device that already exists is reused when the
state file holds its token; a device id taken by something the file has no token for
(another fleet, a lost file) is skipped for the next free `...-2`, `...-3` id. Resuming
from the saved positions keeps a restarted simulator from "teleporting" its vehicles,
which the gateway's jump filter would flag.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import random
import re
import signal
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Final, NamedTuple
from typing import Protocol as Protocol_

import asyncpg
import httpx
import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion

from contracts.geodesy import haversine_m
from devices.fix import Fix, Protocol
from devices.jsonfix import encode_json_fixes
from devices.nmea_write import rmc_gga
from devices.tcp_nmea import login_sentence
from devices.units import KNOT_IN_MPS
from devtools.driving import Errand, RoadPlanner, TripBook, drive_on_roads
from devtools.roads import (
    Area,
    RoadState,
    bearing_deg,
    destination,
    parked,
    random_point,
    start_leg,
)
from devtools.stack.settings import StackSettings
from devtools.teltonika_unit import UnitMemory, imei_for, session
from gateway.config import Settings, mqtt_address, mqtt_tls
from gateway.registry import store as registry
from gateway.registry.broker import BrokerSync, register_device, tls_context
from gateway.registry.tokens import verify_token

log = logging.getLogger("simulate")

DEFAULT_CENTER: Final = (52.5200, 13.4050)  # Berlin, Mitte
DEFAULT_RADIUS_KM: Final = 8.0
MAX_RATE: Final = 50.0
"""Fixes per second per device: NMEA times have centisecond resolution, and one fix per
20 ms is already beyond what trackers send."""
SUMMARY_INTERVAL_S: Final = 10.0
CONNECT_TIMEOUT_S: Final = 5.0
BACKOFF_BASE_S: Final = 0.5
BACKOFF_MAX_S: Final = 10.0
MQTT_CONNECT_WAIT_S: Final = 5.0
MQTT_DRAIN_TIMEOUT_S: Final = 5.0
STOP_GRACE_S: Final = 5.0
PLACE_ATTEMPTS: Final = 10
ARRIVAL_GRACE_S: Final = 15.0
"""After the last trip's vehicle stopped: the engine's arrival needs 10 s inside the radius
at the latest (README, Arrival), and a second or two for the fixes to get there."""
TENANT_PATTERN: Final = re.compile(r"[A-Za-z0-9_.-]{1,40}")
"""Tenants the simulator accepts: they go into device ids, topics and printed shell lines."""


# ---- the movement model (pure: no clock, no global randomness) -----------------------


class SpeedRange(NamedTuple):
    low: float
    """m/s, > 0"""
    high: float


TRUCK_SPEEDS: Final = SpeedRange(8.0, 25.0)  # town streets to the motorway
WALKING_SPEEDS: Final = SpeedRange(1.0, 2.0)
DRIVING_SPEEDS: Final = SpeedRange(5.0, 17.0)  # a technician's van in town
MAX_LEGS_PER_STEP: Final = 100
"""Waypoints one step may pass (a long gap, e.g. a lost connection, at high speed)."""


@dataclass(frozen=True, slots=True)
class Motion:
    """Where a vehicle is, where it is heading, and how fast."""

    lat: float
    lon: float
    target_lat: float
    target_lon: float
    speed: float
    """m/s, constant over a leg."""
    heading: float
    """Degrees true in [0, 360): the great-circle bearing to the target, i.e. the direction
    of motion at this point."""
    seed: int
    """Draws the next waypoint and speed, so `step` is a function of its arguments alone."""
    area: Area
    speeds: SpeedRange


def start_motion(
    area: Area, speeds: SpeedRange, seed: int, at: tuple[float, float] | None = None
) -> Motion:
    """A vehicle at `at` (or a random point of the area) about to drive its first leg."""
    rng = random.Random(seed)
    lat, lon = at if at is not None else random_point(area, rng)
    here = Motion(lat, lon, lat, lon, speeds.low, 0.0, rng.getrandbits(63), area, speeds)
    return _next_leg(here)


def step(m: Motion, dt: float) -> Motion:
    """Where the vehicle is `dt` seconds later: along its leg, and on to new legs at waypoints."""
    left = max(0.0, dt)
    for _ in range(MAX_LEGS_PER_STEP):
        remaining = haversine_m(m.lat, m.lon, m.target_lat, m.target_lon)
        travel = m.speed * left
        if travel < remaining:
            lat, lon = destination(m.lat, m.lon, m.heading, travel)
            return replace(
                m, lat=lat, lon=lon, heading=bearing_deg(lat, lon, m.target_lat, m.target_lon)
            )
        left -= remaining / m.speed
        m = _next_leg(replace(m, lat=m.target_lat, lon=m.target_lon))
    return m


def _next_leg(m: Motion) -> Motion:
    """At a waypoint: draw the next one (not right next door) and a speed for the leg."""
    rng = random.Random(m.seed)
    min_leg_m = min(300.0, m.area.radius_m / 2)
    for _ in range(20):
        t_lat, t_lon = random_point(m.area, rng)
        if haversine_m(m.lat, m.lon, t_lat, t_lon) >= min_leg_m:
            break
    speed = rng.uniform(m.speeds.low, m.speeds.high)
    heading = bearing_deg(m.lat, m.lon, t_lat, t_lon)
    return replace(
        m,
        target_lat=t_lat,
        target_lon=t_lon,
        speed=speed,
        heading=heading,
        seed=rng.getrandbits(63),
    )


# ---- what the devices send ------------------------------------------------------------


class Moving(Protocol_):
    """What a payload needs of a vehicle: a position, a speed (m/s) and a course."""

    @property
    def lat(self) -> float: ...
    @property
    def lon(self) -> float: ...
    @property
    def speed(self) -> float: ...
    @property
    def heading(self) -> float: ...


class Sample(NamedTuple):
    """One fix as the receiver reports it: on roads, with its error and accuracy."""

    lat: float
    lon: float
    speed: float
    heading: float
    accuracy_m: float | None = None
    """None: the great-circle model, which has no receiver error."""


HDOP_METRES: Final = 5.0
"""The engine's reading of HDOP (README: error = HDOP x 5 m): NMEA carries accuracy so."""


def nmea_epoch(m: Moving, now: float, accuracy_m: float | None = None) -> bytes:
    """One RMC+GGA epoch, as a tracker's receiver emits it."""
    hdop = 0.9 if accuracy_m is None else max(0.5, accuracy_m / HDOP_METRES)
    return rmc_gga(
        datetime.fromtimestamp(now, UTC), m.lat, m.lon, m.speed / KNOT_IN_MPS, m.heading,
        hdop=hdop,
    )  # fmt: skip


def owntracks_payload(
    m: Moving, now: float, battery: int, tid: str, accuracy_m: float | None = None
) -> bytes:
    """A `_type: location` message as the OwnTracks app publishes it (vel km/h, cog degrees)."""
    message = {
        "_type": "location",
        "tid": tid,
        # The app sends whole seconds; milliseconds keep fixes distinct at --rate > 1.
        "tst": round(now, 3),
        "lat": round(m.lat, 7),
        "lon": round(m.lon, 7),
        "acc": round(accuracy_m)
        if accuracy_m is not None
        else (8 if m.speed < WALKING_SPEEDS.high else 5),
        "alt": 40,
        "vel": round(m.speed * 3.6),
        "cog": round(m.heading) % 360,
        "batt": battery,
        "conn": "m",
    }
    return json.dumps(message, separators=(",", ":")).encode()


def json_fix_payload(
    device_id: str, tenant: str, m: Moving, now: float, battery: int,
    accuracy_m: float | None = None,
) -> bytes:  # fmt: skip
    """fixgate's own JSON fix (a batch of one)."""
    fix = Fix(
        device_id=device_id,
        tenant_id=tenant,
        time=datetime.fromtimestamp(now, UTC),
        lat=m.lat,
        lon=m.lon,
        speed=m.speed,
        heading=m.heading,
        accuracy=5.0 if accuracy_m is None else round(accuracy_m, 1),
        battery=battery,
    )
    return encode_json_fixes([fix])


# ---- the fleet: plan, state file, registration ----------------------------------------

State = dict[str, dict[str, object]]
"""The state file's devices: id -> {"token", "lat", "lon"}."""


@dataclass(frozen=True)
class FleetOptions:
    trucks: int = 5
    phones: int = 5
    rate: float = 1.0
    """Fixes per second per device."""
    tenant: str = "demo"
    center: tuple[float, float] = DEFAULT_CENTER
    radius_km: float = DEFAULT_RADIUS_KM
    seed: int | None = None
    state_path: Path | None = None
    """Default: `simulator.json` under `FIXGATE_STACK_DIR`."""
    walkers: bool = True
    """Some phones walk; False: every phone drives (the demo's technicians)."""
    teltonika: int = 0
    """Teltonika trucks (Codec 8E over TCP)."""
    trips: int = 0
    """Trips to drive in all (each started in the engine); needs `routing_url`."""
    routing_url: str | None = None
    """OSRM: vehicles follow its roads; None: great circles."""

    def area(self) -> Area:
        return Area(self.center[0], self.center[1], self.radius_km * 1000.0)


class FleetError(Exception):
    """The fleet cannot be set up (printed as is)."""


class Slot(NamedTuple):
    """One device of the plan, before registration."""

    base_id: str
    protocol: Protocol
    kind: str


@dataclass
class SimDevice:
    id: str
    tenant: str
    protocol: Protocol
    token: str
    motion: Motion
    moved_at: float
    """Wall-clock time `motion` is for."""
    topic: str = ""
    """MQTT topic (phones)."""
    login: str = ""
    """Broker username (phones): the OwnTracks user, else the device id."""
    battery: int = 80
    imei: str | None = None
    """Teltonika trucks: how the unit logs in."""
    road: RoadState | None = None
    """On roads (routing on): the road motion that replaces `motion`."""
    errand: Errand | None = None
    """Where the demo sends this vehicle (a technician to a customer)."""
    unit: UnitMemory = field(default_factory=UnitMemory)
    """Teltonika trucks: the records not acknowledged yet."""

    def advance(self, now: float) -> Sample:
        dt = now - self.moved_at
        self.moved_at = now
        if self.road is None:
            self.motion = step(self.motion, dt)
            m = self.motion
            return Sample(m.lat, m.lon, m.speed, m.heading)
        motion, lat, lon, accuracy = self.road.advance(dt)
        return Sample(lat, lon, motion.speed, motion.heading, accuracy)

    @property
    def position(self) -> tuple[float, float]:
        """Where the vehicle really is (no receiver error)."""
        if self.road is not None:
            return self.road.motion.lat, self.road.motion.lon
        return self.motion.lat, self.motion.lon


def plan_fleet(trucks: int, phones: int, tenant: str, teltonika: int = 0) -> list[Slot]:
    """Trucks over TCP NMEA; phones alternate OwnTracks and JSON (OwnTracks gets the odd
    one); Teltonika trucks last."""
    slots = [
        Slot(f"sim-{tenant}-truck-{i:02d}", Protocol.NMEA, "tow_truck")
        for i in range(1, trucks + 1)
    ]
    owntracks, json_phones = (phones + 1) // 2, phones // 2
    slots += [
        Slot(f"sim-{tenant}-ot-{i:02d}", Protocol.OWNTRACKS, "phone")
        for i in range(1, owntracks + 1)
    ]
    slots += [
        Slot(f"sim-{tenant}-phone-{i:02d}", Protocol.JSON, "phone")
        for i in range(1, json_phones + 1)
    ]
    slots += [
        Slot(f"sim-{tenant}-fmb-{i:02d}", Protocol.TELTONIKA, "tow_truck")
        for i in range(1, teltonika + 1)
    ]
    return slots


def default_state_path(settings: Settings) -> Path:
    return StackSettings().stack_dir / "simulator.json"


def load_state(path: Path) -> State:
    """The saved devices; empty when there is no (readable) file."""
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as e:
        log.warning("simulate: ignoring unreadable state file %s: %s", path, e)
        return {}
    devices = data.get("devices") if isinstance(data, dict) else None
    return devices if isinstance(devices, dict) else {}


def save_state(path: Path, state: State) -> None:
    """Write atomically, readable by the owner only (it holds device tokens)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        json.dump({"version": 1, "devices": state}, out, indent=1, sort_keys=True)
    os.replace(tmp, path)


def remember_positions(state: State, devices: list[SimDevice]) -> None:
    for dev in devices:
        lat, lon = dev.position
        state.setdefault(dev.id, {}).update(token=dev.token, lat=lat, lon=lon)


def _candidates(base_id: str) -> Iterator[str]:
    yield base_id
    for n in range(2, 10):
        yield f"{base_id}-{n}"


OWNTRACKS_DEVICE = "phone"


def _owntracks_identity(device_id: str) -> str:
    """Each simulated phone its own OwnTracks user: the user is the broker login, and one
    login has one token (docs/security.md)."""
    return f"{device_id}/{OWNTRACKS_DEVICE}"


def _reusable(device: registry.Device, token: str | None, tenant: str, slot: Slot) -> bool:
    """An existing device is ours when we hold its token and it has the shape we need."""
    if token is None or not verify_token(token, device.token_hash) or device.tenant_id != tenant:
        return False
    owntracks = _owntracks_identity(device.id) if slot.protocol is Protocol.OWNTRACKS else None
    identity = (
        f"{device.owntracks_user}/{device.owntracks_device}" if device.owntracks_user else None
    )
    return identity == owntracks and (device.imei is not None) == (
        slot.protocol is Protocol.TELTONIKA
    )


async def _claim(
    conn: asyncpg.Connection, slot: Slot, tenant: str, state: State, sync: BrokerSync | None
) -> tuple[registry.Device, str]:
    """Reuse or register the slot's device under the first id that is free or ours."""
    for device_id in _candidates(slot.base_id):
        saved = state.get(device_id, {}).get("token")
        token = saved if isinstance(saved, str) else None
        existing = await registry.get_device(conn, device_id)
        if existing is None:
            owntracks = (
                _owntracks_identity(device_id) if slot.protocol is Protocol.OWNTRACKS else None
            )
            imei = imei_for(device_id) if slot.protocol is Protocol.TELTONIKA else None
            try:
                token = await register_device(
                    conn, sync, device_id, tenant_id=tenant, kind=slot.kind, token=token,
                    owntracks=owntracks, protocols=(slot.protocol.value,), imei=imei,
                )  # fmt: skip
            except (
                registry.DeviceExists, registry.OwnTracksIdentityTaken, registry.IdentifierTaken,
                registry.LoginTaken, registry.OwnTracksUserTaken,
            ):  # fmt: skip
                continue  # someone else took it a moment ago
            existing = await registry.get_device(conn, device_id)
        elif not _reusable(existing, token, tenant, slot):
            log.warning(
                "simulate: %s exists but is not ours (no token for it); trying the next id",
                device_id,
            )
            continue
        assert existing is not None and token is not None
        if sync is not None and slot.protocol in (Protocol.OWNTRACKS, Protocol.JSON):
            # Its broker account as the registry has it, with our token (a broker
            # started afresh since, or one the account was never made on).
            await sync.apply(conn, registry.login_of(existing), token)
        if not existing.enabled:
            log.warning(
                "simulate: %s is disabled in the registry; the gateway will refuse it", device_id
            )
        return existing, token
    raise FleetError(f"no free device id for {slot.base_id} (tried {slot.base_id}-2 .. -9)")


def _run_seed(seed: int | None) -> str:
    return str(seed) if seed is not None else uuid.uuid4().hex


def _build_device(
    device: registry.Device, token: str, slot: Slot, options: FleetOptions, run_seed: str,
    saved: dict[str, object], topic_prefix: str, now: float,
) -> SimDevice:  # fmt: skip
    rng = random.Random(
        f"{run_seed}/{device.id}"
    )  # per device: adding one leaves the others' paths alone
    speeds = (
        TRUCK_SPEEDS
        if slot.protocol in (Protocol.NMEA, Protocol.TELTONIKA)
        else rng.choice((WALKING_SPEEDS, DRIVING_SPEEDS) if options.walkers else (DRIVING_SPEEDS,))
    )
    area = options.area()
    motion = start_motion(area, speeds, rng.getrandbits(63), _saved_position(saved, area))
    dev = SimDevice(
        device.id, device.tenant_id, slot.protocol, token, motion, now, battery=rng.randint(35, 100),
        imei=device.imei,
    )  # fmt: skip
    if options.routing_url is not None:
        # Parked where it stopped last time (or at the random start) until placed on a road.
        walking = (speeds.low, speeds.high) if speeds is WALKING_SPEEDS else None
        dev.road = RoadState(
            start_leg(parked((motion.lat, motion.lon))), random.Random(rng.getrandbits(63)),
            walking=walking,
        )  # fmt: skip
    if slot.protocol is Protocol.OWNTRACKS:
        dev.topic = f"{topic_prefix}owntracks/{device.owntracks_user}/{device.owntracks_device}"
        dev.login = registry.login_of(device)
    elif slot.protocol is Protocol.JSON:
        dev.topic = f"{topic_prefix}fixgate/{device.tenant_id}/{device.id}/fix"
        dev.login = registry.login_of(device)
    return dev


def _saved_position(saved: dict[str, object], area: Area) -> tuple[float, float] | None:
    """Where the vehicle stopped last time, if that is inside today's area."""
    lat, lon = saved.get("lat"), saved.get("lon")
    if not isinstance(lat, int | float) or not isinstance(lon, int | float):
        return None
    # Outside the area (--center or --radius-km changed): start afresh; the first fix is a jump.
    return (
        (float(lat), float(lon))
        if haversine_m(area.lat, area.lon, lat, lon) <= area.radius_m
        else None
    )


async def prepare_fleet(settings: Settings, options: FleetOptions) -> tuple[list[SimDevice], State]:
    """Register (or reuse) the fleet's devices; return them and the state to save later."""
    state_path = options.state_path or default_state_path(settings)
    state = load_state(state_path)
    run_seed = _run_seed(options.seed)
    conn = await asyncpg.connect(settings.database_url)
    sync = BrokerSync.from_settings(settings)
    if sync is None and options.phones:
        log.warning(
            "simulate: FIXGATE_MQTT_ADMIN_URL is not set: the phones' broker accounts are not"
            " made, so a broker with authentication refuses them (`fixgate stack env` has it)"
        )
    try:
        devices = []
        for slot in plan_fleet(options.trucks, options.phones, options.tenant, options.teltonika):
            device, token = await _claim(conn, slot, options.tenant, state, sync)
            state.setdefault(device.id, {})["token"] = token
            saved = state[device.id]
            devices.append(
                _build_device(
                    device,
                    token,
                    slot,
                    options,
                    run_seed,
                    saved,
                    settings.mqtt_topic_prefix,
                    time.time(),
                )
            )
    finally:
        await conn.close()
    save_state(state_path, state)  # tokens of new devices are kept even if the run dies
    if options.routing_url is not None:
        await place_on_roads(devices, options)
    return devices, state


async def place_on_roads(devices: list[SimDevice], options: FleetOptions) -> None:
    """Give every vehicle a first leg on the roads: from where it stopped last time when
    that is on a road, else from a random road point of the area."""
    assert options.routing_url is not None
    async with httpx.AsyncClient() as client:
        planner = RoadPlanner(client, options.routing_url, options.area())
        for dev in devices:
            road = dev.road
            assert road is not None
            first = await planner.random_route(dev.position, road.rng)
            # A random start can land on a piece of road cut off from the rest (a private
            # drive, a car park exit): try a few.
            for _ in range(PLACE_ATTEMPTS):
                if first is not None:
                    break
                first = await planner.start_on_road(road.rng)
            if first is None:
                raise FleetError(
                    f"OSRM at {options.routing_url} gives no route inside the area "
                    f"{options.center[0]:.4f},{options.center[1]:.4f} +{options.radius_km:g} km: "
                    "is it running (fixgate stack status), and is the area on its extract?"
                )
            road.drive(first)


# ---- running the fleet ----------------------------------------------------------------


@dataclass
class Counters:
    sent: Counter[str] = field(default_factory=Counter)
    """Fixes sent, by protocol (TCP: written to the socket; MQTT: handed to the client)."""
    dropped: int = 0
    """Phone fixes not sent because the MQTT broker was unreachable."""
    reconnects: int = 0
    """Truck connections the gateway closed (a restart, a refused login); each is retried."""
    connected: set[str] = field(default_factory=set)
    """Trucks with an open TCP connection."""
    started: float = field(default_factory=time.monotonic)
    trips: TripBook | None = None

    def summary(self, trucks: int | None = None, mqtt_up: bool | None = None) -> str:
        """One line; the connection states only while running (`trucks`, `mqtt_up` given)."""
        sent = " ".join(f"{p}={self.sent[p]}" for p in ("nmea", "owntracks", "json", "teltonika"))
        line = f"simulate: {time.monotonic() - self.started:.0f} s, sent {sent} (total {sum(self.sent.values())})"
        if trucks:
            line += f"; trucks connected {len(self.connected)}/{trucks}"
        if mqtt_up is not None:
            line += f"; mqtt {'connected' if mqtt_up else 'DISCONNECTED'}"
        if self.reconnects:
            line += f"; tcp reconnects {self.reconnects}"
        if self.trips is not None:
            t = self.trips
            line += f"; trips started {t.started}/{t.total}, driven {t.arrived}"
        return line + (f"; mqtt dropped {self.dropped}" if self.dropped else "")


async def _sleep_or_stop(stop: asyncio.Event, seconds: float) -> bool:
    """Sleep; True when `stop` was set meanwhile (so callers return at once)."""
    if seconds > 0:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), seconds)
    return stop.is_set()


class Ticker:
    """Fix times of one device: every 1/rate seconds, without bursts after a stall."""

    def __init__(self, rate: float, phase: float) -> None:
        self.period = 1.0 / rate
        self.next_at = asyncio.get_running_loop().time() + phase

    async def wait(self, stop: asyncio.Event) -> bool:
        """Until the next tick; False once `stop` is set."""
        loop = asyncio.get_running_loop()
        if await _sleep_or_stop(stop, self.next_at - loop.time()):
            return False
        self.next_at = max(self.next_at + self.period, loop.time())
        return True


def _backoff_s(attempt: int) -> float:
    # Jitter: after a gateway restart, the trucks should not all reconnect in one burst.
    base: float = min(BACKOFF_MAX_S, BACKOFF_BASE_S * 2.0 ** max(0, attempt - 1))
    return base * random.uniform(0.5, 1.0)


def _connect_host(host: str) -> str:
    """A listener bound to every address is reached on loopback."""
    return "127.0.0.1" if host in ("", "0.0.0.0", "::") else host


async def _until_eof(reader: asyncio.StreamReader) -> None:
    # The gateway never writes to a device, so a read returns only when it hangs up.
    with contextlib.suppress(ConnectionError, OSError):
        await reader.read()


async def _stream_nmea(
    dev: SimDevice, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
    ticker: Ticker, counters: Counters, stop: asyncio.Event,
) -> int:  # fmt: skip
    """Log in, then one epoch per tick until stop or hang-up; return the epochs sent."""
    writer.write(login_sentence(dev.id, dev.token))
    await writer.drain()
    hung_up = asyncio.ensure_future(_until_eof(reader))
    sent = 0
    try:
        while await ticker.wait(stop):
            now = time.time()
            motion = dev.advance(now)  # the truck moves whether or not the fix gets through
            if hung_up.done():
                raise ConnectionResetError("the gateway closed the connection")
            writer.write(nmea_epoch(motion, now, motion.accuracy_m))
            await writer.drain()
            sent += 1
            counters.sent[Protocol.NMEA.value] += 1
    finally:
        hung_up.cancel()
    return sent


async def run_truck(
    dev: SimDevice, host: str, port: int, ticker: Ticker, counters: Counters, stop: asyncio.Event
) -> None:
    """A truck's TCP connection, reconnected with backoff whenever it drops."""
    attempt = 0
    while not stop.is_set():
        try:
            reader, writer = await asyncio.wait_for(
                asyncio.open_connection(host, port), CONNECT_TIMEOUT_S
            )
        except (OSError, TimeoutError) as e:
            attempt += 1
            if attempt == 1:
                log.warning(
                    "simulate: %s cannot reach %s:%d (%s); retrying with backoff",
                    dev.id,
                    host,
                    port,
                    e,
                )
            if await _sleep_or_stop(stop, _backoff_s(attempt)):
                return
            continue
        counters.connected.add(dev.id)
        sent = 0
        try:
            sent = await _stream_nmea(dev, reader, writer, ticker, counters, stop)
        except (ConnectionError, OSError) as e:
            counters.reconnects += 1
            log.warning("simulate: %s lost its connection (%s); reconnecting", dev.id, e)
        finally:
            counters.connected.discard(dev.id)
            writer.close()
            with contextlib.suppress(ConnectionError, OSError):
                await writer.wait_closed()
        # A connection that carried fixes starts the backoff over; one cut at once (a
        # refused login) keeps growing it, so a misconfigured truck does not spin.
        attempt = 1 if sent else attempt + 1
        if not stop.is_set() and await _sleep_or_stop(stop, _backoff_s(attempt)):
            return


class MqttPublisher:
    """One phone's paho client, logged in as the phone (its broker login and token), its
    network loop in paho's thread.

    paho reconnects by itself (with `reconnect_delay_set`); while it is disconnected the
    phone's fixes are dropped and counted rather than queued without bound.
    """

    def __init__(self, url: str, login: str, token: str) -> None:
        self.host, self.port, _, _ = mqtt_address(url)
        self.client = paho.Client(CallbackAPIVersion.VERSION2, client_id=login)
        self.client.username_pw_set(login, token)
        if mqtt_tls(url):
            self.client.tls_set_context(tls_context(Settings().mqtt_ca_file))
        self.client.reconnect_delay_set(min_delay=1, max_delay=int(BACKOFF_MAX_S))
        self._last: paho.MQTTMessageInfo | None = None
        self._up = asyncio.Event()

    def start(self) -> None:
        loop = asyncio.get_running_loop()
        up = self._up

        def on_connect(
            client: paho.Client, userdata: object, flags: object, reason: object, props: object
        ) -> None:
            # paho's thread: hand the news to the event loop.
            if not getattr(reason, "is_failure", False):
                loop.call_soon_threadsafe(up.set)

        self.client.on_connect = on_connect
        self.client.connect_async(self.host, self.port, keepalive=30)
        self.client.loop_start()

    @property
    def connected(self) -> bool:
        return self.client.is_connected()

    async def wait_connected(self, timeout_s: float) -> bool:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._up.wait(), timeout_s)
        return self.connected

    def publish(self, topic: str, payload: bytes) -> bool:
        if not self.connected:
            return False
        info = self.client.publish(topic, payload, qos=1)
        self._last = info
        return info.rc == paho.MQTT_ERR_SUCCESS

    async def close(self, timeout_s: float = MQTT_DRAIN_TIMEOUT_S) -> None:
        """Wait for the broker's PUBACK of the last message (acks come in order), then leave."""
        last = self._last
        if last is not None and self.connected:
            # RuntimeError/ValueError: that message was never queued; nothing to wait for.
            with contextlib.suppress(RuntimeError, ValueError):
                await asyncio.to_thread(last.wait_for_publish, timeout_s)
        self.client.disconnect()
        self.client.loop_stop()


async def run_phone(
    dev: SimDevice,
    publisher: MqttPublisher,
    ticker: Ticker,
    counters: Counters,
    stop: asyncio.Event,
) -> None:
    tid = dev.id[-2:]
    while await ticker.wait(stop):
        now = time.time()
        motion = dev.advance(now)
        if dev.protocol is Protocol.OWNTRACKS:
            payload = owntracks_payload(motion, now, dev.battery, tid, motion.accuracy_m)
        else:
            payload = json_fix_payload(
                dev.id, dev.tenant, motion, now, dev.battery, motion.accuracy_m
            )
        if publisher.publish(dev.topic, payload):
            counters.sent[dev.protocol.value] += 1
        else:
            counters.dropped += 1


async def record_teltonika(dev: SimDevice, ticker: Ticker, stop: asyncio.Event) -> None:
    """The unit records a fix every tick, connected or not."""
    last = dev.position
    while await ticker.wait(stop):
        now = time.time()
        sample = dev.advance(now)
        here = dev.position
        dev.unit.record(
            now, sample.lat, sample.lon, sample.speed, sample.heading,
            haversine_m(last[0], last[1], here[0], here[1]),
        )  # fmt: skip
        last = here


async def run_teltonika(
    dev: SimDevice, host: str, port: int, counters: Counters, stop: asyncio.Event
) -> None:
    """The unit's TCP sessions: batches acknowledged by record count, resent after a
    failure; reconnected with backoff."""
    assert dev.imei is not None
    rng = random.Random(dev.imei)
    attempt = 0
    while not stop.is_set():
        acked = dev.unit.acked
        try:
            counters.connected.add(dev.id)
            await session(dev.imei, host, port, dev.unit, stop, rng, CONNECT_TIMEOUT_S)
        except (OSError, TimeoutError, ConnectionError) as e:
            attempt = 1 if dev.unit.acked > acked else attempt + 1
            if attempt <= 2:
                log.warning("simulate: %s: %s; reconnecting", dev.id, e or type(e).__name__)
            counters.reconnects += 1
            if await _sleep_or_stop(stop, _backoff_s(attempt)):
                return
        finally:
            counters.connected.discard(dev.id)


async def _cancel_stragglers(tasks: list[asyncio.Task[None]], stop: asyncio.Event) -> None:
    """After stop, a truck blocked in `drain()` (the gateway stopped reading: backpressure)
    would hold the fleet open forever; give everyone a grace period, then cancel."""
    await stop.wait()
    _, pending = await asyncio.wait(tasks, timeout=STOP_GRACE_S)
    for task in pending:
        task.cancel()


async def _stop_when_driven(trips: TripBook, stop: asyncio.Event) -> None:
    """`--trips N` without `--duration`: the run ends once every trip is driven (and its
    vehicle had a moment for the engine to see it stop)."""
    await _first_of(trips.done, stop)
    if not stop.is_set():
        await _sleep_or_stop(stop, ARRIVAL_GRACE_S)
        stop.set()


async def _first_of(a: asyncio.Event, b: asyncio.Event) -> None:
    waits = [asyncio.ensure_future(a.wait()), asyncio.ensure_future(b.wait())]
    try:
        await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for w in waits:
            w.cancel()


async def _report(
    counters: Counters, trucks: int, publishers: dict[str, MqttPublisher], stop: asyncio.Event,
    every: Callable[[], None], out: Callable[[str], None],
) -> None:  # fmt: skip
    while not await _sleep_or_stop(stop, SUMMARY_INTERVAL_S):
        connected = all(p.connected for p in publishers.values()) if publishers else None
        out(counters.summary(trucks, connected))
        every()


async def drive_fleet(
    settings: Settings,
    options: FleetOptions,
    devices: list[SimDevice],
    state: State,
    stop: asyncio.Event,
    duration_s: float | None = None,
    out: Callable[[str], None] | None = None,
) -> Counters:
    """Run the prepared fleet until `stop` (or `duration_s`); print a summary every 10 s and at the end."""
    state_path = options.state_path or default_state_path(settings)
    out = out or _print_flush
    counters = Counters()
    trucks = [d for d in devices if d.protocol is Protocol.NMEA]
    units = [d for d in devices if d.protocol is Protocol.TELTONIKA]
    phones = [d for d in devices if d.protocol in (Protocol.OWNTRACKS, Protocol.JSON)]
    publishers = {dev.id: MqttPublisher(settings.mqtt_url, dev.login, dev.token) for dev in phones}
    for publisher in publishers.values():
        publisher.start()
    waited = [p.wait_connected(MQTT_CONNECT_WAIT_S) for p in publishers.values()]
    if not all(await asyncio.gather(*waited)):
        log.warning(
            "simulate: MQTT broker %s not reachable yet or refusing a phone's login; its"
            " fixes are dropped until it lets it in",
            mqtt_address(settings.mqtt_url)[:2],
        )
    loop = asyncio.get_running_loop()
    timer = loop.call_later(duration_s, stop.set) if duration_s is not None else None
    host, port = _connect_host(settings.tcp_host), settings.tcp_port
    teltonika_at = _connect_host(settings.teltonika_host), settings.teltonika_port
    period = 1.0 / options.rate
    routing = httpx.AsyncClient() if options.routing_url is not None else None
    pool = await asyncpg.create_pool(settings.database_url, min_size=1, max_size=2) if (
        options.trips and routing is not None
    ) else None  # fmt: skip
    trips = TripBook(options.trips, pool) if pool is not None else None
    counters.trips = trips

    def checkpoint() -> None:
        counters.sent[Protocol.TELTONIKA.value] = sum(d.unit.acked for d in units)
        remember_positions(state, devices)
        save_state(state_path, state)

    try:
        async with asyncio.TaskGroup() as tg:
            vehicles = []
            for i, dev in enumerate(devices):
                # Spread the devices over one period so fixes do not arrive in bursts.
                ticker = Ticker(options.rate, period * i / max(1, len(devices)))
                if dev.protocol is Protocol.NMEA:
                    vehicles.append(
                        tg.create_task(run_truck(dev, host, port, ticker, counters, stop))
                    )
                elif dev.protocol is Protocol.TELTONIKA:
                    vehicles.append(tg.create_task(record_teltonika(dev, ticker, stop)))
                    vehicles.append(
                        tg.create_task(run_teltonika(dev, *teltonika_at, counters, stop))
                    )
                else:
                    phone = publishers[dev.id]
                    vehicles.append(tg.create_task(run_phone(dev, phone, ticker, counters, stop)))
                if routing is not None:
                    assert options.routing_url is not None
                    planner = RoadPlanner(routing, options.routing_url, options.area())
                    vehicles.append(tg.create_task(drive_on_roads(dev, planner, stop, trips)))
            if trips is not None and duration_s is None:
                tg.create_task(_stop_when_driven(trips, stop))
            tg.create_task(
                _report(counters, len(trucks) + len(units), publishers, stop, checkpoint, out)
            )
            tg.create_task(_cancel_stragglers(vehicles, stop))
    finally:
        if timer is not None:
            timer.cancel()
        await asyncio.gather(*(p.close() for p in publishers.values()))
        if routing is not None:
            await routing.aclose()
        if pool is not None:
            await pool.close()
        checkpoint()
    out(counters.summary())
    return counters


async def simulate(settings: Settings, options: FleetOptions, duration_s: float | None) -> Counters:
    """`fixgate simulate`: register the fleet, drive it until Ctrl-C, SIGTERM or the duration."""
    devices, state = await prepare_fleet(settings, options)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    print(banner(settings, options), flush=True)
    return await drive_fleet(settings, options, devices, state, stop, duration_s)


def banner(settings: Settings, options: FleetOptions) -> str:
    """What the fleet is and where it sends."""
    parts = [
        f"{options.trucks} trucks -> tcp {settings.tcp_host}:{settings.tcp_port}",
        f"{options.phones} phones -> mqtt {':'.join(map(str, mqtt_address(settings.mqtt_url)[:2]))}",
    ]
    if options.teltonika:
        parts.append(
            f"{options.teltonika} Teltonika trucks -> tcp {settings.teltonika_host}:{settings.teltonika_port}"
        )
    where = (
        f"on the roads of {options.routing_url} around {options.center[0]:.4f},{options.center[1]:.4f}"
        if options.routing_url is not None
        else f"along great circles around {options.center[0]:.4f},{options.center[1]:.4f}"
    )
    line = f"simulate: {', '.join(parts)}, {options.rate:g} fix/s each, tenant {options.tenant}, {where}"
    if options.trips:
        line += f"; {options.trips} trips"
    return line


def _print_flush(line: str) -> None:
    print(line, flush=True)  # piped into a log or a test, the lines should not wait for exit


def parse_center(text: str) -> tuple[float, float]:
    """`LAT,LON` in degrees."""
    try:
        lat_s, lon_s = text.split(",")
        lat, lon = float(lat_s), float(lon_s)
    except ValueError:
        raise ValueError(f"expected LAT,LON in degrees, got {text!r}") from None
    if not (-80.0 <= lat <= 80.0 and -180.0 <= lon <= 180.0):
        # Beyond 80 degrees the disc nears a pole and Redis' GEO set (85.05) cannot hold it.
        raise ValueError(
            f"center must be within latitude -80..80 and longitude -180..180, got {text!r}"
        )
    return lat, lon
