"""The registry's JSON API with bearer tokens: each role's reach, manufacturers kept apart, signed exports."""

from __future__ import annotations

import base64

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from sqlalchemy import func, select

from factories.callers import caller
from factories.csr import make_csr
from kmc.accounts.service import create_token
from kmc.audit.models import AuditEntry
from kmc.database import db
from kmc.pki import current as current_pki
from sm_registry.models import SecurityModule, SmStateEvent
from tests.test_registry_cli import verify_export
from tests.test_registry_csr import REF


@pytest.fixture
def bearer(app):
    def issue(username):
        with app.app_context():
            issued = create_token(caller("test"), username, "registry tests")
        return {"Authorization": f"Bearer {issued.secret}"}

    return issue


def counts(app):
    with app.app_context():
        return tuple(
            db.session.scalar(select(func.count()).select_from(t))
            for t in (SecurityModule, SmStateEvent, AuditEntry)
        )


def register(client, headers, smid="1001", ou="1A2B", **body):
    payload = {"csr": make_csr(smid, ou=ou).decode(), "kind": "certified", "certification": REF}
    payload.update(body)
    return client.post("/api/v1/sms", json=payload, headers=headers)


def test_manufacturer_registers_through_the_api(client, bearer):
    response = register(client, bearer("maker1"))
    assert response.status_code == 201, response.json
    assert response.json["smid"] == "1001" and response.json["state"] == "pending"
    assert response.json["registered_by"] == "maker1"


def test_der_csr_in_base64_and_certification_object(client, bearer):
    der = make_csr("1002", der=True)
    certification = {"model": "M", "firmware": "F", "version": "1", "number": "N"}
    response = client.post(
        "/api/v1/sms",
        json={
            "csr_base64": base64.b64encode(der).decode(),
            "kind": "certified",
            "certification": certification,
        },
        headers=bearer("maker1"),
    )
    assert response.status_code == 201, response.json
    assert response.json["certification"] == certification


@pytest.mark.parametrize(
    ("body", "status", "error"),
    [
        ({"csr": "garbage", "kind": "virtual"}, 400, "csr_malformed"),
        ({"csr_base64": "!!!", "kind": "virtual"}, 400, "bad_base64"),
        ({"kind": "virtual"}, 400, "missing_field"),
        ({"csr": "x", "csr_base64": "eA==", "kind": "virtual"}, 400, "missing_field"),
        ({"csr": "x", "kind": 7}, 400, "bad_kind"),
        ({"csr": "x", "kind": "virtual", "certification": 5}, 400, "bad_certification"),
    ],
)
def test_bad_registration_bodies_are_refused(app, client, bearer, body, status, error):
    headers = bearer("maker1")
    before = counts(app)
    response = client.post("/api/v1/sms", json=body, headers=headers)
    assert (response.status_code, response.json["error"]) == (status, error)
    assert counts(app) == before


def test_refusals_map_to_http_statuses(app, client, bearer):
    maker = bearer("maker1")
    assert register(client, maker).status_code == 201
    duplicate = register(client, maker)
    assert (duplicate.status_code, duplicate.json["error"]) == (409, "duplicate_smid")
    mismatch = register(client, maker, smid="1002", ou="3C4D")
    assert (mismatch.status_code, mismatch.json["error"]) == (403, "id_man_mismatch")
    p256 = client.post(
        "/api/v1/sms",
        json={
            "csr": make_csr("5", key=ec.generate_private_key(ec.SECP256R1())).decode(),
            "kind": "virtual",
        },
        headers=maker,
    )
    assert (p256.status_code, p256.json["error"]) == (422, "unsupported_curve")


@pytest.mark.parametrize("kmc_mode", ["live"])
def test_live_kmc_refuses_virtual_sm_over_the_api(app, client, bearer):
    headers = bearer("maker1")
    before = counts(app)
    response = register(client, headers, kind="virtual", certification=None)
    assert (response.status_code, response.json["error"]) == (422, "virtual_sm_refused")
    assert "§4.5" in response.json["message"]
    assert counts(app) == before


