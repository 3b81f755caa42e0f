"""Admin account actions: reset a password (one-time password, change forced at next login) and
change a role (never one's own, never the last active admin), on the users page and in the CLI."""

from __future__ import annotations

import json
import re

from sqlalchemy import select

from kmc.audit.models import AuditEntry
from kmc.database import db
from tests.conftest import PASSWORD, csrf_token, login, post_form

ONE_TIME = re.compile(r'<code id="one-time-password">([^<]+)</code>')


def entries(app, action):
    with app.app_context():
        return db.session.scalars(
            select(AuditEntry).where(AuditEntry.action == action).order_by(AuditEntry.seq)
        ).all()


def flashed(client, response):
    return client.get(response.headers["Location"]).get_data(as_text=True)


def test_admin_resets_a_password_shown_once_and_changed_at_next_login(app, client):
    other = app.test_client()
    login(other, "operator1")
    login(client, "admin1")
    users = client.get("/admin/users").get_data(as_text=True)
    assert "/admin/users/operator1/reset-password" in users
    assert client.post("/admin/users/operator1/reset-password").status_code == 400  # no CSRF
    shown = post_form(client, "/admin/users/operator1/reset-password", {}, "/admin/users")
    assert shown.status_code == 200
    assert shown.headers["Cache-Control"] == "no-store"
    password = ONE_TIME.search(shown.get_data(as_text=True)).group(1)
    assert other.get("/home").status_code == 302  # the old sessions ended
    assert login(other, "operator1").status_code == 200  # the old password is gone
    assert login(other, "operator1", password).status_code == 302
    assert other.get("/home").headers["Location"].endswith("/account/password")
    (entry,) = entries(app, "user.password_reset")
    assert (entry.actor, entry.object_id) == ("admin1", "operator1")
    assert password not in (entry.details or "")
    assert password not in client.get("/admin/users").get_data(as_text=True)


def test_an_admin_resets_no_password_of_their_own_and_others_reset_none(app, client):
    login(client, "admin1")
    refused = post_form(client, "/admin/users/admin1/reset-password", {}, "/admin/users")
    assert "you cannot reset the password of your own account" in flashed(client, refused)
    missing = post_form(client, "/admin/users/ghost/reset-password", {}, "/admin/users")
    assert "no user named ghost" in flashed(client, missing)
    operator = app.test_client()
    login(operator, "operator1")
    response = operator.post(
        "/admin/users/auditor1/reset-password", data={"csrf_token": csrf_token(operator, "/home")}
    )
    assert response.status_code == 403
    assert entries(app, "user.password_reset") == []


def test_admin_changes_a_role_on_the_users_page(app, client):
    login(client, "admin1")
    done = post_form(
        client, "/admin/users/auditor1/role", {"role": "operator", "id_man": ""}, "/admin/users"
    )
    assert "auditor1 is now operator." in flashed(client, done)
    auditor = app.test_client()
    login(auditor, "auditor1")
    assert auditor.get("/custodians/").status_code == 200  # an operator's page
    (entry,) = entries(app, "user.role_change")
    assert entry.actor == "admin1" and entry.object_id == "auditor1"
    assert json.loads(entry.details) == {"from": "auditor", "to": "operator", "id_man": None}


def test_a_manufacturer_role_needs_a_known_id_man(app, client):
    login(client, "admin1")
    bare = post_form(
        client, "/admin/users/auditor1/role", {"role": "manufacturer", "id_man": ""}, "/admin/users"
    )
    assert "a manufacturer account must be bound to an ID_man" in flashed(client, bare)
    bound = post_form(
        client,
        "/admin/users/auditor1/role",
        {"role": "manufacturer", "id_man": "1a2b"},
        "/admin/users",
    )
    assert "auditor1 is now manufacturer (1A2B)." in flashed(client, bound)
    back = post_form(  # the row's ID_man box still holds 1A2B: another role ignores it
        client, "/admin/users/auditor1/role", {"role": "auditor", "id_man": "1A2B"}, "/admin/users"
    )
    assert "auditor1 is now auditor." in flashed(client, back)
    details = [json.loads(e.details) for e in entries(app, "user.role_change")]
    assert details == [
        {"from": "auditor", "to": "manufacturer", "id_man": "1A2B"},
        {"from": "manufacturer", "to": "auditor", "id_man": None},
    ]


def test_an_admin_cannot_demote_themselves_nor_the_last_active_admin(app, client, kmc):
    login(client, "admin1")
    own = post_form(
        client, "/admin/users/admin1/role", {"role": "auditor", "id_man": ""}, "/admin/users"
    )
    assert "you cannot demote your own account" in flashed(client, own)
    same = post_form(
        client, "/admin/users/operator1/role", {"role": "operator", "id_man": ""}, "/admin/users"
    )
    assert "operator1 is already operator" in flashed(client, same)
    assert kmc("user", "set-role", "--username", "admin", "--role", "auditor").exit_code == 0
    last = kmc("user", "set-role", "--username", "admin1", "--role", "operator")
    assert last.exit_code == 1
    assert last.output.strip() == "kmc: last_admin: admin1 is the last active admin"
    assert [e.object_id for e in entries(app, "user.role_change")] == ["admin"]
    assert client.get("/admin/users").status_code == 200


def test_cli_resets_a_password_and_sets_a_role(app, client, kmc):
    reset = kmc("user", "reset-password", "--username", "auditor1", "--json")
    assert reset.exit_code == 0, reset.output
    shown = json.loads(reset.output)
    assert shown["username"] == "auditor1"
    assert login(client, "auditor1", PASSWORD).status_code == 200
    assert login(client, "auditor1", shown["one_time_password"]).status_code == 302
    assert client.get("/home").headers["Location"].endswith("/account/password")
    role = kmc("user", "set-role", "--username", "operator2", "--role", "admin")
    assert role.exit_code == 0, role.output
    assert role.output.strip() == "operator2 is now admin (was operator)"
    demoted = kmc("user", "set-role", "--username", "admin1", "--role", "auditor")
    assert demoted.exit_code == 0, demoted.output
    assert kmc("user", "reset-password", "--username", "ghost").exit_code == 1
    assert [e.object_id for e in entries(app, "user.role_change")] == ["operator2", "admin1"]
