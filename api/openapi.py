"""The OpenAPI document says what the API validates: every free text field, parameter and
path segment takes no NUL character (`CamelModel` and the text parameters refuse one,
PostgreSQL could store none), so each such string schema carries that pattern."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI

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


def install(app: FastAPI) -> None:
    """Build the document once, as FastAPI does, then add the patterns."""
    build = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            _annotate(build())
        return app.openapi_schema or {}

    app.openapi = openapi  # type: ignore[method-assign]
