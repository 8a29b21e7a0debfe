"""The console's pages are one layout around each page's own main part: every page named in
the navigation renders from files that ship with the package, its title and its link."""

from __future__ import annotations

import pytest

from api.routes.console import STAFF_PAGES, StaffPage, _staff_html


@pytest.mark.parametrize("page", STAFF_PAGES, ids=[p.path for p in STAFF_PAGES])
def test_every_console_page_renders_with_its_navigation(page: StaffPage) -> None:
    html = _staff_html(page)
    assert f"<title>fixgate · {page.name.lower()}</title>" in html
    assert f'<a href="{page.path}" aria-current="page">{page.name}</a>' in html
    for other in STAFF_PAGES:
        assert f'<a href="{other.path}"' in html
    assert f'<script src="/static/{page.script}"></script>' in html
    assert "<main" in html
