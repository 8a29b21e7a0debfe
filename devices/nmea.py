"""NMEA 0183 sentences in, one merged `Fix` per epoch out (sans-IO: the clock is an argument).

The model is gpsd's (`drivers/driver_nmea0183.c`), reduced to what a tracker gateway needs:

* Every sentence is checksum-verified first (`devices.checksum`); one without a checksum
  is refused. A line holding a second `$` (a receiver restarting a sentence mid-line) is
  retried from the last `$`, as gpsd's lexer does.
* An epoch is every sentence carrying the same UTC time of day (RMC, GGA, GLL, ZDA) plus the
  time-less ones (VTG, GSA) that arrive while it is open. A sentence with another time of
  day closes the open epoch, which becomes ONE `Fix`; so does `flush()` at EOF and
  `on_timer()` once the device has been quiet for `timeout_epoch_idle_s`. Time-less
  sentences arriving while no epoch is open carry nothing we could place and are dropped.
* Which sentence wins: the position comes from the first of RMC/GGA/GLL in the epoch (they
  agree); speed and track from RMC, or from VTG when RMC has none (VTG may belong to the
  next epoch on receivers that send it first, so it only fills gaps); altitude from GGA;
  HDOP and satellites from GGA, else from GSA.
* The date comes from RMC or ZDA, never from the server's clock. An epoch without one takes
  the date of the last RMC/ZDA, moved a day forward when its time of day is more than 12 h
  earlier than that sentence's (midnight passed), a day back when more than 12 h later (a
  straggler from before midnight). An epoch with a position but no date ever seen is a
  `DecodeError(NO_DATE)` whose detail carries the time and position.
* End of cycle, as gpsd detects it: the sentence type that was last in each of
  `CYCLE_ENDER_EPOCHS` consecutive epochs (GGA for a receiver sending RMC then GGA) is
  learned as the cycle ender, and from then on an epoch is emitted as soon as that
  sentence has been merged, instead of when the next epoch's first sentence arrives: a
  1 Hz tracker's fix leaves a second earlier. Should a sentence for the epoch already
  emitted turn up after all (a same-time straggler, or a time-less sentence before the
  next epoch opens), the guess was wrong: early emission is switched off for the rest of
  the stream, at the cost of that one sentence.
* `Fix.valid` is False when any sentence of the epoch says there is no usable fix: RMC or
  GLL status not `A`; FAA mode `N` (not valid) or `S` (simulator), an empty mode being
  fine; GGA quality outside 1..5; GSA fix type 1; or coordinates exactly 0,0. NMEA 4.1's
  navigational status (the `V` Quectel appends to perfectly good RMCs) is not consulted.

Parsing: pynmea2 recognizes and splits the sentences we do not treat as hot (GLL, VTG, GSA,
ZDA) and names their fields. RMC and GGA, which carry the 20k fixes/s load, are split here
directly after checksum verification (`parser="pynmea2"` sends them through pynmea2 too;
`bench/nmea_decode.py` measures both). Converting and range-checking field values is ours
on both paths: pynmea2's typed accessors hand back the raw string when conversion fails
and do not range-check (`9900.000` would be 99 degrees).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from datetime import UTC, date, datetime, time, timedelta
from typing import Final, Literal

import pynmea2

from devices.checksum import split_sentence
from devices.events import DecodeError, DecodeErrorReason, Ignored
from devices.fix import Fix, Protocol
from devices.units import kmh_to_mps, knots_to_mps

__all__ = [
    "DEFAULT_TIMEOUT_EPOCH_IDLE_S",
    "MAX_STRAGGLER_DELAY_S",
    "NmeaDecoder",
    "NmeaEvent",
    "Parser",
]

NmeaEvent = Fix | DecodeError | Ignored
Parser = Literal["fast", "pynmea2"]

DEFAULT_TIMEOUT_EPOCH_IDLE_S = 2.0
"""Quiet time after which a pending epoch is emitted. A receiver sends an epoch's sentences
in one burst well under a second long, and reports at least every second while it runs; 2 s
is one report period plus generous network jitter, so a live 1 Hz stream always closes its
epochs by the next time of day, and a device that goes quiet gets its last fix out within
2 s."""

CYCLE_ENDER_EPOCHS = 3
"""Consecutive epochs that must end with the same sentence type before it is trusted to
end every epoch (gpsd locks in after one; three keeps a receiver that varies its pattern
from being guessed wrong as often)."""

MAX_STRAGGLER_DELAY_S = 60.0
"""A sentence for the epoch just emitted, arriving up to this long after it was emitted, is
a straggler (a cellular link stalled mid-burst) and is ignored rather than emitted as a
second fix with the same time. The same time of day can only legitimately come back a day
later, so any window well under 24 h is safe; a minute covers every stall worth waiting for."""

_US_PER_HALF_DAY: Final = 12 * 3600 * 1_000_000
_CENTURY_PIVOT_YY: Final = 80
"""RMC has two-digit years: 80..99 are 1980..1999 (GPS began in 1980), 00..79 are 20xx."""
_MIN_YEAR, _MAX_YEAR = 1980, 2099  # ZDA's 4-digit years, held to the window RMC can express

_MAX_CACHED_ADDRESSES: Final = 32
"""Addresses remembered per decoder. A receiver uses a few talkers (GP, GN, GL, GA, GB, BD)
times six sentence types; past 32 (a peer cycling through talker ids) lookups simply take
the slower path, so the cache cannot grow with hostile input."""

_KIND_PROPRIETARY: Final = "nmea_proprietary"
_KIND_UNSUPPORTED: Final = "nmea_unsupported"
_KIND_STRAGGLER: Final = "nmea_straggler"

# Field layouts, as pynmea2 names them, in sentence order (index 0 is the address).
_RMC_FIELDS: Final = ("timestamp", "status", "lat", "lat_dir", "lon", "lon_dir",
                      "spd_over_grnd", "true_course", "datestamp", "mag_variation",
                      "mag_var_dir", "mode_indicator")  # fmt: skip
_GGA_FIELDS: Final = ("timestamp", "lat", "lat_dir", "lon", "lon_dir", "gps_qual",
                      "num_sats", "horizontal_dil", "altitude")  # fmt: skip
_GLL_FIELDS: Final = ("lat", "lat_dir", "lon", "lon_dir", "timestamp", "status", "faa_mode")
_VTG_FIELDS: Final = ("true_track", "true_track_sym", "mag_track", "mag_track_sym",
                      "spd_over_grnd_kts", "spd_over_grnd_kts_sym", "spd_over_grnd_kmph",
                      "spd_over_grnd_kmph_sym", "faa_mode")  # fmt: skip
_GSA_FIELDS: Final = ("mode", "mode_fix_type", *(f"sv_id{n:02d}" for n in range(1, 13)),
                      "pdop", "hdop")  # fmt: skip
_ZDA_FIELDS: Final = ("timestamp", "day", "month", "year")

_UNUSABLE_FAA_MODES: Final = frozenset(("N", "S"))  # not valid, simulator
_USABLE_GGA_QUALITIES: Final = frozenset(range(1, 6))  # GPS, DGPS, PPS, RTK, float RTK


class _NoTime(Exception):
    """A sentence holds a position but no time of day."""


class _Epoch:
    """What the sentences of one epoch said so far (mutable; one per epoch)."""

    __slots__ = ("altitude", "date_ordinal", "gsa_satellites", "hdop", "heading",
                 "last_at", "last_type", "lat", "lon", "opened_at", "satellites", "speed", "tod_raw",
                 "tod_us", "valid")  # fmt: skip

    def __init__(self, tod_us: int, tod_raw: str, now: float) -> None:
        self.tod_us = tod_us
        self.tod_raw = tod_raw  # as the opening sentence wrote it, to spot the same epoch cheaply
        self.opened_at = now
        self.last_at = now
        self.last_type = ""  # the type (RMC, GGA...) of the last sentence merged
        self.date_ordinal: int | None = None
        self.lat: float | None = None
        self.lon: float | None = None
        self.altitude: float | None = None
        self.speed: float | None = None
        self.heading: float | None = None
        self.hdop: float | None = None
        self.satellites: int | None = None
        self.gsa_satellites: int | None = None
        self.valid = True


class NmeaDecoder:
    """Turn one device's NMEA lines into merged fixes.

    Feed lines without their terminators (`devices.framing.LineFramer` makes them); each
    call returns the events it produced: a `Fix` or `DecodeError(NO_DATE)` when an epoch
    closes, a `DecodeError` for a sentence that cannot be used, an `Ignored` for
    well-formed sentences that carry no fix by design (GSV, TXT, proprietary `$P...`).
    """

    def __init__(
        self,
        device_id: str,
        tenant_id: str,
        *,
        timeout_epoch_idle_s: float = DEFAULT_TIMEOUT_EPOCH_IDLE_S,
        parser: Parser = "fast",
    ) -> None:
        if timeout_epoch_idle_s <= 0:
            raise ValueError(f"timeout_epoch_idle_s must be positive: {timeout_epoch_idle_s}")
        if parser not in ("fast", "pynmea2"):
            raise ValueError(f"parser must be 'fast' or 'pynmea2', not {parser!r}")
        self.device_id = device_id
        self.tenant_id = tenant_id
        self.timeout_epoch_idle_s = timeout_epoch_idle_s
        self._handlers = _FAST_HANDLERS if parser == "fast" else _PYNMEA2_HANDLERS
        # Handlers by full address ("GNRMC"): one dict lookup per sentence on the hot path.
        self._by_address: dict[str, _Handler] = {}
        self._epoch: _Epoch | None = None
        # The last date an RMC/ZDA stated, with its time of day (for midnight rollover).
        self._date_ordinal: int | None = None
        self._date_tod_us = 0
        # The last RMC date field read, as text and as a day ordinal (cache).
        self._ddmmyy: str | None = None
        self._ddmmyy_ordinal = 0
        # The epoch emitted last, to recognize its stragglers.
        self._closed_tod_us: int | None = None
        self._closed_at = 0.0
        # End-of-cycle detection (see the module docstring).
        self._touched: _Epoch | None = None  # the epoch the current sentence merged into
        self._ender_candidate = ""
        self._ender_streak = 0
        self._cycle_ender: str | None = None
        self._closed_early = False  # the epoch emitted last went out at its cycle ender
        self._early_off = False
        # One-entry caches: consecutive fixes share a date and often a receive time.
        self._midnight_ordinal = 0
        self._midnight = datetime.min.replace(tzinfo=UTC)
        self._received_now = math.nan
        self._received_at = self._midnight

    def feed_line(self, line: bytes | bytearray, now: float) -> list[NmeaEvent]:
        """Decode one line (no CR/LF) received at `now` (Unix seconds, wall clock)."""
        out: list[NmeaEvent] = []
        if type(line) is not bytes:
            line = bytes(line)  # a bytearray would defeat the isinstance checks below
        body = _verified_body(line)
        if not isinstance(body, bytes):
            out.append(DecodeError(body, _excerpt(line)))
            return out
        try:
            text = body.decode("ascii")
        except UnicodeDecodeError:
            out.append(DecodeError(DecodeErrorReason.BAD_SENTENCE, "non-ASCII bytes"))
            return out
        address = text[:5]
        handler = self._by_address.get(address) if text[5:6] == "," else None
        if handler is None:
            handler = self._resolve(text, out)
            if handler is None:
                return out
        self._touched = None
        try:
            handler(self, text, now, out)
            epoch = self._touched
            if epoch is not None:
                kind = text[2:5]
                epoch.last_type = kind
                if kind == self._cycle_ender:
                    self._close_epoch(now, out)
                    self._closed_early = True
        except _NoTime:
            out.append(DecodeError(DecodeErrorReason.NO_TIME, f"{address}: position, no time"))
        except ValueError as exc:
            out.append(DecodeError(DecodeErrorReason.BAD_SENTENCE, f"{address}: {exc}"))
        return out

    def _resolve(self, text: str, out: list[NmeaEvent]) -> _Handler | None:
        """The handler for a sentence's address, or None with the reason added to `out`."""
        comma = text.find(",")
        address = text if comma < 0 else text[:comma]
        if address[:1] == "P":
            out.append(Ignored(_KIND_PROPRIETARY))
            return None
        if len(address) != 5 or not address.isalnum():
            out.append(DecodeError(DecodeErrorReason.BAD_SENTENCE, f"address {address[:8]!r}"))
            return None
        handler = self._handlers.get(address[2:])
        if handler is None:
            out.append(Ignored(_KIND_UNSUPPORTED))
            return None
        if comma == 5 and len(self._by_address) < _MAX_CACHED_ADDRESSES:
            self._by_address[address] = handler
        return handler

    def flush(self, now: float) -> list[NmeaEvent]:
        """EOF: emit the pending epoch, if any."""
        out: list[NmeaEvent] = []
        self._close_epoch(now, out)
        return out

    def next_deadline(self) -> float | None:
        """When `on_timer()` wants to run (same clock as `now`), or None."""
        epoch = self._epoch
        return None if epoch is None else epoch.last_at + self.timeout_epoch_idle_s

    def on_timer(self, now: float) -> list[NmeaEvent]:
        """Emit the pending epoch if the device has been quiet long enough."""
        out: list[NmeaEvent] = []
        deadline = self.next_deadline()
        if deadline is not None and now >= deadline:
            self._close_epoch(now, out)
        return out

    # -- epochs --------------------------------------------------------------------------

    def _stamp(
        self, hhmmss: str, lat: str, lat_hemi: str, lon: str, lon_hemi: str
    ) -> tuple[int, tuple[float, float] | None] | None:
        """Time of day and position of a timed sentence; None if it has neither (no fix)."""
        epoch = self._epoch
        if epoch is not None and hhmmss == epoch.tod_raw:
            # The open epoch keeps one position; reading a second one (GGA after RMC)
            # would be a third of the work per fix for nothing.
            if epoch.lat is not None:
                return epoch.tod_us, None
            return epoch.tod_us, _position(lat, lat_hemi, lon, lon_hemi)
        tod_us = _time_of_day_us(hhmmss)
        position = _position(lat, lat_hemi, lon, lon_hemi)
        if tod_us is not None:
            return tod_us, position
        if position is not None:
            raise _NoTime
        return None  # neither time nor position: a receiver without a fix, nothing to merge

    def _enter(self, tod_us: int, raw: str, now: float, out: list[NmeaEvent]) -> _Epoch | None:
        """The epoch a sentence stamped `tod_us` belongs to (None: a straggler, ignore it)."""
        epoch = self._epoch
        if epoch is not None and epoch.tod_us == tod_us:
            epoch.last_at = now
            self._touched = epoch
            return epoch
        if tod_us == self._closed_tod_us and now - self._closed_at < MAX_STRAGGLER_DELAY_S:
            if self._closed_early:
                self._stop_early_emission()
            out.append(Ignored(_KIND_STRAGGLER))
            return None
        if epoch is not None:
            self._learn_cycle_ender(epoch.last_type)
        self._close_epoch(now, out)
        epoch = self._epoch = self._touched = _Epoch(tod_us, raw, now)
        return epoch

    def _joined(self, now: float) -> _Epoch | None:
        """The open epoch, for a time-less sentence (None: nothing to join)."""
        epoch = self._epoch
        if epoch is not None:
            epoch.last_at = now
            self._touched = epoch
        elif self._closed_early:
            self._stop_early_emission()  # it would have joined the epoch emitted early
        return epoch

    def _learn_cycle_ender(self, kind: str) -> None:
        """An epoch was closed by the next one: its last sentence type may end cycles."""
        if self._early_off or not kind:
            return
        if kind == self._ender_candidate:
            self._ender_streak += 1
        else:
            self._ender_candidate, self._ender_streak = kind, 1
        if self._ender_streak >= CYCLE_ENDER_EPOCHS:
            self._cycle_ender = kind

    def _stop_early_emission(self) -> None:
        self._early_off = True
        self._cycle_ender = None
        self._closed_early = False

    def _rmc_date(self, ddmmyy: str) -> int | None:
        if ddmmyy == self._ddmmyy:
            return self._ddmmyy_ordinal
        ordinal = _ddmmyy_ordinal(ddmmyy)
        if ordinal is not None:
            self._ddmmyy, self._ddmmyy_ordinal = ddmmyy, ordinal
        return ordinal

    def _learn_date(self, epoch: _Epoch, ordinal: int) -> None:
        epoch.date_ordinal = ordinal
        self._date_ordinal = ordinal
        self._date_tod_us = epoch.tod_us

    def _close_epoch(self, now: float, out: list[NmeaEvent]) -> None:
        epoch = self._epoch
        if epoch is None:
            return
        self._epoch = None
        self._closed_tod_us = epoch.tod_us
        self._closed_at = now
        self._closed_early = False
        if epoch.lat is None or epoch.lon is None:
            return
        ordinal = epoch.date_ordinal
        if ordinal is None:
            ordinal = self._inferred_date(epoch.tod_us)
            if ordinal is None:
                out.append(_no_date(epoch))
                return
        out.append(self._fix(epoch, epoch.lat, epoch.lon, ordinal))

    def _inferred_date(self, tod_us: int) -> int | None:
        ordinal = self._date_ordinal
        if ordinal is None:
            return None
        elapsed = tod_us - self._date_tod_us
        if elapsed < -_US_PER_HALF_DAY:
            return ordinal + 1
        if elapsed > _US_PER_HALF_DAY:
            return ordinal - 1
        return ordinal

    def _fix(self, epoch: _Epoch, lat: float, lon: float, ordinal: int) -> Fix:
        if ordinal != self._midnight_ordinal:
            self._midnight_ordinal = ordinal
            self._midnight = datetime.combine(date.fromordinal(ordinal), time(), UTC)
        if epoch.opened_at != self._received_now:
            self._received_now = epoch.opened_at
            self._received_at = datetime.fromtimestamp(epoch.opened_at, UTC)
        satellites = epoch.satellites
        return Fix(
            device_id=self.device_id,
            tenant_id=self.tenant_id,
            time=self._midnight + timedelta(microseconds=epoch.tod_us),
            lat=lat,
            lon=lon,
            altitude=epoch.altitude,
            speed=epoch.speed,
            heading=epoch.heading,
            hdop=epoch.hdop,
            satellites=epoch.gsa_satellites if satellites is None else satellites,
            valid=epoch.valid and (lat != 0.0 or lon != 0.0),
            protocol=Protocol.NMEA,
            received_at=self._received_at,
        )

    # -- sentences -----------------------------------------------------------------------
    # Each handler parses and checks every field it uses before `_enter()`, so a sentence
    # that raises ValueError (reported as BAD_SENTENCE) leaves no trace; past that point
    # nothing depends on the input any more and nothing can fail.

    def _on_rmc(self, f: Sequence[str], now: float, out: list[NmeaEvent]) -> None:
        _, hhmmss, status, lat, lat_hemi, lon, lon_hemi, knots, track, ddmmyy = f[:10]
        stamp = self._stamp(hhmmss, lat, lat_hemi, lon, lon_hemi)
        if stamp is None:
            return
        tod_us, position = stamp
        speed = _knots(knots)
        heading = _track(track)
        ordinal = self._rmc_date(ddmmyy)
        epoch = self._enter(tod_us, hhmmss, now, out)
        if epoch is None:
            return
        if position is not None and epoch.lat is None:
            epoch.lat, epoch.lon = position
        if speed is not None:
            epoch.speed = speed
        if heading is not None:
            epoch.heading = heading
        if status != "A" or f[12] in _UNUSABLE_FAA_MODES:
            epoch.valid = False
        if ordinal is not None:
            self._learn_date(epoch, ordinal)

    def _on_gga(self, f: Sequence[str], now: float, out: list[NmeaEvent]) -> None:
        _, hhmmss, lat, lat_hemi, lon, lon_hemi, quality, sats, hdop, altitude = f[:10]
        stamp = self._stamp(hhmmss, lat, lat_hemi, lon, lon_hemi)
        if stamp is None:
            return
        tod_us, position = stamp
        quality_code = _count(quality)
        usable = quality_code is not None and quality_code in _USABLE_GGA_QUALITIES
        satellites = _count(sats)
        dilution = _non_negative(hdop)
        metres = _finite(altitude)
        epoch = self._enter(tod_us, hhmmss, now, out)
        if epoch is None:
            return
        if position is not None and epoch.lat is None:
            epoch.lat, epoch.lon = position
        if not usable:
            epoch.valid = False
        if satellites is not None:
            epoch.satellites = satellites
        if dilution is not None:
            epoch.hdop = dilution
        if metres is not None:
            epoch.altitude = metres

    def _on_gll(self, f: Sequence[str], now: float, out: list[NmeaEvent]) -> None:
        _, lat, lat_hemi, lon, lon_hemi, hhmmss, status, mode = f[:8]
        stamp = self._stamp(hhmmss, lat, lat_hemi, lon, lon_hemi)
        if stamp is None:
            return
        tod_us, position = stamp
        epoch = self._enter(tod_us, hhmmss, now, out)
        if epoch is None:
            return
        if position is not None and epoch.lat is None:
            epoch.lat, epoch.lon = position
        if status != "A" or mode in _UNUSABLE_FAA_MODES:
            epoch.valid = False

    def _on_vtg(self, f: Sequence[str], now: float, out: list[NmeaEvent]) -> None:
        if f[2] != "T" and f[4] != "M" and f[6] != "N" and f[8] != "K":
            # Before NMEA 2.3: `track,magnetic track,knots,km/h` without unit letters
            # (pynmea2 names the fields after the 2.3 layout only).
            track, knots, kmh = f[1], f[3], f[4]
        else:
            track, knots, kmh = f[1], f[5], f[7]
        heading = _track(track)
        speed = _knots(knots)
        if speed is None:
            speed = _kmh(kmh)
        epoch = self._joined(now)
        if epoch is None:
            return
        if epoch.speed is None:
            epoch.speed = speed
        if epoch.heading is None:
            epoch.heading = heading

    def _on_gsa(self, f: Sequence[str], now: float, out: list[NmeaEvent]) -> None:
        fix_type = f[2]
        if fix_type not in ("", "1", "2", "3"):
            raise ValueError(f"fix type {fix_type[:8]!r}")
        used = sum(1 for prn in f[3:15] if prn)
        dilution = _non_negative(f[16])
        epoch = self._joined(now)
        if epoch is None:
            return
        if fix_type == "1":
            epoch.valid = False
        # Multi-GNSS receivers send one GSA per constellation: the counts add up.
        epoch.gsa_satellites = (epoch.gsa_satellites or 0) + used
        if epoch.hdop is None:
            epoch.hdop = dilution

    def _on_zda(self, f: Sequence[str], now: float, out: list[NmeaEvent]) -> None:
        _, hhmmss, day, month, year = f[:5]
        tod_us = _time_of_day_us(hhmmss)
        if tod_us is None or not (day and month and year):
            return
        ordinal = _ymd_ordinal(year, month, day)
        epoch = self._enter(tod_us, hhmmss, now, out)
        if epoch is not None:
            self._learn_date(epoch, ordinal)


