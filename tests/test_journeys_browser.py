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
from factories.keys import SGC, add_key
from factories.registry import new_device, register_sm
from kmc import pki
from sm_registry import service as registry
from tests.conftest import (
    PASSWORD,
    PageChecks,
    browser_login,
    browser_page,
    kmc_server,
    page_says,
    split_master_key,
)
from tests.test_certificates_web import openssl, shown_command

pytestmark = pytest.mark.browser
# The journeys that write most through the served KMC run on both databases; the others are
# about the pages, not the database.
pages_only = pytest.mark.parametrize("backend", ["sqlite"], indirect=True)


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


def download(page, selector: str, folder: Path) -> Path:
    """Click the download link `selector`; the file, kept in `folder` under the name it came with."""
    with page.expect_download() as caught:
        page.click(selector)
    target = folder / caught.value.suggested_filename
    caught.value.save_as(target)
    return target


def test_manufacturer_registers_sms_in_bulk_and_installs_the_downloaded_chain(app, page, tmp_path):
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
    page_says(page, "3 accepted, 0 refused.")
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
        root = download(page, "#root-download", tmp_path)
        chain = download(page, "#certificate", tmp_path)
        assert (root.name, chain.name) == ("kmc-root.pem", f"sm-{smid}.pem")
        sm_emulator("trust", "--state", state, "--kmc-root", str(root))
        installed = json.loads(sm_emulator("install-cert", "--state", state, str(chain), "--json"))
        assert installed["intermediates"] == 1  # the SM issuing CA came with it
        page.go_back()
    checks.assert_clean()


def _install_certificate(app, folder: Path, smid: str) -> None:
    """The SM's owner installs the KMC's certificate for it (the manufacturer's journey)."""
    with app.app_context():
        chain = registry.certificate_chain(smid).pem()
        root = pki.current().root.certificate.public_bytes(serialization.Encoding.PEM)
    (folder / "root.pem").write_bytes(root)
    (folder / f"{smid}-chain.pem").write_bytes(chain)
    state = str(folder / smid)
    sm_emulator("trust", "--state", state, "--kmc-root", str(folder / "root.pem"))
    sm_emulator("install-cert", "--state", state, str(folder / f"{smid}-chain.pem"))


def test_operator_approves_in_bulk_authorises_a_key_and_issues_an_eklf_the_sm_loads(
    app, page, tmp_path
):
    smids = ["700011", "700012"]
    with app.app_context():  # the manufacturer's part (their own journey)
        for smid in smids:
            register_sm(new_sm(tmp_path, smid, "virtual").read_bytes())
    new_device(app, "700013", approve=False)  # pending, and not selected
    checks = PageChecks(page)
    browser_login(page, "operator1")
    checks("home")
    page.click("#home-panels >> text=SMs pending")
    assert page.locator("#sms tbody tr").count() == 3
    checks("pending SMs")
    for smid in smids:
        page.check(f"#select-{smid}")
    page.select_option("#bulk-action", "approve")
    page.fill("#bulk-reason", "batch 7 certification checked")
    page.click("#bulk-submit")
    page.wait_for_selector("#verdicts")
    page_says(page, "2 approved, 0 refused.")
    assert page.locator("#verdicts tbody tr").all_inner_texts() == [f"{s}\tdone\t" for s in smids]
    checks("bulk verdicts")

    page.click("#main-nav >> text=Keys")
    checks("keys")
    page.click("text=Supply groups")
    checks("supply groups")
    page.fill("#group-sgc", SGC)
    page.fill("#group-name", "North")
    page.click("#group-submit")
    page_says(page, f"Supply group {SGC} added.")
    checks("supply group added")
    page.click("#main-nav >> text=Keys")
    page.select_option("#key-sgc", SGC)
    page.fill("#key-krn", "1")
    page.select_option("#key-kt", "1")
    page.select_option("#key-dkga", "04")
    page.select_option("#key-eas", ["07", "11"])
    page.click("#key-submit")
    kcv = page.locator("#keys td.kcv").first.inner_text()
    page_says(page, f"KCV {kcv}")
    checks("key generated")
    page.click(f"#keys a[href='/keys/{SGC}/1/1']")
    checks("key page")
    page.fill("#smid", smids[0])
    page.fill("#clm", "250.50")
    page.fill("#resource_limit", "100")
    page.click("#authorise-form #submit")
    page_says(page, f"SM {smids[0]} authorised.")
    row = page.locator(f'#authorisations tr[data-smid="{smids[0]}"]').inner_text()
    assert "250.50" in row and "100" in row
    checks("SM authorised")

    _install_certificate(app, tmp_path, smids[0])
    request = tmp_path / "vkloadreq.der"
    state = str(tmp_path / smids[0])
    sm_emulator("request", "--state", state, "--key", f"{SGC}:1:1", "--out", str(request))
    page.click("#main-nav >> text=Key loading")
    checks("key loading")
    page.set_input_files("#request_file", str(request))
    page.click("#submit")
    page_says(page, f"EKLF #1 issued to SM {smids[0]} with 1 key(s).")
    assert page.locator("#issued-keys td.font-monospace").inner_text() == kcv
    checks("EKLF issued")
    eklf = download(page, "#download-eklf", tmp_path)
    loaded = json.loads(sm_emulator("load", "--state", state, str(eklf), "--json"))
    assert [(k["sgc"], k["krn"], k["kt"], k["kcv"]) for k in loaded["keys"]] == [(SGC, 1, 1, kcv)]

    page.goto("/keyload/")
    page.set_input_files("#request_file", str(request))
    page.click("#submit")
    # The page says why once, in words (the API keeps the reason code replayed_nonce).
    page_says(page, "this request was answered before (EKLF sequence 1); replays are refused")
    checks("replay refused")
    page.goto("/registry/?state=pending")
    rows = page.locator("#sms tbody tr")
    assert rows.evaluate_all("rows => rows.map(row => row.dataset.smid)") == ["700013"]
    checks.assert_clean()


