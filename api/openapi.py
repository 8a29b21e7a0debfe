"""The OpenAPI document says what the API validates: every free text field, parameter and
path segment takes no NUL character (`CamelModel` and the text parameters refuse one,
PostgreSQL could store none), so each such string schema carries that pattern; and every
signed-in write (POST, PUT, PATCH) names the `Idempotency-Key` header it honours
(api/idempotency.py)."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI

from api import idempotency

NO_NUL = "^[^\\x00]*$"


def _annotate(schema: Any) -> None:
    if isinstance(schema, list):
        for item in schema:
            _annotate(item)
        return
    if not isinstance(schema, dict):
        return
    if schema.get("type") == "string" and not (
        {"format", "enum", "pattern", "const"} & set(schema)
    ):
        schema["pattern"] = NO_NUL
    for value in schema.values():
        _annotate(value)


IDEMPOTENCY_KEY = {
    "name": idempotency.HEADER,
    "in": "header",
    "required": False,
    "description": "The same key from the same principal within 24 h returns the first answer"
    " without acting again; with another request it is 422 (docs/dispatch.md).",
    "schema": {"type": "string", "pattern": idempotency.KEY_PATTERN, "maxLength": 255},
}


def _name_the_key(document: dict[str, Any]) -> None:
    for operations in document.get("paths", {}).values():
        for method, operation in operations.items():
            if method.upper() in idempotency.WRITES and operation.get("security"):
                operation.setdefault("parameters", []).append(dict(IDEMPOTENCY_KEY))


def install(app: FastAPI) -> None:
    """Build the document once, as FastAPI does, then add the patterns and the header."""
    build = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            document = build()
            _annotate(document)
            _name_the_key(document)
        return app.openapi_schema or {}

    app.openapi = openapi  # type: ignore[method-assign]
