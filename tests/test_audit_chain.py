"""The audit log is a gap-free hash chain; editing, deleting or reordering a row is detected."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import threading
from datetime import UTC, datetime, timedelta

import pytest
from cryptography.hazmat.primitives import serialization
from sqlalchemy import func, select, text

from kmc import pki
from kmc.audit import service as audit
from kmc.audit.chain import GENESIS, ROW_FIELDS, canonical_json, entry_hash, format_time
from kmc.audit.models import AuditEntry
from kmc.audit.service import checkpoint, verify
from kmc.database import db, use_case
from tests.conftest import run_kmc


@use_case
def _append_one(actor, i):
    audit.record(actor, "test.append", "thing", str(i), {"n": i})


@pytest.fixture(params=["software", "pkcs11"])
def keystore(request: pytest.FixtureRequest) -> str:
    """Over both key stores: with pkcs11 the token signs certificates, exports and checkpoints."""
    return str(request.param)


def _append(app, count, actor="tester"):
    with app.app_context():
        for i in range(count):
            _append_one(actor, i)


@use_case
def _execute(statement):
    db.session.execute(text(statement))


def _sql(app, statement):
    with app.app_context():
        _execute(statement)


def test_entries_link_to_their_predecessor_and_hash_their_content(app):
    _append(app, 3)
    with app.app_context():
        rows = db.session.scalars(select(AuditEntry).order_by(AuditEntry.seq)).all()
        assert [r.seq for r in rows] == list(range(1, len(rows) + 1))
        assert rows[0].prev_hash == GENESIS
        for before, after in zip(rows, rows[1:], strict=False):
            assert after.prev_hash == before.entry_hash
        last = rows[-1]
        # Independent recomputation from the documented encoding (docs/audit.md).
        encoded = (
            f'[{last.seq},"{format_time(last.at)}","{last.actor}","{last.action}",'
            f'"{last.object_type}","{last.object_id}",{last.details},"{last.prev_hash}"]'
        )
        assert hashlib.sha256(encoded.encode()).hexdigest() == last.entry_hash
        assert last.details == canonical_json({"n": 2})


def test_verify_passes_on_an_untouched_log(app, kmc):
    _append(app, 5)
    result = kmc("audit", "verify", "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["ok"] is True


def test_edited_row_is_named_by_verify(app, instance):
    _append(app, 5)
    _sql(app, "UPDATE audit_entries SET details = '[99]' WHERE seq = 4")
    result = run_kmc(instance, "audit", "verify")
    assert result.returncode == 1
    assert "seq 4" in result.stderr
    assert "Traceback" not in result.stderr


def test_deleted_row_is_named_by_verify(app, kmc):
    _append(app, 5)
    _sql(app, "DELETE FROM audit_entries WHERE seq = 3")
    result = kmc("audit", "verify")
    assert result.exit_code == 1
    assert "seq 3" in result.output


def test_reordered_rows_are_detected(app, kmc):
    _append(app, 5)
    # Swap the contents of entries 2 and 3 (keeping each sequence number in place).
    _sql(app, "UPDATE audit_entries SET seq = -2 WHERE seq = 2")
    _sql(app, "UPDATE audit_entries SET seq = 2 WHERE seq = 3")
    _sql(app, "UPDATE audit_entries SET seq = 3 WHERE seq = -2")
    result = kmc("audit", "verify")
    assert result.exit_code == 1
    assert "seq 2" in result.output


def test_recomputed_hash_does_not_hide_an_edit(app, kmc):
    """Rewriting a row together with its own hash still breaks the next link."""
    _append(app, 5)

    @use_case
    def forge() -> None:
        row = db.session.get(AuditEntry, 3)
        row.actor = "mallory"
        row.entry_hash = entry_hash(
            row.seq,
            format_time(row.at),
            row.actor,
            row.action,
            row.object_type,
            row.object_id,
            row.details,
            row.prev_hash,
        )

    with app.app_context():
        forge()
    result = kmc("audit", "verify")
    assert "seq 4" in result.output and result.exit_code == 1


def test_signed_checkpoint_catches_a_truncated_tail(app, kmc):
    _append(app, 4)
    assert kmc("audit", "checkpoint").exit_code == 0
    with app.app_context():
        head = db.session.scalar(select(func.max(AuditEntry.seq)))
    _sql(app, f"DELETE FROM audit_entries WHERE seq >= {head - 1}")
    result = kmc("audit", "verify")
    assert result.exit_code == 1
    assert f"checkpoint at seq {head}" in result.output


def test_forged_checkpoint_signature_is_detected(app):
    _append(app, 2)
    with app.app_context():
        seq = checkpoint().seq
    _sql(app, f"UPDATE audit_checkpoints SET entry_hash = '{'ab' * 32}' WHERE seq = {seq}")
    with app.app_context():
        assert verify().bad_checkpoint == seq


def test_secret_fields_are_refused_in_details(app):
    with app.app_context():
        try:
            audit.record("t", "x", "y", "z", {"key_value": "00"})
        except ValueError as refused:
            assert "secret" in str(refused)
        else:
            raise AssertionError("secret field accepted")


def test_concurrent_threads_keep_the_chain_linear_and_gap_free(app):
    with app.app_context():
        start = db.session.scalar(select(func.count()).select_from(AuditEntry))
    threads = [threading.Thread(target=_append, args=(app, 25, f"thread{i}")) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    with app.app_context():
        assert db.session.scalar(select(func.count()).select_from(AuditEntry)) == start + 150
        result = verify()
        assert result.ok, result.as_dict()
        assert result.chain.head_seq == start + 150


APPENDER = """
import sys
from kmc import create_app
from kmc.audit import service as audit
from kmc.database import use_case
app = create_app()
append = use_case(audit.record)
with app.app_context():
    for i in range(int(sys.argv[1])):
        append(sys.argv[2], "test.append", "thing", str(i), {"n": i})
