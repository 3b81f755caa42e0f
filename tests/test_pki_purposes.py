"""KMC signer certificates name what they may sign; `kmc init` upgrades instances made before."""

from __future__ import annotations

import json

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from sqlalchemy import delete, func, select, update

from kmc import pki
from kmc.audit.models import AuditEntry
from kmc.database import db
from kmc.pki import AUDIT_SIGNING, KEY_LOAD_SIGNING
from tests.conftest import run_kmc


def _purposes(certificate: x509.Certificate) -> list[x509.ObjectIdentifier]:
    try:
        return list(certificate.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value)
    except x509.ExtensionNotFound:
        return []


def _certificate(instance, name):
    return x509.load_pem_x509_certificate((instance.folder / "pki" / f"{name}.pem").read_bytes())


def _strip_purpose(app, instance, name):
    """Rewrite the certificate as instances made before the purposes had it: same key, no EKU."""
    old = _certificate(instance, name)
    builder = (
        x509.CertificateBuilder()
        .subject_name(old.subject)
        .issuer_name(old.issuer)
        .public_key(old.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(old.not_valid_before_utc)
        .not_valid_after(old.not_valid_after_utc)
    )
    for extension in old.extensions:
        if not isinstance(extension.value, x509.ExtendedKeyUsage):
            builder = builder.add_extension(extension.value, extension.critical)
    with app.app_context():
        root_key = pki.current().root.key
        stripped = builder.sign(root_key, hashes.SHA384())
        db.session.execute(
            update(pki.PkiCertificate)
            .where(pki.PkiCertificate.name == name)
            .values(pem=stripped.public_bytes(serialization.Encoding.PEM).decode())
            .execution_options(synchronize_session=False)
        )
        db.session.connection().commit()
    return stripped


def test_each_signer_certificate_carries_only_its_own_purpose(instance):
    assert _purposes(_certificate(instance, "keyload")) == [KEY_LOAD_SIGNING]
    assert _purposes(_certificate(instance, "audit")) == [AUDIT_SIGNING]
    assert _purposes(_certificate(instance, "root")) == []
    assert _purposes(_certificate(instance, "issuing")) == []


def test_init_reissues_signer_certificates_that_predate_the_purposes(app, instance):
    before = {name: _strip_purpose(app, instance, name) for name in ("keyload", "audit")}
    result = run_kmc(instance, "init")
    assert result.returncode == 0, result.stderr
    for name, purpose in (("keyload", KEY_LOAD_SIGNING), ("audit", AUDIT_SIGNING)):
        reissued = _certificate(instance, name)
        assert _purposes(reissued) == [purpose]
        assert reissued.public_key() == before[name].public_key()
        assert reissued.subject == before[name].subject
        reissued.verify_directly_issued_by(_certificate(instance, "root"))
    unchanged = _certificate(instance, "keyload")
    assert run_kmc(instance, "init").returncode == 0
    assert _certificate(instance, "keyload") == unchanged
    with app.app_context():
        reissues = db.session.scalars(
            select(AuditEntry).where(AuditEntry.action == "pki.reissue").order_by(AuditEntry.seq)
        ).all()
        assert [(e.object_id, json.loads(e.details)["why"]) for e in reissues] == [
            ("keyload", "extended key usage added"),
            ("audit", "extended key usage added"),
        ]


def test_init_adopts_the_certificates_of_an_instance_made_before_they_moved_into_the_database(
    app, instance
):
    root_before = _certificate(instance, "root")
    with app.app_context():  # the database as migration 0005 leaves an older instance's
        db.session.execute(delete(pki.PkiCertificate))
        db.session.connection().commit()
    result = run_kmc(instance, "init")
    assert result.returncode == 0, result.stderr
    assert "root certificate" not in result.stdout  # no new PKI
    with app.app_context():
        stored = db.session.get(pki.PkiCertificate, "root")
        assert x509.load_pem_x509_certificate(stored.pem.encode()) == root_before
        assert db.session.scalar(select(func.count()).select_from(pki.PkiCertificate)) == 4
