"""The registry in real headless Chromium: a manufacturer registers, an operator approves, an auditor exports."""

from __future__ import annotations

import zipfile

import pytest

from factories.csr import make_csr
from tests.conftest import browser_login
from tests.test_registry_cli import verify_export

pytestmark = pytest.mark.browser


def test_register_approve_and_export(page, instance, tmp_path):
    csr = tmp_path / "600727000123.pem"
    csr.write_bytes(make_csr("600727000123"))

    browser_login(page, "maker1")
    page.click("#main-nav >> text=Register SMs")
    page.set_input_files("#csrs", str(csr))
    page.select_option("#kind", "certified")
    page.fill("#model", "SM-9000")
    page.fill("#firmware", "smfw")
    page.fill("#version", "2.1.0")
    page.fill("#number", "STS-CERT-0042")
    page.click("#submit")
    assert "1 accepted, 0 refused." in page.content()
    assert page.locator("#results tbody tr").inner_text().split("\t")[:3] == [
        "600727000123.pem",
        "accepted",
        "600727000123",
    ]
    page.click("#logout")

    browser_login(page, "operator1")
    page.click("#main-nav >> text=Security modules")
    page.click("text=600727000123")
    assert page.locator("#sm-state").inner_text() == "pending"
    page.select_option("#action", "approve")
    page.fill("#reason", "certification checked")
    page.click("#submit")
    assert "SM 600727000123 is now active." in page.content()
    assert page.locator("#sm-state").inner_text() == "active"
    page.click("#logout")

    browser_login(page, "auditor1")
    page.click("#main-nav >> text=Security modules")
    row = page.locator('tr[data-smid="600727000123"]')
    assert "certification checked" in row.inner_text() and "maker1" in row.inner_text()
    with page.expect_download() as download:
        page.click("#export-csv")
    archive_path = tmp_path / "export.zip"
    download.value.save_as(archive_path)
    with zipfile.ZipFile(archive_path) as archive:
        archive.extractall(tmp_path / "export")
        content, signature = sorted(archive.namelist())
    # The auditor takes the certificates from the UI too, not from the KMC host.
    page.click("#main-nav >> text=Certificates")
    for name in ("root", "audit"):
        with page.expect_download() as download:
            page.click(f"#download-{name}")
        download.value.save_as(tmp_path / f"{name}.pem")
    verified = verify_export(
        tmp_path / "export" / content,
        tmp_path / "export" / signature,
        tmp_path / "root.pem",
        tmp_path / "audit.pem",
    )
    assert verified.returncode == 0, verified.stderr
    text = (tmp_path / "export" / content).read_text()
    assert "kmc_mode=test" in text and "600727000123,1A2B,Acme Meters,certified" in text


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)  # the page, not the database
def test_operator_approves_the_selected_pending_sms_in_one_go(app, page, backend):
    from factories.registry import new_device
    from tests.test_ui_browser import _BODY_OVERFLOW, _blocking_violations

    for smid in ("5001", "5002", "5003"):
        new_device(app, smid, approve=False)
    new_device(app, "5004")
    browser_login(page, "operator1")
    page.goto("/registry/?state=pending")
    assert _blocking_violations(page) == []
    for smid in ("5001", "5003"):
        page.check(f"#select-{smid}")
    page.select_option("#bulk-action", "approve")
    page.fill("#bulk-reason", "batch 7 certification checked")
    page.click("#bulk-submit")
    page.wait_for_selector("#verdicts")
    assert "2 approved, 0 refused." in page.content()
    assert page.locator("#verdicts tbody tr").all_inner_texts() == ["5001\tdone\t", "5003\tdone\t"]
    assert _blocking_violations(page) == []
    assert page.evaluate(_BODY_OVERFLOW) <= 0
    page.goto("/registry/?state=pending")
    assert page.locator("#sms tbody tr").count() == 1  # 5002, not selected, still waits
