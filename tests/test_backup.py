"""`kmc backup` of a KMC under load, `kmc restore` into an empty instance elsewhere (SQLite and
PostgreSQL, software and pkcs11), the restored chain verified and an SM loading keys from it;
a tampered, truncated or foreign backup is refused with one line and writes nothing."""

from __future__ import annotations

import base64
import json
import shutil
import threading
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from flask import Flask
from sqlalchemy import select, update

from factories.callers import caller
from factories.keys import SGC, add_key, authorise
from factories.registry import ADMIN, ID_MAN
from key_load import service as key_load
from key_load_protocol import KeyIdentity
from kmc import create_app, pki
from kmc.audit import service as audit
from kmc.audit.models import AuditEntry
from kmc.database import db
from kmc.keystore import current as current_keystore
from sm_emulator.module import SecurityModule
from sm_registry import service as registry
from tests.conftest import Instance, _pg_copy, _worker, run_kmc
from vending_keys import service as keys
from vending_keys.models import SupplyGroup

pytestmark = pytest.mark.slow
SMID = "600727000777"


@pytest.fixture(params=["software", "pkcs11"])
def keystore(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def _ready_sm(app: Flask, folder: Path) -> SecurityModule:
    """An SM emulator registered, certified and authorised for key KRN 1 by the KMC of `app`."""
    sm, csr_pem = SecurityModule.initialise(folder, smid=SMID, id_man=ID_MAN)
    csr = x509.load_pem_x509_csr(csr_pem).public_bytes(serialization.Encoding.DER)
    add_key(app, 1)
    with app.app_context():
        registry.register(ADMIN, csr, "virtual", None, as_manufacturer=ID_MAN)
        registry.change_state(ADMIN, SMID, "approve", "backup test")
        chain = registry.certificate_chain(SMID).pem()
        root = pki.current().root.certificate.public_bytes(serialization.Encoding.PEM)
    authorise(app, SMID, 1)
    sm.trust(root)
    sm.install_certificate(chain)
    return sm


def _empty_instance(instance: Instance, folder: Path) -> Instance:
    """Another instance on the same key store (token, or a copy of the master key file), with
    an empty database of its own."""
    folder.mkdir(mode=0o700)
    if (instance.folder / "master.key").exists():
        shutil.copy2(instance.folder / "master.key", folder / "master.key")
    if instance.database_url.startswith("postgresql"):
        url = _pg_copy("", f"kmc_restore_{_worker()}")
    else:
        url = f"sqlite:///{folder / 'kmc.sqlite3'}"
    return Instance(folder, url, instance.mode, instance.admin_password, instance.keystore)


def _app_of(target: Instance) -> Flask:
    return create_app(
        {
            "KMC_INSTANCE": target.folder,
            "SQLALCHEMY_DATABASE_URI": target.database_url,
            "KMC_MODE": target.mode,
            **target.keystore,
        }
    )


def _signed_by_key_load_signer(app: Flask, data: bytes) -> bytes:
    """The same backup, opened with this KMC's key store and signed again by its key-load
    signer (a certificate under the same root, without the audit signing purpose)."""
    end = data.index(b"\n", len(b"KMC-BACKUP 1\n"))
    head, header = data[: end + 1], json.loads(data[len(b"KMC-BACKUP 1\n") : end])
    with app.app_context():
        content_key = current_keystore().open(
            base64.b64decode(header["sealed_key"]), f"kmc-backup:{header['backup_id']}".encode()
        )
        signer = pki.current().keyload_signer
    nonce = base64.b64decode(header["nonce"])
    plain = AESGCM(content_key).decrypt(nonce, data[end + 1 :], head)
    packed = plain[2 + int.from_bytes(plain[:2], "big") :]
    signature = signer.sign(head + packed)
    forged = len(signature).to_bytes(2, "big") + signature + packed
    return head + AESGCM(content_key).encrypt(nonce, forged, head)


def test_a_backup_under_load_restores_elsewhere_and_an_sm_loads_keys_from_it(
    app, instance, tmp_path
):
    sm = _ready_sm(app, tmp_path / "sm")
    stop = threading.Event()
    written: list[int] = []

    def writer() -> None:  # supply groups, each with its audit entry, while the backup runs
        number = 700000
        while not stop.is_set():
            with app.app_context():
                keys.add_supply_group(caller("operator1"), str(number), f"Group {number}")
                db.session.remove()
            written.append(number)
            number += 1

    thread = threading.Thread(target=writer)
    thread.start()
    try:
        while len(written) < 3 and thread.is_alive():
            threading.Event().wait(0.05)
        out = tmp_path / "kmc.backup"
        made = run_kmc(instance, "backup", "--out", str(out), "--json")
    finally:
        stop.set()
        thread.join(timeout=60)
    assert made.returncode == 0, made.stderr
    report = json.loads(made.stdout)
    assert len(written) > 3, "the writer ran during the backup"
    assert report["rows"]["supply_groups"] >= 4 and out.stat().st_mode & 0o077 == 0
    assert b"BEGIN CERTIFICATE" not in out.read_bytes()

    target = _empty_instance(instance, tmp_path / "restored")
    restored = run_kmc(target, "restore", str(out))
    assert restored.returncode == 0, restored.stderr
    assert "audit chain verified" in restored.stdout

    copy = _app_of(target)
    with copy.app_context():
        assert audit.verify().ok
        groups = set(db.session.scalars(select(SupplyGroup.sgc)))
        added = set(
            db.session.scalars(select(AuditEntry.object_id).where(AuditEntry.action == "sgc.add"))
        )
        # One snapshot: every row has its audit entry, and no entry lacks its row.
        assert groups == added and len(groups) == report["rows"]["supply_groups"]
        restore_entry = db.session.scalars(
            select(AuditEntry).order_by(AuditEntry.seq.desc()).limit(1)
        ).one()
        assert restore_entry.action == "kmc.restore"
        eklf = key_load.process_request(caller("operator1"), sm.request((KeyIdentity(SGC, 1, 1),)))
        assert eklf.sequence == 1
        db.engine.dispose()
    loaded = sm.load(eklf.eklf)
    assert [r.identity for r in loaded.registers] == [KeyIdentity(SGC, 1, 1)]
    with app.app_context():
        db.engine.dispose()


@pytest.mark.parametrize("backend", ["sqlite"])
@pytest.mark.parametrize("keystore", ["software"])
def test_a_tampered_truncated_or_misplaced_backup_is_refused_and_writes_nothing(
    app, instance, tmp_path
):
    out = tmp_path / "kmc.backup"
    assert run_kmc(instance, "backup", "--out", str(out)).returncode == 0
    data = out.read_bytes()
    flipped = bytearray(data)
    flipped[len(data) // 2] ^= 0x01
    cases = {
        "tampered": bytes(flipped),
        "truncated": data[: len(data) - 100],
        "header": data.replace(b'"kmc_name"', b'"kmc_nome"', 1),
        "junk": b"not a backup",
        "signer": _signed_by_key_load_signer(app, data),
    }
    target = _empty_instance(instance, tmp_path / "restored")
    for name, content in cases.items():
        bad = tmp_path / f"{name}.backup"
        bad.write_bytes(content)
        refused = run_kmc(target, "restore", str(bad))
        assert refused.returncode == 1, (name, refused.stdout)
        lines = refused.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("kmc: backup_refused: "), (name, lines)
        if name == "signer":
            assert "not its audit signer's" in lines[0]
    assert not (target.folder / "pki").exists()
    again = run_kmc(instance, "backup", "--out", str(out))
    assert (again.returncode, again.stderr.split(":")[:2]) == (1, ["kmc", " exists"])

    elsewhere = tmp_path / "other"  # another KMC's key store: the backup does not open there
    elsewhere.mkdir(mode=0o700)
    (elsewhere / "master.key").write_bytes(b"\x07" * 32)
    other = Instance(
        elsewhere,
        f"sqlite:///{elsewhere / 'kmc.sqlite3'}",
        "test",
        "",
        {"KMC_KEYSTORE": "software"},
    )
    refused = run_kmc(other, "restore", str(out))
    assert refused.returncode == 1
    assert "does not open under this key store" in refused.stderr
    with app.app_context():  # an audit entry altered in the database, then backed up
        db.session.execute(
            update(AuditEntry).where(AuditEntry.seq == 2).values(actor="someone-else")
        )
        db.session.connection().commit()
    broken = tmp_path / "broken.backup"
    assert run_kmc(instance, "backup", "--out", str(broken)).returncode == 0
    refused = run_kmc(target, "restore", str(broken))
    assert refused.returncode == 1
    assert refused.stderr.startswith(
        "kmc: backup_refused: the backup's audit chain does not verify"
    )
    restored = run_kmc(target, "restore", str(out))  # nothing of the refused one stayed
    assert restored.returncode == 0, restored.stderr
    twice = run_kmc(target, "restore", str(out))
    assert (twice.returncode, twice.stderr.split(":")[:2]) == (1, ["kmc", " not_empty"])
