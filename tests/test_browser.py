"""The foundation's pages in real headless Chromium against `kmc serve`."""

from __future__ import annotations

import pytest

from tests.conftest import browser_login, page_says

pytestmark = pytest.mark.browser


def test_login_and_logout(page):
    browser_login(page, "operator1")
    assert page.locator("#whoami").inner_text().startswith("operator1")
    assert page.locator("#mode-banner").get_attribute("data-mode") == "test"
    page.click("#logout")
    assert page.url.endswith("/login")
    page_says(page, "You are logged out.")
    page.goto("/home")
    assert "/login" in page.url


def test_failed_login_shows_a_message(page):
    browser_login(page, "operator1", "definitely wrong")
    page_says(page, "invalid username or password")
    assert page.locator("#whoami").count() == 0


def test_navigation_follows_the_role(page):
    browser_login(page, "auditor1")
    nav = page.locator("#main-nav").inner_text()
    assert "Audit log" in nav and "Users" not in nav
    response = page.goto("/admin/users")
    assert response.status == 403
    page_says(page, "your role does not allow this")


def test_the_api_documentation_renders_under_its_policy(page):
    response = page.goto("/api/docs/")
    assert "style-src 'self' 'unsafe-inline'" in response.headers["content-security-policy"]
    page.wait_for_selector(".swagger-ui .info .title")
    assert "API" in page.locator(".swagger-ui .info .title").inner_text()
    assert page.locator(".opblock").count() > 10
