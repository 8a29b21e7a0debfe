"""Phones over HTTP: the Traccar Client app (OsmAnd protocol) and OwnTracks in HTTP mode.

One port (`FIXGATE_OSMAND_PORT`): `/owntracks` and `/owntracks/<user>/<device>` are
OwnTracks, every other path is the Traccar Client (it posts to whatever URL it is given,
usually `/`). HTTP/1.1 is parsed by h11 inside the shared stream shell
(`gateway.listeners.stream`), not by a second web server: so the phones get the same
pause-reading backpressure, request timeout and SIGTERM drain as the trackers, and nothing
else installs signal handlers in the gateway's loop (uvicorn's `Server.serve` does).

Every answer that says "stored" comes after the fix is committed or spooled:
- Traccar Client: 200 once durable; 503 if it is not within `FIXGATE_HTTP_ACK_TIMEOUT_S`
  (the app keeps the position and sends it again: stored once). 400 for a request that
  does not decode, 403 for an unknown or disabled id (the app retries those too).
- OwnTracks: counts ANY answer as delivered (its booklet, "HTTP"), even a 5xx, and only
  an unreachable endpoint makes it queue and retry. So a fix not durable within the
  timeout gets no answer at all: the connection is closed, and the app sends it again.
  Answers: 200 `[]` once durable (or for a payload with nothing to store), 401 for a
  missing or wrong token (Basic auth: user name and the device's token).

Each request must arrive whole within `FIXGATE_TCP_LOGIN_TIMEOUT_S` of the connection (or
of the previous answer); a request is read only once the previous one is answered.

The technician app (issue 23, a page of the dispatch API, so another origin) posts its
phone's fixes here as OwnTracks HTTP, from a browser: a request whose `Origin` is one of
`FIXGATE_HTTP_CORS_ORIGINS` gets the CORS headers that let the page read the answer, and
the browser's preflight (`OPTIONS`, sent before every such POST with an Authorization
header) is answered at once, since it carries no fix (an origin not allowed gets 403 and
no CORS header: the browser then sends nothing). The answer to the POST itself still
comes only once its fixes are durable, or never (OwnTracks). Besides one message, the
OwnTracks path takes a JSON array of messages (fixgate's extension: the fixes the app took
offline, in one request), answered once all of them are durable. The app logs in with its
own token for the technician's device (`check_app_login`).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import time
from collections.abc import Sequence
from typing import ClassVar, Final
from urllib.parse import parse_qsl, unquote

import h11

from devices.events import DecodeError, Ignored
from devices.fix import Fix
from devices.osmand import MAX_BODY_BYTES, decode_osmand
from devices.owntracks import decode_owntracks, decode_owntracks_batch
from gateway import metrics
from gateway.listeners.stream import StreamConnection, StreamListener
from gateway.registry.store import check_app_login, check_identified, check_login

MAX_REQUEST_HEAD_BYTES: Final = 8 * 1024
"""Request line and headers. The apps send a few hundred bytes; 8 KiB is what most web
servers allow by default, and h11 refuses a longer head before buffering more."""
MAX_QUERY_FIELDS: Final = 100
"""The Traccar Client sends about a dozen parameters."""
_OWNTRACKS_PATH: Final = "/owntracks"
_JSON_EMPTY: Final = b"[]"
"""OwnTracks reads the answer's body as a list of messages for the phone: none."""
Answer = tuple[int, bytes] | None
"""Status and body; None: close without answering (OwnTracks, not durable in time)."""
CORS_ALLOW_HEADERS: Final = "Authorization, Content-Type, X-Limit-U, X-Limit-D"
"""What the technician app sends: its Basic credentials, JSON, OwnTracks's identity."""
CORS_MAX_AGE_S: Final = 600
"""A browser asks again at most every 10 minutes (Chromium caps it at 2 hours)."""


class HttpDevicesListener(StreamListener["HttpDeviceConnection"]):
    protocol: ClassVar[str] = "http"
    listener_label: ClassVar[str] = "http"

    def connection(self) -> HttpDeviceConnection:
        return HttpDeviceConnection(self)

    async def durable(self, fixes: Sequence[Fix], now: float) -> bool:
        """Submit the fixes; True once they are committed or spooled, False on timeout
        (they stay queued and are stored all the same; the app just sends them again)."""
        done = asyncio.get_running_loop().create_future()

        def ack() -> None:
            if not done.done():
                done.set_result(None)

        self.ingest.submit(fixes, now, ack=ack)
        self.writer.submitted()
        try:
            await asyncio.wait_for(done, self.settings.http_ack_timeout_s)
        except TimeoutError:
            return False
        return True