# -- dispatch ------------------------------------------------------------------------------

_Apply = Callable[[NmeaDecoder, Sequence[str], float, list[NmeaEvent]], None]
_Handler = Callable[[NmeaDecoder, str, float, list[NmeaEvent]], None]


def _split_fast(width: int, apply: _Apply) -> _Handler:
    """A handler that splits the sentence itself, padding it to `width` fields."""

    def handle(decoder: NmeaDecoder, text: str, now: float, out: list[NmeaEvent]) -> None:
        fields = text.split(",")
        if len(fields) < width:
            fields += [""] * (width - len(fields))
        apply(decoder, fields, now, out)

    return handle


def _split_pynmea2(names: tuple[str, ...], apply: _Apply) -> _Handler:
    """A handler that lets pynmea2 recognize and split the sentence, fields read by name."""

    def handle(decoder: NmeaDecoder, text: str, now: float, out: list[NmeaEvent]) -> None:
        sentence = pynmea2.parse(text)  # ParseError is a ValueError
        data, index = sentence.data, sentence.name_to_idx
        fields = [text[:5]]
        for name in names:
            i = index[name]
            fields.append(data[i] if i < len(data) else "")
        if len(data) > len(names):
            fields += data[len(names) :]
        apply(decoder, fields, now, out)

    return handle


