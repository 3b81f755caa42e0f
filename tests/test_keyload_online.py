"""Online key loading: the SM sends its own VKLOADREQ (no operator, no token), fetches an EKLF
it was already issued again, and is refused and audited exactly as on the operator path; an
operator switches it per SM (service, API, page, CLI); floods are rate-limited."""

from __future__ import annotations

import base64
import json
import re

import pytest
from flask import Flask
from flask.testing import FlaskClient

from factories.callers import caller
from factories.keys import SGC, add_key, api_headers, authorise
from factories.registry import ADMIN, Device, new_device, own_certificate
from key_load_protocol import KeyIdentity, open_eklf
from kmc import pki
from kmc.database import db
from kmc.errors import Conflict, Forbidden
from sm_registry import service as registry
from sm_registry.models import SecurityModule
from tests.conftest import csrf_token, login
from tests.test_keyload_flow import issue_count, last_audit

ONLINE = "/api/v1/sm/keyload"


@pytest.fixture
def device(app: Flask) -> Device:
    """SM 1001, active, authorised for keys KRN 1 and 2; registered in a test KMC, so online
    key loading starts enabled."""
    sm = new_device(app, "1001")
    for krn in (1, 2):
        add_key(app, krn)
        authorise(app, sm.smid, krn)
    return sm


def _online(client: FlaskClient, der: bytes, **headers: str):
    return client.post(ONLINE, data=der, headers={"Content-Type": "application/cms", **headers})


def _fetch(client: FlaskClient, sequence: int, der: bytes | None):
    headers = (
        {} if der is None else {"Authorization": f"VKLOADREQ {base64.b64encode(der).decode()}"}
    )
    return client.get(f"{ONLINE}/issues/{sequence}", headers=headers)


def _refused(app: Flask, response, status: int, reason: str, actor: str = "sm:1001") -> None:
    """Refused with `reason`, audited as a key-load refusal by `actor`, nothing issued."""
    assert (response.status_code, response.get_json()["error"]) == (status, reason)
    entry = last_audit(app)
    assert (entry.action, entry.actor) == ("keyload.refuse", actor)
    assert json.loads(entry.details)["reason"] == reason
    assert issue_count(app) <= 1


def _online_keyload(app: Flask, smid: str) -> bool:
    with app.app_context():
        sm = db.session.get(SecurityModule, smid)
        assert sm is not None
        return sm.online_keyload


def test_an_sm_loads_its_own_keys_online_with_no_token(app, client, device):
    response = _online(client, device.request((KeyIdentity(SGC, 1, 1),)))
    assert response.status_code == 200, response.get_json()
    with app.app_context():
        root = pki.current().root.certificate
    klf = open_eklf(response.data, trusted_root=root, sm_private_key=device.key)
    assert klf.smid == "1001" and [k.identity.krn for k in klf.keys] == [1]
    entry = last_audit(app)
    assert (entry.action, entry.actor, entry.object_id) == ("keyload.issue", "sm:1001", "1001")
    listed = client.get("/api/v1/keyload/issues", headers=api_headers(app)).get_json()["issues"]
    assert [(i["sequence"], i["issued_by"]) for i in listed] == [(1, "sm:1001")]


def test_a_request_of_an_unregistered_sm_is_refused_and_audited(app, client, device):
    from cryptography.hazmat.primitives.asymmetric import ec

    key = ec.generate_private_key(ec.SECP384R1())
    stranger = Device("4242", key, own_certificate("4242", key))
    _refused(app, _online(client, stranger.request()), 404, "unknown_smid", "sm:4242")
    assert issue_count(app) == 0


def test_a_suspended_sm_is_refused_and_audited(app, client, device):
    with app.app_context():
        registry.change_state(ADMIN, "1001", "suspend", "lost in transit")
    _refused(app, _online(client, device.request()), 422, "sm_suspended")
    assert issue_count(app) == 0


