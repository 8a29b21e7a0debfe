"""The README's screenshots of the field apps at 360 px (docs/field-help.png,
docs/field-tech.png, docs/field-tech-job.png), taken in headless Chromium from a running
demo with the two links it prints for a person (devtools/guest.py), playing both roles:

    ./run demo --every-s 20          # in one terminal; copy its two "Play a role" links
    .venv/bin/python -m devtools.field_screenshots 'http://...:8000/tech#code=...' \\
        'http://...:8000/help#code=...'

The customer asks for help at the Casino and waits for the scripted technician the next
scenario sends (their name and ETA); the technician goes on duty by the port, waits for
the ring of the next scenario's request near them, and accepts it. Each link signs in
once: the demo prints new ones at every start.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Final

from playwright.async_api import Browser, BrowserContext, Page, async_playwright, expect

CHROMIUM: Final = "/usr/bin/chromium"
CHROMIUM_ARGS: Final = ["--headless", "--no-sandbox", "--disable-gpu",
                        "--disable-background-networking", "--disable-component-update",
                        "--disable-sync", "--no-first-run"]  # fmt: skip
PHONE: Final = {"width": 360, "height": 740}
CUSTOMER_AT: Final = (43.73862, 7.42778)
"""Place du Casino, Monte-Carlo."""
TECHNICIAN_AT: Final = (43.73470, 7.42190)
"""Quai Albert Ier, by the port: on the extract's roads, 800 m from the Casino."""
WAIT_MS: Final = 180_000
"""A scenario starts every `--every-s` and a running one finishes first: minutes at most."""
UI_MS: Final = 15_000
SETTLE_S: Final = 2.0
"""For the map's tiles or roads and the last WebSocket update to be drawn."""


@contextlib.asynccontextmanager
async def person(browser: Browser, at: tuple[float, float]) -> AsyncIterator[BrowserContext]:
    context = await browser.new_context(
        viewport={"width": PHONE["width"], "height": PHONE["height"]},
        device_scale_factor=2,
        is_mobile=True,
        has_touch=True,
        geolocation={"latitude": at[0], "longitude": at[1], "accuracy": 8},
        permissions=["geolocation"],
    )
    try:
        yield context
    finally:
        await context.close()


async def shot(page: Page, path: Path) -> None:
    await asyncio.sleep(SETTLE_S)
    width = await page.evaluate("document.documentElement.scrollWidth")
    if width > PHONE["width"]:
        raise SystemExit(f"{path.name}: the page is {width} px wide at {PHONE['width']} px")
    await page.screenshot(path=str(path), full_page=True)
    print(f"wrote {path}")


async def as_customer(browser: Browser, link: str, out: Path) -> None:
    async with person(browser, CUSTOMER_AT) as context:
        page = await context.new_page()
        await page.goto(link)
        await page.get_by_role("button", name="Use my position").click()
        await expect(page.get_by_label("Latitude")).not_to_have_value("", timeout=UI_MS)
        await page.get_by_label("Address or landmark").fill("Place du Casino")
        await page.get_by_label("What happened?").fill("The battery is flat")
        await page.locator("#services").get_by_role("checkbox").first.check()
        await page.get_by_role("button", name="Request help").click()
        print("customer: asked for help; waiting for the next scenario's technician")
        await expect(page.locator("#technician")).not_to_have_text(
            "not assigned yet", timeout=WAIT_MS
        )
        await expect(page.locator("#eta")).to_contain_text("min", timeout=WAIT_MS)
        await shot(page, out / "field-help.png")


async def as_technician(browser: Browser, link: str, out: Path) -> None:
    async with person(browser, TECHNICIAN_AT) as context:
        page = await context.new_page()
        await page.goto(link)
        await page.get_by_role("radio", name="On duty").check()
        await expect(page.locator("#live")).to_have_text("live", timeout=UI_MS)
        print("technician: on duty; waiting for the ring of the next scenario near")
        accept = page.get_by_role("button", name="Accept")
        await expect(accept).to_be_visible(timeout=WAIT_MS)
        await shot(page, out / "field-tech.png")
        await accept.click()
        await expect(page.get_by_role("button", name="Start journey")).to_be_visible(timeout=UI_MS)
        await shot(page, out / "field-tech-job.png")


async def main(tech_link: str, help_link: str, out: Path) -> None:
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(
            executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True
        )
        try:
            # One after the other: the person's own request would ring their technician.
            await as_customer(browser, help_link, out)
            await as_technician(browser, tech_link, out)
        finally:
            await browser.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("tech_link", help="the demo's technician link (/tech#code=...)")
    parser.add_argument("help_link", help="the demo's customer link (/help#code=...)")
    parser.add_argument("--out", type=Path, default=Path("docs"), help="where the PNGs go")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    asyncio.run(main(args.tech_link, args.help_link, args.out))
