"""A form sent after the session expired: log in again and come back to the form with what was
typed (never a password); `next=` after login only ever leads to this site."""

from __future__ import annotations

import html
import json
import re

import pytest

from tests.conftest import PASSWORD, csrf_token, login

_KEPT = re.compile(r'<meta name="kmc-resume" content="([^"]*)">')


def expire_session(client) -> None:
    """What the browser does when the idle timeout passes: the session cookie is gone."""
    client.delete_cookie("session")


def log_in_with_next(client, next_path: str):
    token = csrf_token(client, "/login")
    return client.post(
        "/login",
        query_string={"next": next_path},
        data={"username": "operator1", "password": PASSWORD, "csrf_token": token},
    )


def test_an_expired_form_returns_after_login_with_what_was_typed(client):
    login(client, "operator1")
    token = csrf_token(client, "/keys/supply-groups")
    expire_session(client)
    sent = client.post(
        "/keys/supply-groups",
        data={"csrf_token": token, "group-sgc": "600727", "group-name": "North <east>"},
        headers={"Referer": "http://localhost/keys/supply-groups"},
    )
    assert sent.status_code == 302
    assert sent.headers["Location"].startswith("/login?next=/keys/supply-groups")
    login_page = client.get(sent.headers["Location"]).get_data(as_text=True)
    assert "Your session expired" in login_page and "Error 400" not in login_page
    back = log_in_with_next(client, "/keys/supply-groups")
    assert back.headers["Location"] == "/keys/supply-groups"
    page = client.get("/keys/supply-groups").get_data(as_text=True)
    kept = json.loads(html.unescape(_KEPT.search(page).group(1)))
    assert kept["action"] == "/keys/supply-groups"
    assert kept["fields"] == [["group-sgc", "600727"], ["group-name", "North <east>"]]
    assert "<east>" not in page  # the typed text is escaped in the page
    assert not _KEPT.search(client.get("/keys/supply-groups").get_data(as_text=True))  # once


def test_passwords_shares_and_typed_confirmations_are_never_kept(client):
    login(client, "admin1")
    token = csrf_token(client, "/admin/users")
    expire_session(client)
    client.post(
        "/admin/users",
        data={"csrf_token": token, "username": "newbie", "role": "auditor",
              "password": "hunter2hunter2", "confirm": "4242", "share": "abandon ability"},
        headers={"Referer": "http://localhost/admin/users"},
    )  # fmt: skip
    with client.session_transaction() as session:
        kept = session["kmc_resume"]
    assert kept["fields"] == [["username", "newbie"], ["role", "auditor"]]
    assert "hunter2" not in json.dumps(kept) and "abandon" not in json.dumps(kept)


def test_an_expired_form_from_another_site_returns_to_its_own_page_here(client):
    login(client, "operator1")
    token = csrf_token(client, "/keys/supply-groups")
    expire_session(client)
    sent = client.post(
        "/keys/supply-groups",
        data={"csrf_token": token, "group-sgc": "600727"},
        headers={"Referer": "https://evil.example/keys/supply-groups"},
    )
    assert sent.headers["Location"] == "/login?next=/keys/supply-groups"


def test_an_expired_action_form_without_a_page_of_its_own_returns_home(client):
    login(client, "operator1")
    token = csrf_token(client, "/keys/supply-groups")
    expire_session(client)
    # No Referer (Referrer-Policy: no-referrer), and the action serves no GET.
    sent = client.post("/logout", data={"csrf_token": token, "reason": "x"})
    assert sent.headers["Location"] == "/login?next=/home"


@pytest.mark.parametrize(
    "target",
    ["//evil.example/x", "/\\evil.example/x", "https://evil.example/x", "javascript:alert(1)"],
)
def test_next_never_leaves_the_site(client, target):
    assert log_in_with_next(client, target).headers["Location"] == "/home"


def test_next_follows_a_page_of_this_site(client):
    assert log_in_with_next(client, "/keys/?q=6007").headers["Location"] == "/keys/?q=6007"


def test_a_page_visited_after_the_session_expired_says_so_on_the_login_page(client):
    never = client.get("/keys/", follow_redirects=True).get_data(as_text=True)
    assert 'id="username"' in never and "session expired" not in never
    login(client, "operator1")
    expire_session(client)
    expired = client.get("/keys/", follow_redirects=True)
    assert expired.request.path == "/login"
    assert "Your session expired" in expired.get_data(as_text=True)
    again = client.get("/keys/", follow_redirects=True).get_data(as_text=True)
    assert "session expired" not in again  # said once


def test_after_logging_out_a_page_asks_for_a_login_without_saying_expired(client):
    login(client, "operator1")
    client.post("/logout", data={"csrf_token": csrf_token(client, "/home")})
    page = client.get("/keys/", follow_redirects=True).get_data(as_text=True)
    assert 'id="username"' in page and "session expired" not in page
