"""The SM's identity: its P-384 key pair, its registration request, the pinned KMC root, its certificate.

The KMC registry (docs/registry.md) reads the SMID from the CSR subject serialNumber and the
manufacturer from the subject OU; the SM certificate it issues must carry the same SMID, certify
this SM's key, allow keyAgreement (EKLFs are ECDH-enveloped to it) and chain to the pinned root,
possibly through the KMC's SM issuing CA.
"""

from __future__ import annotations

import datetime as dt
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from key_load_protocol import IdMan, InvalidIdentifier, ProtocolError, Smid
from key_load_protocol.certificates import key_usage, smid_of, verify_chain
from key_load_protocol.csr import build_csr
from sm_emulator.errors import CertificateRefused, InvalidRequest, StateError

KINDS = ("virtual", "certified")


def check_smid(smid: str) -> str:
    """An SMID as every layer spells it (`key_load_protocol.Smid`): 1-16 digits, no leading zero."""
    try:
        return Smid(smid).value
    except InvalidIdentifier as error:
        raise InvalidRequest(error.code, str(error)) from None


def check_id_man(id_man: str) -> str:
    """An ID_man (`key_load_protocol.IdMan`): 4 hexadecimal digits, held upper case."""
    try:
        return IdMan.parse(id_man).value
    except InvalidIdentifier as error:
        raise InvalidRequest(error.code, str(error)) from None


def generate_private_key(path: Path) -> ec.EllipticCurvePrivateKey:
    """A fresh P-384 key written to `path` (PKCS#8 PEM, created 0600, never overwritten)."""
    key = ec.generate_private_key(ec.SECP384R1())
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(pem)
    return key


def load_private_key(path: Path) -> ec.EllipticCurvePrivateKey:
    try:
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    except FileNotFoundError:
        raise StateError("no_private_key", f"the SM private key {path} is missing") from None
    if not isinstance(key, ec.EllipticCurvePrivateKey) or not isinstance(key.curve, ec.SECP384R1):
        raise StateError("bad_private_key", f"{path} is not an EC P-384 private key")
    return key


def registration_request(key: ec.EllipticCurvePrivateKey, smid: str, id_man: str) -> bytes:
    """The PKCS#10 request (PEM) the KMC registers the SM from, signed by the SM key."""
    return build_csr(key, smid, id_man)


def _certificates(pem: bytes, what: str) -> list[x509.Certificate]:
    try:
        return x509.load_pem_x509_certificates(pem)
    except ValueError:
        raise CertificateRefused(
            "not_a_certificate", f"{what} is not a PEM certificate (bundle)"
        ) from None


def parse_root(pem: bytes) -> x509.Certificate:
    """The KMC root to pin: a single self-signed CA certificate whose signature verifies."""
    certificates = _certificates(pem, "the KMC root file")
    if len(certificates) != 1:
        raise CertificateRefused(
            "not_one_root", "the KMC root file must hold exactly one certificate"
        )
    root = certificates[0]
    try:
        constraints = root.extensions.get_extension_for_class(x509.BasicConstraints).value
    except x509.ExtensionNotFound:
        constraints = None
    if constraints is None or not constraints.ca:
        raise CertificateRefused("not_a_ca", "the KMC root certificate is not a CA certificate")
    try:
        root.verify_directly_issued_by(root)
    except (InvalidSignature, ValueError, TypeError):
        raise CertificateRefused(
            "not_self_signed", "the KMC root certificate is not self-signed"
        ) from None
    return root


@dataclass(frozen=True)
class InstalledCertificate:
    """The SM certificate and the CA certificates between it and the pinned root."""

    certificate: x509.Certificate
    intermediates: tuple[x509.Certificate, ...]

    def chain_pem(self) -> bytes:
        return b"".join(c.public_bytes(serialization.Encoding.PEM) for c in self.intermediates)


def check_sm_certificate(
    bundle: bytes,
    *,
    root: x509.Certificate,
    private_key: ec.EllipticCurvePrivateKey,
    smid: str,
    now: dt.datetime,
) -> InstalledCertificate:
    """Find this SM's certificate in a PEM bundle and check it fully before it is installed."""
    certificates = _certificates(bundle, "the certificate file")
    mine = [c for c in certificates if c.public_key() == private_key.public_key()]
    if not mine:
        raise CertificateRefused("not_my_key", "no certificate in the file certifies this SM's key")
    leaf = mine[0]
    if smid_of(leaf) != smid:
        raise CertificateRefused(
            "smid_mismatch", f"the certificate names SMID {smid_of(leaf)}, not this SM's {smid}"
        )
    usage = key_usage(leaf)
    if usage is None or not usage.key_agreement or not usage.digital_signature:
        raise CertificateRefused(
            "key_usage", "the SM certificate must allow digitalSignature and keyAgreement"
        )
    intermediates = tuple(c for c in certificates if c is not leaf and c != root)
    try:
        verify_chain(leaf, intermediates, root, now)
    except ProtocolError:
        raise CertificateRefused(
            "untrusted_chain",
            f"the SM certificate does not chain to the pinned KMC root at {now:%Y-%m-%dT%H:%M:%SZ}",
        ) from None
    return InstalledCertificate(leaf, intermediates)