@pages_only
def test_auditor_filters_the_records_and_verifies_the_export_with_the_shown_command(
    app, page, tmp_path
):
    for smid in ("17000", "27000", "4242"):
        new_device(app, smid)
    with app.app_context():  # one of them suspended: the filter leaves it out
        registry.change_state(caller("operator1"), "27000", "suspend", "tamper alarm")
    browser_login(page, "operator1", "wrong password here")
    checks = PageChecks(page)
    browser_login(page, "auditor1")
    checks("home")
    page.click("#main-nav >> text=Audit log")
    checks("audit log")
    page.fill("#action", "failure")  # part of the action is enough
    page.fill("#actor", "anon")  # and part of the actor (no one logged in: anonymous)
    page.click("#audit-filter button[type=submit]")
    actions = page.locator("#audit-entries tbody tr").all_inner_texts()
    assert actions and all("login.failure" in row for row in actions)
    checks("audit log filtered")

    page.click("#main-nav >> text=Security modules")
    checks("SM list")
    page.fill("#smid", "7000")  # part of the SMID is enough
    page.select_option("#state", "active")
    page.click("#sm-filter button[type=submit]")
    rows = page.locator("#sms tbody tr")
    assert rows.evaluate_all("rows => rows.map(row => row.dataset.smid)") == ["17000"]
    checks("SM list filtered")
    archive = download(page, "#export-csv", tmp_path)
    with zipfile.ZipFile(archive) as opened:
        opened.extractall(tmp_path)
        content, signature = sorted(opened.namelist())
    assert signature == f"{content}.sig"
    exported = (tmp_path / content).read_text()
    assert "kmc_mode=test" in exported and "17000,1A2B,Acme Meters,virtual" in exported
    assert "27000" not in exported and "4242" not in exported

    page.click("#main-nav >> text=Certificates")
    checks("certificates")
    for name in ("root", "audit"):
        download(page, f"#download-{name}", tmp_path)
    command = shown_command(page.content(), "verify-export", FILE=content)
    verified = openssl(command, tmp_path)
    assert verified.returncode == 0 and "Verification successful" in verified.stderr, verified
    checks.assert_clean()


@pages_only
@pytest.mark.parametrize("kmc_mode", ["live"])
def test_on_a_live_kmc_a_second_operator_approves_the_key_the_first_proposed(
    instance, chromium, tmp_path, kmc_mode
):
    shares = split_master_key(instance.folder)  # the live KMC starts sealed
    # A live KMC serves browsers over HTTPS only; Chromium keeps Secure cookies for 127.0.0.1.
    serving = kmc_server(instance.env(KMC_SECURE_COOKIES="1"), tmp_path / "serve.log")
    with serving as (port, _), browser_page(chromium, f"http://127.0.0.1:{port}") as page:
        checks = PageChecks(page)
        browser_login(page, "operator1")
        checks("home")
        page.click("#main-nav >> text=Custodians")
        assert page.locator("#custody-state").inner_text().startswith("Sealed.")
        checks("sealed")
        for share in shares[:2]:
            page.fill("#share", share)
            page.click("#share-form #submit")
        assert page.locator("#custody-state").inner_text().startswith("Unsealed.")
        checks("unsealed")
        page.click("#main-nav >> text=Keys")
        page.click("text=Supply groups")
        page.fill("#group-sgc", SGC)
        page.fill("#group-name", "North")
        page.click("#group-submit")
        page.click("#main-nav >> text=Keys")
        page.select_option("#key-sgc", SGC)
        page.fill("#key-krn", "1")
        page.select_option("#key-eas", ["07", "11"])
        page.click("#key-submit")
        page_says(page, "another user must approve it.")
        checks("key proposed")
        page.click("#main-nav >> text=Approvals")
        proposal = page.locator("#approvals tbody tr[data-state=pending]")
        assert "waiting for a second person" in proposal.inner_text()
        approval_id = proposal.get_attribute("id").removeprefix("approval-")
        checks("approvals, as the proposer")
        page.click("#logout")

        browser_login(page, "operator2")
        assert page.locator("#badge-keys-approvals").inner_text().startswith("1")
        checks("home, a proposal waiting")
        page.click("#main-nav >> text=Approvals")
        checks("approvals, as the second person")
        page.click(f"#approve-{approval_id}")
        page_says(page, f"Generated SGC {SGC} KRN 1 KT 1; KCV")
        assert page.locator(f"#approval-{approval_id}").get_attribute("data-state") == "approved"
        checks("approved")
        page.goto(f"/keys/{SGC}/1/1")
        assert page.locator("#key-proposed_by").inner_text() == "operator1"
        assert page.locator("#key-approved_by").inner_text() == "operator2"
        checks("key page")
        checks.assert_clean()


