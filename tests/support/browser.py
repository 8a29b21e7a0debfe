"""Helpers for the browser tests: a running `fixgate api`, Debian's Chromium driven by
Playwright, screenshots kept as test artifacts."""

from __future__ import annotations

import contextlib
import importlib.util
import os
import subprocess
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.async_api import Browser, BrowserContext, Page, ViewportSize, async_playwright

from tests.support.paths import FIXGATE_BIN, REPO_ROOT
from tests.support.ports import free_port

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
def api_process(env: dict[str, str], port: int | None = None) -> Iterator[str]:
    """`fixgate api` on a loopback port (a free one unless given); its base URL. Stopped by
    its PID."""
    port = port or free_port()
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


@contextlib.asynccontextmanager
async def chromium_browser() -> AsyncIterator[Browser]:
    """Debian's Chromium, for tests that open a browser context per person (each its own
    storage, geolocation and network: `browser.new_context(...)`)."""
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(
            executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True
        )
        try:
            yield browser
        finally:
            await browser.close()


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
    """Whether this build has the real-time layer (`/ws`, issue 11, `api.realtime`)."""
    return importlib.util.find_spec("api.realtime") is not None


def require_websocket() -> None:
    """Live assertions need `/ws`: say so plainly (xfail) in a build without it."""
    if not websocket_merged():
        pytest.xfail("the WebSocket layer (/ws, branch ws) is not merged: live updates untested")


async def drive(
    client: Any, prefix: str, device: str, tenant: str, lat: float, lon: float,
    heading: float | None = None,
) -> None:  # fmt: skip
    """A fix through the gateway's own live writer: the device's live position (hash, GEO
    set) and the positions stream that the engine and the API's fleet feed read."""
    from datetime import UTC, datetime

    from devices.fix import Fix
    from gateway.sinks.live import LiveWriter

    at = datetime.now(UTC)
    fix = Fix(
        device_id=device, tenant_id=tenant, time=at, lat=lat, lon=lon, heading=heading,
        received_at=at,
    )  # fmt: skip
    await LiveWriter(client, prefix).write([fix], [fix])


async def log_in(page: Page, base: str, email: str, password: str, path: str = "/console") -> None:
    """Open `path` without a token: the page sends the browser to /login; log in there as
    a person does (by the fields' labels) and land back on `path`."""
    await page.goto(f"{base}{path}")
    await page.wait_for_url(f"{base}/login?next=*")
    await page.get_by_label("E-mail").fill(email)
    await page.get_by_label("Password").fill(password)
    await page.get_by_role("button", name="Log in").click()
    await page.wait_for_url(f"{base}{path}")
