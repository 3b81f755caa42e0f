"""The OpenAPI document is generated from the API's schemas, every API response of the test suite
is checked against it (tests/conftest.py `DocumentedClient`), and its interactive documentation is
served from the KMC's own files."""

from __future__ import annotations

import json

import pytest
from marshmallow import ValidationError

from factories.callers import caller
from kmc.accounts.schemas import Account
from kmc.accounts.service import create_token
from kmc.api import document
from kmc.api.schema import operation
from kmc.permissions import ROLES
from tests.conftest import check_documented
from vending_keys.models import KEY_STATES


@pytest.fixture
def auditor(app):
    with app.app_context():
        issued = create_token(caller("test"), "auditor1", "document tests")
    return {"Authorization": f"Bearer {issued.secret}"}


def test_a_response_with_an_undeclared_field_fails_the_check(app, client, auditor):
    response = client.get("/api/v1/whoami", headers=auditor)
    response.set_data(json.dumps({**response.json, "password": "x"}))
    with pytest.raises(AssertionError, match="not what the OpenAPI document says"):
        check_documented(app, response)


def test_a_response_missing_a_field_fails_the_check(app, client, auditor):
    response = client.get("/api/v1/whoami", headers=auditor)
    response.set_data(json.dumps({k: v for k, v in response.json.items() if k != "role"}))
    with pytest.raises(AssertionError, match="not what the OpenAPI document says"):
        check_documented(app, response)


def test_an_undocumented_status_fails_the_check(app, client, auditor):
    response = client.get("/api/v1/whoami", headers=auditor)
    response.status_code = 409  # whoami declares no conflict
    with pytest.raises(AssertionError, match="not what the OpenAPI document says"):
        check_documented(app, response)


def test_a_view_returning_a_field_its_schema_lacks_fails_under_tests(app):
    view = operation("test", responses={200: Account})(
        lambda: {"username": "u", "role": "admin", "id_man": None, "active": True, "extra": 1}
    )
    with app.test_request_context("/api/v1/whoami"), pytest.raises(ValidationError):
        view()


def test_bad_input_is_refused_naming_the_field(client, app):
    with app.app_context():
        issued = create_token(caller("test"), "operator1", "document tests")
    headers = {"Authorization": f"Bearer {issued.secret}"}
    answer = client.post("/api/v1/supply-groups", json={"sgc": "123456"}, headers=headers)
    assert (answer.status_code, answer.json["error"]) == (400, "missing_field")
    assert "'name'" in answer.json["message"]


def test_the_document_takes_fields_and_enums_from_the_code(app):
    schemas = document(app)["components"]["schemas"]
    key = schemas["Key"]["properties"]
    assert {"state_reason", "proposed_by", "approved_by"} <= set(key)
    assert key["state"]["enum"] == list(KEY_STATES)
    assert schemas["Account"]["properties"]["role"]["enum"] == list(ROLES)
    assert schemas["Key"]["additionalProperties"] is False


def test_every_operation_declares_503_with_the_sealed_and_hsm_reasons(app, client, auditor):
    built = document(app)
    reasons = built["components"]["schemas"]["UnavailableError"]["properties"]["error"]["enum"]
    assert reasons == ["sealed", "hsm_unavailable", "hsm_mechanism_missing"]
    for path, methods in built["paths"].items():
        for method, declared in methods.items():
            answer = declared["responses"]["503"]["content"]["application/json"]["schema"]
            assert answer == {"$ref": "#/components/schemas/UnavailableError"}, (path, method)
    response = client.get("/api/v1/whoami", headers=auditor)
    response.status_code = 503
    response.set_data(json.dumps({"error": "conflict", "message": "not a 503 reason"}))
    with pytest.raises(AssertionError, match="not what the OpenAPI document says"):
        check_documented(app, response)


def test_the_interactive_documentation_is_served_from_local_files(client):
    page = client.get("/api/docs/")
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    assert "/api/docs/swagger-ui-bundle.js" in html and "/api/v1/openapi.json" in html
    assert "http://" not in html and "https://" not in html  # no CDN
    script = client.get("/api/docs/swagger-ui-bundle.js")
    assert script.status_code == 200 and b"SwaggerUIBundle" in script.data
    script.close()


def test_a_bulk_item_is_documented_as_checked_on_its_own(app, client):
    """A bulk item that does not fit BulkItem gets its own refused verdict in a 200, so the
    document admits any item and names BulkItem for those that register (the schemathesis run
    found a too-long item name 'accepted' against a document that said maxLength)."""
    items = document(app)["components"]["schemas"]["BulkRegistration"]["properties"]["items"]
    assert items["items"]["anyOf"] == [{"$ref": "#/components/schemas/BulkItem"}, {}]
    assert "verdict" in items["items"]["description"]


def test_exactly_one_of_two_fields_is_in_the_document(app, client):
    """A registration carries its CSR as PEM or as base64 DER, never both or neither."""
    registration = document(app)["components"]["schemas"]["Registration"]
    assert [branch["required"] for branch in registration["oneOf"]] == [["csr"], ["csr_base64"]]
    both = {"kind": "virtual", "csr": "x", "csr_base64": "eA=="}
    token = {"Authorization": f"Bearer {_token(app, 'maker1')}"}
    for body in (both, {"kind": "virtual"}):
        answer = client.post("/api/v1/sms", json=body, headers=token)
        assert (answer.status_code, answer.json["error"]) == (400, "missing_field")


def _token(app, username):
    with app.app_context():
        return create_token(caller("test"), username, "document tests").secret
