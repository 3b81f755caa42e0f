"""Bulk authorisation: one vending key for the selected SMs with one set of limits and one
reason, from the key's page and the API. The request is refused whole first; then each SM goes
through the single authorisation on its own (its own transaction and audit entry, in a live KMC
its own proposal), and the verdicts are reported SM by SM."""

from __future__ import annotations

import datetime as dt
import json
import re

import pytest
from sqlalchemy import select

from factories.callers import caller
from factories.keys import SGC, add_key, authorise
from factories.registry import new_device
from kmc.accounts.service import create_token
from kmc.audit.models import AuditEntry
from kmc.database import db
from kmc.errors import Forbidden
from tests.conftest import csrf_token, login
from vending_keys import service as keys
from vending_keys.domain import AuthorisationLimits
from vending_keys.models import Approval, Authorisation

KEY = f"/keys/{SGC}/1/1"
BULK = f"{KEY}/authorise-many"
API = f"/api/v1/keys/{SGC}/1/1/authorisations/bulk"
# Inside the test key's validity (ACT a day ago, EXP in a year).
IUT = (dt.datetime.now(dt.UTC) + dt.timedelta(days=100)).replace(microsecond=0).isoformat()


def authorised(app) -> dict[str, tuple[str, str | None, int | None, str]]:
    """Each authorised SMID of key 1 with its IUT, CLM, resource limit and proposer."""
    with app.app_context():
        rows = db.session.scalars(select(Authorisation).order_by(Authorisation.smid))
        return {
            a.smid: (a.iut.isoformat(), a.clm, a.resource_limit, a.proposed_by)
            for a in rows
            if a.key.krn == 1
        }


def audited(app, action: str) -> list[tuple[str, str, dict]]:
    with app.app_context():
        rows = db.session.scalars(
            select(AuditEntry).where(AuditEntry.action == action).order_by(AuditEntry.seq)
        )
        return [(e.actor, e.object_id, json.loads(e.details)) for e in rows]


def post_bulk(client, smids, *, reason="rollout batch 7", **limits):
    data = {"iut": IUT, "clm": "150.25", "resource_limit": "500", **limits}
    return client.post(
        BULK,
        data={"smid": smids, "reason": reason, **data, "csrf_token": csrf_token(client, BULK)},
    )


def verdict_rows(page: str) -> dict[str, tuple[str, str]]:
    """SMID → (verdict, why refused) from the verdicts table."""
    return {
        smid: (verdict, re.sub(r"<[^>]+>", "", why).strip())
        for smid, verdict, why in re.findall(
            r'<tr data-smid="([^"]+)">.*?<span class="badge [^"]+">(\w+)</span>.*?<td>(.*?)</td></tr>',
            page,
            re.S,
        )
    }


def bearer(app, username: str) -> dict[str, str]:
    with app.app_context():
        return {"Authorization": f"Bearer {create_token(caller('test'), username, 'bulk').secret}"}


@pytest.fixture
def fleet(app):
    """Key 1 of the test supply group; SMs 7001-7003 active, 7004 pending, 7005 already
    authorised."""
    add_key(app, 1)
    for smid in ("7001", "7002", "7003", "7005"):
        new_device(app, smid)
    new_device(app, "7004", approve=False)
    authorise(app, "7005", 1)


def test_operator_chooses_active_sms_on_the_key_page_and_authorises_them_with_one_set_of_limits(
    app, client, fleet
):
    login(client, "operator1")
    assert f'href="{BULK}"' in client.get(KEY).get_data(as_text=True)
    choice = client.get(BULK).get_data(as_text=True)
    for smid in ("7001", "7002", "7003"):
        assert f'name="smid" value="{smid}"' in choice
    assert 'data-smid="7004"' not in choice  # pending: not offered
    assert 'value="7005"' not in choice and "already authorised" in choice
    assert 'data-confirm="Authorise SGC 600727 KRN 1 KT 1 for every selected SM' in choice
    assert f'action="{BULK}"' in choice and 'name="csrf_token"' in choice

    answer = post_bulk(client, ["7001", "7002", "7003"])
    assert answer.status_code == 200
    page = answer.get_data(as_text=True)
    assert "3 authorised, 0 proposed, 0 refused" in page
    assert verdict_rows(page) == {s: ("authorised", "") for s in ("7001", "7002", "7003")}
    rows = authorised(app)
    for smid in ("7001", "7002", "7003"):
        assert rows[smid] == (IUT, "150.25", 500, "operator1")
    entries = [e for e in audited(app, keys.AUTHORISE) if "reason" in e[2]]
    assert [e[1] for e in entries] == [
        f"SGC {SGC} KRN 1 KT 1 SMID {s}" for s in ("7001", "7002", "7003")
    ]
    assert all(e[2]["reason"] == "rollout batch 7" and e[2]["clm"] == "150.25" for e in entries)


