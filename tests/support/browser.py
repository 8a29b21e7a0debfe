"""Helpers for the browser tests: a running `fixgate api`, Debian's Chromium driven by
Playwright, screenshots kept as test artifacts."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest
from playwright.async_api import BrowserContext, Page, ViewportSize, async_playwright

from tests.support.paths import FIXGATE_BIN, REPO_ROOT

CHROMIUM = "/usr/bin/chromium"
# Chromium reaches for the internet at every start without these (STACK.md).
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
STARTUP_TIMEOUT_S = 20.0
VIEWPORT: ViewportSize = {"width": 1280, "height": 800}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def artifacts_dir() -> Path:
    """Where screenshots go: FIXGATE_TEST_ARTIFACTS, else .artifacts/ in the repository."""
    path = Path(os.environ.get("FIXGATE_TEST_ARTIFACTS", REPO_ROOT / ".artifacts"))
    path.mkdir(parents=True, exist_ok=True)
    return path


def wait_ready(base: str, proc: subprocess.Popen[bytes], what: str) -> None:
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    while True:
        try:
            if httpx.get(f"{base}/readyz").status_code == 200:
                return
        except httpx.TransportError:
            pass
        assert proc.poll() is None, f"{what} exited"
        assert time.monotonic() < deadline, f"{what} not ready"
        time.sleep(0.1)


@contextlib.contextmanager
def api_process(env: dict[str, str]) -> Iterator[str]:
    """`fixgate api` on a free loopback port; its base URL. Stopped by its PID."""
    port = free_port()
    env = {**env, "FIXGATE_API_HOST": "127.0.0.1", "FIXGATE_API_PORT": str(port)}
    proc = subprocess.Popen([FIXGATE_BIN, "api"], env=env, cwd=REPO_ROOT)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_ready(base, proc, "fixgate api")
        yield base
    finally:
        proc.terminate()
        proc.wait(timeout=15)


@contextlib.asynccontextmanager
async def chromium() -> AsyncIterator[BrowserContext]:
    """Debian's Chromium with a fresh profile (Playwright's own browser download is not
    available here)."""
    with tempfile.TemporaryDirectory(prefix="fixgate-chromium-") as profile:
        async with async_playwright() as pw:
            context = await pw.chromium.launch_persistent_context(
                profile,
                executable_path=CHROMIUM,
                args=CHROMIUM_ARGS,
                headless=True,
                viewport=VIEWPORT,
            )
            try:
                yield context
            finally:
                await context.close()


async def screenshot(page: Page, name: str) -> Path:
    path = artifacts_dir() / f"{name}.png"
    await page.screenshot(path=str(path))
    return path


def watch_errors(page: Page) -> list[str]:
    """Script errors and failed requests of the page, collected as they happen."""
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(f"script error: {e}"))
    page.on(
        "response",
        lambda r: errors.append(f"{r.status} {r.url}") if r.status >= 400 else None,
    )
    return errors


def websocket_merged() -> bool:
    """Whether this build has the real-time layer (`/ws`, issue 11)."""
    from api.app import create_app
    from api.settings import ApiSettings
    from tests.support.api import SECRET

    app = create_app(ApiSettings(api_secret=SECRET))  # connects nothing until its lifespan
    return any(getattr(route, "path", None) == "/ws" for route in app.routes)


def require_websocket() -> None:
    """Live assertions need `/ws`: say so plainly (xfail) in a build without it."""
    if not websocket_merged():
        pytest.xfail("the WebSocket layer (/ws, branch ws) is not merged: live updates untested")
