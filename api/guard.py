"""What a request must pass before the API spends anything on it.

- Its body is bounded (`BodyLimit`, `FIXGATE_API_MAX_BODY_BYTES`): a larger declared body
  is answered 413 before a byte of it is read, a larger streamed one as soon as it passes
  the bound.
- No bearer token rides in a URL: a `?token=` is 401 (URLs reach logs, proxies, browser
  history and the Referer of every asset a page loads).
- A route that needs a principal checks the token, and that its principal is not disabled,
  before FastAPI reads the body or a database connection is taken (`GuardedRoute`): a
  caller without a valid token costs a header parse, not a JSON parse and a pool slot.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Any

from fastapi import Request, Response
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute, APIRouter
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api import idempotency
from api.auth import BadToken, read_token
from api.errors import envelope, unauthorized
from api.principal import Principal

TOKEN_IN_URL = (
    "A bearer token goes in the Authorization header, never in a URL (?token= is refused)"
)


def authenticate(request: Request) -> Principal:
    """The principal of the request's bearer token: valid, and not disabled (401 otherwise)."""
    from api.state import ApiState

    state: ApiState = request.app.state.api
    header = request.headers.get("authorization", "")
    scheme, _, credentials = header.partition(" ")
    if scheme.lower() != "bearer" or not credentials:
        raise unauthorized()
    try:
        principal = read_token(state.settings.api_secret, credentials.strip())
    except BadToken as e:
        raise unauthorized(f"Invalid token: {e}") from None
    if state.principals.disabled(principal):
        raise unauthorized("Your account is disabled")
    return principal


def _needs_principal(dependant: Dependant) -> bool:
    from api.deps import get_principal

    return any(d.call is get_principal or _needs_principal(d) for d in dependant.dependencies)


class GuardedRoute(APIRoute):
    """A route whose handler refuses a token in the URL, and checks the principal (when the
    route needs one) before the body is read or a dependency runs."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()
        needs_principal = _needs_principal(self.dependant)

        async def guarded(request: Request) -> Response:
            if "token" in request.query_params:
                raise unauthorized(TOKEN_IN_URL)
            if not needs_principal:
                return await handler(request)
            principal = request.state.principal = authenticate(request)
            if request.method in idempotency.WRITES and idempotency.HEADER in request.headers:
                return await idempotency.run(request.app.state.api, request, principal, handler)
            return await handler(request)

        return guarded


def guarded_router(**kwargs: Any) -> APIRouter:
    """An APIRouter whose every route is a `GuardedRoute`."""
    return APIRouter(route_class=GuardedRoute, **kwargs)


class _TooLarge(StarletteHTTPException):
    """Raised from `receive` when a streamed body passes the bound: an HTTPException, so
    FastAPI's body reading lets it through to the envelope's handler (413)."""


class BodyLimit:
    """Pure ASGI middleware bounding request bodies (HTTP only; WebSocket frames are
    bounded by the server)."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    def _refusal(self) -> Response:
        return envelope(413, f"Request body too large: at most {self.max_bytes} bytes")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        for name, value in scope["headers"]:
            if name == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    declared = -1
                if declared < 0 or declared > self.max_bytes:
                    message = "Invalid Content-Length" if declared < 0 else None
                    response = envelope(400, message) if message else self._refusal()
                    await response(scope, receive, send)
                    return
        seen = 0
        started = False

        async def counting() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    raise _TooLarge(413, f"Request body too large: at most {self.max_bytes} bytes")
            return message

        async def sending(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, counting, sending)
        except _TooLarge:  # read outside FastAPI's handlers (a plain ASGI route)
            if not started:
                await self._refusal()(scope, receive, send)


class SecurityHeaders:
    """Pure ASGI middleware: every response says `Referrer-Policy: no-referrer` (a page's
    address never reaches another site) and `X-Content-Type-Options: nosniff`."""

    HEADERS = ((b"referrer-policy", b"no-referrer"), (b"x-content-type-options", b"nosniff"))

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def sending(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), *self.HEADERS]
            await send(message)

        await self.app(scope, receive, sending)
