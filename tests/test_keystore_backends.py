"""The key store contract over both back ends, the pkcs11 configuration refusals, and an
independent look at the token with `pkcs11-tool`."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec

from key_load_protocol import key_check_value
from kmc.errors import KeyStoreError
from kmc.keystore import KeyStore, SoftwareKeyStore, open_keystore
from tests.conftest import HSM_PIN, SoftHsm


@pytest.fixture(params=["software", "pkcs11"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> KeyStore:
    if request.param == "software":
        return SoftwareKeyStore.from_instance(tmp_path, create=True)
    softhsm: SoftHsm = request.getfixturevalue("softhsm")
    settings = {"KMC_INSTANCE": tmp_path, **softhsm.token("kmc-contract")}
    opened = open_keystore(settings, create=True)
    assert opened is not None
    return opened


def test_a_sealed_secret_opens_with_its_true_length(store: KeyStore) -> None:
    for secret in (bytes(range(20)), bytes(range(8)), bytes(range(32))):
        assert store.open(store.seal(secret, b"vk:1:1:1"), b"vk:1:1:1") == secret


def test_a_sealed_secret_moved_to_another_identity_does_not_open(store: KeyStore) -> None:
    sealed = store.seal(bytes(20), b"vk:123457:1:1")
    with pytest.raises(KeyStoreError, match="does not open"):
        store.open(sealed, b"vk:123457:2:1")


def test_a_tampered_sealed_secret_does_not_open(store: KeyStore) -> None:
    sealed = bytearray(store.seal(bytes(20), b"id"))
    sealed[-1] ^= 1
    with pytest.raises(KeyStoreError, match="does not open"):
        store.open(bytes(sealed), b"id")


def test_a_generated_secret_comes_sealed_with_its_check_value(store: KeyStore) -> None:
    sealed, kcv = store.generate_secret(20, b"id", lambda v: key_check_value("04", v))
    assert kcv == key_check_value("04", store.open(sealed, b"id"))


def test_a_signing_key_signs_ecdsa_p384_sha384(store: KeyStore) -> None:
    name = "audit" if store.has_signing_key("audit") else "audit"
    key = store.signing_key(name) if store.has_signing_key(name) else store.create_signing_key(name)
    signature = key.sign(b"checkpoint", ec.ECDSA(hashes.SHA384()))
    key.public_key().verify(signature, b"checkpoint", ec.ECDSA(hashes.SHA384()))
    assert store.signing_key(name).public_key() == key.public_key()


def test_key_agreement_gives_the_shared_secret_the_sm_computes(store: KeyStore) -> None:
    sm = ec.generate_private_key(ec.SECP384R1())
    ephemeral, shared = store.agree(sm.public_key())
    assert shared == sm.exchange(ec.ECDH(), ephemeral)


def _settings(softhsm: SoftHsm, tmp_path: Path, **changes: str) -> dict[str, object]:
    return {"KMC_INSTANCE": tmp_path, **softhsm.token("kmc-contract"), **changes}


def test_pkcs11_configuration_faults_are_refused_with_one_line(
    softhsm: SoftHsm, tmp_path: Path
) -> None:
    readable = tmp_path / "readable"
    readable.write_text(HSM_PIN)
    readable.chmod(0o644)
    empty = tmp_path / "empty"
    empty.write_text("")
    empty.chmod(0o600)
    cases = {
        "does not exist": {"KMC_PKCS11_PIN_FILE": str(tmp_path / "absent")},
        "readable by others": {"KMC_PKCS11_PIN_FILE": str(readable)},
        "is empty": {"KMC_PKCS11_PIN_FILE": str(empty)},
        "is not a PKCS#11 module": {"KMC_PKCS11_MODULE": "/bin/ls"},
        "no PKCS#11 token labelled 'nope'": {"KMC_PKCS11_TOKEN": "nope"},
    }
    for expected, change in cases.items():
        with pytest.raises(KeyStoreError, match=expected) as refused:
            open_keystore(_settings(softhsm, tmp_path, **change))
        assert "\n" not in str(refused.value)
    assert sorted(tmp_path.iterdir()) == [empty, readable]


def test_a_wrong_pin_is_refused_at_start(softhsm: SoftHsm, tmp_path: Path) -> None:
    """In a fresh process: PKCS#11 login is per process, so this one is logged in already."""
    wrong = tmp_path / "wrong"
    wrong.write_text("9999")
    wrong.chmod(0o600)
    env = {
        **os.environ,
        **softhsm.token("kmc-contract"),
        "KMC_PKCS11_PIN_FILE": str(wrong),
        "KMC_INSTANCE": str(tmp_path / "instance"),
    }
    result = subprocess.run(
        [str(Path(sys.executable).parent / "kmc"), "init"], env=env, capture_output=True, text=True
    )
    assert (result.returncode, result.stderr) == (
        1,
        "kmc: keystore: the PIN in the PIN file does not open token 'kmc-contract'\n",
    )
    assert not (tmp_path / "instance" / "kmc.sqlite3").exists()