def test_a_request_signed_with_another_sms_key_is_refused_and_audited(app, client, device):
    other = new_device(app, "1002")
    impostor = Device("1001", other.key, other.certificate)
    _refused(app, _online(client, impostor.request()), 422, "signer_mismatch")
    assert issue_count(app) == 0


def test_a_replay_is_refused_with_the_sequence_of_its_eklf(app, client, device):
    der = device.request()
    assert _online(client, der).status_code == 200
    again = _online(client, der)
    _refused(app, again, 409, "replayed_nonce")
    assert again.get_json()["sequence"] == 1
    assert issue_count(app) == 1


def test_a_request_for_unauthorised_keys_is_refused_and_audited(app, client, device):
    add_key(app, 3)
    _refused(app, _online(client, device.request((KeyIdentity(SGC, 3, 1),))), 422,
             "key_not_authorised")  # fmt: skip
    assert issue_count(app) == 0


def test_an_sm_without_online_key_loading_is_refused_after_its_signature_checks(
    app, client, device
):
    with app.app_context():
        registry.set_online_keyload(caller("operator1"), "1001", False, "deliveries by hand")
    _refused(app, _online(client, device.request()), 422, "online_keyload_disabled")
    assert issue_count(app) == 0
    # The operator path still serves it: the switch is about who calls, not about the SM.
    operator = client.post("/api/v1/keyload", data=device.request(), headers=api_headers(app))
    assert operator.status_code == 200


def test_a_flood_from_one_sm_gets_429_and_is_audited_once(app, client, device):
    app.config["KMC_SM_KEYLOAD_LIMIT_PER_SM"] = "3/minute"
    answers = [_online(client, device.request()).status_code for _ in range(6)]
    assert answers == [200, 200, 200, 429, 429, 429]
    assert issue_count(app) == 3
    flood = _online(client, device.request())
    assert flood.get_json()["error"] == "too_many_requests"
    assert "Retry-After" in flood.headers
    entry = last_audit(app)
    assert (entry.action, entry.actor) == ("keyload.refuse", "sm:1001")
    assert json.loads(entry.details)["reason"] == "too_many_requests"
    # Another SM from the same address is not held back by SM 1001's flood.
    other = new_device(app, "1002")
    add_key(app, 4)
    authorise(app, "1002", 4)
    assert _online(client, other.request()).status_code == 200


def test_a_flood_from_one_address_gets_429_whichever_sm_it_names(app, client, device):
    app.config["KMC_SM_KEYLOAD_LIMIT_PER_ADDRESS"] = "2/minute"
    other = new_device(app, "1002")
    authorise(app, "1002", 1)
    assert _online(client, device.request()).status_code == 200
    assert _online(client, other.request()).status_code == 200
    assert _online(client, other.request()).status_code == 429
    assert _online(client, device.request(), **{"X-Forwarded-For": "10.0.0.9"}).status_code == 429
    assert issue_count(app) == 2


def test_the_same_eklf_is_fetched_again_with_the_signed_request(app, client, device):
    der = device.request()
    first = _online(client, der)
    again = _fetch(client, 1, der)
    assert again.status_code == 200, again.get_json()
    assert again.data == first.data and again.headers["X-KMC-Sequence"] == "1"
    assert issue_count(app) == 1
    entry = last_audit(app)
    assert (entry.action, entry.actor) == ("keyload.fetch", "sm:1001")
    assert json.loads(entry.details)["sequence"] == 1


def test_a_fetch_is_refused_for_another_request_another_sm_or_no_request(app, client, device):
    assert _online(client, device.request()).status_code == 200
    _refused(app, _fetch(client, 1, device.request()), 404, "unknown_issue")
    other = new_device(app, "1002")
    _refused(app, _fetch(client, 1, other.request()), 404, "unknown_issue", "sm:1002")
    impostor = Device("1001", other.key, other.certificate)
    _refused(app, _fetch(client, 1, impostor.request()), 422, "signer_mismatch")
    missing = _fetch(client, 1, None)
    assert (missing.status_code, missing.get_json()["error"]) == (401, "vkloadreq_required")
    with app.app_context():
        registry.change_state(ADMIN, "1001", "suspend", "stolen")
    _refused(app, _fetch(client, 1, device.request()), 422, "sm_suspended")
    assert issue_count(app) == 1


