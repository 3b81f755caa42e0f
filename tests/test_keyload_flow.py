"""Processing a VKLOADREQ into an EKLF: the end-to-end path, every refusal, replays and races.

The SMs here come from `factories.registry` (their own P-384 key and CSR), registered and
approved through the SM registry; their requests are built with `key_load_protocol`, and the
EKLFs the KMC issues are checked with OpenSSL and opened with the SM's key.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import subprocess
import threading
from decimal import Decimal
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from flask import Flask
from sqlalchemy import func, select, text, update

from factories.callers import caller
from factories.forgery import bered, forged_eklf
from factories.keys import SGC, add_key, api_headers, authorise
from factories.pki import Party
from factories.registry import ADMIN, Device, new_device, own_certificate
from key_load.models import KeyLoadIssue
from key_load_protocol import (
    KeyIdentity,
    KeyLoadFile,
    UntrustedSigner,
    build_eklf,
    key_check_value,
    open_eklf,
    parse_request,
)
from key_load_protocol.codec import decode_key_load_file
from kmc.audit.models import AuditEntry
from kmc.clock import FixedClock
from kmc.database import db
from sm_registry import service as registry
from tests.conftest import split_and_unseal
from vending_keys import service as keys
from vending_keys.domain import key_identity
from vending_keys.models import VendingKey


def issue_count(app: Flask) -> int:
    with app.app_context():
        return db.session.scalar(select(func.count()).select_from(KeyLoadIssue)) or 0


def last_audit(app: Flask) -> AuditEntry:
    with app.app_context():
        return db.session.scalars(select(AuditEntry).order_by(AuditEntry.seq.desc())).first()


@pytest.fixture(params=["software", "pkcs11"])
def keystore(request: pytest.FixtureRequest) -> str:
    """Every key-load test over both key stores: with pkcs11 the token signs and does the ECDH."""
    return str(request.param)


@pytest.fixture
def device(app: Flask) -> Device:
    """SM 1001, active, authorised for keys KRN 1..5 (KT 1) of the test supply group."""
    sm = new_device(app, "1001")
    for krn in range(1, 6):
        add_key(app, krn, dkga="04" if krn % 2 else "02")
        authorise(app, sm.smid, krn)
    return sm


def test_end_to_end_eklf_verifies_with_openssl_and_decrypts_with_the_sm_key(
    app, client, device, instance, tmp_path
):
    wanted = (KeyIdentity(SGC, 1, 1), KeyIdentity(SGC, 2, 1))
    response = client.post("/api/v1/keyload", data=device.request(wanted), headers=api_headers(app))
    assert response.status_code == 200, response.get_json()
    assert response.mimetype == "application/cms"
    assert response.headers["X-KMC-Sequence"] == "1"
    eklf, inner, plain = tmp_path / "eklf.der", tmp_path / "inner.der", tmp_path / "klf.der"
    eklf.write_bytes(response.data)
    sm_key = tmp_path / "sm.key"
    sm_key.write_bytes(
        device.key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    root, signer = instance.folder / "pki" / "root.pem", instance.folder / "pki" / "keyload.pem"
    # -purpose any: OpenSSL does not know the signer's EKU; the signer is pinned instead.
    verify = subprocess.run(
        ["/usr/bin/openssl", "cms", "-verify", "-purpose", "any", "-nointern", "-certfile", signer,
         "-inform", "DER", "-in", eklf, "-CAfile", root, "-out", inner],
        capture_output=True,
    )  # fmt: skip
    assert verify.returncode == 0, verify.stderr
    decrypt = subprocess.run(
        ["/usr/bin/openssl", "cms", "-decrypt", "-inform", "DER", "-in", inner, "-inkey", sm_key,
         "-out", plain],
        capture_output=True,
    )  # fmt: skip
    assert decrypt.returncode == 0, decrypt.stderr
    klf = decode_key_load_file(plain.read_bytes())
    assert klf.smid == device.smid and klf.sequence == 1
    assert [k.identity for k in klf.keys] == list(wanted)
    with app.app_context():
        for loaded in klf.keys:
            stored = keys.find_key(loaded.identity)
            assert key_check_value(loaded.dkga, loaded.key_value).hex().upper() == stored.kcv
            assert loaded.key_value == keys.open_key(stored)
            assert loaded.iut == stored.exp.replace(microsecond=0)


def test_an_eklf_forged_with_another_registered_sms_key_is_refused(app, client, device):
    # SM 1002's certificate comes from the same KMC (issuing CA under the root, digitalSignature);
    # SM 1001's nonce is readable in its VKLOADREQ. Only the key-load signer's EKU tells them apart.
    forger = new_device(app, "1002")
    request = device.request((KeyIdentity(SGC, 1, 1),))
    with app.app_context():
        from kmc import pki

        issuing = pki.current().issuing.certificate
    klf = KeyLoadFile(
        smid=device.smid,
        nonce=parse_request(request).request.nonce,
        issue_time=dt.datetime.now(dt.UTC).replace(microsecond=0),
        sequence=2**63 - 1,
        kmc_id="forged",
        keys=(),
    )
    forged = forged_eklf(
        klf,
        sm_certificate=device.certificate,
        signer=Party(forger.key, forger.certificate),
        extra_certificates=(issuing,),
    )
    with pytest.raises(UntrustedSigner, match="not a KMC key-load signer"):
        open_eklf(forged, trusted_root=_root(app), sm_private_key=device.key)
    genuine = client.post("/api/v1/keyload", data=request, headers=api_headers(app))
    assert genuine.status_code == 200, genuine.get_json()
    assert open_eklf(genuine.data, trusted_root=_root(app), sm_private_key=device.key).sequence == 1


def test_issue_is_recorded_with_hashes_and_audited_in_the_same_transaction(app, client, device):
    der = device.request((KeyIdentity(SGC, 3, 1),))
    headers = api_headers(app)
    response = client.post("/api/v1/keyload", data=der, headers=headers)
    assert response.status_code == 200
    entry = last_audit(app)
    listed = client.get("/api/v1/keyload/issues", headers=headers).get_json()["issues"]
    assert len(listed) == 1
    record = listed[0]
    assert record["request_sha256"] == hashlib.sha256(der).hexdigest()
    assert record["file_sha256"] == hashlib.sha256(response.data).hexdigest()
    assert [(k["sgc"], k["krn"], k["kt"]) for k in record["keys"]] == [(SGC, 3, 1)]
    assert (entry.action, entry.actor, entry.object_id) == ("keyload.issue", "operator1", "1001")
    details = json.loads(entry.details)
    assert details["file_sha256"] == record["file_sha256"]
    assert details["sequence"] == 1


def test_all_keys_request_gets_every_valid_authorisation_and_sequences_increase(
    app, client, device
):
    add_key(app, 6)
    authorise(app, device.smid, 6)
    with app.app_context():
        keys.change_key_state(caller("operator1"), key_identity(SGC, 6, 1), "deactivate", "retired")
    headers = api_headers(app)
    first = client.post("/api/v1/keyload", data=device.request(), headers=headers)
    second = client.post("/api/v1/keyload", data=device.request(), headers=headers)
    assert first.status_code == second.status_code == 200
    assert (first.headers["X-KMC-Sequence"], second.headers["X-KMC-Sequence"]) == ("1", "2")
    klf = open_eklf(first.data, trusted_root=_root(app), sm_private_key=device.key)
    assert sorted(k.identity.krn for k in klf.keys) == [1, 2, 3, 4, 5]


def test_authorisation_limits_travel_in_the_eklf(app, client, device):
    iut = dt.datetime.now(dt.UTC).replace(microsecond=0) + dt.timedelta(days=100)
    add_key(app, 7)
    authorise(app, device.smid, 7, iut=iut, clm=Decimal("1500.25"), resource_limit=900)
    response = client.post(
        "/api/v1/keyload", data=device.request((KeyIdentity(SGC, 7, 1),)), headers=api_headers(app)
    )
    (loaded,) = open_eklf(response.data, trusted_root=_root(app), sm_private_key=device.key).keys
    assert (loaded.iut, loaded.clm, loaded.resource_limit) == (iut, Decimal("1500.25"), 900)
    assert loaded.refresh_days == 90


def _root(app: Flask) -> x509.Certificate:
    with app.app_context():
        from kmc import pki

        return pki.current().root.certificate


def _refused(app, client, der, status, reason):
    before = issue_count(app)
    response = client.post("/api/v1/keyload", data=der, headers=api_headers(app))
    assert (response.status_code, response.get_json()["error"]) == (status, reason), (
        response.get_json()
    )
    assert issue_count(app) == before, "a refused request issued something"
    entry = last_audit(app)
    assert entry.action == "keyload.refuse"
    assert json.loads(entry.details)["reason"] == reason
    return response.get_json()


def test_garbage_is_refused(app, client, device):
    _refused(app, client, b"\x30\x03\x02\x01", 400, "not_der")
    _refused(app, client, b"this is not DER at all", 400, "not_der")


def test_truncated_request_is_refused(app, client, device):
    der = device.request()
    _refused(app, client, der[: len(der) // 2], 400, "not_der")


def test_oversized_request_is_refused_unread(app, client, device):
    _refused(app, client, b"\x30" + b"\x00" * (64 * 1024 + 10), 400, "too_large")


def test_wrong_cms_content_type_is_refused(app, client, device):
    response = client.post("/api/v1/keyload", data=device.request(), headers=api_headers(app))
    # An EKLF is a CMS SignedData too, but of the key-load-file content type.
    _refused(app, client, response.data, 400, "wrong_econtent_type")


def test_request_signed_by_another_key_is_refused(app, client, device):
    other = ec.generate_private_key(ec.SECP384R1())
    forged = Device(device.smid, other, own_certificate(device.smid, other))
    _refused(app, client, forged.request(), 422, "signer_mismatch")


def test_request_signed_by_another_key_under_the_real_key_identifier_is_refused(
    app, client, device
):
    other = ec.generate_private_key(ec.SECP384R1())
    genuine_id = device.certificate.extensions.get_extension_for_class(x509.SubjectKeyIdentifier)
    # The request names the genuine SM key identifier, but another key signs it.
    forged = Device(device.smid, other, own_certificate(device.smid, other, genuine_id.value))
    _refused(app, client, forged.request(), 422, "bad_signature")


def test_unknown_smid_is_refused(app, client, device):
    key = ec.generate_private_key(ec.SECP384R1())
    stranger = Device("999999", key, own_certificate("999999", key))
    _refused(app, client, stranger.request(), 404, "unknown_smid")


def test_pending_sm_is_refused(app, client, device):
    pending = new_device(app, "2002", approve=False)
    _refused(app, client, pending.request(), 422, "sm_pending")


@pytest.mark.parametrize("action,state", [("suspend", "suspended"), ("revoke", "revoked")])
def test_suspended_or_revoked_sm_is_refused(app, client, device, action, state):
    with app.app_context():
        registry.change_state(ADMIN, device.smid, action, "test")
    _refused(app, client, device.request(), 422, f"sm_{state}")


def test_virtual_sm_is_refused_by_a_live_kmc(app, client, device):
    app.config["KMC_MODE"] = "live"  # a database carried over from a test KMC
    split_and_unseal(app)
    headers = api_headers(app)
    response = client.post("/api/v1/keyload", data=device.request(), headers=headers)
    assert (response.status_code, response.get_json()["error"]) == (422, "sm_virtual")
    assert issue_count(app) == 0


def test_replayed_request_is_refused_and_audited(app, client, device):
    der = device.request()
    assert client.post("/api/v1/keyload", data=der, headers=api_headers(app)).status_code == 200
    _refused(app, client, der, 409, "replayed_nonce")
    assert issue_count(app) == 1


def test_stale_request_is_refused(app, client, device):
    old = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=11)
    _refused(app, client, device.request(at=old), 422, "stale_request")


def test_request_from_the_future_is_refused(app, client, device):
    ahead = dt.datetime.now(dt.UTC) + dt.timedelta(minutes=11)
    _refused(app, client, device.request(at=ahead), 422, "future_request")


def test_request_within_the_time_window_is_accepted(app, client, device):
    now = dt.datetime.now(dt.UTC)
    app.extensions["kmc.clock"] = FixedClock(now + dt.timedelta(minutes=9, seconds=50))
    response = client.post("/api/v1/keyload", data=device.request(at=now), headers=api_headers(app))
    assert response.status_code == 200


def test_key_not_authorised_for_this_sm_is_refused(app, client, device):
    add_key(app, 8)
    _refused(app, client, device.request((KeyIdentity(SGC, 8, 1),)), 422, "key_not_authorised")


def test_unknown_key_is_refused(app, client, device):
    _refused(app, client, device.request((KeyIdentity(SGC, 9, 3),)), 404, "unknown_key")
    _refused(app, client, device.request((KeyIdentity("111111", 1, 1),)), 404, "unknown_key")


def test_compromised_key_is_never_issued_again(app, client, device):
    headers = api_headers(app)
    assert client.post("/api/v1/keyload", data=device.request(), headers=headers).status_code == 200
    marked = client.post(
        f"/api/v1/keys/{SGC}/1/1/compromise",
        json={"reason": "leaked"},
        headers={"Authorization": headers["Authorization"]},
    ).get_json()
    assert marked["state"] == "compromised" and marked["issued_to"] == [device.smid]
    _refused(app, client, device.request((KeyIdentity(SGC, 1, 1),)), 422, "key_compromised")
    again = client.post("/api/v1/keyload", data=device.request(), headers=headers)
    klf = open_eklf(again.data, trusted_root=_root(app), sm_private_key=device.key)
    assert 1 not in {k.identity.krn for k in klf.keys}


def test_expired_key_is_refused(app, client, device):
    now = dt.datetime.now(dt.UTC)
    add_key(app, 9, act=now - dt.timedelta(days=10), exp=now + dt.timedelta(days=2))
    authorise(app, device.smid, 9, iut=now + dt.timedelta(days=1))
    later = now + dt.timedelta(days=3)
    app.extensions["kmc.clock"] = FixedClock(later)
    der = device.request((KeyIdentity(SGC, 9, 1),), at=later)
    _refused(app, client, der, 422, "key_expired")


def test_key_past_the_sm_iut_is_refused(app, client, device):
    now = dt.datetime.now(dt.UTC)
    add_key(app, 9)
    authorise(app, device.smid, 9, iut=now + dt.timedelta(days=1))
    later = now + dt.timedelta(days=2)
    app.extensions["kmc.clock"] = FixedClock(later)
    der = device.request((KeyIdentity(SGC, 9, 1),), at=later)
    _refused(app, client, der, 422, "authorisation_expired")


def test_key_not_yet_active_is_refused(app, client, device):
    now = dt.datetime.now(dt.UTC)
    add_key(app, 9, act=now + dt.timedelta(days=1), exp=now + dt.timedelta(days=30))
    authorise(app, device.smid, 9)
    _refused(app, client, device.request((KeyIdentity(SGC, 9, 1),)), 422, "key_not_yet_active")


def test_cli_processes_a_request_file_and_refuses_a_replay(app, kmc, device, tmp_path):
    request, out = tmp_path / "req.der", tmp_path / "eklf.der"
    request.write_bytes(device.request((KeyIdentity(SGC, 1, 1),)))
    result = kmc("keyload", "process", "--request", str(request), "--out", str(out), "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["sequence"] == 1
    klf = open_eklf(out.read_bytes(), trusted_root=_root(app), sm_private_key=device.key)
    assert [k.identity for k in klf.keys] == [KeyIdentity(SGC, 1, 1)]
    out.unlink()
    replay = kmc("keyload", "process", "--request", str(request), "--out", str(out))
    assert replay.exit_code == 1
    assert replay.output.strip().splitlines() == [
        "kmc: replayed_nonce: this request was answered before (EKLF sequence 1); replays are refused"
    ]
    assert not out.exists()


def test_cli_refusal_is_one_line_and_writes_nothing(app, kmc, device, tmp_path):
    request, out = tmp_path / "req.der", tmp_path / "eklf.der"
    request.write_bytes(b"\x04\x02garbage")
    result = kmc("keyload", "process", "--request", str(request), "--out", str(out))
    assert result.exit_code == 1
    assert len(result.output.strip().splitlines()) == 1
    assert "not DER" in result.output
    assert not out.exists()


def _outcome(app: Flask, der: bytes) -> str:
    """Process a request in its own app context (a thread's): "issued" or the refusal reason."""
    from key_load import service

    with app.app_context():
        try:
            service.process_request(caller("operator1"), der)
            return "issued"
        except Exception as error:  # noqa: BLE001 - the refusal is what is checked
            return str(getattr(error, "reason", type(error).__name__))
        finally:
            db.session.remove()


def test_same_request_processed_concurrently_issues_exactly_one_eklf(app, device):
    der = device.request()
    outcomes: list[str] = []
    barrier = threading.Barrier(4)

    def worker() -> None:
        barrier.wait()
        outcomes.append(_outcome(app, der))

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert sorted(outcomes) == ["issued", "replayed_nonce", "replayed_nonce", "replayed_nonce"]
    assert issue_count(app) == 1


def test_different_requests_of_one_sm_racing_get_distinct_sequences(app, device):
    requests = [device.request() for _ in range(4)]
    sequences: list[int] = []
    barrier = threading.Barrier(len(requests))

    def worker(der: bytes) -> None:
        from key_load import service

        with app.app_context():
            barrier.wait()
            try:
                sequences.append(service.process_request(caller("operator1"), der).sequence)
            finally:
                db.session.remove()

    threads = [threading.Thread(target=worker, args=(der,)) for der in requests]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert sorted(sequences) == [1, 2, 3, 4]


def test_keys_stay_sealed_in_the_database(app, device):
    with app.app_context():
        stored = db.session.scalars(select(VendingKey)).first()
        plain = keys.open_key(stored)
        assert plain not in stored.key_sealed
        assert stored.kcv == key_check_value(stored.dkga, plain).hex().upper()


def _wait_until_blocked(app: Flask, thread: threading.Thread) -> None:
    """Return once `thread` waits for a lock held elsewhere; fail if it finishes instead.

    PostgreSQL shows the wait in pg_stat_activity. SQLite serialises writers at BEGIN IMMEDIATE
    and shows nothing, so there the thread only has to be still waiting after a while.
    """
    if db.engine.dialect.name != "postgresql":
        thread.join(timeout=1)
        assert thread.is_alive(), "the second transaction did not wait for the first"
        return
    waiting = text(
        "SELECT count(*) FROM pg_stat_activity"
        " WHERE datname = current_database() AND wait_event_type = 'Lock'"
    )
    with db.engine.connect() as connection:
        while thread.is_alive():
            if connection.execute(waiting).scalar():
                return
            connection.rollback()  # pg_stat_activity is a snapshot held for the transaction
            thread.join(timeout=0.05)
    pytest.fail("the second transaction did not wait for the first")


def _key_row(identity: KeyIdentity) -> Any:
    return (
        select(VendingKey.id)
        .where(VendingKey.sgc == identity.sgc)
        .where(VendingKey.krn == identity.krn)
        .where(VendingKey.kt == identity.kt)
    )


def test_key_load_waits_for_a_compromise_in_progress_and_then_refuses_the_key(app, device):
    identity = KeyIdentity(SGC, 1, 1)
    der = device.request((identity,))
    outcomes: list[str] = []

    def load() -> None:
        outcomes.append(_outcome(app, der))

    with app.app_context(), db.engine.connect() as compromising:
        # What a compromise (`change_key_state`) does, held open: the key row locked and marked, not committed.
        key_id = compromising.execute(_key_row(identity).with_for_update()).scalar_one()
        compromising.execute(
            update(VendingKey).where(VendingKey.id == key_id).values(state="compromised")
        )
        loader = threading.Thread(target=load)
        loader.start()
        _wait_until_blocked(app, loader)
        compromising.commit()
    loader.join(timeout=60)
    assert outcomes == ["key_compromised"]
    assert issue_count(app) == 0


def test_compromise_waits_for_a_key_load_in_progress_and_names_its_sm(app, device, monkeypatch):
    from key_load import service

    identity = KeyIdentity(SGC, 1, 1)
    der = device.request((identity,))
    building, release = threading.Event(), threading.Event()
    outcomes: dict[str, Any] = {}

    def paused_build(*args: Any, **kwargs: Any) -> bytes:
        building.set()
        release.wait(timeout=60)
        return build_eklf(*args, **kwargs)

    monkeypatch.setattr(service, "build_eklf", paused_build)

    def load() -> None:
        with app.app_context():
            try:
                outcomes["load"] = service.process_request(caller("operator1"), der).sequence
            finally:
                db.session.remove()

    def compromise() -> None:
        with app.app_context():
            try:
                changed = keys.change_key_state(
                    caller("operator2"), identity, "compromise", "leaked"
                )
                outcomes["issued_to"] = changed.issued_to
            finally:
                db.session.remove()

    loader, compromiser = threading.Thread(target=load), threading.Thread(target=compromise)
    loader.start()
    assert building.wait(timeout=60)
    compromiser.start()
    try:
        with app.app_context():
            _wait_until_blocked(app, compromiser)
    finally:
        release.set()
    loader.join(timeout=60)
    compromiser.join(timeout=60)
    assert outcomes == {"load": 1, "issued_to": [device.smid]}


@pytest.mark.parametrize("how", ["indefinite", "long"])
def test_ber_wrapper_is_refused_before_the_signature_and_audited(app, client, device, how):
    _refused(app, client, bered(device.request(), 0, how), 400, "not_der")
    _refused(app, client, bered(device.request(), 2, how), 400, "not_der")