class HttpDeviceConnection(StreamConnection):
    refuse_blocked_at_connect = False  # a blocked address's requests get 429s instead
    listener: HttpDevicesListener

    def __init__(self, listener: HttpDevicesListener) -> None:
        super().__init__(listener)
        self.h11 = h11.Connection(h11.SERVER, max_incomplete_event_size=MAX_REQUEST_HEAD_BYTES)
        self.request: h11.Request | None = None
        self.body = bytearray()
        self.cors_origin: str | None = None
        """The request's Origin when it is allowed: its answer carries the CORS headers."""

    # ---- the stream shell's hooks ----------------------------------------------------

    def feed(self, data: bytes, now: float) -> None:
        self.h11.receive_data(data)
        self._next_events(now)

    def end_session(self, now: float) -> None:
        return None  # a request cut short has nothing to store

    def eof_received(self) -> bool:
        self.decode_pending()
        if self.busy:  # half-closed after its request: answer it, then close
            self.draining = True
            return True
        self.finish(time.time())
        return False

    def drain(self) -> None:
        self.draining = True
        self.set_reading(False)
        if not self.busy:
            self.finish(time.time())

    # ---- requests --------------------------------------------------------------------

    def _next_events(self, now: float) -> None:
        while not self.closed and not self.busy:
            try:
                event = self.h11.next_event()
            except h11.RemoteProtocolError as e:
                self.count_error("http", "bad_frame", str(e))
                self._answer_and_close(e.error_status_hint, str(e).encode())
                return
            if event is h11.NEED_DATA or event is h11.PAUSED:
                return
            if isinstance(event, h11.Request):
                self.request, self.body, self.cors_origin = event, bytearray(), None
                length = _header(event.headers, b"content-length")
                if length.isdigit() and int(length) > MAX_BODY_BYTES:
                    self.count_error("http", "payload_too_large", f"Content-Length {length}")
                    self._answer_and_close(413, b"body too large\n")
                    return
            elif isinstance(event, h11.Data):
                self.body += event.data
                if len(self.body) > MAX_BODY_BYTES:
                    self.count_error("http", "payload_too_large", f"{len(self.body)} bytes")
                    self._answer_and_close(413, b"body too large\n")
                    return
            elif isinstance(event, h11.EndOfMessage):
                assert self.request is not None
                self.busy = True  # reading pauses until it is answered
                self.set_reading(False)
                self.listener.spawn(self._handle(self.request, bytes(self.body), now))
                return
            else:  # ConnectionClosed
                return

    async def _handle(self, request: h11.Request, body: bytes, now: float) -> None:
        target = request.target.decode("latin-1")
        path, _, query = target.partition("?")
        owntracks = path == _OWNTRACKS_PATH or path.startswith(_OWNTRACKS_PATH + "/")
        protocol = "owntracks" if owntracks else "osmand"
        origin = _header(request.headers, b"origin")
        allowed = origin.rstrip("/") in self.listener.settings.http_cors_origins
        self.cors_origin = origin if allowed else None
        try:
            if request.method == b"OPTIONS":  # a browser's preflight: no fix, answered at once
                protocol = "preflight"
                answer: Answer = (204, b"") if allowed else (403, b"origin not allowed\n")
            elif self.listener.throttled(self.address, "owntracks_http" if owntracks else "osmand"):
                # Before the id is read: the same answer for known and unknown ones.
                answer = 429, b"too many failed identifications: try again later\n"
            elif owntracks:
                answer = await self._owntracks(request, path, query, body, now)
            else:
                answer = await self._osmand(request, query, body, now)
        finally:
            self.busy = False
        if self.closed:
            return
        if answer is None:
            metrics.HTTP_REQUESTS.labels(protocol, "0").inc()
            self.abort("ack_timeout")
            return
        status, payload = answer
        metrics.HTTP_REQUESTS.labels(protocol, str(status)).inc()
        self._send(status, payload)
        if self.draining or self.h11.our_state is h11.MUST_CLOSE:
            self.finish(time.time())
            return
        self.h11.start_next_cycle()
        self.opened = time.monotonic()  # the next request's time starts now
        self.set_reading(True)
        self._next_events(time.time())  # a pipelined request already read

    async def _osmand(self, request: h11.Request, query: str, body: bytes, now: float) -> Answer:
        try:
            params = dict(parse_qsl(query, keep_blank_values=True, max_num_fields=MAX_QUERY_FIELDS))
        except ValueError as e:
            self.count_error("osmand", "bad_field", f"query: {e}")
            return 400, b"too many query fields\n"
        report = decode_osmand(request.method.decode("latin-1"), params, body, now)
        if isinstance(report, DecodeError):
            self.count_error("osmand", report.reason.value, report.detail)
            return 400, f"{report.reason.value}: {report.detail[:200]}\n".encode()
        device = await self.listener.registry.traccar_id(report.device_key)
        refused = check_identified(device, "osmand")
        if device is None or refused is not None:
            self._refused("osmand", report.device_key, refused or "unknown_device")
            return 403, b"unknown or disabled device\n"
        self.device_id = device.id
        if await self.listener.durable([report.fix(device.id, device.tenant_id)], now):
            return 200, b""
        return 503, b"not stored yet: send it again\n"

    async def _owntracks(
        self, request: h11.Request, path: str, query: str, body: bytes, now: float
    ) -> Answer:
        if request.method != b"POST":
            return 405, b"OwnTracks HTTP mode POSTs\n"
        credentials = _basic_auth(_header(request.headers, b"authorization"))
        if credentials is None:
            self._refused("owntracks_http", "?", "no_credentials")
            return 401, b"HTTP Basic authentication required\n"
        auth_user, token = credentials
        user, device_name = _owntracks_identity(request, path, query)
        user = user or auth_user
        who = f"{user}/{device_name}"
        if not device_name or user != auth_user:
            self._refused("owntracks_http", who, "wrong_identity")
            return 401, b"user and device needed (X-Limit-U/X-Limit-D or the URL)\n"
        device = await self.listener.registry.owntracks(user, device_name)
        refused = check_app_login(device, token)  # the technician app's token, else its own
        if refused is not None:
            refused = check_login(device, token, "owntracks")
        if device is None or refused is not None:
            self._refused("owntracks_http", who, refused or "unknown_device")
            return 401, b"unknown device or wrong token\n"
        self.device_id = device.id
        if not body.strip():  # the app posts an empty body when a friend is deleted
            return 200, _JSON_EMPTY
        results: list[Fix | Ignored | DecodeError]
        if body.lstrip()[:1] == b"[":  # a batch: the technician app's fixes taken offline
            batch = decode_owntracks_batch(body, device.id, device.tenant_id, now)
            results = [*batch] if isinstance(batch, list) else [batch]
        else:
            results = [decode_owntracks(body, device.id, device.tenant_id, now)]
        fixes = [r for r in results if isinstance(r, Fix)]
        for result in results:
            if isinstance(result, DecodeError):
                self.count_error("owntracks", result.reason.value, result.detail)
                return 400, f"{result.reason.value}\n".encode()
        if not fixes:
            return 200, _JSON_EMPTY
        if await self.listener.durable(fixes, now):
            return 200, _JSON_EMPTY
        return None  # any answer would make the app drop the location: let it resend

    # ---- answers ---------------------------------------------------------------------

    def _refused(self, listener_label: str, who: str, reason: str) -> None:
        self.listener.refused(who, reason, self.peer, self.address, listener_label)

    def _send(self, status: int, body: bytes) -> None:
        headers = [("Content-Length", str(len(body)))]
        if body:
            headers.append(
                ("Content-Type", "application/json" if body == _JSON_EMPTY else "text/plain")
            )
        if status == 401:
            headers.append(("WWW-Authenticate", 'Basic realm="fixgate"'))
        if self.cors_origin is not None:
            headers += [("Access-Control-Allow-Origin", self.cors_origin), ("Vary", "Origin")]
            if self.request is not None and self.request.method == b"OPTIONS":
                headers += [
                    ("Access-Control-Allow-Methods", "POST"),
                    ("Access-Control-Allow-Headers", CORS_ALLOW_HEADERS),
                    ("Access-Control-Max-Age", str(CORS_MAX_AGE_S)),
                ]
        try:
            out = self.h11.send(h11.Response(status_code=status, headers=headers))
            out = (out or b"") + (self.h11.send(h11.Data(data=body)) or b"")
            out += self.h11.send(h11.EndOfMessage()) or b""
        except h11.LocalProtocolError:
            return  # the request's state allows no answer (the peer broke it off)
        self.write(out)

    def _answer_and_close(self, status: int, body: bytes) -> None:
        metrics.HTTP_REQUESTS.labels("http", str(status)).inc()
        self._send(status, body)
        self.abort("protocol_error")


