"""API tokens: shown once, stored hashed, bearer-only, revocable; JSON errors."""

from __future__ import annotations

import re

from sqlalchemy import select

from factories.callers import caller
from kmc.accounts.models import ApiToken
from kmc.accounts.service import create_token, revoke_token
from kmc.database import db
from tests.conftest import login


def _token(app, username="auditor1"):
    with app.app_context():
        issued = create_token(caller("test"), username, "script")
        return issued.token.id, issued.secret


def test_only_a_hash_of_the_token_is_stored(app):
    token_id, secret = _token(app)
    with app.app_context():
        row = db.session.get(ApiToken, token_id)
        assert secret.split("_", 2)[2] not in row.secret_hash
        assert len(row.secret_hash) == 64


def test_bearer_token_authenticates_api_calls(app, client):
    _, secret = _token(app)
    response = client.get("/api/v1/users", headers={"Authorization": f"Bearer {secret}"})
    assert response.status_code == 200
    assert {
        "username": "maker1",
        "role": "manufacturer",
        "id_man": "1A2B",
        "active": True,
    } in response.json["users"]


def test_a_wrong_or_revoked_token_gets_401_json(app, client):
    token_id, secret = _token(app)
    tampered = secret[:-2] + ("AA" if not secret.endswith("AA") else "BB")
    response = client.get("/api/v1/whoami", headers={"Authorization": f"Bearer {tampered}"})
    assert response.status_code == 401
    assert response.json["error"] == "not_authenticated"
    with app.app_context():
        revoke_token(caller("test"), token_id)
    assert (
        client.get("/api/v1/whoami", headers={"Authorization": f"Bearer {secret}"}).status_code
        == 401
    )


def test_a_web_session_does_not_authenticate_the_api(client):
    login(client, "admin1")
    assert client.get("/api/v1/whoami").status_code == 401


def test_role_is_enforced_on_the_api(app, client):
    _, secret = _token(app, "maker1")
    response = client.get("/api/v1/users", headers={"Authorization": f"Bearer {secret}"})
    assert response.status_code == 403
    assert response.json == {"error": "forbidden", "message": "your role does not allow this"}


def test_admin_page_shows_a_new_token_once(app, client):
    from tests.conftest import post_form

    login(client, "admin1")
    response = post_form(
        client,
        "/admin/tokens",
        {"username": "maker1", "name": "uploader"},
        token_from="/admin/tokens",
    )
    page = response.get_data(as_text=True)
    assert "shown once" in page and 'id="new-token"' in page
    assert 'id="new-token"' not in client.get("/admin/tokens").get_data(as_text=True)
    with app.app_context():
        assert (
            db.session.scalar(select(ApiToken.name).where(ApiToken.name == "uploader"))
            == "uploader"
        )


def test_the_openapi_document_is_valid_openapi_3_1(client):
    from openapi_spec_validator import validate

    validate(client.get("/api/v1/openapi.json").json)


def test_every_api_route_is_in_the_openapi_document(app, client):
    document = client.get("/api/v1/openapi.json").json
    assert document["openapi"].startswith("3.")
    routes = set()
    for rule in app.url_map.iter_rules():
        if rule.rule.startswith("/api/v1/"):
            routes.add(re.sub(r"<(?:[^:>]+:)?([^>]+)>", r"{\1}", rule.rule))
    assert routes == set(document["paths"])
