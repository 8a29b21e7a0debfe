"""axe-core (pinned in web/package.json, installed by `./run`'s setup into web/node_modules;
never served to users) run in a page: its serious and critical violations."""

from __future__ import annotations

from functools import cache
from typing import Any

from playwright.async_api import Page

from tests.support.paths import REPO_ROOT

AXE_JS = REPO_ROOT / "web" / "node_modules" / "axe-core" / "axe.min.js"
BLOCKING = frozenset({"serious", "critical"})


@cache
def _source() -> str:
    return AXE_JS.read_text(encoding="utf-8")


async def violations(page: Page) -> list[dict[str, Any]]:
    """axe's WCAG 2.x A/AA and best-practice rules on the page as it is now; the
    violations of serious or critical impact, each with its rule, help and elements. The
    script is evaluated through the DevTools protocol, so the page's CSP does not apply."""
    await page.evaluate(_source())
    found: list[dict[str, Any]] = await page.evaluate(
        """async () => {
            const result = await axe.run(document, {
                runOnly: {type: "tag", values: ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa", "best-practice"]},
                resultTypes: ["violations"],
            });
            return result.violations.map((v) => ({
                id: v.id, impact: v.impact, help: v.help,
                nodes: v.nodes.map((n) => n.target.join(" ")).slice(0, 5),
            }));
        }"""
    )
    return [v for v in found if v["impact"] in BLOCKING]
