"""Every error in the envelope: `{status, message, data}` with a message a person can act on."""

from __future__ import annotations

import logging
from typing import Any

import asyncpg
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

log = logging.getLogger("fixgate.api")


class ApiError(Exception):
    def __init__(
        self, status: int, message: str, data: Any = None, headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.data = data
        self.headers = headers


def unauthorized(message: str = "Not authenticated: a valid bearer token is required") -> ApiError:
    return ApiError(401, message)


def forbidden(message: str = "Your role may not do this") -> ApiError:
    return ApiError(403, message)


def not_found(what: str) -> ApiError:
    return ApiError(404, f"{what} not found")


def conflict(message: str, current_state: str | None = None) -> ApiError:
    data = None if current_state is None else {"requestStatus": current_state}
    return ApiError(409, message, data)


def bad_request(message: str) -> ApiError:
    return ApiError(400, message)


def invalid(field: str, message: str) -> ApiError:
    """A 422 naming the field at fault, shaped like a validation error's."""
    return ApiError(
        422, f"Invalid parameters: {field}: {message}", [{"field": field, "message": message}]
    )


def envelope(
    status: int, message: str, data: Any = None, headers: dict[str, str] | None = None
) -> JSONResponse:
    headers = {**(headers or {}), **({"WWW-Authenticate": "Bearer"} if status == 401 else {})}
    return JSONResponse(
        {"status": status, "message": message, "data": data}, status_code=status, headers=headers
    )


def _field(loc: tuple[int | str, ...]) -> str:
    # ("body", "latitude") -> "latitude"; ("query", "pageNumber") -> "pageNumber"
    parts = [str(p) for p in loc if p not in ("body", "query", "path", "header")]
    return ".".join(parts) or "body"


async def _api_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ApiError)
    return envelope(exc.status, exc.message, exc.data, exc.headers)


async def _validation(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    return _validation_response(exc)


def _validation_response(exc: RequestValidationError) -> JSONResponse:
    errors = [
        {"field": _field(tuple(e.get("loc", ()))), "message": str(e.get("msg", ""))}
        for e in exc.errors()
    ]
    summary = "; ".join(f"{e['field']}: {e['message']}" for e in errors)
    return envelope(422, f"Invalid parameters: {summary}", errors)


async def _http(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    # Its headers too: a 405 says which methods are allowed (RFC 9110 Allow).
    return envelope(exc.status_code, str(exc.detail), headers=dict(exc.headers or {}))


async def _database(_: Request, exc: Exception) -> JSONResponse:
    answer = _database_response(exc)
    return answer if answer is not None else await _unexpected(_, exc)


def _database_response(exc: Exception) -> JSONResponse | None:
    # Constraint violations are the client's doing (a duplicate code, a bad reference);
    # say which constraint, not the SQL.
    if isinstance(exc, asyncpg.UniqueViolationError):
        return envelope(409, f"Already exists ({exc.constraint_name})")
    if isinstance(exc, asyncpg.ForeignKeyViolationError | asyncpg.CheckViolationError):
        return envelope(422, f"Invalid reference or value ({exc.constraint_name})")
    if isinstance(exc, asyncpg.DataError):
        return envelope(422, f"Invalid value: {exc}")
    return None


async def _unexpected(_: Request, exc: Exception) -> JSONResponse:
    log.exception("unexpected error", exc_info=exc)
    return envelope(500, "An unexpected error occurred")


def response_for(exc: Exception) -> JSONResponse | None:
    """The answer an error makes, as the handlers below make it; None for an unexpected one
    (a 500: the caller lets it through)."""
    if isinstance(exc, ApiError):
        return envelope(exc.status, exc.message, exc.data, exc.headers)
    if isinstance(exc, RequestValidationError):
        return _validation_response(exc)
    if isinstance(exc, StarletteHTTPException):
        return envelope(exc.status_code, str(exc.detail), headers=dict(exc.headers or {}))
    if isinstance(exc, asyncpg.PostgresError):
        return _database_response(exc)
    return None


def install(app: FastAPI) -> None:
    app.add_exception_handler(ApiError, _api_error)
    app.add_exception_handler(RequestValidationError, _validation)
    app.add_exception_handler(StarletteHTTPException, _http)
    app.add_exception_handler(asyncpg.PostgresError, _database)
    app.add_exception_handler(Exception, _unexpected)
