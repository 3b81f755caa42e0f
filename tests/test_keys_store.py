"""The key store through the `kmc` CLI and the API: supply groups, generation, sealing,
authorisations, two-person approvals in live mode, lifecycle and expiry warnings."""

from __future__ import annotations

import datetime as dt
import json

import pytest
from sqlalchemy import select

from factories.callers import caller
from factories.keys import SGC, api_headers
from factories.registry import new_device
from key_load_protocol import key_check_value
from kmc.audit.models import AuditEntry
from kmc.database import db
from kmc.keystore import KeyStoreError
from vending_keys import service as keys
from vending_keys.domain import key_identity, sealing_identity
from vending_keys.models import Approval, VendingKey

GENERATE = ("key", "generate", "--sgc", SGC, "--krn", "1", "--kt", "1", "--dkga", "04")
GENERATE_ARGS = (*GENERATE, "--ea", "07", "--ea", "11", "--base-date", "2014", "--ken", "255")


def _ok(result):
    assert result.exit_code == 0, result.output
    return result


def _refused(result, text):
    assert result.exit_code == 1, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and text in lines[0], result.output
    return lines[0]


@pytest.fixture(params=["software", "pkcs11"])
def keystore(request):
    """Generation, sealing and refusals over both key stores."""
    return request.param


@pytest.fixture
def group(kmc):
    _ok(kmc("sgc", "add", "--sgc", SGC, "--name", "North", "--utility", "City Power"))


def test_supply_group_is_added_once(kmc):
    out = _ok(kmc("sgc", "add", "--sgc", SGC, "--name", "North", "--json"))
    assert json.loads(out.output)["sgc"] == SGC
    _refused(kmc("sgc", "add", "--sgc", SGC, "--name", "Again"), "already exists")
    _refused(kmc("sgc", "add", "--sgc", "12345", "--name", "Short"), "6 decimal digits")


def test_generate_prints_the_kcv_and_stores_the_key_sealed(app, kmc, group):
    result = _ok(kmc(*GENERATE_ARGS, "--json"))
    shown = json.loads(result.output)["key"]
    with app.app_context():
        stored = db.session.scalars(select(VendingKey)).one()
        material = keys.open_key(stored)
        assert len(material) == 20
        assert material.hex() not in result.output.lower()
        assert material not in stored.key_sealed
        assert shown["kcv"] == key_check_value("04", material).hex().upper() == stored.kcv
        audit = db.session.scalars(select(AuditEntry).where(AuditEntry.action == "key.generate"))
        assert material.hex() not in audit.one().details


def test_a_sealed_key_cannot_be_moved_to_another_keys_row(app, kmc, group):
    _ok(kmc(*GENERATE_ARGS))
    with app.app_context():
        stored = db.session.scalars(select(VendingKey)).one()
        store = app.extensions["kmc.keystore"]
        with pytest.raises(KeyStoreError):
            store.open(stored.key_sealed, sealing_identity(key_identity(SGC, 2, 1)))


def test_two_generated_keys_differ(app, kmc, group):
    _ok(kmc(*GENERATE_ARGS))
    _ok(kmc("key", "generate", "--sgc", SGC, "--krn", "2", "--kt", "1", "--dkga", "02",
            "--ea", "07", "--base-date", "2014", "--ken", "1"))  # fmt: skip
    with app.app_context():
        first, second = db.session.scalars(select(VendingKey).order_by(VendingKey.krn)).all()
        assert len(keys.open_key(second)) == 8
        assert keys.open_key(first)[:8] != keys.open_key(second)


@pytest.mark.parametrize(
    "change,message",
    [
        (("--dkga", "02", "--ea", "11"), "EA 11 needs DKGA 04"),
        (("--kt", "0"), "KT 0 is not vended"),
        (("--krn", "10"), "krn"),
        (("--ken", "256"), "KEN"),
        (("--exp", "2000-01-01"), "EXP must be after ACT"),
        (("--sgc", "999999"), "no supply group 999999"),
    ],
)
def test_bad_key_parameters_are_refused(kmc, group, change, message):
    args = list(GENERATE_ARGS)
    for name, value in zip(change[::2], change[1::2], strict=True):
        if name == "--ea":
            args = [a for i, a in enumerate(args) if not (a == "--ea" or args[i - 1] == "--ea")]
            args += ["--ea", value]
        elif name in args:
            args[args.index(name) + 1] = value
        else:
            args += [name, value]
    _refused(kmc(*args), message)


