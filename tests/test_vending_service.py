"""The vending service's API, in process (Werkzeug test client): every operation, every refusal
(4xx JSON with the CLI's reason, nothing changed), and the generated OpenAPI document."""

from __future__ import annotations

import datetime as dt
import hashlib
import io
import json
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from openapi_spec_validator import validate
from werkzeug.test import Client, EnvironBuilder, run_wsgi_app

from factories.emulator import NOW, PAN, loaded_key
from factories.vending_service import SGC, loaded_state, meter_on
from meter_emulator.meter import enter
from sm_emulator.api import MAX_BODY_BYTES, VendingService
from sm_emulator.bearer import BearerTokens, add_token
from sm_emulator.store import DATABASE_FILE
from sts_token import BaseDate, Tid

KEY = bytes(range(20))
NEW_KEY = bytes(range(1, 21))
CREDIT = {
    "pan": "600727000000000009",
    "sgc": "600100",
    "krn": 1,
    "kt": 2,
    "ti": "01",
    "ea": "11",
    "subclass": "electricity",
    "amount": "12.5",
    "currency": "10",
}
MINUTE = Tid.at(NOW.replace(tzinfo=None), BaseDate(2014)).value


def _service(tmp_path: Path, *keys: Any, tokens: BearerTokens | None = None) -> VendingService:
    state = loaded_state(tmp_path / "sm", *(keys or (loaded_key(SGC, key_value=KEY, clm=None),)))
    return VendingService(state, clock=lambda: NOW, tokens=tokens)


def _post(client: Client, path: str, body: Any, **headers: str) -> tuple[int, Any]:
    data = body if isinstance(body, (bytes, str)) else json.dumps(body)
    response = client.post(path, data=data, content_type="application/json", headers=headers)
    return response.status_code, response.get_json()


def _state(service: VendingService) -> str:
    return hashlib.sha256((service.state / DATABASE_FILE).read_bytes()).hexdigest()


def _rows(service: VendingService) -> str:
    with service.sm().store.snapshot() as db:
        return "\n".join(db.iterdump())


def test_credit_with_the_issues_exact_json_gives_a_token_the_meter_accepts(
    tmp_path: Path,
) -> None:
    service = _service(tmp_path)
    client = Client(service)
    status, body = _post(client, "/api/v1/tokens/credit", CREDIT)
    assert status == 200, body
    [token] = body["tokens"]
    assert len(token) == 20 and token.isdigit()
    assert body["tid"] == MINUTE
    assert body["currency_used"] == "10" and body["units_used"] == "12.5"
    accepted = enter(meter_on(loaded_key(SGC, key_value=KEY), PAN), token)
    assert accepted.kind == "credit"
    assert accepted.state.credit_tenths["electricity"] == 125


def test_two_tokens_for_one_meter_in_one_minute_get_different_tids(tmp_path: Path) -> None:
    client = Client(_service(tmp_path))
    tids = [_post(client, "/api/v1/tokens/credit", CREDIT)[1]["tid"] for _ in range(3)]
    assert tids == [MINUTE, MINUTE + 1, MINUTE + 2]
    other = {**CREDIT, "pan": "600727000000000017"}
    assert _post(client, "/api/v1/tokens/credit", other)[1]["tid"] == MINUTE


def test_management_test_decode_and_key_change_with_rollover(tmp_path: Path) -> None:
    old = loaded_key(SGC, key_value=KEY)
    new = loaded_key(SGC, krn=2, key_value=NEW_KEY, base_date=2014)
    client = Client(_service(tmp_path, old, new))
    meter = {k: CREDIT[k] for k in ("pan", "sgc", "krn", "kt", "ti", "ea")}
    status, body = _post(
        client, "/api/v1/tokens/management", {**meter, "kind": "set-max-power-limit", "value": 1000}
    )
    assert status == 200 and body["kind"] == "management" and body["tid"] == MINUTE
    status, decoded = _post(client, "/api/v1/tokens/decode", {**meter, "token": body["tokens"][0]})
    assert status == 200, decoded
    assert decoded["fields"]["tid"] == MINUTE
    status, test = _post(
        client, "/api/v1/tokens/test", {"subclass": 0, "control": 1, "manufacturer_code": "12"}
    )
    assert status == 200 and len(test["tokens"]) == 1
    change = {**meter, "new_sgc": SGC, "new_krn": 2, "new_kt": 2, "new_ti": "01"}
    status, body = _post(client, "/api/v1/tokens/key-change", change)
    assert status == 200, body
    assert body["rollover"] is False
    state = meter_on(old, PAN)
    for token in body["tokens"]:
        state = enter(state, token).state
    assert (state.krn, state.kt) == (2, 2)
    status, credit = _post(client, "/api/v1/tokens/credit", {**CREDIT, "krn": 2})
    assert enter(state, credit["tokens"][0]).kind == "credit"
    status, rolled = _post(client, "/api/v1/tokens/key-change", {**change, "rollover": True})
    assert status == 200 and rolled["rollover"] is True and rolled["tokens"] != body["tokens"]


def test_key_registers_show_kcvs_limits_and_warnings(tmp_path: Path) -> None:
    key = loaded_key(SGC, key_value=KEY, clm=Decimal("100"))
    client = Client(_service(tmp_path, key))
    _post(client, "/api/v1/tokens/credit", {**CREDIT, "currency": "95"})
    response = client.get("/api/v1/keys")
    assert response.status_code == 200
    [register] = response.get_json()["keys"]
    assert register["currency_used"] == "95" and register["currency_left"] == "5"
    assert len(register["kcv"]) == 6 and "key_value" not in register
    codes = {w["code"] for w in response.get_json()["warnings"]}
    assert "credit_limit_near" in codes
    assert client.get("/api/v1/warnings").get_json()["warnings"]