@pytest.mark.parametrize("backend", ["sqlite"])
def test_the_token_holds_every_kmc_key_sensitive_and_never_extractable(
    softhsm: SoftHsm, app, keystore_settings
) -> None:
    """Independent check with OpenSC's pkcs11-tool on the token of a KMC initialised on pkcs11."""
    blocks = softhsm.key_access(keystore_settings["KMC_PKCS11_TOKEN"])
    wanted = {"kmc-storage", "kmc-session", "kmc-root", "kmc-issuing", "kmc-keyload", "kmc-audit"}
    assert wanted <= set(blocks), blocks
    for label in wanted:
        assert "always sensitive" in blocks[label] and "never extractable" in blocks[label], (
            label,
            blocks[label],
        )
    folder = Path(app.config["KMC_INSTANCE"])
    assert not (folder / "master.key").exists()
    assert not list(folder.rglob("*.key*"))


@pytest.fixture
def keystore() -> str:
    return "pkcs11"


def _token_folder(softhsm: SoftHsm, label: str) -> Path:
    """SoftHSM2's directory for token `label` (its token.object holds the label)."""
    for folder in (softhsm.folder / "tokens").iterdir():
        if label.encode() in (folder / "token.object").read_bytes():
            return folder
    raise AssertionError(f"no token directory for {label}")


@pytest.mark.parametrize("backend", ["sqlite"])
def test_a_token_gone_away_is_refused_then_the_kmc_recovers_by_itself(
    softhsm: SoftHsm, app, kmc, keystore_settings, tmp_path: Path
) -> None:
    from sqlalchemy import func, select

    from kmc.database import db
    from vending_keys.models import VendingKey

    assert kmc("sgc", "add", "--sgc", "600727", "--name", "North").exit_code == 0
    generate = ("key", "generate", "--sgc", "600727", "--kt", "1", "--dkga", "04")
    generate += ("--ea", "11", "--base-date", "2014", "--ken", "255")
    assert kmc(*generate, "--krn", "1").exit_code == 0, "the token signs and seals at first"
    token = _token_folder(softhsm, keystore_settings["KMC_PKCS11_TOKEN"])
    away = tmp_path / "away"
    token.rename(away)
    try:
        refused = kmc(*generate, "--krn", "2")
    finally:
        away.rename(token)
    assert refused.exit_code == 1
    assert refused.stderr.startswith("kmc: hsm_unavailable: "), refused.output
    with app.app_context():
        assert db.session.scalar(select(func.count()).select_from(VendingKey)) == 1
        fault = _last_audit_entry()
        assert (fault.action, fault.object_id) == ("keystore.fault", "kmc-sqlite")
        assert json.loads(fault.details)["reason"] == "hsm_unavailable"
    assert kmc(*generate, "--krn", "2").exit_code == 0, "back without a restart"


