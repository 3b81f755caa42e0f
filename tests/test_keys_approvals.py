"""Two-person approvals as the approver meets them: what is proposed (CLM, IUT, key attributes)
on the page, in the CLI and the API before deciding, and how a proposal is rejected."""

from __future__ import annotations

import datetime as dt
import html
import json
import re

import pytest
from sqlalchemy import select

from factories.keys import SGC, api_headers
from factories.registry import new_device
from kmc.audit.models import AuditEntry
from kmc.database import db
from tests.conftest import login, post_form
from tests.test_keys_store import GENERATE_ARGS, _ok, _refused
from vending_keys.models import Approval

AUTHORISE = ("key", "authorize", "--sgc", SGC, "--krn", "1", "--kt", "1", "--smid", "7007")


@pytest.fixture
def kmc_mode():
    return "live"


@pytest.fixture
def proposals(app, kmc):
    """A pending key proposal and a pending authorisation proposal, both by operator1."""
    _ok(kmc("sgc", "add", "--sgc", SGC, "--name", "North", "--as", "operator1"))
    first = json.loads(_ok(kmc(*GENERATE_ARGS, "--as", "operator1", "--json")).output)
    _ok(kmc("approvals", "approve", str(first["approval"]["id"]), "--as", "operator2"))
    new_device(app, "7007", kind="certified")
    iut = (dt.datetime.now(dt.UTC) + dt.timedelta(days=400)).replace(microsecond=0)
    limits = ("--clm", "250.50", "--resource-limit", "100", "--iut", iut.isoformat())
    proposed = json.loads(_ok(kmc(*AUTHORISE, *limits, "--as", "operator1", "--json")).output)
    _ok(kmc("key", "generate", "--sgc", SGC, "--krn", "2", "--kt", "3", "--dkga", "02",
            "--ea", "07", "--base-date", "1993", "--ken", "42", "--refresh-days", "30",
            "--as", "operator1"))  # fmt: skip
    return {"authorisation": proposed["approval"]["id"], "iut": iut.isoformat()}


def _authorisation_payload(rows, approval_id):
    (row,) = [r for r in rows if r["id"] == approval_id]
    return row["payload"]


def _check_authorisation_payload(payload, iut):
    assert payload["smid"] == "7007"
    assert payload["clm"] == "250.50"
    assert payload["resource_limit"] == 100
    assert payload["iut"] == iut
    assert payload["expires_at"] is None


def _check_key_payload(rows):
    (row,) = [r for r in rows if r["action"] == "key.generate" and r["state"] == "pending"]
    payload = row["payload"]
    assert (payload["dkga"], payload["eas"], payload["base_date"]) == ("02", ["07"], 1993)
    assert (payload["ken"], payload["refresh_days"], payload["kt"]) == (42, 30, 3)
    assert {"act", "exp"} <= payload.keys()


def test_cli_shows_what_is_proposed(kmc, proposals):
    rows = json.loads(_ok(kmc("approvals", "list", "--json")).output)
    _check_authorisation_payload(
        _authorisation_payload(rows, proposals["authorisation"]), proposals["iut"]
    )
    _check_key_payload(rows)
    text = _ok(kmc("approvals", "list")).output
    assert "clm 250.50" in text and f"iut {proposals['iut']}" in text
    assert "ken 42" in text and "dkga 02" in text


def test_api_shows_what_is_proposed(app, client, proposals):
    headers = {"Authorization": api_headers(app, "operator2")["Authorization"]}
    rows = client.get("/api/v1/approvals", headers=headers).get_json()["approvals"]
    _check_authorisation_payload(
        _authorisation_payload(rows, proposals["authorisation"]), proposals["iut"]
    )
    _check_key_payload(rows)


def test_page_shows_the_approver_what_is_proposed(client, proposals):
    login(client, "operator2")
    page = html.unescape(client.get("/keys/approvals").get_data(as_text=True))
    row = page.split(f'id="approval-{proposals["authorisation"]}"', 1)[1].split("</tr>", 1)[0]
    assert "250.50" in row and proposals["iut"] in row and "7007" in row
    key_row = page.split(f'id="approval-{proposals["authorisation"] + 1}"', 1)[1]
    key_row = key_row.split("</tr>", 1)[0]
    assert "42" in key_row and "1993" in key_row and "30" in key_row


