"""CMS SignedData (RFC 5652) as the profile uses it: one signer, ECDSA P-384 with SHA-384.

The signer is named by subjectKeyIdentifier; signed attributes (content type, signing time,
message digest) are always present. ECDSA signatures are deterministic (RFC 6979), so a signed
file is a function of its inputs, which is what makes the worked example reproducible.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import secrets
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from asn1crypto import cms, core
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from key_load_protocol import der, schema
from key_load_protocol.certificates import check_key_pair, p384_public_key, subject_key_id
from key_load_protocol.der import encoding_problem
from key_load_protocol.errors import (
    InvalidValue,
    MalformedMessage,
    Reason,
    SignatureInvalid,
    UnsupportedAlgorithm,
    decoding,
)

_SIGNATURE = ec.ECDSA(hashes.SHA384(), deterministic_signing=True)
# RFC 5754 section 2: SHA-384's AlgorithmIdentifier as asn1crypto (and OpenSSL) write it, NULL parameters.
_SHA384 = der.algorithm_identifier(schema.ID_SHA384, der.NULL)
_SET_TAG = 0x31
# RFC 5652 section 11.3: signing time before 2050 is UTCTime, from 2050 GeneralizedTime.
_UTC_TIME_END = dt.datetime(2050, 1, 1, tzinfo=dt.UTC)


def sign(
    content_type: str,
    content: bytes,
    *,
    key: ec.EllipticCurvePrivateKey,
    certificate: x509.Certificate,
    signing_time: dt.datetime,
    certificates: Sequence[x509.Certificate],
) -> bytes:
    """A DER ContentInfo(SignedData) over `content`, signed by `key` whose `certificate` names it."""
    check_key_pair(key, certificate)
    key_id = subject_key_id(certificate)
    if key_id is None:
        raise InvalidValue("certificate", "the signer certificate has no subjectKeyIdentifier")
    signing = der.utc_time if signing_time < _UTC_TIME_END else der.generalized_time
    attributes = der.set_of(
        [
            _attribute(schema.ID_CONTENT_TYPE, der.object_identifier(content_type)),
            _attribute(schema.ID_SIGNING_TIME, signing(signing_time)),
            _attribute(
                schema.ID_MESSAGE_DIGEST, der.octet_string(hashlib.sha384(content).digest())
            ),
        ]
    )
    signer = der.sequence(
        der.integer(3),
        der.implicit(0, der.octet_string(key_id)),
        _SHA384,
        der.implicit(0, attributes),
        der.algorithm_identifier(schema.ID_ECDSA_WITH_SHA384),
        der.octet_string(key.sign(attributes, _SIGNATURE)),
    )
    # The certificates field is always written, as an empty SET when none travel (as before).
    carried = der.implicit(
        0, der.set_of(c.public_bytes(serialization.Encoding.DER) for c in certificates)
    )
    signed_data = der.sequence(
        der.integer(3),
        der.set_of([_SHA384]),
        der.sequence(
            der.object_identifier(content_type), der.explicit(0, der.octet_string(content))
        ),
        carried,
        der.set_of([signer]),
    )
    return der.sequence(der.object_identifier(schema.ID_SIGNED_DATA), der.explicit(0, signed_data))


def _attribute(attribute_type: str, value: bytes) -> bytes:
    """A CMS Attribute with its single value."""
    return der.sequence(der.object_identifier(attribute_type), der.set_of([value]))


@dataclass(frozen=True)
class SignedContent:
    """A parsed single-signer SignedData: its content, the signer's key ID and what to verify."""

    content: bytes
    signer_key_id: bytes
    signing_time: dt.datetime | None
    certificates: tuple[x509.Certificate, ...]
    signed_attributes: bytes = field(repr=False)
    signature: bytes = field(repr=False)
    message_digest: bytes = field(repr=False)

    def signer_certificate(self) -> x509.Certificate:
        """The certificate carried in the message whose subjectKeyIdentifier names the signer."""
        for certificate in self.certificates:
            if subject_key_id(certificate) == self.signer_key_id:
                return certificate
        raise SignatureInvalid(
            Reason.SIGNER_NOT_FOUND, "the message carries no certificate for its signer"
        )

    def verify_signature(self, public_key: object) -> None:
        """Check the message digest and the ECDSA P-384 signature over the signed attributes."""
        key = p384_public_key(public_key, "signer")
        if not secrets.compare_digest(hashlib.sha384(self.content).digest(), self.message_digest):
            raise SignatureInvalid(
                Reason.DIGEST_MISMATCH, "the content does not match the signed message digest"
            )
        try:
            key.verify(self.signature, self.signed_attributes, ec.ECDSA(hashes.SHA384()))
        except InvalidSignature:
            raise SignatureInvalid(Reason.BAD_SIGNATURE, "the signature does not verify") from None