def test_duplicate_key_identity_is_refused(kmc, group):
    _ok(kmc(*GENERATE_ARGS))
    _refused(kmc(*GENERATE_ARGS), "already exists")


def test_authorisation_needs_an_active_sm(app, kmc, group):
    _ok(kmc(*GENERATE_ARGS))
    new_device(app, "3003", approve=False)
    key = ("key", "authorize", "--sgc", SGC, "--krn", "1", "--kt", "1")
    _refused(kmc(*key, "--smid", "3003"), "pending, not active")
    _refused(kmc(*key, "--smid", "4444"), "no security module 4444")
    new_device(app, "3004")
    result = _ok(
        kmc(*key, "--smid", "3004", "--clm", "250.50", "--resource-limit", "100", "--json")
    )
    auth = json.loads(result.output)["authorisation"]
    assert (auth["smid"], auth["clm"], auth["resource_limit"]) == ("3004", "250.50", 100)
    _refused(kmc(*key, "--smid", "3004"), "already authorised")
    _refused(kmc(*key, "--smid", "3004", "--iut", "1990-01-01"), "IUT")


def test_compromise_lists_every_sm_the_key_went_to(app, kmc, group, tmp_path):
    from factories.keys import authorise
    from key_load import service as key_load

    _ok(kmc(*GENERATE_ARGS))
    devices = [new_device(app, smid) for smid in ("5005", "5006", "5007")]
    for device in devices:
        authorise(app, device.smid, 1)
    with app.app_context():
        for device in devices[:2]:
            key_load.process_request(caller("operator1"), device.request())
    result = _ok(kmc("key", "compromise", "--sgc", SGC, "--krn", "1", "--kt", "1",
                     "--reason", "leak", "--json"))  # fmt: skip
    data = json.loads(result.output)
    assert (data["state"], data["issued_to"]) == ("compromised", ["5005", "5006"])
    _refused(
        kmc("key", "deactivate", "--sgc", SGC, "--krn", "1", "--kt", "1", "--reason", "x"),
        "already compromised",
    )


def test_deactivate_needs_a_reason_and_is_audited(app, kmc, group):
    _ok(kmc(*GENERATE_ARGS))
    key = ("key", "deactivate", "--sgc", SGC, "--krn", "1", "--kt", "1")
    _refused(kmc(*key, "--reason", " "), "say why")
    _ok(kmc(*key, "--reason", "rolled over"))
    with app.app_context():
        entry = db.session.scalars(select(AuditEntry).order_by(AuditEntry.seq.desc())).first()
        assert entry.action == "key.deactivate" and "rolled over" in entry.details


def test_expiring_lists_keys_and_authorisations_near_their_limits(app, kmc, group):
    soon = (dt.datetime.now(dt.UTC) + dt.timedelta(days=20)).isoformat()
    _ok(kmc(*GENERATE_ARGS, "--exp", soon, "--refresh-days", "400"))
    new_device(app, "6006")
    iut = (dt.datetime.now(dt.UTC) + dt.timedelta(days=10)).isoformat()
    _ok(kmc("key", "authorize", "--sgc", SGC, "--krn", "1", "--kt", "1", "--smid", "6006",
            "--iut", iut))  # fmt: skip
    rows = json.loads(_ok(kmc("keys", "expiring", "--within", "30", "--json")).output)
    assert [(r["what"], r["smid"]) for r in rows] == [("iut", "6006"), ("exp", None)]
    assert json.loads(_ok(kmc("keys", "expiring", "--within", "5", "--json")).output) == []
    assert "nothing expires" in _ok(kmc("keys", "expiring", "--within", "5")).output
    later = json.loads(_ok(kmc("keys", "expiring", "--within", "500", "--json")).output)
    assert {r["what"] for r in later} == {"iut", "exp", "refresh"}


