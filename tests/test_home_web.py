"""The home page: what waits for each role, counted by the services, with links to act on it."""

from __future__ import annotations

import re

import pytest

from factories.registry import new_device
from tests.conftest import login


@pytest.fixture
def kmc_mode():
    return "live"


def _panel_item(page: str, label: str) -> str:
    """The badge value beside `label` on the home page."""
    match = re.search(
        re.escape(label) + r"</(?:a|span)>\s*<span class=\"badge[^\"]*\">([^<]*)<", page
    )
    assert match is not None, label
    return match.group(1)


def test_operator_sees_pending_sms_and_approvals_waiting(app, client, kmc):
    new_device(app, "7001", kind="certified", approve=False)
    new_device(app, "7002", kind="certified", approve=False)
    new_device(app, "7003", kind="certified")
    assert (
        kmc("sgc", "add", "--sgc", "600675", "--name", "North", "--as", "operator1").exit_code == 0
    )
    login(client, "operator2")
    page = client.get("/home").get_data(as_text=True)
    assert _panel_item(page, "SMs pending") == "2"
    assert _panel_item(page, "SMs active") == "1"
    assert 'href="/registry/?state=pending"' in page
    assert _panel_item(page, "Approvals waiting for you") == "0"
    assert "badge-keys-approvals" not in page
    generate = ("key", "generate", "--sgc", "600675", "--krn", "1", "--kt", "1", "--dkga", "02",
                "--ea", "07", "--base-date", "1993", "--ken", "255", "--as", "operator1")  # fmt: skip
    assert kmc(*generate).exit_code == 0
    page = client.get("/home").get_data(as_text=True)
    assert _panel_item(page, "Approvals waiting for you") == "1"
    assert re.search(r'id="badge-keys-approvals">1<', page)


def test_the_proposer_is_not_asked_to_approve_their_own_proposal(app, client, kmc):
    assert (
        kmc("sgc", "add", "--sgc", "600675", "--name", "North", "--as", "operator1").exit_code == 0
    )
    generate = ("key", "generate", "--sgc", "600675", "--krn", "1", "--kt", "1", "--dkga", "02",
                "--ea", "07", "--base-date", "1993", "--ken", "255", "--as", "operator1")  # fmt: skip
    assert kmc(*generate).exit_code == 0
    login(client, "operator1")
    page = client.get("/home").get_data(as_text=True)
    assert _panel_item(page, "Approvals waiting for you") == "0"


def test_manufacturer_sees_only_its_own_sms_and_no_key_panels(app, client):
    new_device(app, "7001", kind="certified", approve=False)
    login(client, "maker2")
    page = client.get("/home").get_data(as_text=True)
    assert _panel_item(page, "SMs pending") == "0"
    assert "Vending keys" not in page and "Audit log</h2>" not in page


def test_auditor_sees_the_last_checkpoint(app, client, kmc):
    login(client, "auditor1")
    assert "No checkpoint signed yet" in client.get("/home").get_data(as_text=True)
    assert kmc("audit", "checkpoint", "--as", "operator1").exit_code == 0
    page = client.get("/home").get_data(as_text=True)
    assert re.search(r"Last signed checkpoint: entry \d+", page)
    assert re.search(
        r'<time datetime="[^"]+" title="[^"]+">\d{4}-\d\d-\d\d \d\d:\d\d UTC</time>', page
    )
