"""An operator generates a vending key and processes an uploaded VKLOADREQ in real Chromium."""

from __future__ import annotations

import pytest

from factories.keys import SGC, authorise
from factories.registry import new_device
from key_load_protocol import KeyIdentity, open_eklf
from kmc import pki
from tests.conftest import browser_login

pytestmark = pytest.mark.browser


def test_operator_generates_a_key_then_processes_an_uploaded_request(app, page, tmp_path):
    browser_login(page, "operator1")
    page.goto("/keys/")
    page.click("text=Supply groups")
    page.fill("#group-sgc", SGC)
    page.fill("#group-name", "North")
    page.click("#group-submit")
    assert "Supply group 600727 added." in page.content()
    page.click("text=Vending keys")
    page.select_option("#key-sgc", SGC)
    page.fill("#key-krn", "1")
    page.select_option("#key-kt", "1")
    page.select_option("#key-dkga", "04")
    page.select_option("#key-eas", ["07", "11"])
    page.click("#key-submit")
    kcv = page.locator("#keys td.kcv").first.inner_text()
    assert f"KCV {kcv}" in page.content()

    device = new_device(app, "1001")
    authorise(app, device.smid, 1)
    request = tmp_path / "vkloadreq.der"
    request.write_bytes(device.request((KeyIdentity(SGC, 1, 1),)))
    page.click("text=Key loading")
    page.set_input_files("#request_file", str(request))
    page.click("#submit")
    assert "EKLF #1 issued to SM 1001 with 1 key(s)." in page.content()
    with page.expect_download() as caught:
        page.click("#download-eklf")
    eklf = tmp_path / "eklf.der"
    caught.value.save_as(eklf)
    with app.app_context():
        root = pki.current().root.certificate
    klf = open_eklf(eklf.read_bytes(), trusted_root=root, sm_private_key=device.key)
    assert [(k.identity, k.kcv.hex().upper()) for k in klf.keys] == [(KeyIdentity(SGC, 1, 1), kcv)]

    page.goto("/keyload/")
    page.set_input_files("#request_file", str(request))
    page.click("#submit")
    # The page says why once, in words (the API keeps the reason code replayed_nonce).
    assert (
        "this request was answered before (EKLF sequence 1); replays are refused" in page.content()
    )