_FAST_HANDLERS: dict[str, _Handler] = {
    "RMC": _split_fast(1 + len(_RMC_FIELDS), NmeaDecoder._on_rmc),
    "GGA": _split_fast(1 + len(_GGA_FIELDS), NmeaDecoder._on_gga),
    "GLL": _split_pynmea2(_GLL_FIELDS, NmeaDecoder._on_gll),
    "VTG": _split_pynmea2(_VTG_FIELDS, NmeaDecoder._on_vtg),
    "GSA": _split_pynmea2(_GSA_FIELDS, NmeaDecoder._on_gsa),
    "ZDA": _split_pynmea2(_ZDA_FIELDS, NmeaDecoder._on_zda),
}
_PYNMEA2_HANDLERS: dict[str, _Handler] = {
    **_FAST_HANDLERS,
    "RMC": _split_pynmea2(_RMC_FIELDS, NmeaDecoder._on_rmc),
    "GGA": _split_pynmea2(_GGA_FIELDS, NmeaDecoder._on_gga),
}


def _verified_body(line: bytes) -> bytes | DecodeErrorReason:
    body = split_sentence(line)
    if isinstance(body, bytes):
        return body
    # A receiver that restarts a sentence mid-line leaves `<garbage>$GPGGA,...*hh`;
    # gpsd's lexer restarts on every `$`, so retry from the last one.
    restart = line.rfind(b"$", 1)
    if restart > 0:
        retry = split_sentence(line[restart:])
        if isinstance(retry, bytes):
            return retry
    return body