"""


def test_concurrent_processes_keep_the_chain_linear_and_gap_free(app, instance):
    with app.app_context():
        start = db.session.scalar(select(func.count()).select_from(AuditEntry))
    procs = [
        subprocess.Popen([sys.executable, "-c", APPENDER, "40", f"proc{i}"], env=instance.env())
        for i in range(4)
    ]
    assert [p.wait(timeout=120) for p in procs] == [0, 0, 0, 0]
    result = run_kmc(instance, "audit", "verify", "--json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["entries"] == start + 160


def test_export_is_json_lines_with_entries_then_checkpoints(app, client):
    from tests.conftest import login

    _append(app, 2)
    with app.app_context():
        checkpoint()
    login(client, "auditor1")
    lines = client.get("/audit/export.jsonl").get_data(as_text=True).splitlines()
    records = [json.loads(line) for line in lines]
    assert records[0]["kmc_audit_export"]["mode"] == "test"
    assert "entry" in records[1] and "checkpoint" in records[-1]
    assert [r["entry"]["seq"] for r in records if "entry" in r] == list(range(1, len(records) - 1))


OFFLINE = [sys.executable, "-m", "kmc.audit.offline"]


def test_an_export_verifies_offline_against_the_kmc_root(app, kmc, tmp_path):
    _append(app, 3)
    kmc("audit", "checkpoint")
    export, root = tmp_path / "audit.jsonl", tmp_path / "root.pem"
    assert kmc("audit", "export", "--out", str(export)).exit_code == 0
    assert kmc("ca", "root", "--out", str(root)).exit_code == 0
    result = subprocess.run(
        [*OFFLINE, str(export), "--root", str(root)], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    assert "1 signed checkpoints (test KMC)" in result.stdout

    lines = export.read_text().splitlines()
    record = json.loads(lines[2])
    record["entry"]["actor"] = "mallory"
    lines[2] = json.dumps(record)
    export.write_text("\n".join(lines) + "\n")
    tampered = subprocess.run(
        [*OFFLINE, str(export), "--root", str(root)], capture_output=True, text=True
    )
    assert tampered.returncode == 1
    assert f"seq {record['entry']['seq']}" in tampered.stderr


def test_an_export_does_not_verify_against_another_root(app, kmc, tmp_path):
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    export, other = tmp_path / "audit.jsonl", tmp_path / "other.pem"
    kmc("audit", "export", "--out", str(export))
    key = ec.generate_private_key(ec.SECP384R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Not the KMC")])
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(now)
        .not_valid_after(now + timedelta(days=1))
        .sign(key, hashes.SHA384())
    )
    other.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    result = subprocess.run(
        [*OFFLINE, str(export), "--root", str(other)], capture_output=True, text=True
    )
    assert result.returncode == 1
    assert "not issued by this KMC root" in result.stderr


def _rewrite_export(export, signer):
    """What a forger holding `signer` would do: change entry 2's actor, recompute the chain from
    there, re-sign every checkpoint and put the signer's certificate in the header."""
    records = [json.loads(line) for line in export.read_text().splitlines()]
    prev, hashes = GENESIS, {}
    for entry in (r["entry"] for r in records if "entry" in r):
        if entry["seq"] == 2:
            entry["actor"] = "mallory"
        entry["prev_hash"] = prev
        entry["entry_hash"] = prev = entry_hash(*(entry[k] for k in ROW_FIELDS[:-1]))
        hashes[entry["seq"]] = prev
    for cp in (r["checkpoint"] for r in records if "checkpoint" in r):
        cp["entry_hash"] = hashes[cp["seq"]]
        message = f"kmc-audit-checkpoint:{cp['seq']}:{cp['entry_hash']}:{cp['at']}"
        cp["signature"] = signer.sign(message.encode()).hex()
    records[0]["kmc_audit_export"]["audit_signer_certificate"] = signer.certificate.public_bytes(
        serialization.Encoding.PEM
    ).decode()
    export.write_text("".join(json.dumps(r) + "\n" for r in records))


@pytest.mark.parametrize(
    ("signer", "verdict"),
    [
        ("audit_signer", "export intact"),  # the forger would need the audit key itself
        ("keyload_signer", "not the KMC audit signer"),
        ("issuing", "not the KMC audit signer"),
    ],
)
def test_an_export_re_signed_by_another_kmc_certificate_is_refused_offline(
    app, kmc, tmp_path, signer, verdict
):
    _append(app, 3)
    kmc("audit", "checkpoint")
    export, root = tmp_path / "audit.jsonl", tmp_path / "root.pem"
    kmc("audit", "export", "--out", str(export))
    kmc("ca", "root", "--out", str(root))
    with app.app_context():
        _rewrite_export(export, getattr(pki.current(), signer))
    result = subprocess.run(
        [*OFFLINE, str(export), "--root", str(root)], capture_output=True, text=True
    )
    assert verdict in result.stdout + result.stderr
    assert result.returncode == (0 if verdict == "export intact" else 1)
