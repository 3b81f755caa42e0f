"""The inspection report in headless Chromium: an auditor reaches it from the manufacturer's
page, downloads its signed export (whose SHA-256 is the one on the page), the page passes axe-core
and never scrolls sideways at 768 or 1,280 px, and its printed form has no menu or buttons."""

from __future__ import annotations

import hashlib
import zipfile

import pytest

from factories.callers import caller
from factories.keys import SGC, add_key, authorise
from factories.registry import new_device
from key_load import service as key_loading
from key_load_protocol import KeyIdentity
from tests.conftest import browser_login, page_problems

pytestmark = pytest.mark.browser


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)  # the page, not the database
def test_auditor_inspects_prints_and_downloads_the_matching_export(app, page, backend, tmp_path):
    device = new_device(app, "4242")
    add_key(app, 1)
    authorise(app, "4242", 1)
    with app.app_context():
        key_loading.process_request(caller("operator1"), device.request((KeyIdentity(SGC, 1, 1),)))
    page.set_viewport_size({"width": 1280, "height": 900})
    browser_login(page, "auditor1")
    page.goto("/registry/manufacturers/1A2B")
    page.click("#inspection-link")
    assert (
        page.locator('#inspection-sms tr[data-smid="4242"] .keyloads')
        .inner_text()
        .endswith("#1, 1 key(s)")
    )
    assert page.locator("#inspection-chart polyline").count() == 2
    assert page_problems(page) == []
    page.emulate_media(media="print")
    assert not page.locator("#main-nav").is_visible()
    assert not page.locator("#inspection-download").is_visible()
    assert page.locator("#inspection-chart").is_visible()
    page.emulate_media(media="screen")
    digest = page.locator("#inspection-sha256").inner_text()
    with page.expect_download() as download:
        page.click("#inspection-download")
    saved = tmp_path / "inspection.zip"
    download.value.save_as(saved)
    with zipfile.ZipFile(saved) as archive:
        name, signature = sorted(archive.namelist())
        assert signature == name + ".sig"
        assert hashlib.sha256(archive.read(name)).hexdigest() == digest
