"""Editing manufacturers and supply groups, revoking an authorisation: through the test client,
with CSRF, refused for the wrong role, audited, highlighted field on a bad value."""

from __future__ import annotations

import io
import json
import re

from sqlalchemy import func, select

from factories.keys import SGC, add_key, authorise
from factories.registry import new_device
from key_load_protocol import KeyIdentity
from kmc.audit.models import AuditEntry
from kmc.database import db
from tests.conftest import csrf_token, login, post_form
from vending_keys.models import Authorisation, SupplyGroup


def last_audit(app, action):
    with app.app_context():
        entry = db.session.scalars(
            select(AuditEntry).where(AuditEntry.action == action).order_by(AuditEntry.seq.desc())
        ).first()
        assert entry is not None, f"no {action} entry"
        return entry.actor, entry.object_type, entry.object_id, json.loads(entry.details)


def test_an_admin_edits_a_manufacturer_and_the_change_is_audited(app, client):
    login(client, "admin1")
    page = client.get("/registry/manufacturers/1A2B").get_data(as_text=True)
    assert 'id="manufacturer-form"' in page and 'value="Acme Meters"' in page
    answer = post_form(
        client,
        "/registry/manufacturers/1A2B",
        {"name": "Acme Meters Ltd", "contact": "ops@acme.example"},
    )
    assert answer.status_code == 302
    page = client.get(answer.headers["Location"]).get_data(as_text=True)
    assert "Manufacturer 1A2B updated." in page and "ops@acme.example" in page
    actor, kind, ident, details = last_audit(app, "manufacturer.update")
    assert (actor, kind, ident) == ("admin1", "manufacturer", "1A2B")
    assert details["from"]["name"] == "Acme Meters" and details["to"]["name"] == "Acme Meters Ltd"


def test_an_empty_manufacturer_name_is_highlighted_on_the_form_and_nothing_changes(app, client):
    login(client, "admin1")
    page = post_form(client, "/registry/manufacturers/1A2B", {"name": "", "contact": "x"})
    body = page.get_data(as_text=True)
    assert page.status_code == 200
    # The name field itself is marked, with the message right after it.
    marked = re.search(r'<input class="form-control is-invalid"[^>]*name="name"[^>]*>\s*'
                       r'<div class="invalid-feedback[^"]*">([^<]*)</div>', body)  # fmt: skip
    assert marked and "This field is required." in marked.group(1)
    assert 'name="contact"' in body and body.count("is-invalid") == 1
    with app.app_context():
        assert db.session.scalar(select(func.count()).select_from(AuditEntry).where(
            AuditEntry.action == "manufacturer.update")) == 0  # fmt: skip


def test_only_admins_edit_manufacturers_and_manufacturers_see_only_their_own(app, client):
    login(client, "operator1")
    page = client.get("/registry/manufacturers/1A2B").get_data(as_text=True)
    assert "Acme Meters" in page and 'id="manufacturer-form"' not in page
    refused = post_form(client, "/registry/manufacturers/1A2B", {"name": "Hijacked"})
    assert "only admins add or edit manufacturers" in refused.get_data(as_text=True)
    assert "Hijacked" not in client.get("/registry/manufacturers").get_data(as_text=True)
    client.post("/logout", data={"csrf_token": csrf_token(client, "/home")})
    login(client, "maker1")
    assert client.get("/registry/manufacturers/3C4D").status_code in (403, 404)


def test_an_operator_edits_a_supply_group_but_not_its_sgc(app, client):
    add_key(app, 1)
    login(client, "operator1")
    page = client.get(f"/keys/supply-groups/{SGC}").get_data(as_text=True)
    assert 'id="group-form"' in page and "KRN 1, KT 1" in page
    answer = post_form(
        client,
        f"/keys/supply-groups/{SGC}",
        {"name": "North-East", "utility": "City Power", "cluster": "NE", "sgc": "999999"},
    )
    assert answer.status_code == 302
    with app.app_context():
        group = db.session.get(SupplyGroup, SGC)
        assert (group.name, group.utility, group.cluster) == ("North-East", "City Power", "NE")
        assert db.session.get(SupplyGroup, "999999") is None
    actor, kind, ident, details = last_audit(app, "sgc.update")
    assert (actor, kind, ident) == ("operator1", "supply_group", SGC)
    assert details["to"] == {"name": "North-East", "utility": "City Power", "cluster": "NE"}


def test_an_auditor_cannot_edit_a_supply_group(app, client):
    add_key(app, 1)
    login(client, "auditor1")
    assert 'id="group-form"' not in client.get(f"/keys/supply-groups/{SGC}").get_data(as_text=True)
    answer = post_form(client, f"/keys/supply-groups/{SGC}", {"name": "Mine"})
    assert "may not" in answer.get_data(as_text=True)  # the service refuses (Caller.require)
    with app.app_context():
        assert db.session.get(SupplyGroup, SGC).name != "Mine"


def _load(client, device):
    token = csrf_token(client, "/keyload/")
    return client.post(
        "/keyload/process",
        data={
            "csrf_token": token,
            "request_file": (io.BytesIO(device.request((KeyIdentity(SGC, 1, 1),))), "r.der"),
        },
        content_type="multipart/form-data",
        follow_redirects=True,
    ).get_data(as_text=True)


def test_a_revoked_authorisation_gives_the_sm_no_further_eklf_and_is_audited(app, client):
    device = new_device(app, "4242")
    add_key(app, 1)
    authorise(app, device.smid, 1, resource_limit=500)
    login(client, "operator1")
    assert "EKLF #1 issued to SM 4242" in _load(client, device)
    page = client.get(f"/keys/{SGC}/1/1").get_data(as_text=True)
    assert 'id="revoke-4242"' in page and "data-confirm=" in page
    path = f"/keys/{SGC}/1/1/authorisations/4242/revoke"
    refused = post_form(client, path, {"reason": ""}, token_from=f"/keys/{SGC}/1/1")
    assert "Give a reason" in client.get(refused.headers["Location"]).get_data(as_text=True)
    done = post_form(client, path, {"reason": "SM retired"}, token_from=f"/keys/{SGC}/1/1")
    assert "no longer authorised" in client.get(done.headers["Location"]).get_data(as_text=True)
    with app.app_context():
        assert db.session.scalar(select(func.count()).select_from(Authorisation)) == 0
    actor, kind, ident, details = last_audit(app, "key.authorisation.revoke")
    assert (actor, kind) == ("operator1", "key_authorisation") and "4242" in ident
    assert details["reason"] == "SM retired" and details["resource_limit"] == 500
    assert "EKLF #2" not in _load(client, device)
    again = post_form(client, path, {"reason": "twice"}, token_from=f"/keys/{SGC}/1/1")
    assert "not authorised" in client.get(again.headers["Location"]).get_data(as_text=True)


def test_an_auditor_cannot_revoke_an_authorisation(app, client):
    device = new_device(app, "4242")
    add_key(app, 1)
    authorise(app, device.smid, 1)
    login(client, "auditor1")
    assert 'id="revoke-4242"' not in client.get(f"/keys/{SGC}/1/1").get_data(as_text=True)
    answer = post_form(client, f"/keys/{SGC}/1/1/authorisations/4242/revoke", {"reason": "x"})
    assert answer.status_code == 403
    with app.app_context():
        assert db.session.scalar(select(func.count()).select_from(Authorisation)) == 1