def read(der: bytes, *, content_type: str, max_size: int, what: str) -> SignedContent:
    """Parse a DER ContentInfo(SignedData) whose eContentType must be `content_type`.

    Only parsing and profile checks happen here; the caller decides which key to verify with.
    """
    if len(der) > max_size:
        raise MalformedMessage(Reason.TOO_LARGE, f"the {what} is larger than {max_size} bytes")
    problem = encoding_problem(der)
    if problem is not None:  # every layer DER, before anything is parsed or verified
        raise MalformedMessage(Reason.NOT_DER, f"the {what} is not DER: {problem}")
    with decoding(f"the {what}"):
        info = cms.ContentInfo.load(der, strict=True)
        if info["content_type"].native != "signed_data":
            raise MalformedMessage(Reason.WRONG_CONTENT_TYPE, f"the {what} is not a CMS SignedData")
        signed_data = info["content"]
        encapsulated = signed_data["encap_content_info"]
        if encapsulated["content_type"].dotted != content_type:
            raise MalformedMessage(
                Reason.WRONG_ECONTENT_TYPE,
                f"the {what} signs content of type {encapsulated['content_type'].dotted}",
            )
        if encapsulated["content"].native is None:
            raise MalformedMessage(Reason.BAD_STRUCTURE, f"the {what} has detached content")
        digests = [
            (a["algorithm"].native, a["parameters"].native)
            for a in signed_data["digest_algorithms"]
        ]
        if signed_data["version"].native != "v3" or digests != [("sha384", None)]:
            raise MalformedMessage(
                Reason.BAD_STRUCTURE, f"the {what} is not a version 3 SignedData over SHA-384"
            )
        signers = signed_data["signer_infos"]
        if len(signers) != 1:
            raise MalformedMessage(Reason.BAD_STRUCTURE, f"the {what} must have exactly one signer")
        signer = signers[0]
        signed_attributes = bytes([_SET_TAG]) + signer["signed_attrs"].dump()[1:]
        problem = encoding_problem(signed_attributes)  # the [0] IMPLICIT SET OF, sorted
        if problem is not None:
            raise MalformedMessage(
                Reason.NOT_DER, f"the {what} signed attributes are not DER: {problem}"
            )
        return SignedContent(
            content=bytes(encapsulated["content"].native),
            signer_key_id=_signer_key_id(signer, what),
            signing_time=_check_algorithms_and_attributes(signer, content_type, what),
            certificates=_certificates(signed_data, what),
            signed_attributes=signed_attributes,
            signature=signer["signature"].native,
            message_digest=bytes(_single_attribute(signer, "message_digest", what).native),
        )


def _signer_key_id(signer: cms.SignerInfo, what: str) -> bytes:
    if signer["version"].native != "v3" or signer["sid"].name != "subject_key_identifier":
        raise MalformedMessage(
            Reason.BAD_STRUCTURE, f"the {what} signer must be named by subjectKeyIdentifier"
        )
    key_id: bytes = signer["sid"].chosen.native
    return key_id


def _check_algorithms_and_attributes(
    signer: cms.SignerInfo, content_type: str, what: str
) -> dt.datetime | None:
    """Enforce SHA-384 / ecdsa-with-SHA384 and a content-type attribute equal to eContentType."""
    if signer["digest_algorithm"]["algorithm"].native != "sha384":
        raise UnsupportedAlgorithm(Reason.UNSUPPORTED_DIGEST, f"the {what} digest is not SHA-384")
    if signer["signature_algorithm"]["algorithm"].native != "sha384_ecdsa":
        raise UnsupportedAlgorithm(
            Reason.UNSUPPORTED_SIGNATURE_ALGORITHM, f"the {what} signature is not ecdsa-with-SHA384"
        )
    if isinstance(signer["signed_attrs"], core.Void):  # absent; `.native` would decode them all
        raise MalformedMessage(Reason.BAD_STRUCTURE, f"the {what} has no signed attributes")
    if _single_attribute(signer, "content_type", what).dotted != content_type:
        raise MalformedMessage(
            Reason.WRONG_ECONTENT_TYPE,
            f"the {what} content-type attribute differs from its content",
        )
    times = [a["values"] for a in signer["signed_attrs"] if a["type"].native == "signing_time"]
    if not times:
        return None
    if len(times) != 1 or len(times[0]) != 1:
        raise MalformedMessage(Reason.BAD_STRUCTURE, f"the {what} has several signing times")
    signing_time: dt.datetime = times[0][0].native
    return signing_time


def _single_attribute(signer: cms.SignerInfo, name: str, what: str) -> Any:
    found = [a["values"] for a in signer["signed_attrs"] if a["type"].native == name]
    if len(found) != 1 or len(found[0]) != 1:
        raise MalformedMessage(
            Reason.BAD_STRUCTURE, f"the {what} must have exactly one {name} attribute"
        )
    return found[0][0]


def _certificates(signed_data: cms.SignedData, what: str) -> tuple[x509.Certificate, ...]:
    certificates = []
    for choice in signed_data["certificates"] or ():
        if choice.name != "certificate":
            raise MalformedMessage(
                Reason.BAD_STRUCTURE, f"the {what} carries a certificate that is not X.509"
            )
        certificates.append(_load_certificate(choice.chosen.dump(), what))
    return tuple(certificates)


def _load_certificate(der: bytes, what: str) -> x509.Certificate:
    """A carried certificate, fully parsed now so that a malformed one is refused here.

    cryptography parses extensions and keys lazily and reports malformed certificates with
    several unrelated exception types (ValueError, DuplicateExtension, InvalidVersion,
    UnsupportedAlgorithm, and deprecation warnings when those are errors), hence the broad catch.
    """
    try:
        certificate = x509.load_der_x509_certificate(der)
        _ = certificate.extensions, certificate.public_key()
    except Exception:
        raise MalformedMessage(
            Reason.BAD_STRUCTURE, f"the {what} carries a malformed certificate"
        ) from None
    return certificate