@pytest.mark.parametrize("backend", ["sqlite"])
def test_kmc_init_on_pkcs11_is_idempotent_and_hsm_status_shows_the_keys(
    instance, keystore_settings
) -> None:
    from tests.conftest import run_kmc

    again = run_kmc(instance, "init")
    assert again.returncode == 0, again.stderr
    assert "one-time password" not in again.stdout
    status = run_kmc(instance, "hsm", "status", "--json")
    assert status.returncode == 0, status.stderr
    shown = json.loads(status.stdout)
    assert shown["token"]["label"] == keystore_settings["KMC_PKCS11_TOKEN"]
    assert {k["label"] for k in shown["keys"]} == {
        "kmc-storage",
        "kmc-session",
        "kmc-root",
        "kmc-issuing",
        "kmc-keyload",
        "kmc-audit",
    }
    assert not any(k["extractable"] or not k["sensitive"] for k in shown["keys"])


def test_a_fresh_instance_on_a_token_with_kmc_keys_needs_reuse_keys(
    softhsm: SoftHsm, tmp_path: Path
) -> None:
    from tests.conftest import Instance, run_kmc

    settings = softhsm.token("kmc-reuse")
    instance = Instance(
        tmp_path / "one", f"sqlite:///{tmp_path / 'one.sqlite3'}", "test", "", settings
    )
    assert run_kmc(instance, "init").returncode == 0
    second = Instance(
        tmp_path / "two", f"sqlite:///{tmp_path / 'two.sqlite3'}", "test", "", settings
    )
    refused = run_kmc(second, "init")
    assert refused.returncode == 1
    assert "already holds a key kmc-root" in refused.stderr and "--reuse-keys" in refused.stderr
    reused = run_kmc(second, "hsm", "init", "--reuse-keys")
    assert reused.returncode == 0, reused.stderr


def _last_audit_entry() -> Any:
    from sqlalchemy import select

    from kmc.audit.models import AuditEntry
    from kmc.database import db

    return db.session.scalars(select(AuditEntry).order_by(AuditEntry.seq.desc())).first()


@pytest.mark.parametrize("backend", ["sqlite"])
def test_a_mechanism_the_token_lacks_is_refused_503_audited_and_nothing_written(app, client):
    """SoftHSM2 2.6.1 has no CKM_AES_KEY_WRAP_KWP (RFC 5649): a KMC configured to wrap with it
    is refused by the token at the first key it seals."""
    from sqlalchemy import func, select

    from factories.keys import api_headers
    from kmc.database import db
    from kmc.keystore.pkcs11 import Pkcs11KeyStore
    from vending_keys.models import VendingKey

    headers = {"Authorization": api_headers(app)["Authorization"]}
    assert client.post("/api/v1/supply-groups", json={"sgc": "600727", "name": "North"},
                       headers=headers).status_code == 201  # fmt: skip
    app.config["KMC_PKCS11_KEY_WRAP"] = "AES_KEY_WRAP_KWP"
    app.extensions["kmc.keystore"] = Pkcs11KeyStore.from_settings(app.config)
    with app.app_context():
        before = _last_audit_entry().seq
    body = {"sgc": "600727", "krn": 1, "kt": 1, "dkga": "04", "eas": ["11"]}
    refused = client.post("/api/v1/keys", json={**body, "base_date": 2014, "ken": 255},
                          headers=headers)  # fmt: skip
    assert refused.status_code == 503
    assert refused.get_json()["error"] == "hsm_mechanism_missing"
    assert "MechanismInvalid" in refused.get_json()["message"]
    with app.app_context():
        assert db.session.scalar(select(func.count()).select_from(VendingKey)) == 0
        fault = _last_audit_entry()
        assert fault.seq == before + 1, "the fault's entry and nothing else"
        assert (fault.action, fault.actor) == ("keystore.fault", "operator1")
        assert json.loads(fault.details)["reason"] == "hsm_mechanism_missing"


def test_an_unknown_key_wrap_is_refused_at_start(softhsm: SoftHsm) -> None:
    from kmc.keystore.pkcs11 import Pkcs11KeyStore

    settings = {**softhsm.token("kmc-contract"), "KMC_PKCS11_KEY_WRAP": "AES_KEY_WRAP"}
    with pytest.raises(KeyStoreError, match="KMC_PKCS11_KEY_WRAP must be one of"):
        Pkcs11KeyStore.from_settings(settings)