def _header(headers: Sequence[tuple[bytes, bytes]], name: bytes) -> str:
    """One header's value (h11 lowercases names), or ""."""
    for key, value in headers:
        if key == name:
            return value.decode("latin-1").strip()
    return ""


def _basic_auth(value: str) -> tuple[str, str] | None:
    """(user, password) of an `Authorization: Basic ...` header."""
    scheme, _, encoded = value.partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        user, sep, password = (
            base64.b64decode(encoded.strip(), validate=True).decode().partition(":")
        )
    except (binascii.Error, UnicodeDecodeError):
        return None
    return (user, password) if sep and user else None


def _owntracks_identity(request: h11.Request, path: str, query: str) -> tuple[str, str]:
    """User and device: the X-Limit-U/X-Limit-D headers, else `?u=&d=`, else the path
    `/owntracks/<user>/<device>` (the Recorder's conventions)."""
    user = _header(request.headers, b"x-limit-u")
    device = _header(request.headers, b"x-limit-d")
    if user and device:
        return user, device
    try:
        params = dict(parse_qsl(query, max_num_fields=MAX_QUERY_FIELDS))
    except ValueError:
        params = {}
    if params.get("d"):
        return params.get("u", user), params["d"]
    parts = [unquote(p) for p in path[len(_OWNTRACKS_PATH) :].split("/") if p]
    if len(parts) == 2:
        return parts[0], parts[1]
    return user, device