@pytest.mark.parametrize(
    ("body", "status", "reason"),
    [
        (b"{not json", 400, "invalid_json"),
        (b"[1, 2]", 400, "invalid_json"),
        ({**CREDIT, "krn": "1"}, 400, "invalid_request"),
        ({**CREDIT, "colour": "red"}, 400, "invalid_request"),
        ({**CREDIT, "pan": "600727000000000008"}, 400, "invalid_pan"),
        ({**CREDIT, "amount": "99999999"}, 400, "invalid_amount"),
        ({**CREDIT, "amount": "-1"}, 400, "invalid_request"),
        ({**CREDIT, "krn": 3}, 404, "no_such_key"),
        ({**CREDIT, "kt": 1}, 404, "no_such_key"),
        ({**CREDIT, "currency": "1" * 40}, 422, "credit_limit"),
        (b"{" + b" " * 20000 + b"}", 413, "body_too_large"),
    ],
)
def test_bad_credit_requests_are_refused_and_change_nothing(
    tmp_path: Path, body: Any, status: int, reason: str
) -> None:
    key = loaded_key(SGC, key_value=KEY, clm=Decimal("1000"))
    service = _service(tmp_path, key)
    client = Client(service)
    before = _rows(service)
    got_status, got = _post(client, "/api/v1/tokens/credit", body)
    assert (got_status, got["error"]) == (status, reason), got
    assert got["message"]
    assert _rows(service) == before


@pytest.mark.parametrize(
    ("padding", "status", "reason"),
    [(20000, 413, "body_too_large"), (MAX_BODY_BYTES - len(json.dumps(CREDIT)), 200, None)],
)
def test_a_body_without_content_length_is_read_to_the_limit_and_no_further(
    tmp_path: Path, padding: int, status: int, reason: str | None
) -> None:
    # A chunked body, as a server that decodes chunked transfer hands it on: no Content-Length,
    # `wsgi.input_terminated` set (granian, gunicorn). Cut at the limit it would be bad JSON.
    body = json.dumps(CREDIT)[:-1] + " " * padding + "}"
    service = _service(tmp_path, loaded_key(SGC, key_value=KEY, clm=Decimal("1000")))
    before = _rows(service)
    builder = EnvironBuilder(
        "/api/v1/tokens/credit", method="POST", input_stream=io.BytesIO(body.encode()),
        content_type="application/json", environ_overrides={"wsgi.input_terminated": True},
    )  # fmt: skip
    environ = builder.get_environ()
    del environ["CONTENT_LENGTH"]
    answer, got_status, _ = run_wsgi_app(service, environ)
    got = json.loads(b"".join(answer))
    assert int(got_status.split()[0]) == status, got
    assert got.get("error") == reason
    assert (_rows(service) == before) is (reason is not None)


def test_an_expired_key_is_refused_with_the_clis_reason(tmp_path: Path) -> None:
    key = loaded_key(SGC, key_value=KEY, iut=NOW - dt.timedelta(days=1))
    client = Client(_service(tmp_path, key))
    status, body = _post(client, "/api/v1/tokens/credit", CREDIT)
    assert (status, body["error"]) == (422, "key_use_expired")


def test_bearer_tokens_are_required_and_stored_hashed(tmp_path: Path) -> None:
    tokens_file = tmp_path / "tokens"
    token = add_token(tokens_file, "till-1")
    assert token not in tokens_file.read_text()
    client = Client(_service(tmp_path, tokens=BearerTokens.read(tokens_file)))
    assert _post(client, "/api/v1/tokens/credit", CREDIT)[0] == 401
    status, body = _post(client, "/api/v1/tokens/credit", CREDIT, Authorization="Bearer nope")
    assert (status, body["error"]) == (401, "unauthorised")
    assert client.get("/api/v1/openapi.json").status_code == 401
    status, _ = _post(client, "/api/v1/tokens/credit", CREDIT, Authorization=f"Bearer {token}")
    assert status == 200


def test_unknown_routes_and_methods_are_json_refusals(tmp_path: Path) -> None:
    client = Client(_service(tmp_path))
    assert client.get("/api/v1/nothing").get_json()["error"] == "not_found"
    response = client.get("/api/v1/tokens/credit")
    assert (response.status_code, response.get_json()["error"]) == (405, "method_not_allowed")


def test_a_defect_is_a_json_500_logged_with_its_traceback_and_never_shown(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    service = _service(tmp_path)

    def defect(*args: Any, **kwargs: Any) -> None:
        raise RuntimeError("a defect in the service, secret 00112233")

    monkeypatch.setattr("sm_emulator.vending.Vending.credit", defect)
    status, answer = _post(Client(service), "/api/v1/tokens/credit", CREDIT)
    assert (status, answer["error"]) == (500, "internal_error")
    assert "defect" not in answer["message"] and "00112233" not in json.dumps(answer)
    [record] = [r for r in caplog.records if r.name == "sm_emulator.api"]
    assert record.exc_info is not None and "POST /api/v1/tokens/credit" in record.getMessage()


def test_the_openapi_document_is_generated_from_the_schemas_and_valid(tmp_path: Path) -> None:
    document = Client(_service(tmp_path)).get("/api/v1/openapi.json").get_json()
    validate(document)
    credit = document["paths"]["/api/v1/tokens/credit"]["post"]
    schema_ref = credit["requestBody"]["content"]["application/json"]["schema"]["$ref"]
    properties = document["components"]["schemas"][schema_ref.rsplit("/", 1)[1]]["properties"]
    assert set(CREDIT) <= set(properties)
    assert set(document["paths"]) >= {"/api/v1/tokens/key-change", "/api/v1/keys"}
