"""`kmc keystore migrate --to pkcs11`: a populated software KMC moved onto a SoftHSM2 token.

The whole path runs through the real command lines (`kmc`, `sm-emulator`, `openssl`,
`pkcs11-tool`) on a fresh instance; the resumption and refusal tests run the command in process
against a test instance, with the token failing after a few keys.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from sqlalchemy import select

from factories.keys import add_key
from kmc import create_app
from kmc.audit.models import AuditEntry
from kmc.database import db
from kmc.errors import Unavailable
from kmc.keystore.pkcs11 import Pkcs11KeyStore
from sm_emulator.demo import SGC, Walkthrough
from tests.conftest import KmcRunner, SoftHsm
from vending_keys import service as keys
from vending_keys.models import VendingKey

pytestmark = pytest.mark.slow


def test_a_software_kmc_with_sms_and_eklfs_moves_to_a_token_and_keeps_serving_them(
    softhsm: SoftHsm, tmp_path: Path
) -> None:
    walk = Walkthrough(tmp_path, echo=lambda line: None)
    walk.set_up_kmc()
    walk.register_sm()
    walk.run("kmc", "sgc", "add", "--sgc", SGC, "--name", "Before the token")
    walk.add_key(SGC, 1, 1, "04", "11")
    walk.add_key(SGC, 1, 2, "04", "11", "--clm", "1000")
    walk.load(name="before")
    walk.run("kmc", "audit", "checkpoint")  # signed by the audit key in software
    before = json.loads(walk.run("kmc", "key", "list", "--json").stdout)
    settings = softhsm.token("kmc-migrate")
    target = {**settings, "KMC_KEYSTORE": "software"}  # still on the store it moves from

    moved = walk.run("kmc", "keystore", "migrate", "--to", "pkcs11", "--json", env=target)
    report = json.loads(moved.stdout)
    assert report["keys_rewrapped"] == 2 and report["keys_verified"] == 2
    assert report["signing_keys"] == dict.fromkeys(
        ["root", "issuing", "keyload", "audit"], "imported"
    )
    assert "master.key" in report["destroyed"]
    instance = tmp_path / "kmc"
    assert not (instance / "master.key").exists() and not list(instance.rglob("*.key*"))

    walk.env.update(settings)  # the operator switches the configuration to the token
    assert json.loads(walk.run("kmc", "key", "list", "--json").stdout) == before
    walk.add_key(SGC, 2, 1, "04", "11")
    walk.load(name="after")  # the SM pinned the root before the migration
    loaded = json.loads(walk.run("sm-emulator", "keys", "--state", "sm", "--json").stdout)["keys"]
    assert {(k["krn"], k["kt"]) for k in loaded} >= {(1, 1), (1, 2), (2, 1)}
    verify = subprocess.run(
        ["/usr/bin/openssl", "cms", "-verify", "-purpose", "any", "-nointern", "-certfile",
         instance / "pki" / "keyload.pem", "-inform", "DER", "-in", tmp_path / "after.eklf",
         "-CAfile", tmp_path / "root.pem", "-out", "/dev/null"],
        capture_output=True,
    )  # fmt: skip
    assert verify.returncode == 0, verify.stderr
    walk.run("kmc", "audit", "checkpoint")  # signed by the same key, now on the token
    chain = json.loads(walk.run("kmc", "audit", "verify", "--json").stdout)
    assert chain["ok"] and chain["checkpoints"] == 2, chain

    access = softhsm.key_access("kmc-migrate")
    for label in ("kmc-root", "kmc-issuing", "kmc-keyload", "kmc-audit"):
        assert "sensitive" in access[label] and "extractable" not in access[label], access
        assert "always sensitive" not in access[label] and "local" not in access[label]
    assert "never extractable" in access["kmc-storage"], access

    again = walk.run("kmc", "keystore", "migrate", "--to", "pkcs11", ok=False)
    assert again.stderr.startswith("kmc: not_software: "), again.stderr
    done = walk.run("kmc", "keystore", "migrate", "--to", "pkcs11", ok=False, env=target)
    assert done.stderr.startswith("kmc: nothing_to_migrate: "), done.stderr


def _sealed(app: Flask) -> dict[int, bytes]:
    with app.app_context():
        return dict(db.session.execute(select(VendingKey.id, VendingKey.key_sealed)).all())


def _refusal(result: Any) -> str:
    """The one refusal line (after the progress bar's label, also on stderr)."""
    [line] = [line for line in result.stderr.splitlines() if line.startswith("kmc: ")]
    return str(line)


def _failing_after(calls: int) -> Any:
    """Pkcs11KeyStore.seal that loses the token after `calls` keys."""
    seal = Pkcs11KeyStore.seal
    done = {"n": 0}

    def failing(self: Pkcs11KeyStore, secret: bytes, identity: bytes) -> bytes:
        done["n"] += 1
        if done["n"] > calls:
            raise Unavailable("hsm_unavailable", "the HSM is not available (test: token pulled)")
        return seal(self, secret, identity)

    return failing


@pytest.mark.parametrize("backend", ["sqlite"])
def test_an_interrupted_migration_resumes_without_loss_or_double_work(
    app: Flask, kmc: KmcRunner, softhsm: SoftHsm, monkeypatch: pytest.MonkeyPatch
) -> None:
    for krn in range(1, 8):
        add_key(app, krn, dkga="04" if krn % 2 else "02")
    with app.app_context():
        kcvs = {str(keys.identity_of(k)): k.kcv for k in keys.list_keys()}
    settings = softhsm.token("kmc-resume")
    app.config.update(settings, KMC_KEYSTORE="software")
    original = _sealed(app)

    with monkeypatch.context() as patch:
        patch.setattr(Pkcs11KeyStore, "seal", _failing_after(5))
        cut = kmc("keystore", "migrate", "--to", "pkcs11", "--batch", "2")
    assert cut.exit_code == 1, cut.output
    assert _refusal(cut).startswith("kmc: hsm_unavailable: "), cut.output
    halfway = _sealed(app)
    moved = {i for i in halfway if halfway[i] != original[i]}
    assert len(moved) == 4, "two whole batches of two; the third rolled back"
    assert (Path(app.config["KMC_INSTANCE"]) / "master.key").exists()

    resumed = kmc("keystore", "migrate", "--to", "pkcs11", "--batch", "2", "--json")
    assert resumed.exit_code == 0, resumed.output
    report = json.loads(resumed.stdout)
    assert (report["keys_rewrapped"], report["keys_verified"]) == (3, 7)
    assert set(report["signing_keys"].values()) == {"already on the token"}
    done = _sealed(app)
    assert all(done[i] == halfway[i] for i in moved), "a re-wrapped key is not re-wrapped again"
    with app.app_context():
        entries = db.session.scalars(
            select(AuditEntry).where(AuditEntry.action == keys.REWRAP).order_by(AuditEntry.seq)
        ).all()
        rewrapped = [k["identity"] for e in entries for k in json.loads(e.details)["keys"]]
    assert len(entries) == 4 and sorted(rewrapped) == sorted(kcvs), "each key audited once"

    on_token = create_app(
        {
            "KMC_INSTANCE": app.config["KMC_INSTANCE"],
            "SQLALCHEMY_DATABASE_URI": app.config["SQLALCHEMY_DATABASE_URI"],
            "KMC_MODE": "test",
            **settings,
        }
    )
    with on_token.app_context():
        from key_load_protocol import key_check_value

        for key in keys.list_keys():
            assert key_check_value(key.dkga, keys.open_key(key)).hex().upper() == key.kcv
            assert kcvs[str(keys.identity_of(key))] == key.kcv
        db.engine.dispose()


@pytest.mark.parametrize("backend", ["sqlite"])
def test_a_token_holding_another_kmcs_keys_is_refused_and_nothing_is_written(
    app: Flask, kmc: KmcRunner, softhsm: SoftHsm
) -> None:
    add_key(app, 1)
    settings = softhsm.token("kmc-foreign")
    other = Pkcs11KeyStore.from_settings(settings)
    if not other.has_signing_key("root"):
        other.create_signing_key("root")
    app.config.update(settings, KMC_KEYSTORE="software")
    original = _sealed(app)

    refused = kmc("keystore", "migrate", "--to", "pkcs11")
    assert refused.exit_code == 1
    assert _refusal(refused).startswith("kmc: token_holds_other_keys: "), refused.output
    assert _sealed(app) == original
    assert not other.has_storage_key() and not other.has_signing_key("issuing")
    assert (Path(app.config["KMC_INSTANCE"]) / "master.key").exists()


@pytest.mark.parametrize("backend", ["sqlite"])
def test_migrate_needs_the_target_token_configured(app: Flask, kmc: KmcRunner) -> None:
    refused = kmc("keystore", "migrate", "--to", "pkcs11")
    assert refused.exit_code == 1
    assert refused.stderr == "kmc: keystore: KMC_KEYSTORE=pkcs11 needs KMC_PKCS11_MODULE\n"


@pytest.mark.parametrize("backend", ["sqlite"])
def test_a_kmc_split_among_custodians_migrates_once_unsealed(
    app: Flask, kmc: KmcRunner, softhsm: SoftHsm, instance: Any
) -> None:
    add_key(app, 1)
    result = kmc("custodians", "init", "--shares", "3", "--threshold", "2")
    shares = [line.split(": ", 1)[1] for line in result.output.splitlines() if "share " in line[:6]]
    settings = softhsm.token("kmc-custody")
    env = {**instance.env(), **settings, "KMC_KEYSTORE": "software"}
    command = [str(Path(sys.executable).parent / "kmc"), "keystore", "migrate", "--to", "pkcs11"]
    sealed = subprocess.run(command, env=env, capture_output=True, text=True)
    assert sealed.returncode == 1 and "kmc: sealed: " in sealed.stderr, sealed.stderr
    moved = subprocess.run(
        [*command, "--unseal", "--json"],
        env=env,
        input=f"{shares[1]}\n{shares[2]}\n",
        capture_output=True,
        text=True,
    )
    assert moved.returncode == 0, moved.stderr
    report = json.loads(moved.stdout)
    assert (report["keys_rewrapped"], report["keys_verified"]) == (1, 1)
    assert "custodians.json" in report["destroyed"]
    folder = Path(app.config["KMC_INSTANCE"])
    assert not (folder / "custodians.json").exists() and not list(folder.rglob("*.key*"))
