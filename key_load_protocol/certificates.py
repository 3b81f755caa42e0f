"""What the protocol requires of the certificates it meets: P-384 keys, key identifiers, usages, chains."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509 import verification
from cryptography.x509.oid import NameOID

from key_load_protocol.errors import (
    InvalidValue,
    Reason,
    UnsupportedAlgorithm,
    UntrustedSigner,
)
from key_load_protocol.schema import ID_KP_KMC_KEY_LOAD_SIGNING

KEY_LOAD_SIGNING = x509.ObjectIdentifier(ID_KP_KMC_KEY_LOAD_SIGNING)


def p384_public_key(key: object, role: str) -> ec.EllipticCurvePublicKey:
    """The key, if it is an EC key on P-384 (the only curve of the profile)."""
    if not isinstance(key, ec.EllipticCurvePublicKey) or not isinstance(key.curve, ec.SECP384R1):
        raise UnsupportedAlgorithm(
            Reason.UNSUPPORTED_CURVE, f"the {role} key is not an EC P-384 key"
        )
    return key


def p384_private_key(key: object, role: str) -> ec.EllipticCurvePrivateKey:
    """The private key, if it is an EC key on P-384."""
    if not isinstance(key, ec.EllipticCurvePrivateKey) or not isinstance(key.curve, ec.SECP384R1):
        raise UnsupportedAlgorithm(
            Reason.UNSUPPORTED_CURVE, f"the {role} key is not an EC P-384 key"
        )
    return key


def subject_key_id(certificate: x509.Certificate) -> bytes | None:
    """The certificate's subjectKeyIdentifier, which names signers and recipients in our CMS."""
    try:
        extension = certificate.extensions.get_extension_for_class(x509.SubjectKeyIdentifier)
    except x509.ExtensionNotFound:
        return None
    return extension.value.digest


def key_usage(certificate: x509.Certificate) -> x509.KeyUsage | None:
    """The keyUsage extension, if present."""
    try:
        return certificate.extensions.get_extension_for_class(x509.KeyUsage).value
    except x509.ExtensionNotFound:
        return None


def check_key_load_signer(certificate: x509.Certificate) -> None:
    """The certificate carries the keyLoadSigning extended key usage.

    Chaining to the KMC root is not enough: SM certificates and the audit signer chain there
    too, with digitalSignature, and must not be able to sign a key-load file for an SM.
    anyExtendedKeyUsage does not count.
    """
    try:
        purposes = certificate.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    except x509.ExtensionNotFound:
        purposes = x509.ExtendedKeyUsage([])
    if KEY_LOAD_SIGNING not in purposes:
        raise UntrustedSigner(
            Reason.SIGNER_PURPOSE, "the signer certificate is not a KMC key-load signer"
        )


def smid_of(certificate: x509.Certificate) -> str | None:
    """The SMID an SM certificate belongs to: its subject serialNumber attribute."""
    values = certificate.subject.get_attributes_for_oid(NameOID.SERIAL_NUMBER)
    if len(values) != 1 or not isinstance(values[0].value, str):
        return None
    return values[0].value


def check_key_pair(private_key: ec.EllipticCurvePrivateKey, certificate: x509.Certificate) -> None:
    """Refuse to sign with a key that the certificate naming the signer does not certify."""
    if certificate.public_key() != private_key.public_key():
        raise InvalidValue(
            "certificate", "does not certify the given private key", Reason.KEY_MISMATCH
        )


def check_valid_at(certificate: x509.Certificate, when: dt.datetime, role: str) -> None:
    """The certificate's validity period covers `when` (the message's own time)."""
    if not certificate.not_valid_before_utc <= when <= certificate.not_valid_after_utc:
        raise UntrustedSigner(
            Reason.CERTIFICATE_NOT_VALID,
            f"the {role} certificate is not valid at {when:%Y-%m-%dT%H:%M:%SZ}",
        )


def verify_chain(
    leaf: x509.Certificate,
    intermediates: Sequence[x509.Certificate],
    trusted_root: x509.Certificate,
    when: dt.datetime,
) -> None:
    """The signer certificate chains to the pinned root, every link valid at `when`.

    CA certificates get the Web PKI CA checks (basicConstraints, keyCertSign, path length);
    the leaf is a signing certificate, not a TLS client, so only its digitalSignature usage is
    required here rather than a subjectAltName. What the leaf may sign is the caller's check
    (`check_key_load_signer` for an EKLF).
    """
    usage = key_usage(leaf)
    if usage is None or not usage.digital_signature:
        raise UntrustedSigner(
            Reason.SIGNER_KEY_USAGE, "the signer certificate lacks keyUsage digitalSignature"
        )
    verifier = (
        verification.PolicyBuilder()
        .store(verification.Store([trusted_root]))
        .time(when)
        .extension_policies(
            ee_policy=verification.ExtensionPolicy.permit_all(),
            ca_policy=verification.ExtensionPolicy.webpki_defaults_ca(),
        )
        .build_client_verifier()
    )
    try:
        verifier.verify(leaf, list(intermediates))
    except verification.VerificationError:
        raise UntrustedSigner(
            Reason.UNTRUSTED_CHAIN,
            f"the signer certificate does not chain to the trusted root at {when:%Y-%m-%dT%H:%M:%SZ}",
        ) from None