# -- fields --------------------------------------------------------------------------------
# Each returns None for an empty field and raises ValueError for one it cannot read.


def _time_of_day_us(raw: str) -> int | None:
    """`hhmmss[.sss]` as microseconds since midnight."""
    if not raw:
        return None
    if len(raw) < 6 or not raw[:6].isdigit():
        raise ValueError(f"time {raw[:12]!r}")
    hours, minutes_seconds = divmod(int(raw[:6]), 10_000)
    minutes, seconds = divmod(minutes_seconds, 100)
    if hours > 23 or minutes > 59 or seconds > 59:  # no leap second: datetime has none
        raise ValueError(f"time {raw[:12]!r}")
    us = ((hours * 60 + minutes) * 60 + seconds) * 1_000_000
    if len(raw) > 6:
        fraction = raw[7:]
        if raw[6] != "." or (fraction and not fraction.isdigit()):
            raise ValueError(f"time {raw[:12]!r}")
        if fraction:
            us += int(fraction[:6].ljust(6, "0"))
    return us


def _ddmmyy_ordinal(raw: str) -> int | None:
    if not raw:
        return None
    if len(raw) != 6 or not raw.isdigit():
        raise ValueError(f"date {raw[:8]!r}")
    yy = int(raw[4:])
    year = 1900 + yy if yy >= _CENTURY_PIVOT_YY else 2000 + yy
    return date(year, int(raw[2:4]), int(raw[:2])).toordinal()