def test_each_refused_sm_is_reported_with_its_reason_and_the_others_are_authorised(
    app, client, fleet
):
    login(client, "admin1")
    page = post_bulk(client, ["7001", "7004", "7005", "9999", "12ab", "7001", "7002"]).get_data(
        as_text=True
    )
    rows = verdict_rows(page)
    assert list(rows) == ["7001", "7004", "7005", "9999", "12ab", "7002"]  # 7001 once
    assert rows["7001"] == rows["7002"] == ("authorised", "")
    assert rows["7004"] == ("refused", "SM 7004 is pending, not active")
    assert rows["7005"] == ("refused", f"SM 7005 is already authorised for SGC {SGC} KRN 1 KT 1")
    assert rows["9999"] == ("refused", "no security module 9999")
    assert rows["12ab"][0] == "refused" and "SMID" in rows["12ab"][1]
    assert "2 authorised, 0 proposed, 4 refused" in page
    assert set(authorised(app)) == {"7001", "7002", "7005"}
    assert [e[1] for e in audited(app, keys.AUTHORISE) if e[0] == "admin1"] == [
        f"SGC {SGC} KRN 1 KT 1 SMID 7001",
        f"SGC {SGC} KRN 1 KT 1 SMID 7002",
    ]


def test_a_request_refused_as_a_whole_authorises_nothing_and_keeps_what_was_typed(
    app, client, fleet
):
    login(client, "operator1")
    too_many = post_bulk(client, ["7001", "7002"] + [f"{8000 + i}" for i in range(499)])
    assert too_many.status_code == 200
    page = too_many.get_data(as_text=True)
    assert "select at least one SM and at most 500" in page
    assert 'id="bulk-selection-error"' in page and 'value="7001" id="select-7001"' in page
    assert 'value="7001" id="select-7001" aria-label="Select SM 7001" checked' in page
    assert "select at least one SM" in post_bulk(client, []).get_data(as_text=True)
    bad_limit = post_bulk(client, ["7001"], clm="12,5").get_data(as_text=True)
    assert "the credit limit must be a decimal amount" in bad_limit
    assert re.search(r'name="clm"[^>]*is-invalid|is-invalid[^>]*name="clm"', bad_limit)
    assert 'value="12,5"' in bad_limit
    before_act = post_bulk(client, ["7001"], iut="2020-01-01T00:00Z").get_data(as_text=True)
    assert "the IUT must lie between the key&#39;s ACT and EXP" in before_act
    assert re.search(r'name="iut"[^>]*is-invalid|is-invalid[^>]*name="iut"', before_act)
    no_reason = post_bulk(client, ["7001"], reason="").get_data(as_text=True)
    assert "Check the marked field: Reason" in no_reason
    with app.app_context():
        keys.change_key_state(caller("operator1"), keys.identity_of(keys.list_keys()[0]),
                              "deactivate", "replaced")  # fmt: skip
    inactive = post_bulk(client, ["7001"]).get_data(as_text=True)
    assert f"vending key SGC {SGC} KRN 1 KT 1 is deactivated" in inactive
    assert set(authorised(app)) == {"7005"}
    assert [
        e for e in audited(app, keys.AUTHORISE) if e[0] == "operator1" and "reason" in e[2]
    ] == []


def test_only_key_managers_authorise_in_bulk(app, client, fleet):
    for user in ("auditor1", "maker1"):
        login(client, user)
        if user == "auditor1":
            assert f'href="{BULK}"' not in client.get(KEY).get_data(as_text=True)
        assert client.get(BULK).status_code == 403
        token = csrf_token(client, "/home")
        refused = client.post(BULK, data={"smid": ["7001"], "reason": "x", "csrf_token": token})
        assert refused.status_code == 403
        api = client.post(API, json={"smids": ["7001"], "reason": "x"}, headers=bearer(app, user))
        assert api.status_code == 403
    login(client, "operator1")
    forged = client.post(BULK, data={"smid": ["7001"], "reason": "x"})  # no CSRF token
    assert forged.status_code == 400
    assert set(authorised(app)) == {"7005"}
    with app.app_context():
        with pytest.raises(Forbidden, match="keys-manage"):
            keys.authorise_many(caller("auditor1"), keys.identity_of(keys.list_keys()[0]),
                                ["7001"], AuthorisationLimits(), "x")  # fmt: skip


