"""The SM certificate profile: what the KMC's SM Issuing CA certifies about an approved SM.

Subject `serialNumber` = SMID, `OU` = ID_man, `CN` = "SM <SMID>"; keyUsage digitalSignature
(the SM signs VKLOADREQs) and keyAgreement (it receives ECDH-enveloped key load files); the SM's
kind and certification reference in the private extension `id-kmc-smProfile` (ASN.1 below and
in docs/registry.md). Pure: the caller passes the issuer and the time.

    SmProfile ::= SEQUENCE {
        kind           ENUMERATED { certified(0), virtual(1) },
        certification  Certification OPTIONAL }   -- present exactly when kind = certified
    Certification ::= SEQUENCE {
        model UTF8String, firmware UTF8String, version UTF8String, number UTF8String }
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from asn1crypto import core
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509.oid import NameOID

from key_load_protocol.identifiers import IdMan, Smid
from kmc.pki import Signer
from sm_registry.identifiers import CertificationReference

# The project's UUID arc (ITU-T X.667, shared with key_load_protocol), sub-arc 10 = SM registry.
ID_KMC_SM_REGISTRY = "2.25.183673205267370210918302239409037768677.10"
ID_KMC_SM_PROFILE = x509.ObjectIdentifier(f"{ID_KMC_SM_REGISTRY}.1")
SM_CERTIFICATE_YEARS = 10


class _Kind(core.Enumerated):
    _map = {0: "certified", 1: "virtual"}


class _Certification(core.Sequence):
    _fields = [
        ("model", core.UTF8String),
        ("firmware", core.UTF8String),
        ("version", core.UTF8String),
        ("number", core.UTF8String),
    ]


class _SmProfile(core.Sequence):
    _fields = [
        ("kind", _Kind),
        ("certification", _Certification, {"optional": True}),
    ]


@dataclass(frozen=True)
class SmProfile:
    """The kind and certification reference an SM certificate carries."""

    kind: str
    certification: CertificationReference | None

    def to_der(self) -> bytes:
        value: dict[str, object] = {"kind": self.kind}
        if self.certification is not None:
            value["certification"] = {
                "model": self.certification.model,
                "firmware": self.certification.firmware,
                "version": self.certification.version,
                "number": self.certification.number,
            }
        return bytes(_SmProfile(value).dump())

    @classmethod
    def from_certificate(cls, certificate: x509.Certificate) -> SmProfile:
        extension = certificate.extensions.get_extension_for_oid(ID_KMC_SM_PROFILE).value
        assert isinstance(extension, x509.UnrecognizedExtension)
        parsed = _SmProfile.load(extension.value)
        certification = parsed["certification"]
        return cls(
            kind=parsed["kind"].native,
            certification=None
            if isinstance(certification, core.Void)
            else CertificationReference(**certification.native),
        )


@dataclass(frozen=True)
class CertificateChain:
    """An SM certificate with what it chains through to the KMC root (for key loading and export)."""

    certificate: x509.Certificate
    intermediates: tuple[x509.Certificate, ...]
    root: x509.Certificate

    def pem(self) -> bytes:
        """The SM certificate then its intermediates, PEM concatenated."""
        return b"".join(
            c.public_bytes(serialization.Encoding.PEM)
            for c in (self.certificate, *self.intermediates)
        )


def issue(
    issuer: Signer,
    smid: Smid,
    id_man: IdMan,
    public_key_der: bytes,
    profile: SmProfile,
    now: dt.datetime,
) -> x509.Certificate:
    """Sign the SM certificate; validity never outlives the issuing CA."""
    public_key = serialization.load_der_public_key(public_key_der)
    subject = x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, id_man.value),
            x509.NameAttribute(NameOID.COMMON_NAME, f"SM {smid.value}"),
            x509.NameAttribute(NameOID.SERIAL_NUMBER, smid.value),
        ]
    )
    not_after = min(
        now + dt.timedelta(days=365 * SM_CERTIFICATE_YEARS),
        issuer.certificate.not_valid_after_utc,
    )
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer.certificate.subject)
        .public_key(public_key)  # type: ignore[arg-type]  # checked P-384 at registration
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=True,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)  # type: ignore[arg-type]
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer.key.public_key()),
            critical=False,
        )
        .add_extension(
            x509.UnrecognizedExtension(ID_KMC_SM_PROFILE, profile.to_der()), critical=False
        )
    )
    return builder.sign(issuer.key, hashes.SHA384())
