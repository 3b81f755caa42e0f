"""Each role's whole journey through the UI alone, one test per journey, in headless Chromium
against `kmc serve`: every page reached is checked with axe-core and for sideways scrolling at
768 and 1,280 px (`PageChecks`). What a journey needs from another role is set up through the
services; the SM's side is the SM emulator's command line, run on the files the pages gave.
"""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import pytest
from click.testing import CliRunner
from cryptography.hazmat.primitives import serialization

from factories.callers import caller
from factories.registry import new_device, register_sm
from kmc import pki
from sm_registry import service as registry
from tests.conftest import (
    PageChecks,
    browser_login,
    browser_page,
    kmc_server,
    split_master_key,
)
from tests.test_certificates_web import openssl, shown_command

pytestmark = [
    pytest.mark.browser,
    pytest.mark.parametrize("backend", ["sqlite"], indirect=True),  # the pages, not the database
]

SGC = "600727"


def sm_emulator(*args: str) -> str:
    """`sm-emulator ARGS` as the SM's owner runs it; its output (the command must succeed)."""
    from sm_emulator.cli import main

    result = CliRunner().invoke(main, list(args))
    assert result.exit_code == 0, result.output
    return result.output


def new_sm(folder: Path, smid: str, kind: str = "certified") -> Path:
    """An emulated SM of manufacturer 1A2B with its state in `folder/smid`; its CSR's path."""
    csr = folder / f"{smid}.pem"
    sm_emulator(
        "init", "--state", str(folder / smid), "--id-man", "1A2B", "--smid", smid,
        "--kind", kind, "--out", str(csr),
    )  # fmt: skip
    return csr


def download(page, selector: str, target: Path) -> Path:
    """Click the download link `selector` and keep the file as `target`."""
    with page.expect_download() as caught:
        page.click(selector)
    caught.value.save_as(target)
    return target


def test_manufacturer_registers_sms_in_bulk_and_installs_the_downloaded_chain(
    app, page, tmp_path
):
    smids = ["700001", "700002", "700003"]
    csrs = [new_sm(tmp_path, smid) for smid in smids]
    checks = PageChecks(page)
    page.goto("/login")
    checks("login")
    browser_login(page, "maker1")
    checks("home")
    page.click("#main-nav >> text=Register SMs")
    checks("register form")
    page.set_input_files("#csrs", [str(csr) for csr in csrs])
    page.select_option("#kind", "certified")
    page.fill("#model", "SM-9000")
    page.fill("#firmware", "smfw")
    page.fill("#version", "2.1.0")
    page.fill("#number", "STS-CERT-0042")
    page.click("#submit")
    assert "3 accepted, 0 refused." in page.content()
    verdicts = page.locator("#results tbody tr").all_inner_texts()
    assert [row.split("\t")[:3] for row in verdicts] == [
        [f"{smid}.pem", "accepted", smid] for smid in smids
    ]
    checks("verdicts")
    page.click(f'#results a:text-is("{smids[0]}")')
    assert page.locator("#sm-state").inner_text() == "pending"
    checks("pending SM")

    with app.app_context():  # the operator's part (their own journey)
        registry.change_states(caller("operator1"), smids, "approve", "certification checked")

    page.click("#main-nav >> text=Security modules")
    assert page.locator("#sms td.state").all_inner_texts() == ["active"] * 3
    checks("SM list")
    for smid in smids:
        page.click(f'#sms a:text-is("{smid}")')
        assert page.locator("#sm-state").inner_text() == "active"
        checks(f"SM {smid}")
        state = str(tmp_path / smid)
        root = download(page, "#root-download", tmp_path / "kmc-root.pem")
        chain = download(page, "#certificate", tmp_path / f"sm-{smid}.pem")
        sm_emulator("trust", "--state", state, "--kmc-root", str(root))
        installed = json.loads(sm_emulator("install-cert", "--state", state, str(chain), "--json"))
        assert installed["intermediates"] == 1  # the SM issuing CA came with it
        page.go_back()
    checks.assert_clean()
