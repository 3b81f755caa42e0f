"""Every main page, for every role that sees it, in headless Chromium: axe-core finds no serious
or critical violation, and the page body never scrolls sideways at 768 px or 1,280 px (wide
tables scroll inside their own box). Also: the form kept across an expired session is filled in
again by kmc.js after login."""

from __future__ import annotations

import pytest

from factories.keys import SGC, add_key, authorise
from factories.registry import new_device
from tests.conftest import PageChecks, browser_login, page_says

pytestmark = pytest.mark.browser

# Each role's main pages (what its menu and the objects' links lead to).
PAGES = {
    "admin1": [
        "/home",
        "/admin/users",
        "/admin/tokens",
        "/audit/",
        "/registry/",
        "/registry/register",
        "/registry/manufacturers",
        "/registry/manufacturers/1A2B",
        "/registry/sms/4242",
        "/keys/",
        "/keys/supply-groups",
        f"/keys/supply-groups/{SGC}",
        "/keys/authorisations",
        f"/keys/{SGC}/1/1",
        "/keys/approvals",
        "/keys/expiring",
        "/keyload/",
        "/custodians/",
        "/certificates",
        "/glossary",
        "/account/password",
    ],
    "operator1": [
        "/home",
        "/registry/sms/4242",
        "/keys/",
        f"/keys/{SGC}/1/1",
        f"/keys/{SGC}/1/1/authorise-many",
        "/keyload/",
    ],
    "auditor1": ["/home", "/audit/", "/registry/", "/registry/manufacturers", "/certificates"],
    "maker1": ["/home", "/registry/", "/registry/register", "/registry/sms/4242"],
}


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)  # the pages, not the database
def test_every_main_page_passes_axe_and_never_scrolls_sideways(app, page, backend):
    new_device(app, "4242")
    add_key(app, 1)
    authorise(app, "4242", 1)
    checks = PageChecks(page)
    for username, paths in PAGES.items():
        page.context.clear_cookies()
        browser_login(page, username)
        for path in paths:
            response = page.goto(path)
            assert response is not None and response.status == 200, (username, path)
            checks(f"{username} {path}")
    assert len(checks.checked) == sum(len(paths) for paths in PAGES.values())
    checks.assert_clean()


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
def test_a_form_sent_after_the_session_expired_is_filled_in_again_after_login(page, backend):
    browser_login(page, "operator1")
    page.goto("/keys/supply-groups")
    page.fill("#group-sgc", "600728")
    page.fill("#group-name", "South")
    page.context.clear_cookies()  # the idle timeout passed: the session cookie is gone
    page.click("#supply-group-form #group-submit")
    page_says(page, "Your session expired")
    assert "/login" in page.url
    page.fill("#username", "operator1")
    page.fill("#password", "correct horse battery staple")
    page.click("#submit")
    page.wait_for_url("**/keys/supply-groups")  # loaded: kmc.js fills the form at DOMContentLoaded
    assert page.input_value("#group-sgc") == "600728"
    assert page.input_value("#group-name") == "South"
    page.click("#supply-group-form #group-submit")
    page_says(page, "Supply group 600728 added.")
