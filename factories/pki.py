"""A miniature KMC PKI for the key-load protocol tests, the benchmarks and the worked example.

    KMC Root CA (P-384, CA, pathlen 1)
    ├── KMC Key Load Signer        keyUsage digitalSignature, EKU id-kp-kmcKeyLoadSigning
    ├── KMC Intermediate CA        (to test chains through SignedData certificates; also
    │   │                          stands in for the KMC's SM issuing CA)
    │   └── KMC Key Load Signer 2  as the first signer
    └── SM certificate             subject serialNumber=SMID, OU=ID_man,
                                   keyUsage digitalSignature+keyAgreement, SKI

`make_pki()` draws fresh keys; `make_pki(fixed=True)` derives every key from a label
(scalar = SHA-384 of the label) and signs deterministically, so the certificates of the
worked example in docs/protocol.md are the same on every run.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from key_load_protocol import ID_KP_KMC_KEY_LOAD_SIGNING
from key_load_protocol.csr import sm_subject

SMID = "60042000000001"
ID_MAN = "42"
NOT_BEFORE = dt.datetime(2025, 1, 1, tzinfo=dt.UTC)
NOT_AFTER = dt.datetime(2040, 1, 1, tzinfo=dt.UTC)
KEY_LOAD_SIGNING = x509.ObjectIdentifier(ID_KP_KMC_KEY_LOAD_SIGNING)


def fixed_key(label: str) -> ec.EllipticCurvePrivateKey:
    """A P-384 key whose scalar is SHA-384(label): reproducible, and obviously not secret."""
    return ec.derive_private_key(
        int.from_bytes(hashlib.sha384(label.encode()).digest(), "big"), ec.SECP384R1()
    )


def _key(label: str, fixed: bool) -> ec.EllipticCurvePrivateKey:
    return fixed_key(label) if fixed else ec.generate_private_key(ec.SECP384R1())


def _usage(**granted: bool) -> x509.KeyUsage:
    flags = dict.fromkeys(
        (
            "digital_signature",
            "content_commitment",
            "key_encipherment",
            "data_encipherment",
            "key_agreement",
            "key_cert_sign",
            "crl_sign",
            "encipher_only",
            "decipher_only",
        ),
        False,
    )
    return x509.KeyUsage(**(flags | granted))


@dataclass(frozen=True)
class Party:
    """A key with its certificate."""

    key: ec.EllipticCurvePrivateKey
    certificate: x509.Certificate

    def write(self, folder: Path, name: str) -> tuple[Path, Path]:
        """Write `<name>.pem` and `<name>.key` (PKCS#8 PEM) for the openssl command line."""
        cert_path, key_path = folder / f"{name}.pem", folder / f"{name}.key"
        cert_path.write_bytes(self.certificate.public_bytes(serialization.Encoding.PEM))
        key_path.write_bytes(
            self.key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
        return cert_path, key_path


def certify(
    subject: x509.Name,
    key: ec.EllipticCurvePrivateKey,
    issuer: Party | None,
    *,
    serial: int,
    usage: x509.KeyUsage,
    purposes: Sequence[x509.ObjectIdentifier] = (),
    ca_path_length: int | None = None,
    is_ca: bool = False,
    with_ski: bool = True,
    not_before: dt.datetime = NOT_BEFORE,
    not_after: dt.datetime = NOT_AFTER,
) -> Party:
    """Issue a certificate (self-signed when `issuer` is None), deterministic ECDSA-SHA384.

    `purposes` become a non-critical extendedKeyUsage extension (none when empty).
    """
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer.certificate.subject if issuer else subject)
        .public_key(key.public_key())
        .serial_number(serial)
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=is_ca, path_length=ca_path_length), critical=True)
        .add_extension(usage, critical=True)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(
                (issuer.key if issuer else key).public_key()
            ),
            critical=False,
        )
    )
    if purposes:
        builder = builder.add_extension(x509.ExtendedKeyUsage(purposes), critical=False)
    if with_ski:
        builder = builder.add_extension(
            x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False
        )
    signer_key = issuer.key if issuer else key
    return Party(key, builder.sign(signer_key, hashes.SHA384(), ecdsa_deterministic=True))


def kmc_name(title: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Example Utility"),
            x509.NameAttribute(NameOID.COMMON_NAME, f"KMC {title}"),
        ]
    )


def sm_name(smid: str) -> x509.Name:
    return sm_subject(smid, ID_MAN)


def make_sm(
    root: Party,
    *,
    smid: str = SMID,
    key: ec.EllipticCurvePrivateKey | None = None,
    usage: x509.KeyUsage | None = None,
    with_ski: bool = True,
    serial: int = 100,
) -> Party:
    """An SM certificate issued by the root (the defaults are what the protocol requires)."""
    return certify(
        sm_name(smid),
        key or ec.generate_private_key(ec.SECP384R1()),
        root,
        serial=serial,
        usage=usage or _usage(digital_signature=True, key_agreement=True),
        with_ski=with_ski,
    )


def signing_usage() -> x509.KeyUsage:
    return _usage(digital_signature=True)


def agreement_usage() -> x509.KeyUsage:
    return _usage(key_agreement=True)


@dataclass(frozen=True)
class ProtocolPki:
    root: Party
    signer: Party
    intermediate: Party
    signer_via_intermediate: Party
    sm: Party


def make_pki(*, fixed: bool = False) -> ProtocolPki:
    ca_usage = _usage(key_cert_sign=True, crl_sign=True)
    root = certify(
        kmc_name("Root CA"),
        _key("kmc-root", fixed),
        None,
        serial=1,
        usage=ca_usage,
        is_ca=True,
        ca_path_length=1,
    )
    signer = certify(
        kmc_name("Key Load Signer"),
        _key("kmc-key-load-signer", fixed),
        root,
        serial=2,
        usage=signing_usage(),
        purposes=(KEY_LOAD_SIGNING,),
    )
    intermediate = certify(
        kmc_name("Intermediate CA"),
        _key("kmc-intermediate", fixed),
        root,
        serial=3,
        usage=ca_usage,
        is_ca=True,
        ca_path_length=0,
    )
    signer_via_intermediate = certify(
        kmc_name("Key Load Signer 2"),
        _key("kmc-key-load-signer-2", fixed),
        intermediate,
        serial=4,
        usage=signing_usage(),
        purposes=(KEY_LOAD_SIGNING,),
    )
    sm = make_sm(root, key=_key("sm", fixed))
    return ProtocolPki(root, signer, intermediate, signer_via_intermediate, sm)