def test_the_api_gives_each_sm_its_verdict_and_refuses_a_request_of_501_whole(app, client, fleet):
    headers = bearer(app, "operator1")
    body = {"smids": ["7001", "7004", "7003"], "reason": "api batch", "clm": "10", "iut": IUT}
    answer = client.post(API, json=body, headers=headers)
    assert answer.status_code == 200
    document = answer.get_json()
    assert (document["authorised"], document["proposed"], document["refused"]) == (2, 0, 1)
    assert document["items"][1] == {
        "smid": "7004",
        "result": "refused",
        "approval_id": None,
        "reason": "sm_not_active",
        "message": "SM 7004 is pending, not active",
    }
    assert [i["result"] for i in document["items"]] == ["authorised", "refused", "authorised"]
    assert authorised(app)["7003"] == (IUT, "10", None, "operator1")
    over = client.post(
        API, json={"smids": [f"{8000 + i}" for i in range(501)], "reason": "x"}, headers=headers
    )
    assert over.status_code == 400 and over.get_json()["error"] == "bad_selection"
    bad = client.post(API, json={"smids": ["7002"], "reason": "x", "clm": "-1"}, headers=headers)
    assert bad.status_code == 400 and bad.get_json()["error"] == "invalid_clm"
    unknown = client.post(f"/api/v1/keys/{SGC}/9/1/authorisations/bulk", json=body, headers=headers)
    assert unknown.status_code == 404
    assert set(authorised(app)) == {"7001", "7003", "7005"}


@pytest.mark.parametrize("kmc_mode", ["live"])
def test_in_a_live_kmc_each_sm_becomes_its_own_proposal_for_a_second_person(app, client):
    add_key(app, 1)
    with app.app_context():
        (proposal,) = keys.list_approvals()
        keys.approve(caller("operator2"), proposal.id)
    for smid in ("7001", "7002"):
        new_device(app, smid, kind="certified")
    new_device(app, "7003", kind="certified", approve=False)
    login(client, "operator1")
    assert "each SM becomes its own proposal" in client.get(BULK).get_data(as_text=True)
    page = post_bulk(client, ["7001", "7002", "7003"]).get_data(as_text=True)
    assert "0 authorised, 2 proposed, 1 refused" in page
    rows = verdict_rows(page)
    assert rows["7001"][0] == rows["7002"][0] == "proposed"
    assert rows["7003"] == ("refused", "SM 7003 is pending, not active")  # checked when proposed
    assert authorised(app) == {}
    with app.app_context():
        pending = db.session.scalars(
            select(Approval).where(Approval.action == keys.AUTHORISE).order_by(Approval.id)
        ).all()
        assert [(a.subject, a.proposed_by, a.state) for a in pending] == [
            (f"SGC {SGC} KRN 1 KT 1 SMID 7001", "operator1", "pending"),
            (f"SGC {SGC} KRN 1 KT 1 SMID 7002", "operator1", "pending"),
        ]
        assert json.loads(pending[0].payload)["clm"] == "150.25"
        ids = [a.id for a in pending]
    assert f"proposal {ids[0]}" in page and f"proposal {ids[1]}" in page
    proposed = audited(app, f"{keys.AUTHORISE}.propose")
    assert [(e[0], e[2]["smid"], e[2]["reason"]) for e in proposed] == [
        ("operator1", "7001", "rollout batch 7"),
        ("operator1", "7002", "rollout batch 7"),
    ]
    with app.app_context():
        with pytest.raises(Forbidden, match="different user"):
            keys.approve(caller("operator1"), ids[0])
        keys.approve(caller("operator2"), ids[0])
    assert authorised(app) == {
        "7001": (IUT, "150.25", 500, "operator1"),
    }
    approved = [e for e in audited(app, keys.AUTHORISE) if "smid" in e[2]]
    assert [(e[0], e[2]["smid"], e[2]["approved_by"]) for e in approved] == [
        ("operator2", "7001", "operator2")
    ]
    verdicts = client.post(
        API, json={"smids": ["7002", "7001"], "reason": "again"}, headers=bearer(app, "admin1")
    ).get_json()
    assert [(i["result"], i["reason"]) for i in verdicts["items"]] == [
        ("proposed", None),
        ("refused", "duplicate_authorisation"),
    ]
    assert isinstance(verdicts["items"][0]["approval_id"], int)
