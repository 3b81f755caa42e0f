"""Bulk actions on the SM list: approve or suspend the selected SMs with one reason, each SM
changed and audited on its own, refusals reported SM by SM."""

from __future__ import annotations

import json

from sqlalchemy import select

from factories.registry import new_device
from kmc.audit.models import AuditEntry
from kmc.database import db
from sm_registry.models import SecurityModule
from tests.conftest import csrf_token, login, post_form


def states(app):
    with app.app_context():
        return dict(db.session.execute(select(SecurityModule.smid, SecurityModule.state)).all())


def audited(app, action):
    with app.app_context():
        rows = db.session.scalars(
            select(AuditEntry).where(AuditEntry.action == action).order_by(AuditEntry.seq)
        )
        return [(e.actor, e.object_id, json.loads(e.details)["reason"]) for e in rows]


def bulk(client, smids, action, reason="batch 7 checked"):
    return client.post(
        "/registry/sms/bulk",
        data={
            "smid": smids,
            "action": action,
            "reason": reason,
            "csrf_token": csrf_token(client, "/registry/"),
        },
    )


def test_operator_approves_the_selected_sms_and_sees_each_verdict(app, client):
    for smid in ("1001", "1002", "1003"):
        new_device(app, smid, approve=False)
    new_device(app, "1004")
    login(client, "operator1")
    listed = client.get("/registry/?state=pending").get_data(as_text=True)
    assert 'name="smid" value="1001"' in listed and 'action="/registry/sms/bulk"' in listed
    answer = bulk(client, ["1001", "1003", "1004", "9999", "1001"], "approve")
    assert answer.status_code == 200
    page = answer.get_data(as_text=True)
    assert "2 approved, 2 refused." in page
    assert page.count("badge bg-success") == 2 and page.count("badge bg-danger") == 2
    assert "SM 1004 is active; it cannot be approved" in page
    assert "no SM with SMID 9999" in page
    assert states(app) == {"1001": "active", "1002": "pending", "1003": "active", "1004": "active"}
    approved = audited(app, "sm.approve")
    assert approved[-2:] == [
        ("operator1", "1001", "batch 7 checked"),
        ("operator1", "1003", "batch 7 checked"),
    ]


def test_operator_suspends_the_selected_sms(app, client):
    for smid in ("2001", "2002"):
        new_device(app, smid)
    login(client, "operator1")
    page = bulk(client, ["2001", "2002"], "suspend", "site audit").get_data(as_text=True)
    assert "2 suspended, 0 refused." in page
    assert states(app) == {"2001": "suspended", "2002": "suspended"}
    assert audited(app, "sm.suspend") == [
        ("operator1", "2001", "site audit"),
        ("operator1", "2002", "site audit"),
    ]


def test_a_bulk_request_refused_as_a_whole_changes_nothing(app, client):
    new_device(app, "3001", approve=False)
    login(client, "operator1")
    for smids, action, reason, message in [
        (["3001"], "approve", "", "give a reason"),
        ([], "approve", "ok", "select at least one SM"),
        (["3001"], "revoke", "ok", "approve or suspend"),
    ]:
        answer = bulk(client, smids, action, reason)
        assert answer.status_code == 302
        assert message in client.get(answer.headers["Location"]).get_data(as_text=True)
    assert states(app) == {"3001": "pending"}
    assert client.post("/registry/sms/bulk", data={"smid": "3001"}).status_code == 400


def test_manufacturers_and_auditors_get_no_bulk_form_and_cannot_post_one(app, client):
    new_device(app, "4001", approve=False)
    for name, status in (("maker1", 302), ("auditor1", 403)):  # a maker is refused approve
        other = app.test_client()
        login(other, name)
        assert 'action="/registry/sms/bulk"' not in other.get("/registry/").get_data(as_text=True)
        answer = post_form(
            other, "/registry/sms/bulk", {"smid": "4001", "action": "approve", "reason": "x"}
        )
        assert answer.status_code == status
    assert states(app) == {"4001": "pending"}