# Where the keyboard's focus is (its id, else its href) and whether a person sees it: the element
# matches :focus-visible, has a size, and draws an outline or a focus shadow (Bootstrap's ring).
FOCUS = """() => {
  const element = document.activeElement;
  const style = getComputedStyle(element);
  const box = element.getBoundingClientRect();
  const ring = (style.outlineStyle !== "none" && parseFloat(style.outlineWidth) > 0)
    || style.boxShadow !== "none";
  return {at: element.id || element.getAttribute("href") || element.tagName,
          shown: element.matches(":focus-visible") && box.width > 0 && box.height > 0 && ring};
}"""


def tab_to(page, target: str, *, backwards: bool = False, limit: int = 80) -> list[str]:
    """Press Tab (Shift+Tab) until the element with id (or href) `target` has the focus,
    requiring a visible focus at every stop; where the focus went, `target` last."""
    passed: list[str] = []
    for _ in range(limit):
        page.keyboard.press("Shift+Tab" if backwards else "Tab")
        focus = page.evaluate(FOCUS)
        assert focus["shown"], f"no visible focus on {focus['at']} (after {passed})"
        passed.append(focus["at"])
        if focus["at"] == target:
            return passed
    raise AssertionError(f"Tab never reached {target}: {passed}")


def skip_to_content(page) -> None:
    """The first Tab of a page reaches the skip link; Enter takes the focus past the menu."""
    assert tab_to(page, "skip-link") == ["skip-link"]
    page.keyboard.press("Enter")
    assert page.evaluate("document.activeElement.id") == "content"


def controls(page, form: str) -> set[str]:
    """The ids of the visible controls of `form` (what the keyboard must reach)."""
    return set(
        page.eval_on_selector_all(
            f"{form} input:not([type=hidden]), {form} select, {form} textarea, {form} button",
            "elements => elements.filter(e => e.offsetParent !== null).map(e => e.id)",
        )
    )


@pages_only
def test_operator_logs_in_authorises_and_revokes_with_the_keyboard_alone(app, page):
    new_device(app, "4242")
    add_key(app, 1)
    asked: list[str] = []
    page.on("dialog", lambda dialog: asked.append(dialog.message))  # conftest's handler accepts
    page.goto("/login")
    walked = tab_to(page, "username")
    page.keyboard.type("operator1")
    walked += tab_to(page, "password")
    page.keyboard.type(PASSWORD)
    walked += tab_to(page, "submit")
    assert controls(page, "main form") <= set(walked)
    page.keyboard.press("Enter")
    page.wait_for_url("**/home")

    tab_to(page, "/keys/")  # through the menu
    page.keyboard.press("Enter")
    page.wait_for_url("**/keys/")
    skip_to_content(page)
    tab_to(page, f"/keys/{SGC}/1/1")
    page.keyboard.press("Enter")
    page.wait_for_url(f"**/keys/{SGC}/1/1")
    skip_to_content(page)
    walked = tab_to(page, "smid")
    page.keyboard.type("4243")  # a slip, put right below
    walked += tab_to(page, "clm")
    page.keyboard.type("250.50")
    tab_to(page, "smid", backwards=True)
    page.keyboard.press("Control+A")
    page.keyboard.type("4242")
    walked += tab_to(page, "submit")
    assert controls(page, "#authorise-form") <= set(walked)
    page.keyboard.press("Space")
    page.wait_for_selector("text=SM 4242 authorised.")
    assert "250.50" in page.locator('#authorisations tr[data-smid="4242"]').inner_text()

    skip_to_content(page)
    tab_to(page, "revoke-reason-4242")
    page.keyboard.type("SM withdrawn from service")
    tab_to(page, "revoke-4242")
    page.keyboard.press("Enter")  # asks first; Enter on the dialog is its default, accept
    page.wait_for_selector("text=No SM is authorised for this key.")
    assert asked == [
        f"Revoke SM 4242's authorisation for SGC {SGC} KRN 1 KT 1? No further EKLF will carry "
        "this key to it; a copy it already holds stays in the SM."
    ]
