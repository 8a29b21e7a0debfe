"""Keep bearer tokens out of the logs: browsers pass the WebSocket's token in the URL
(`/ws?token=JWT`), and uvicorn logs each WebSocket's path with its query string."""

from __future__ import annotations

import logging
import re

_TOKEN = re.compile(r"(token=)[^&\s\"']+")


def redact(value: object) -> object:
    return _TOKEN.sub(r"\1[redacted]", value) if isinstance(value, str) else value


class RedactTokens(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple):
            record.args = tuple(redact(a) for a in record.args)
        record.msg = redact(record.msg)
        return True


def install() -> None:
    for name in ("uvicorn.error", "uvicorn.access"):
        logging.getLogger(name).addFilter(RedactTokens())