def _json_headers(app: Flask, username: str = "operator1") -> dict[str, str]:
    return {**api_headers(app, username), "Content-Type": "application/json"}


def test_online_key_loading_is_switched_by_operators_through_the_api(app, client, device):
    path = "/api/v1/sms/1001/online-keyload"
    off = client.post(
        path, json={"enabled": False, "reason": "by hand"}, headers=_json_headers(app)
    )
    assert off.status_code == 200, off.get_json()
    assert off.get_json()["online_keyload"] is False
    assert not _online_keyload(app, "1001")
    entry = last_audit(app)
    assert (entry.action, entry.actor) == ("sm.online_keyload", "operator1")
    assert json.loads(entry.details) == {"from": True, "to": False, "reason": "by hand"}
    shown = client.get("/api/v1/sms/1001", headers=api_headers(app)).get_json()
    assert shown["online_keyload"] is False
    maker = client.post(
        path, json={"enabled": True, "reason": "mine"}, headers=_json_headers(app, "maker1")
    )
    assert (maker.status_code, maker.get_json()["error"]) == (403, "forbidden")
    no_reason = client.post(path, json={"enabled": 1, "reason": "x"}, headers=_json_headers(app))
    assert no_reason.status_code == 400
    assert not _online_keyload(app, "1001")


def test_a_revoked_sm_is_never_enabled_and_auditors_may_not_switch(app, device):
    with app.app_context():
        with pytest.raises(Forbidden):
            registry.set_online_keyload(caller("auditor1"), "1001", False, "no")
        registry.change_state(ADMIN, "1001", "revoke", "destroyed")
        registry.set_online_keyload(caller("operator1"), "1001", False, "revoked")
        with pytest.raises(Conflict, match="revoked"):
            registry.set_online_keyload(caller("operator1"), "1001", True, "again")
    assert not _online_keyload(app, "1001")


def test_online_key_loading_is_switched_on_the_sm_page_with_csrf(app, client, device):
    login(client, "operator1")
    page = client.get("/registry/sms/1001").get_data(as_text=True)
    assert 'id="online-keyload"' in page and "enabled" in page
    ids = [i for i in re.findall(r' id="([^"]+)"', page) if i != "csrf_token"]
    assert sorted({i for i in ids if ids.count(i) > 1}) == []
    path = "/registry/sms/1001/online-keyload"
    assert client.post(path, data={"enabled": "off", "reason": "x"}).status_code == 400
    assert _online_keyload(app, "1001")
    token = csrf_token(client, "/registry/sms/1001")
    done = client.post(
        path, data={"csrf_token": token, "enabled": "off", "reason": "by hand"},
        follow_redirects=True,
    )  # fmt: skip
    assert "Online key loading for SM 1001 is now off" in done.get_data(as_text=True)
    assert not _online_keyload(app, "1001")


def test_online_key_loading_is_switched_from_the_cli(app, kmc, device):
    off = kmc("sm", "online-keyload", "1001", "--disable", "--reason", "by hand", "--json")
    assert off.exit_code == 0, off.output
    assert json.loads(off.output) == {"smid": "1001", "online_keyload": False}
    assert not _online_keyload(app, "1001")
    on = kmc("sm", "online-keyload", "1001", "--enable", "--reason", "back online")
    assert on.exit_code == 0, on.output
    assert on.output.strip() == "online key loading for SM 1001 is now on"
    refused = kmc("sm", "online-keyload", "9999", "--enable", "--reason", "who")
    assert refused.exit_code == 1 and "unknown_sm" in refused.output


@pytest.mark.parametrize("kmc_mode", ["live"])
def test_a_live_kmc_registers_sms_with_online_key_loading_off(app, kmc_mode):
    new_device(app, "3001", kind="certified")
    assert not _online_keyload(app, "3001")
