"""Split knowledge: a sealed KMC refuses key operations until M custodians enter their shares."""

from __future__ import annotations

import os

import pytest
from sqlalchemy import select

from kmc import sealing
from kmc.audit.models import AuditEntry
from kmc.database import db
from kmc.errors import Conflict, InvalidInput, Unavailable
from tests.conftest import csrf_token, login

KEY = (
    "--sgc",
    "123457",
    "--krn",
    "1",
    "--kt",
    "1",
    "--dkga",
    "04",
    "--ea",
    "11",
    "--base-date",
    "2014",
    "--ken",
    "255",
)


def _vault(threshold=2, shares=3):
    key = os.urandom(32)
    custody, mnemonics = sealing.split(key, shares, threshold)
    return key, sealing.Vault(custody), mnemonics


def test_threshold_shares_unseal_and_a_sealed_vault_refuses():
    key, vault, shares = _vault()
    with pytest.raises(Unavailable, match="sealed"):
        vault.key()
    assert vault.enter(shares[2]).entered == 1
    assert not vault.enter(shares[0]).sealed
    assert vault.key() == key
    vault.seal()
    with pytest.raises(Unavailable):
        vault.key()


def test_a_duplicate_share_is_refused_without_saying_whose():
    _, vault, shares = _vault()
    vault.enter(shares[1])
    with pytest.raises(Conflict) as refused:
        vault.enter("  " + shares[1].upper() + " ")
    assert refused.value.reason == "duplicate_share" and "2" not in refused.value.message


def test_a_share_of_another_split_or_a_typo_is_refused():
    _, vault, _ = _vault()
    _, _, others = _vault()
    with pytest.raises(InvalidInput, match="not one of this KMC"):
        vault.enter(others[0])
    with pytest.raises(InvalidInput) as typo:
        vault.enter(others[0].rsplit(" ", 1)[0] + " academic")
    assert typo.value.reason == "invalid_share"


def test_a_share_entered_in_a_forked_worker_counts_for_all():
    key, vault, shares = _vault()
    vault.enter(shares[0])
    child = os.fork()
    if child == 0:
        vault.enter(shares[1])
        os._exit(0)
    os.waitpid(child, 0)
    assert vault.key() == key


def test_key_operations_are_refused_with_503_while_sealed_and_work_after_unsealing(
    app, client, kmc
):
    app.config["KMC_MODE"] = "test"
    result = kmc("custodians", "init", "--shares", "3", "--threshold", "2")
    assert result.exit_code == 0, result.output
    shares = [
        line.split(": ", 1)[1] for line in result.output.splitlines() if line.startswith("share ")
    ]
    assert not (app.config["KMC_INSTANCE"] / "master.key").exists()
    kmc("sgc", "add", "--sgc", "123457", "--name", "Sealed")
    refused = kmc("key", "generate", *KEY)
    assert (refused.exit_code, refused.output.split(":")[:2]) == (1, ["kmc", " sealed"])
    login(client, "operator1")
    token = csrf_token(client, "/custodians/")
    page = client.post(
        "/custodians/share", data={"share": shares[0], "csrf_token": token}, follow_redirects=True
    )
    assert "1 of 2" in page.get_data(as_text=True)
    page = client.post(
        "/custodians/share", data={"share": shares[0], "csrf_token": token}, follow_redirects=True
    )
    assert "already been entered" in page.get_data(as_text=True)
    page = client.post(
        "/custodians/share", data={"share": shares[2], "csrf_token": token}, follow_redirects=True
    )
    assert "unsealed" in page.get_data(as_text=True)
    assert kmc("key", "generate", *KEY).exit_code == 0


def test_the_api_answers_503_sealed_then_unseals_with_shares_audited_without_them(app, client, kmc):
    from factories.keys import api_headers

    result = kmc("custodians", "init", "--shares", "3", "--threshold", "2")
    shares = [
        line.split(": ", 1)[1] for line in result.output.splitlines() if line.startswith("share ")
    ]
    kmc("sgc", "add", "--sgc", "123457", "--name", "Sealed")
    headers = {"Authorization": api_headers(app)["Authorization"]}
    body = {
        "sgc": "123457",
        "krn": 3,
        "kt": 2,
        "dkga": "04",
        "eas": ["11"],
        "base_date": 2035,
        "ken": 7,
    }
    sealed = client.post("/api/v1/keys", json=body, headers=headers)
    assert (sealed.status_code, sealed.get_json()["error"]) == (503, "sealed")
    for share in shares[1:]:
        answer = client.post("/api/v1/custodians/shares", json={"share": share}, headers=headers)
        assert answer.status_code == 200
    assert answer.get_json()["sealed"] is False
    assert client.post("/api/v1/keys", json=body, headers=headers).status_code == 201
    assert client.post("/api/v1/custodians/seal", headers=headers).get_json()["sealed"] is True
    assert client.post("/api/v1/keys", json=body | {"krn": 4}, headers=headers).status_code == 503
    with app.app_context():
        from kmc.audit.models import AuditEntry
        from kmc.database import db

        entries = db.session.query(AuditEntry.action, AuditEntry.details).all()
    actions = [a for a, _ in entries if a.startswith("custodians")]
    assert actions == [
        "custodians.split",
        "custodians.share",
        "custodians.unseal",
        "custodians.seal",
    ]
    # No run of three consecutive words of any share in any entry (one word alone may be a
    # word of the details by chance: "true" and "ending" are SLIP-39 words).
    runs = {" ".join(w[i : i + 3]) for w in (s.split() for s in shares) for i in range(len(w) - 2)}
    assert not any(run in details for _, details in entries for run in runs)


def _split(kmc) -> list[str]:
    result = kmc("custodians", "init", "--shares", "3", "--threshold", "2")
    assert result.exit_code == 0, result.output
    return [
        line.split(": ", 1)[1] for line in result.output.splitlines() if line.startswith("share ")
    ]


def test_kmc_init_unseals_its_own_process_with_shares_from_stdin(app, kmc, instance):
    from tests.conftest import run_kmc

    shares = _split(kmc)
    sealed = run_kmc(instance, "init")
    assert (sealed.returncode, sealed.stderr.split(":")[:2]) == (1, ["kmc", " sealed"])
    short = run_kmc(instance, "init", "--unseal", input=shares[0] + "\n")
    assert short.returncode == 1
    assert short.stderr == (
        "kmc: shares_missing: the input ended with 1 of the 2 shares that unseal the KMC\n"
    )
    upgraded = run_kmc(instance, "init", "--unseal", input=f"{shares[0]}\n{shares[2]}\n")
    assert upgraded.returncode == 0, upgraded.stderr
    assert "KMC instance ready" in upgraded.stdout
    with app.app_context():
        entries = db.session.scalars(
            select(AuditEntry)
            .where(AuditEntry.action.like("custodians.%"))
            .order_by(AuditEntry.seq)
        ).all()
        assert [e.action for e in entries] == [
            "custodians.split",
            "custodians.share",  # the short run's share counted, then its process ended
            "custodians.share",
            "custodians.unseal",
        ]
        assert all(e.actor.startswith("cli:") for e in entries[1:])


def test_init_unseal_on_a_kmc_without_custodians_is_refused(instance):
    from tests.conftest import run_kmc

    refused = run_kmc(instance, "init", "--unseal", input="")
    assert (refused.returncode, refused.stderr.split(":")[:2]) == (1, ["kmc", " not_split"])
