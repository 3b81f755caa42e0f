"""No input makes a 5xx (issue 13): the six causes a black-box test found, re-tried through the
HTTP interface on SQLite and PostgreSQL. Text is refused at the edge (400 `invalid_text`), names
and lengths by the schemas and forms, large path integers are no route, deep JSON is `too_deep`,
and an emergency state change is refused on its reason before anything changes."""

from __future__ import annotations

import json

import pytest
from flask.testing import FlaskClient
from sqlalchemy import select

from factories.keys import SGC, add_key, api_headers
from factories.registry import new_device
from kmc.api import document
from kmc.database import db
from sm_registry.models import SecurityModule
from tests.conftest import login, post_form
from vending_keys.models import VendingKey


def bearer(app, username="admin1"):
    headers = api_headers(app, username)
    headers.pop("Content-Type")
    return headers


def refused(response, reason="invalid_text", status=400):
    assert response.status_code == status, (response.status_code, response.get_data()[:300])
    assert response.json["error"] == reason, response.json


@pytest.mark.parametrize(
    "path",
    [
        "/api/v1/keys?sgc=%00",
        "/api/v1/sms?smid=1%0001",
        "/api/v1/sms/1%0001",
        "/api/v1/keyload/issues?smid=12%0034",
        "/api/v1/sms/export?format=csv&id_man=1A%002B",
        "/api/v1/sms?%00=1",
    ],
)
def test_nul_in_query_or_path_is_invalid_text(app, client, path):
    refused(client.get(path, headers=bearer(app)))


def test_nul_in_a_page_query_is_refused_too(client):
    login(client, "admin1")
    response = client.get("/registry/sms?smid=1%0001")
    assert response.status_code == 400
    assert "control character" in response.get_data(as_text=True)


@pytest.mark.parametrize(
    "path",
    ["/api/v1/keyload/issues/2147483648/eklf", f"/api/v1/keys/{SGC}/2147483648/1/compromise"],
)
def test_path_integer_beyond_the_database_is_not_found(app, client, path):
    method = client.post if path.endswith("compromise") else client.get
    response = method(path, headers=bearer(app), json={"reason": "x"})
    refused(response, "not_found", 404)


def test_approval_id_beyond_the_database_is_not_found(app, client):
    refused(
        client.post("/api/v1/approvals/2147483648/approve", headers=bearer(app, "operator1")),
        "not_found",
        404,
    )


@pytest.mark.parametrize(
    "body",
    [
        {"id_man": "7A7A", "name": "Ev\u0000il"},
        {"id_man": "7A7A", "name": "Evil\u202egnp.exe"},
        {"id_man": "7A7A", "name": "Zero\u200bwidth"},
        {"id_man": "7A7A", "name": "Line\nbreak"},
        {"id_man": "7A7A", "name": "ok", "contact": "\ud800"},
    ],
)
def test_names_refuse_controls_bidi_and_surrogates(app, client, body):
    refused(client.post("/api/v1/manufacturers", headers=bearer(app), json=body))


def test_names_are_capped(app, client):
    body = {"id_man": "7A7A", "name": "n" * 121}
    refused(client.post("/api/v1/manufacturers", headers=bearer(app), json=body), "bad_name")


def test_a_plain_name_with_accents_still_registers(app, client):
    body = {"id_man": "7A7A", "name": "Compteurs Électriques — Ōsaka"}
    response = client.post("/api/v1/manufacturers", headers=bearer(app), json=body)
    assert response.status_code == 201, response.json


@pytest.mark.parametrize("encoded", ["é" * 8, "\ud800AAAA", "AAA\u0000"])
def test_csr_base64_outside_ascii_is_refused(app, client, encoded):
    body = {"csr_base64": encoded, "kind": "virtual"}
    response = client.post("/api/v1/sms", headers=bearer(app, "maker1"), json=body)
    assert response.status_code == 400, response.json
    assert response.json["error"] in ("bad_base64", "invalid_text")


def test_lone_surrogate_in_a_pem_is_refused(app, client):
    body = {"csr": "-----BEGIN CERTIFICATE REQUEST-----\ud800", "kind": "virtual"}
    refused(client.post("/api/v1/sms", headers=bearer(app, "maker1"), json=body))


def test_bulk_item_names_are_checked_per_item(app, client):
    body = {
        "kind": "virtual",
        "items": [{"name": "x" * 1_000_000, "csr": "nope"}, {"name": "b\u202e", "csr": "nope"}],
    }
    response = client.post("/api/v1/sms/bulk", headers=bearer(app, "maker1"), json=body)
    assert response.status_code == 200, response.json
    assert [i["reason"] for i in response.json["items"]] == ["too_long", "invalid_text"]
    assert [i["name"] for i in response.json["items"]] == ["0", "1"]


