"""Browser security headers on every route, Secure cookies and HSTS over HTTPS, a live KMC that
will not serve without them, and the session and CSRF token rotated at login."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
from flask import Flask, request

from factories.callers import caller
from kmc import create_app
from kmc.accounts.service import create_token
from kmc.database import db
from tests.conftest import PASSWORD, Instance, csrf_token, login
from tests.test_route_roles import ROUTES

STATIC = {
    "static": "/static/kmc.css",
    "bootstrap.static": "/bootstrap/static/css/bootstrap.min.css",
}
CACHEABLE = {"static", "bootstrap.static", "api_docs.asset"}


def _directives(policy: str) -> dict[str, str]:
    return {part.split()[0]: part.strip() for part in policy.split(";") if part.strip()}


def _check(endpoint: str, response) -> list[str]:
    headers = response.headers
    wrong = []
    policy = _directives(headers.get("Content-Security-Policy", ""))
    if policy.get("frame-ancestors") != "frame-ancestors 'none'":
        wrong.append("frame-ancestors")
    if policy.get("script-src") != "script-src 'self'" or policy.get("default-src") != (
        "default-src 'none'"
    ):
        wrong.append("script-src/default-src")
    inline_style = "'unsafe-inline'" in policy.get("style-src", "")
    if inline_style != (endpoint == "api_docs.page"):
        wrong.append("style-src")
    expected = {
        "X-Frame-Options": "DENY",
        "X-Content-Type-Options": "nosniff",
        "Referrer-Policy": "no-referrer",
    }
    wrong += [name for name, value in expected.items() if headers.get(name) != value]
    if (headers.get("Cache-Control") == "no-store") == (endpoint in CACHEABLE):
        wrong.append(f"Cache-Control {headers.get('Cache-Control')}")
    if "Strict-Transport-Security" in headers:
        wrong.append("HSTS without KMC_SECURE_COOKIES")
    return [f"{endpoint} ({response.status_code}): {', '.join(wrong)}"] if wrong else []


def test_every_route_carries_the_browser_headers(app, client):
    login(client, "admin1")
    with app.app_context():
        secret = create_token(caller("test"), "admin1", "headers").secret
    bearer = {"Authorization": f"Bearer {secret}"}
    token = csrf_token(client, "/home")
    walked, wrong = set(), []
    for rule in app.url_map.iter_rules():
        endpoint = rule.endpoint
        if endpoint in walked or endpoint == "auth.logout":
            continue
        walked.add(endpoint)
        route = ROUTES.get(endpoint)
        path = STATIC[endpoint] if route is None else route.path
        headers = bearer if path.startswith("/api/v1/") else {}
        if route is not None and route.method == "POST":
            response = client.post(path, data={"csrf_token": token}, headers=headers)
        else:
            response = client.get(path, headers=headers)
        response.close()
        wrong += _check(endpoint, response)
    wrong += _check("error 404", client.get("/no/such/page"))
    wrong += _check("error 405", client.delete("/home"))
    wrong += _check("auth.logout", client.post("/logout", data={"csrf_token": token}))
    walked.add("auth.logout")
    assert walked == {rule.endpoint for rule in app.url_map.iter_rules()}
    assert len(walked) > 60
    assert wrong == []


@pytest.fixture
def app_with(instance: Instance) -> Iterator[Callable[..., Flask]]:
    """Builds this test's KMC with extra settings; their database engines are disposed after."""
    built: list[Flask] = []

    def build(**settings: object) -> Flask:
        app = create_app(
            {
                "KMC_INSTANCE": instance.folder,
                "SQLALCHEMY_DATABASE_URI": instance.database_url,
                "KMC_MODE": instance.mode,
                **instance.keystore,
                "TESTING": True,
                **settings,
            }
        )
        built.append(app)
        return app

    yield build
    for app in built:
        with app.app_context():
            db.session.remove()
            db.engine.dispose()


@pytest.mark.parametrize("setting", ["KMC_SECURE_COOKIES", "KMC_BEHIND_TLS_PROXY"])
def test_over_https_cookies_are_secure_and_hsts_is_sent(app_with, setting):
    client = app_with(**{setting: True}).test_client()
    answer = login(client, "admin1")
    assert answer.headers["Strict-Transport-Security"] == "max-age=31536000"
    cookies = answer.headers.getlist("Set-Cookie")
    assert cookies and all("; Secure" in cookie for cookie in cookies)


def test_over_plain_http_cookies_are_not_marked_secure(client):
    answer = login(client, "admin1")
    assert "Strict-Transport-Security" not in answer.headers
    assert all("; Secure" not in cookie for cookie in answer.headers.getlist("Set-Cookie"))


def test_behind_a_tls_proxy_the_forwarded_address_is_the_client(app_with):
    app = app_with(KMC_BEHIND_TLS_PROXY=True)
    seen = []

    @app.before_request
    def _remember() -> None:
        seen.append((request.remote_addr, request.scheme))

    app.test_client().get(
        "/login", headers={"X-Forwarded-For": "192.0.2.7", "X-Forwarded-Proto": "https"}
    )
    assert seen == [("192.0.2.7", "https")]


@pytest.mark.parametrize("kmc_mode", ["live"])
def test_a_live_kmc_will_not_serve_without_https_settings(kmc):
    result = kmc("serve", "--port", "1")
    assert result.exit_code == 1
    assert result.output.strip().splitlines() == [
        "kmc: insecure_transport: a live KMC needs KMC_SECURE_COOKIES=1 "
        "(or KMC_BEHIND_TLS_PROXY=1 behind a TLS proxy)"
    ]


def _session_cookie(client) -> str:
    cookie = client.get_cookie("session")
    assert cookie is not None
    return cookie.value


def test_login_rotates_the_session_and_the_csrf_token(client):
    before = csrf_token(client, "/login")
    anonymous_session = _session_cookie(client)
    answer = client.post(
        "/login", data={"username": "admin1", "password": PASSWORD, "csrf_token": before}
    )
    assert answer.status_code == 302
    assert _session_cookie(client) != anonymous_session
    refused = client.post("/account/password", data={"csrf_token": before})
    assert refused.status_code == 400
    assert "the form expired" in refused.get_data(as_text=True)
    after = csrf_token(client, "/account/password")
    assert after != before
    form = client.post("/account/password", data={"csrf_token": after})
    assert form.status_code == 200 and "the form expired" not in form.get_data(as_text=True)


def test_a_session_from_before_login_is_not_the_session_after(client):
    csrf_token(client, "/login")
    with client.session_transaction() as session:
        session["planted"] = "by the anonymous visitor"
    login(client, "admin1")
    with client.session_transaction() as session:
        assert "planted" not in session and "_user_id" in session