def test_manufacturers_cannot_see_or_touch_each_others_sms(app, client, bearer):
    maker1, maker2 = bearer("maker1"), bearer("maker2")
    assert register(client, maker1, "1001").status_code == 201
    assert register(client, maker2, "2002", ou="3C4D").status_code == 201
    listed = client.get("/api/v1/sms", headers=maker1).json["security_modules"]
    assert [s["smid"] for s in listed] == ["1001"]
    assert client.get("/api/v1/sms?id_man=3C4D", headers=maker1).json["security_modules"] == []
    assert client.get("/api/v1/sms/2002", headers=maker1).status_code == 404
    assert client.get("/api/v1/sms/2002/certificate", headers=maker1).status_code == 404
    before = counts(app)
    revoke = client.post("/api/v1/sms/2002/revoke", json={"reason": "x"}, headers=maker1)
    assert (revoke.status_code, revoke.json["error"]) == (404, "unknown_sm")
    assert counts(app) == before
    exported = client.get("/api/v1/sms/export?format=json", headers=maker1).json
    assert b"2002" not in base64.b64decode(exported["content_base64"])
    assert [
        m["id_man"]
        for m in client.get("/api/v1/manufacturers", headers=maker1).json["manufacturers"]
    ] == ["1A2B"]


def test_operator_approves_and_the_certificate_chain_is_served(app, client, bearer):
    register(client, bearer("maker1"))
    operator = bearer("operator1")
    response = client.post("/api/v1/sms/1001/approve", json={"reason": "checked"}, headers=operator)
    assert response.status_code == 200 and response.json["state"] == "active"
    chain = client.get("/api/v1/sms/1001/certificate", headers=bearer("maker1")).json
    pems = chain["certificate_chain_pem"].split("-----END CERTIFICATE-----")
    assert len(pems) == 3  # SM certificate, issuing CA, trailing newline
    with app.app_context():
        issuing = current_pki().issuing.certificate.public_bytes(serialization.Encoding.PEM)
    assert issuing.decode() in chain["certificate_chain_pem"]


def test_lifecycle_refusals_over_the_api(client, bearer):
    register(client, bearer("maker1"))
    operator = bearer("operator1")
    no_reason = client.post("/api/v1/sms/1001/approve", json={"reason": " "}, headers=operator)
    assert (no_reason.status_code, no_reason.json["error"]) == (400, "reason_required")
    wrong = client.post("/api/v1/sms/1001/resume", json={"reason": "x"}, headers=operator)
    assert (wrong.status_code, wrong.json["error"]) == (409, "bad_transition")
    unknown = client.post("/api/v1/sms/4242/approve", json={"reason": "x"}, headers=operator)
    assert (unknown.status_code, unknown.json["error"]) == (404, "unknown_sm")
    maker = client.post("/api/v1/sms/1001/approve", json={"reason": "x"}, headers=bearer("maker1"))
    assert (maker.status_code, maker.json["error"]) == (403, "forbidden")
    auditor = client.post(
        "/api/v1/sms/1001/approve", json={"reason": "x"}, headers=bearer("auditor1")
    )
    assert auditor.status_code == 403


def test_bulk_registration_gives_each_item_a_verdict(app, client, bearer):
    key = ec.generate_private_key(ec.SECP384R1())
    items = [
        {"name": "a", "csr": make_csr("3001").decode()},
        {"name": "b", "csr": make_csr("3002", key=key).decode()},
        {"name": "c", "csr": make_csr("3003", key=key).decode()},
        {"name": "d", "csr_base64": "%%%"},
        {"name": "e", "csr": "junk"},
        "not an object",
        {"name": "g", "csr_base64": base64.b64encode(make_csr("3007", der=True)).decode()},
    ]
    response = client.post(
        "/api/v1/sms/bulk", json={"kind": "virtual", "items": items}, headers=bearer("maker1")
    )
    assert response.status_code == 200, response.json
    verdicts = [(i["name"], i["result"], i["reason"]) for i in response.json["items"]]
    assert verdicts == [
        ("a", "accepted", None),
        ("b", "accepted", None),
        ("c", "refused", "duplicate_public_key"),
        ("d", "refused", "bad_base64"),
        ("e", "refused", "csr_malformed"),
        ("5", "refused", "bad_item"),
        ("g", "accepted", None),
    ]
    assert (response.json["accepted"], response.json["refused"]) == (3, 4)
    with app.app_context():
        assert sorted(db.session.scalars(select(SecurityModule.smid))) == ["3001", "3002", "3007"]