def test_proposal_audit_entry_carries_the_proposed_values(app, proposals):
    with app.app_context():
        entry = db.session.scalars(
            select(AuditEntry).where(AuditEntry.action == "key.authorize.propose")
        ).one()
        details = json.loads(entry.details)
    _check_authorisation_payload(details, proposals["iut"])
    assert details["subject"] == f"SGC {SGC} KRN 1 KT 1 SMID 7007"


def _state(app, approval_id):
    with app.app_context():
        return db.session.get(Approval, approval_id).state


@pytest.mark.parametrize("reason", ["", "   "])
def test_cli_refuses_a_rejection_without_a_reason(app, kmc, proposals, reason):
    approval_id = proposals["authorisation"]
    _refused(
        kmc("approvals", "reject", str(approval_id), "--reason", reason, "--as", "admin1"),
        "say why",
    )
    assert _state(app, approval_id) == "pending"


def test_api_rejects_a_proposal_only_with_a_reason(app, client, proposals):
    approval_id = proposals["authorisation"]
    headers = {"Authorization": api_headers(app, "admin1")["Authorization"]}
    path = f"/api/v1/approvals/{approval_id}/reject"
    for body, reason in [
        ({}, "missing_field"),
        ({"reason": " "}, "reason_required"),
        ({"reason": "r" * 501}, "reason_too_long"),
    ]:
        answer = client.post(path, json=body, headers=headers)
        assert (answer.status_code, answer.get_json()["error"]) == (400, reason)
        assert _state(app, approval_id) == "pending"
    done = client.post(path, json={"reason": "CLM too high"}, headers=headers)
    assert done.status_code == 200, done.get_json()
    assert (done.get_json()["state"], done.get_json()["outcome"]) == ("rejected", "CLM too high")
    again = client.post(path, json={"reason": "again"}, headers=headers)
    assert (again.status_code, again.get_json()["error"]) == (409, "approval_decided")


def test_page_rejects_a_proposal_only_with_a_reason(app, client, proposals):
    approval_id = proposals["authorisation"]
    login(client, "operator2")
    path = f"/keys/approvals/{approval_id}/reject"
    assert post_form(client, path, {"reason": " "}, "/keys/approvals").status_code == 302
    assert "Give a reason" in client.get("/keys/approvals").get_data(as_text=True)
    assert _state(app, approval_id) == "pending"
    post_form(client, path, {"reason": "wrong SM"}, "/keys/approvals")
    assert _state(app, approval_id) == "rejected"
    with app.app_context():
        entry = db.session.scalars(select(AuditEntry).order_by(AuditEntry.seq.desc())).first()
        assert (entry.action, json.loads(entry.details)) == (
            "key.authorize.reject",
            {"reason": "wrong SM"},
        )


def _listed(client, **query):
    page = client.get("/keys/approvals", query_string=query).get_data(as_text=True)
    return [int(i) for i in re.findall(r'<tr id="approval-(\d+)"', page)], page


def test_the_approvals_list_searches_filters_by_state_sorts_and_pages(client, proposals):
    login(client, "operator2")
    authorisation = proposals["authorisation"]
    every, page = _listed(client)
    assert every == [authorisation + 1, authorisation, authorisation - 1]  # newest first
    assert 'id="approvals"' in page and "1–3 of 3 proposals" in page
    assert _listed(client, q="7007")[0] == [authorisation]
    assert _listed(client, state="pending", sort="id", dir="asc")[0] == [
        authorisation,
        authorisation + 1,
    ]
    assert _listed(client, state="approved")[0] == [authorisation - 1]
    second, page = _listed(client, per_page=1, page=2, sort="id", dir="asc")
    assert second == [authorisation] and "2–2 of 3 proposals" in page
    assert 'id="approve-' + str(authorisation) + '"' in _listed(client, state="pending")[1]
