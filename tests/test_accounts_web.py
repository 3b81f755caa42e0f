"""Logging in and out, CSRF, session cookie flags, first-login password change (back-off after
failed logins: tests/test_login_throttle.py)."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select

from factories.callers import caller
from kmc.audit.models import AuditEntry
from kmc.database import db
from tests.conftest import PASSWORD, csrf_token, login, post_form


def test_login_page_shows_the_mode_banner(client):
    page = client.get("/login").get_data(as_text=True)
    assert 'data-mode="test"' in page
    assert "TEST KMC" in page


def test_successful_login_reaches_home_and_is_audited(app, client):
    response = login(client, "operator1")
    assert response.status_code == 302
    assert response.headers["Location"].endswith("/home")
    assert "Welcome, operator1" in client.get("/home").get_data(as_text=True)
    with app.app_context():
        last = db.session.scalars(select(AuditEntry).order_by(AuditEntry.seq.desc())).first()
        assert (last.actor, last.action, last.object_id) == (
            "operator1",
            "login.success",
            "operator1",
        )


def test_failed_login_is_refused_with_a_message_and_audited(app, client):
    response = login(client, "operator1", "wrong password!!")
    assert response.status_code == 200
    assert "invalid username or password" in response.get_data(as_text=True)
    assert client.get("/home").status_code == 302
    with app.app_context():
        last = db.session.scalars(select(AuditEntry).order_by(AuditEntry.seq.desc())).first()
        assert (last.action, last.object_type, last.object_id) == (
            "login.failure",
            "address",
            "127.0.0.1",
        )
        assert (
            '"reason":"bad_password"' in last.details and '"username":"operator1"' in last.details
        )


def test_unknown_user_gets_the_same_message_as_a_wrong_password(client):
    page = login(client, "nobody-here", "whatever-password").get_data(as_text=True)
    assert "invalid username or password" in page


def test_five_failures_no_longer_lock_the_account(app, client):
    for _ in range(5):
        login(client, "auditor1", "not the password")
    response = login(client, "auditor1", PASSWORD)
    # A wait, with the same answer whether the account exists or not (the clock has not moved).
    assert "Too many failed attempts; try again in" in response.get_data(as_text=True)
    assert client.get("/home").status_code == 302
    with app.app_context():
        last = db.session.scalars(select(AuditEntry).order_by(AuditEntry.seq.desc())).first()
        assert last.action != "login.success"


def test_a_copied_session_cookie_dies_at_logout(app, client):
    login(client, "operator1")
    stolen = app.test_client()
    stolen.set_cookie("session", client.get_cookie("session").value)
    assert stolen.get("/home").status_code == 200
    post_form(client, "/logout", {})
    assert stolen.get("/home").status_code == 302


def test_a_password_change_ends_other_sessions_but_not_this_one(app, client):
    login(client, "operator1")
    other = app.test_client()
    login(other, "operator1")
    token = csrf_token(client, "/account/password")
    new = "another long passphrase"
    client.post(
        "/account/password",
        data={"current": PASSWORD, "new": new, "confirm": new, "csrf_token": token},
    )
    assert client.get("/home").status_code == 200
    assert other.get("/home").status_code == 302


def test_disabling_a_user_ends_their_sessions(app, client):
    login(client, "auditor1")
    admin = app.test_client()
    login(admin, "admin1")
    post_form(admin, "/admin/users/auditor1/disable", {}, token_from="/admin/users")
    assert client.get("/home").status_code == 302


def test_sessions_expire_after_an_idle_period(client):
    login(client, "auditor1")
    cookie = client.get_cookie("session")
    assert cookie.expires is not None
    lifetime = cookie.expires.timestamp() - __import__("time").time()
    assert 25 * 60 < lifetime <= 30 * 60


def test_logout_ends_the_session(client):
    login(client, "auditor1")
    response = post_form(client, "/logout", {})
    assert response.status_code == 302
    assert client.get("/home").status_code == 302


def test_logout_without_csrf_token_is_refused(client):
    login(client, "auditor1")
    response = client.post("/logout")
    assert response.status_code == 400
    assert client.get("/home").status_code == 200


def test_login_form_without_csrf_token_is_refused(app, client):
    with app.app_context():
        before = db.session.scalar(select(func.count()).select_from(AuditEntry))
    response = client.post("/login", data={"username": "auditor1", "password": PASSWORD})
    assert response.status_code == 400
    with app.app_context():
        assert db.session.scalar(select(func.count()).select_from(AuditEntry)) == before


def test_session_cookie_is_httponly_and_samesite(client):
    login(client, "auditor1")
    cookie = client.get_cookie("session")
    assert cookie is not None and cookie.http_only and cookie.same_site == "Lax"


def test_bootstrap_admin_must_change_the_one_time_password(client, instance):
    login(client, "admin", instance.admin_password)
    assert client.get("/admin/users").headers["Location"].endswith("/account/password")
    token = csrf_token(client, "/account/password")
    new = "a brand new passphrase"
    response = client.post(
        "/account/password",
        data={"current": instance.admin_password, "new": new, "confirm": new, "csrf_token": token},
    )
    assert response.status_code == 302
    assert client.get("/admin/users").status_code == 200


def test_login_does_not_redirect_off_site(client):
    token = csrf_token(client, "/login")
    response = client.post(
        "/login?next=//evil.example/x",
        data={"username": "auditor1", "password": PASSWORD, "csrf_token": token},
    )
    assert response.headers["Location"].endswith("/home")


def test_admin_creates_a_user_who_must_then_change_password(client):
    login(client, "admin1")
    response = post_form(
        client,
        "/admin/users",
        {"username": "newop", "role": "operator", "id_man": "", "password": "initial password 1"},
        token_from="/admin/users",
    )
    assert response.status_code == 302
    client.post("/logout", data={"csrf_token": csrf_token(client, "/home")})
    login(client, "newop", "initial password 1")
    assert client.get("/home").headers["Location"].endswith("/account/password")


def test_error_pages_do_not_leak_tracebacks(client):
    response = client.get("/no/such/page")
    assert response.status_code == 404
    body = response.get_data(as_text=True)
    assert "Traceback" not in body and "Error 404" in body


def test_an_internal_error_is_a_plain_500_page_and_json_on_the_api(app, client, monkeypatch):
    from kmc.accounts import service

    def broken(*_args):
        raise RuntimeError("secret internal detail")

    monkeypatch.setattr(service, "list_users", broken)
    monkeypatch.setattr(service, "users_page", broken)
    login(client, "admin1")
    page = client.get("/admin/users")
    assert page.status_code == 500
    body = page.get_data(as_text=True)
    assert (
        "internal error" in body
        and "secret internal detail" not in body
        and "Traceback" not in body
    )
    with app.app_context():
        from kmc.accounts.service import create_token

        secret = create_token(caller("test"), "admin1", "t").secret
    api = client.get("/api/v1/users", headers={"Authorization": f"Bearer {secret}"})
    assert api.status_code == 500
    assert api.json == {
        "error": "internal_error",
        "message": "the KMC hit an internal error; nothing was changed",
    }


def test_an_admin_cannot_disable_their_own_account(client):
    login(client, "admin1")
    response = post_form(client, "/admin/users/admin1/disable", {}, token_from="/admin/users")
    assert "you cannot disable your own account" in client.get(
        response.headers["Location"]
    ).get_data(as_text=True)
    assert client.get("/home").status_code == 200


def test_the_last_active_admin_cannot_be_disabled(app):
    from kmc.accounts import service
    from kmc.errors import Conflict

    with app.app_context():
        service.create_user(caller("admin1"), "admin2", "admin", PASSWORD)
        others = [u.username for u in service.list_users() if u.role == "admin"]
        for name in others:
            if name != "admin2":
                service.set_active(caller("admin2"), name, False)
        with pytest.raises(Conflict, match="admin2 is the last active admin"):
            service.set_active(caller("cli:root"), "admin2", False)
        service.set_active(caller("admin2"), "admin1", True)
        service.set_active(caller("admin1"), "admin2", False)