def test_api_generates_and_lists_keys_with_kcv_only(app, client, kmc, group):
    headers = {"Authorization": api_headers(app)["Authorization"]}
    body = {"sgc": SGC, "krn": 3, "kt": 2, "dkga": "04", "eas": ["11"], "base_date": 2035, "ken": 7}
    created = client.post("/api/v1/keys", json=body, headers=headers)
    assert created.status_code == 201, created.get_json()
    listed = client.get("/api/v1/keys", headers=headers).get_json()["keys"]
    assert [(k["krn"], k["kt"], k["key_type"]) for k in listed] == [(3, 2, "VUDK")]
    assert set(listed[0]) >= {"kcv", "state"} and "key" not in listed[0]
    bad = client.post("/api/v1/keys", json={**body, "krn": "3"}, headers=headers)
    assert (bad.status_code, bad.get_json()["error"]) == (400, "invalid_field")


class TestLiveMode:
    @pytest.fixture
    def kmc_mode(self):
        return "live"

    def test_key_generation_needs_a_second_person(self, app, kmc):
        _ok(kmc("sgc", "add", "--sgc", SGC, "--name", "North", "--as", "operator1"))
        _refused(kmc(*GENERATE_ARGS), "--as USERNAME")
        proposed = json.loads(_ok(kmc(*GENERATE_ARGS, "--as", "operator1", "--json")).output)
        approval_id = proposed["approval"]["id"]
        assert proposed["key"] is None
        with app.app_context():
            assert db.session.scalars(select(VendingKey)).all() == []
        listed = json.loads(_ok(kmc("approvals", "list", "--json")).output)
        assert [a["id"] for a in listed] == [approval_id]
        _refused(
            kmc("approvals", "approve", str(approval_id), "--as", "operator1"), "different user"
        )
        _refused(kmc("approvals", "approve", str(approval_id), "--as", "auditor1"), "may not")
        done = json.loads(
            _ok(kmc("approvals", "approve", str(approval_id), "--as", "operator2", "--json")).output
        )
        assert (done["key"]["proposed_by"], done["key"]["approved_by"]) == (
            "operator1",
            "operator2",
        )
        _refused(kmc("approvals", "approve", str(approval_id), "--as", "admin1"), "already")
        with app.app_context():
            actions = db.session.scalars(select(AuditEntry.action).order_by(AuditEntry.seq)).all()
            assert actions[-3:] == ["key.generate.propose", "key.generate.approve", "key.generate"]

    def test_authorisation_needs_a_second_person_and_a_certified_sm(self, app, kmc):
        _ok(kmc("sgc", "add", "--sgc", SGC, "--name", "North", "--as", "operator1"))
        proposal = json.loads(_ok(kmc(*GENERATE_ARGS, "--as", "operator1", "--json")).output)
        _ok(kmc("approvals", "approve", str(proposal["approval"]["id"]), "--as", "admin1"))
        new_device(app, "7007", kind="certified")
        key = ("key", "authorize", "--sgc", SGC, "--krn", "1", "--kt", "1", "--smid", "7007")
        proposed = json.loads(_ok(kmc(*key, "--as", "operator2", "--json")).output)
        with app.app_context():
            assert keys.authorisations_for("7007") == []
        _ok(kmc("approvals", "approve", str(proposed["approval"]["id"]), "--as", "operator1"))
        with app.app_context():
            (auth,) = keys.authorisations_for("7007")
            assert (auth.proposed_by, auth.approved_by) == ("operator2", "operator1")

    def test_rejected_proposal_creates_nothing(self, app, kmc):
        _ok(kmc("sgc", "add", "--sgc", SGC, "--name", "North", "--as", "operator1"))
        proposal = json.loads(_ok(kmc(*GENERATE_ARGS, "--as", "operator1", "--json")).output)
        approval_id = str(proposal["approval"]["id"])
        _ok(kmc("approvals", "reject", approval_id, "--reason", "wrong KRN", "--as", "admin1"))
        with app.app_context():
            assert db.session.scalars(select(VendingKey)).all() == []
            assert db.session.get(Approval, int(approval_id)).state == "rejected"
