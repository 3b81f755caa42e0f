"""The KMC's own PKI: root CA, SM issuing CA, key-load signer and audit signer.

Created once by `kmc init`: each private key by the key store (`kmc.keystore`: sealed in
`<instance>/pki/<name>.key.sealed` by the software store, on the token with `pkcs11`), each
certificate in the database (`pki_certificates`), so that every node of a KMC on one database
and one token loads the same PKI. `kmc init` also writes a PEM copy of each certificate to
`<instance>/pki/<name>.pem` for operators; the KMC never reads those copies. The root
certificate is what SMs, auditors and OpenSSL trust (`kmc ca root --out FILE`).

    KMC Root CA (P-384, CA, pathlen 1)
    ├── KMC SM Issuing CA (CA, pathlen 0)  → SM certificates (kmc.sm_registry)
    ├── KMC Key Load Signer                → signs Enhanced Key Load Files    (EKU keyLoadSigning)
    └── KMC Audit Signer                   → signs audit checkpoints and auditor exports
                                                                              (EKU auditSigning)

Every certificate under the root may sign something, so a signer is recognised by its private
extended key usage (docs/protocol.md section 1), not by chaining to the root: an SM's key must
not pass for the key-load signer, nor the key-load signer for the audit signer.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from flask import current_app
from sqlalchemy import String, Text, select
from sqlalchemy.orm import Mapped, mapped_column

from key_load_protocol import ID_KP_KMC_AUDIT_SIGNING, ID_KP_KMC_KEY_LOAD_SIGNING
from kmc.database import db
from kmc.errors import KeyStoreError
from kmc.keystore import SIGNING_KEYS, KeyStore

PKI_DIR = "pki"
NAMES = SIGNING_KEYS
TITLES = {
    "root": "Root CA",
    "issuing": "SM Issuing CA",
    "keyload": "Key Load Signer",
    "audit": "Audit Signer",
}
_YEARS = {"root": 20, "issuing": 10, "keyload": 5, "audit": 5}
KEY_LOAD_SIGNING = x509.ObjectIdentifier(ID_KP_KMC_KEY_LOAD_SIGNING)
AUDIT_SIGNING = x509.ObjectIdentifier(ID_KP_KMC_AUDIT_SIGNING)
PURPOSES = {"keyload": KEY_LOAD_SIGNING, "audit": AUDIT_SIGNING}


class PkiCertificate(db.Model):
    """One KMC signer certificate (PEM): shared by every node, with the database."""

    __tablename__ = "pki_certificates"

    name: Mapped[str] = mapped_column(String(16), primary_key=True)
    pem: Mapped[str] = mapped_column(Text)


def _store_certificate(name: str, certificate: x509.Certificate) -> None:
    pem = certificate.public_bytes(serialization.Encoding.PEM).decode()
    row = db.session.get(PkiCertificate, name)
    if row is None:
        db.session.add(PkiCertificate(name=name, pem=pem))
    else:
        row.pem = pem


@dataclass(frozen=True)
class Signer:
    """A private key with its certificate; signatures are ECDSA with SHA-384."""

    key: ec.EllipticCurvePrivateKey
    certificate: x509.Certificate

    def __repr__(self) -> str:
        return f"Signer({self.certificate.subject.rfc4514_string()})"

    def sign(self, data: bytes) -> bytes:
        return self.key.sign(data, ec.ECDSA(hashes.SHA384()))

    def verify(self, data: bytes, signature: bytes) -> bool:
        public_key = self.certificate.public_key()
        assert isinstance(public_key, ec.EllipticCurvePublicKey)
        try:
            public_key.verify(signature, data, ec.ECDSA(hashes.SHA384()))
        except InvalidSignature:
            return False
        return True


def _name(kmc_name: str, mode: str, title: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, kmc_name),
            x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, f"{mode} KMC"),
            x509.NameAttribute(NameOID.COMMON_NAME, f"{kmc_name} {title}"),
        ]
    )


def _certificate(
    name: str,
    subject: x509.Name,
    key: ec.EllipticCurvePrivateKey,
    issuer: Signer | None,
    now: dt.datetime,
) -> x509.Certificate:
    public = key.public_key()
    signer_key = issuer.key if issuer else key
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer.certificate.subject if issuer else subject)
        .public_key(public)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=365 * _YEARS[name]))
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
    )
    if issuer:
        builder = builder.add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer.key.public_key()),
            critical=False,
        )
    is_ca = name in ("root", "issuing")
    builder = builder.add_extension(
        x509.BasicConstraints(ca=is_ca, path_length={"root": 1, "issuing": 0}.get(name)),
        critical=True,
    ).add_extension(
        x509.KeyUsage(
            digital_signature=not is_ca,
            content_commitment=False,
            key_encipherment=False,
            data_encipherment=False,
            key_agreement=False,
            key_cert_sign=is_ca,
            crl_sign=is_ca,
            encipher_only=False,
            decipher_only=False,
        ),
        critical=True,
    )
    if name in PURPOSES:
        builder = builder.add_extension(x509.ExtendedKeyUsage([PURPOSES[name]]), critical=False)
    return builder.sign(signer_key, hashes.SHA384())


class KmcPki:
    """The four KMC signers: keys in the key store, certificates in the database."""

    def __init__(self, signers: dict[str, Signer]) -> None:
        self._signers = signers

    def signer(self, name: str) -> Signer:
        return self._signers[name]

    @property
    def root(self) -> Signer:
        return self._signers["root"]

    @property
    def issuing(self) -> Signer:
        return self._signers["issuing"]

    @property
    def keyload_signer(self) -> Signer:
        return self._signers["keyload"]

    @property
    def audit_signer(self) -> Signer:
        return self._signers["audit"]

    @staticmethod
    def exists() -> bool:
        return db.session.get(PkiCertificate, "root") is not None

    def certificates(self) -> dict[str, x509.Certificate]:
        """The signers' certificates by name (root, issuing, keyload, audit): public, for
        downloads and for people to verify exports and key-load files with."""
        return {name: signer.certificate for name, signer in self._signers.items()}

    @staticmethod
    def adopt_copies(instance: Path) -> bool:
        """An instance made before the certificates moved into the database: take them from
        its `pki/*.pem` files (once, in `kmc init`). True if it did."""
        folder = instance / PKI_DIR
        if KmcPki.exists() or not (folder / "root.pem").exists():
            return False
        for name in NAMES:
            _store_certificate(
                name, x509.load_pem_x509_certificate((folder / f"{name}.pem").read_bytes())
            )
        return True

    def save(self) -> None:
        for name, signer in self._signers.items():
            _store_certificate(name, signer.certificate)

    def write_copies(self, instance: Path) -> None:
        """PEM copies of the certificates in `<instance>/pki/` for operators (never read back)."""
        folder = instance / PKI_DIR
        folder.mkdir(parents=True, exist_ok=True)
        for name, signer in self._signers.items():
            (folder / f"{name}.pem").write_bytes(
                signer.certificate.public_bytes(serialization.Encoding.PEM)
            )

    @classmethod
    def create(
        cls, store: KeyStore, kmc_name: str, mode: str, *, reuse_keys: bool = False
    ) -> KmcPki:
        """Certificates for new keys; with `reuse_keys`, for the keys the store already holds.
        `save` puts them in the database."""
        now = dt.datetime.now(dt.UTC)
        signers: dict[str, Signer] = {}
        for name in NAMES:
            if reuse_keys and store.has_signing_key(name):
                key = store.signing_key(name)
            else:
                key = store.create_signing_key(name)
            issuer = None if name == "root" else signers["root"]
            cert = _certificate(name, _name(kmc_name, mode, TITLES[name]), key, issuer, now)
            signers[name] = Signer(key, cert)
        return cls(signers)

    def add_missing_purposes(self) -> dict[str, x509.Certificate]:
        """Reissue, for the same key, each signer certificate that lacks its extended key usage.

        Instances created before the purposes existed have signer certificates that SMs and
        auditors now refuse; `kmc init` calls this so that an upgrade keeps them working.
        Returns the reissued certificates by name.
        """
        reissued = {}
        now = dt.datetime.now(dt.UTC)
        for name, purpose in PURPOSES.items():
            old = self._signers[name]
            try:
                usages = old.certificate.extensions.get_extension_for_class(x509.ExtendedKeyUsage)
            except x509.ExtensionNotFound:
                usages = None
            if usages is not None and purpose in usages.value:
                continue
            cert = _certificate(name, old.certificate.subject, old.key, self.root, now)
            _store_certificate(name, cert)
            self._signers[name] = Signer(old.key, cert)
            reissued[name] = cert
        return reissued

    @classmethod
    def load(cls, store: KeyStore) -> KmcPki:
        rows = {row.name: row.pem for row in db.session.scalars(select(PkiCertificate))}
        signers = {}
        for name in NAMES:
            key = store.signing_key(name)
            cert = x509.load_pem_x509_certificate(rows[name].encode())
            if key.public_key() != cert.public_key():
                raise KeyStoreError(
                    f"the {name} key in the key store is not the one the {name} certificate "
                    "certifies "
                    "(keys of another KMC?)"
                )
            signers[name] = Signer(key, cert)
        return cls(signers)


def current() -> KmcPki:
    """The app's PKI, loaded on first use (after `kmc init` created it)."""
    pki: KmcPki | None = current_app.extensions.get("kmc.pki")
    if pki is None:
        if not KmcPki.exists():
            raise RuntimeError("the KMC PKI is missing in the database: run `kmc init`")
        pki = KmcPki.load(current_app.extensions["kmc.keystore"])
        current_app.extensions["kmc.pki"] = pki
    return pki