def _ymd_ordinal(year: str, month: str, day: str) -> int:
    if not (year.isdigit() and month.isdigit() and day.isdigit()):
        raise ValueError(f"date {year[:4]!r}-{month[:2]!r}-{day[:2]!r}")
    if not _MIN_YEAR <= int(year) <= _MAX_YEAR:
        raise ValueError(f"year {year[:6]!r}")
    return date(int(year), int(month), int(day)).toordinal()


def _position(lat: str, lat_hemi: str, lon: str, lon_hemi: str) -> tuple[float, float] | None:
    if not lat and not lon:
        return None
    if not lat or not lon:
        raise ValueError("half a position")
    return (
        _degrees(lat, lat_hemi, "N", "S", 4, 90.0),
        _degrees(lon, lon_hemi, "E", "W", 5, 180.0),
    )


def _degrees(
    raw: str, hemi: str, positive: str, negative: str, max_whole_digits: int, limit: float
) -> float:
    """`(d)ddmm.mmmm` plus hemisphere as signed degrees."""
    dot = raw.find(".")
    whole_digits = len(raw) if dot < 0 else dot
    # At least `dmm` (three digits) before the point: two digits or fewer is decimal degrees
    # or garbage, which would otherwise be read as minutes. Digits only: no sign, exponent,
    # `nan` or `inf`, all of which float() would take.
    if not 3 <= whole_digits <= max_whole_digits or not raw.replace(".", "", 1).isdigit():
        raise ValueError(f"coordinate {raw[:16]!r}")
    ddmm = float(raw)
    whole = int(ddmm // 100.0)
    minutes = ddmm - 100.0 * whole
    value = whole + minutes / 60.0
    if minutes >= 60.0 or value > limit:
        raise ValueError(f"coordinate out of range {raw[:16]!r}")
    if hemi == positive:
        return value
    if hemi == negative:
        return -value
    raise ValueError(f"hemisphere {hemi[:4]!r}")


def _finite(raw: str) -> float | None:
    if not raw:
        return None
    value = float(raw)
    if not math.isfinite(value):
        raise ValueError(f"number {raw[:12]!r}")
    return value


def _non_negative(raw: str) -> float | None:
    value = _finite(raw)
    if value is not None and value < 0.0:
        raise ValueError(f"negative {raw[:12]!r}")
    return value


def _knots(raw: str) -> float | None:
    value = _non_negative(raw)
    return None if value is None else knots_to_mps(value)


def _kmh(raw: str) -> float | None:
    value = _non_negative(raw)
    return None if value is None else kmh_to_mps(value)


def _track(raw: str) -> float | None:
    value = _non_negative(raw)
    if value is None:
        return None
    if value > 360.0:
        raise ValueError(f"track {raw[:12]!r}")
    return value % 360.0  # 360 is north too; Fix.heading is [0, 360)


def _count(raw: str) -> int | None:
    if not raw:
        return None
    if not raw.isdigit():
        raise ValueError(f"count {raw[:8]!r}")
    return int(raw)


def _no_date(epoch: _Epoch) -> DecodeError:
    seconds, us = divmod(epoch.tod_us, 1_000_000)
    clock = f"{seconds // 3600:02d}:{seconds // 60 % 60:02d}:{seconds % 60:02d}.{us:06d}"
    return DecodeError(
        DecodeErrorReason.NO_DATE,
        f"epoch {clock} at {epoch.lat:.7f},{epoch.lon:.7f}: no RMC/ZDA date seen yet",
    )


def _excerpt(line: bytes) -> str:
    return line[:40].decode("ascii", "backslashreplace")