def test_bulk_needs_items(client, bearer):
    response = client.post(
        "/api/v1/sms/bulk", json={"kind": "virtual", "items": []}, headers=bearer("maker1")
    )
    assert (response.status_code, response.json["error"]) == (400, "bad_items")


def test_admin_creates_manufacturers_and_others_cannot(client, bearer):
    body = {"id_man": "beef", "name": "Beef Modules"}
    created = client.post("/api/v1/manufacturers", json=body, headers=bearer("admin1"))
    assert created.status_code == 201 and created.json["id_man"] == "BEEF"
    again = client.post("/api/v1/manufacturers", json=body, headers=bearer("admin1"))
    assert (again.status_code, again.json["error"]) == (409, "duplicate_id_man")
    assert (
        client.post("/api/v1/manufacturers", json=body, headers=bearer("operator1")).status_code
        == 403
    )


def test_signed_export_over_the_api_verifies_with_openssl(app, client, bearer, tmp_path):
    register(client, bearer("maker1"))
    response = client.get("/api/v1/sms/export?format=csv&state=pending", headers=bearer("auditor1"))
    assert response.status_code == 200
    assert response.json["kmc_mode"] == "test"
    content, signature, root = tmp_path / "e.csv", tmp_path / "e.csv.sig", tmp_path / "root.pem"
    signer = tmp_path / "audit.pem"
    content.write_bytes(base64.b64decode(response.json["content_base64"]))
    signature.write_bytes(base64.b64decode(response.json["signature_base64"]))
    with app.app_context():
        root.write_bytes(current_pki().root.certificate.public_bytes(serialization.Encoding.PEM))
        signer.write_bytes(
            current_pki().audit_signer.certificate.public_bytes(serialization.Encoding.PEM)
        )
    verified = verify_export(content, signature, root, signer)
    assert verified.returncode == 0, verified.stderr
    with app.app_context():
        last = db.session.scalars(select(AuditEntry).order_by(AuditEntry.seq.desc())).first()
        assert (last.actor, last.action) == ("auditor1", "sm.export")


def test_export_with_bad_format_or_filter_is_refused(client, bearer):
    auditor = bearer("auditor1")
    assert (
        client.get("/api/v1/sms/export?format=xml", headers=auditor).json["error"] == "bad_format"
    )
    assert client.get("/api/v1/sms?state=lost", headers=auditor).json["error"] == "bad_state"
    assert client.get("/api/v1/sms?since=yesterday", headers=auditor).json["error"] == "bad_date"


def test_openapi_documents_the_registry_paths(client):
    paths = client.get("/api/v1/openapi.json").json["paths"]
    for path in (
        "/api/v1/sms",
        "/api/v1/sms/bulk",
        "/api/v1/sms/export",
        "/api/v1/sms/{smid}/{action}",
        "/api/v1/manufacturers",
    ):
        assert path in paths
    assert "post" in paths["/api/v1/sms"] and "get" in paths["/api/v1/sms"]


def test_bulk_upload_of_an_unknown_kind_is_refused_even_when_no_item_decodes(client, bearer):
    """Found by the schemathesis run: `kind` was only checked once an item reached the service,
    so an upload whose items all failed to decode answered 200 for any kind."""
    answer = client.post(
        "/api/v1/sms/bulk", json={"kind": "hardware", "items": [{}]}, headers=bearer("maker1")
    )
    assert (answer.status_code, answer.json["error"]) == (400, "bad_kind")


def test_bulk_upload_for_another_manufacturer_is_refused_even_when_no_item_decodes(client, bearer):
    """The upload as a whole is checked before any item, whatever its items hold."""
    answer = client.post(
        "/api/v1/sms/bulk",
        json={"kind": "virtual", "id_man": "3C4D", "items": [{}]},
        headers=bearer("maker1"),
    )
    assert answer.status_code == 403, answer.json