def _json_posts(app):
    for path, item in document(app)["paths"].items():
        post = item.get("post", {})
        if "application/json" in post.get("requestBody", {}).get("content", {}):
            yield path


def test_every_json_post_refuses_deep_nesting(app, client):
    paths = list(_json_posts(app))
    assert len(paths) >= 9, paths
    concrete = {"{sgc}": SGC, "{krn}": "1", "{kt}": "1", "{change}": "compromise",
                "{smid}": "1001", "{action}": "suspend", "{approval_id}": "1"}  # fmt: skip
    for depth in (33, 3000, 5000):
        deep = "[" * depth + "]" * depth
        for template in paths:
            path = template
            for name, value in concrete.items():
                path = path.replace(name, value)
            response = client.post(
                path,
                headers={**bearer(app), "Content-Type": "application/json"},
                data=f'{{"reason": "r", "x": {deep}}}',
            )
            refused(response, "too_deep")


def test_nesting_within_the_cap_reaches_the_schema(app, client):
    body = json.dumps({"id_man": "7A7A", "name": "ok", "x": json.loads("[" * 30 + "]" * 30)})
    response = client.post(
        "/api/v1/manufacturers",
        headers={**bearer(app), "Content-Type": "application/json"},
        data=body,
    )
    assert response.status_code == 201, response.json


def _key_state(app, krn):
    with app.app_context():
        key = db.session.scalar(select(VendingKey).where(VendingKey.krn == krn))
        return key.state


@pytest.mark.parametrize("reason", ["stolen\u0000", "\ud800", "r" * 100_000])
def test_compromise_with_a_bad_reason_is_400_and_can_be_retried(app, client, reason):
    add_key(app, 1)
    path = f"/api/v1/keys/{SGC}/1/1/compromise"
    headers = bearer(app, "operator1")
    response = client.post(path, headers=headers, json={"reason": reason})
    assert response.status_code == 400, response.json
    assert _key_state(app, 1) == "active"
    again = client.post(path, headers=headers, json={"reason": "stolen"})
    assert again.status_code == 200, again.json
    assert _key_state(app, 1) == "compromised"


@pytest.mark.parametrize("action", ["suspend", "revoke"])
def test_sm_state_change_with_a_nul_reason_is_400(app, client, action):
    new_device(app, "4001")
    headers = bearer(app)
    response = client.post(f"/api/v1/sms/4001/{action}", headers=headers, json={"reason": "a\0"})
    refused(response)
    with app.app_context():
        assert db.session.get(SecurityModule, "4001").state == "active"
    again = client.post(f"/api/v1/sms/4001/{action}", headers=headers, json={"reason": "lost"})
    assert again.status_code == 200, again.json


def test_page_forms_refuse_bad_text_with_a_message(client):
    login(client, "admin1")
    response = post_form(
        client,
        "/registry/manufacturers",
        {"id_man": "7A7A", "name": "Evil\u202etxt", "contact": ""},
        token_from="/registry/manufacturers",
    )
    assert response.status_code in (200, 302)
    page = client.get("/registry/manufacturers").get_data(as_text=True)
    assert "Evil\u202etxt" not in page
    nul = post_form(
        client,
        "/registry/manufacturers",
        {"id_man": "7A7B", "name": "Ev\0il", "contact": ""},
        token_from="/registry/manufacturers",
    )
    assert nul.status_code == 400


def test_a_405_says_which_methods_are_allowed(app):
    # An undocumented method, so the plain client (not the one checking against the document).
    client = FlaskClient(app, app.response_class, use_cookies=True)
    response = client.delete("/api/v1/sms", headers=bearer(app))
    assert response.status_code == 405
    assert set(response.headers["Allow"].split(", ")) >= {"GET", "POST"}
    login(client, "admin1")
    page = client.delete("/home")
    assert page.status_code == 405 and "GET" in page.headers["Allow"]


def test_a_refused_suspension_is_worded_properly(app, client):
    new_device(app, "4002")
    headers = bearer(app)
    first = client.post("/api/v1/sms/4002/suspend", headers=headers, json={"reason": "a"})
    assert first.status_code == 200
    again = client.post("/api/v1/sms/4002/suspend", headers=headers, json={"reason": "a"})
    assert again.status_code == 409
    assert "cannot be suspended" in again.json["message"], again.json
