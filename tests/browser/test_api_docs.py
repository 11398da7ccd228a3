"""Swagger UI at /docs renders in Chromium with every request to another origin refused (a
cluster without internet access): its JS and CSS come from the UI itself."""

from __future__ import annotations

from urllib.parse import urlsplit

import pytest
from playwright.sync_api import Browser, Route, expect

from tests.browser.conftest import UiStack

pytestmark = [pytest.mark.browser, pytest.mark.cluster]


def test_swagger_ui_renders_offline(browser: Browser, ui_stack: UiStack) -> None:
    context = browser.new_context(base_url=ui_stack.url)
    foreign: list[str] = []

    def same_origin_only(route: Route) -> None:
        if urlsplit(route.request.url).netloc == urlsplit(ui_stack.url).netloc:
            route.continue_()
        else:
            foreign.append(route.request.url)
            route.abort()

    context.route("**/*", same_origin_only)
    page = context.new_page()
    try:
        page.goto("/docs")
        expect(page.locator(".swagger-ui .info .title")).to_contain_text("ClaimOps UI", timeout=20_000)
        expect(page.locator(".opblock-summary-path").first).to_be_visible()
        assert page.locator('.opblock-summary-path[data-path="/pipeline/commit"]').count() == 1
    finally:
        context.close()
    assert foreign == []
