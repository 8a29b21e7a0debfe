"""An API process that dies between a write's commit and its answer.

`python -m tests.support.idempotency_crash PORT` (database, Redis, prefix and secret from
`FIXGATE_*`) serves the real app, except that the moment after a write under an
Idempotency-Key commits, before its answer goes out, the process SIGKILLs itself: the write
and its key are committed, the client gets no answer."""

from __future__ import annotations

import os
import signal
import sys

import uvicorn

from api import idempotency
from api.app import create_app
from api.settings import ApiSettings


async def _die() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def main(port: int) -> None:
    idempotency.after_commit = _die  # the crash injected at the one point it is about
    app = create_app(ApiSettings(api_host="127.0.0.1", api_port=port))
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning")


if __name__ == "__main__":
    main(int(sys.argv[1]))
