"""VKLOADREQ: an SM's signed request for vending keys (a CMS SignedData over a VKLoadRequest)."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec

from key_load_protocol import signed_data
from key_load_protocol.certificates import check_valid_at, key_usage, smid_of, subject_key_id
from key_load_protocol.codec import decode_request, encode_request
from key_load_protocol.errors import Reason, SignatureInvalid, UntrustedSigner
from key_load_protocol.model import KeyLoadRequest
from key_load_protocol.schema import ID_CT_VK_LOAD_REQUEST

MAX_REQUEST_SIZE = 64 * 1024


def build_request(
    request: KeyLoadRequest,
    *,
    sm_private_key: ec.EllipticCurvePrivateKey,
    sm_certificate: x509.Certificate,
    include_certificate: bool = True,
) -> bytes:
    """The DER VKLOADREQ: `request` signed by the SM, named by its certificate's key identifier.

    The certificate travels in the request unless `include_certificate` is False; the KMC
    verifies against the certificate it registered for the SMID either way.
    """
    return signed_data.sign(
        ID_CT_VK_LOAD_REQUEST,
        encode_request(request),
        key=sm_private_key,
        certificate=sm_certificate,
        signing_time=request.request_time,
        certificates=(sm_certificate,) if include_certificate else (),
    )


@dataclass(frozen=True)
class SignedRequest:
    """A parsed, not yet verified VKLOADREQ: look up the SM by `request.smid`, then `verify`."""

    request: KeyLoadRequest
    der: bytes = field(repr=False)
    signer_key_id: bytes
    _signed: signed_data.SignedContent = field(repr=False, compare=False)

    @property
    def digest(self) -> bytes:
        """SHA-256 of the request as received, for audit records and replay detection."""
        return hashlib.sha256(self.der).digest()

    def verify(self, sm_certificate: x509.Certificate) -> None:
        """Check the request was signed by the SM that `sm_certificate` (the registered one) names.

        The certificate must carry the signer's key identifier and the request's SMID (subject
        serialNumber), allow digitalSignature and be valid at the request time; then the
        signature must verify. Raises a `ProtocolError` subclass otherwise.
        """
        if subject_key_id(sm_certificate) != self.signer_key_id:
            raise SignatureInvalid(
                Reason.SIGNER_MISMATCH, "the request is not signed by this SM certificate's key"
            )
        if smid_of(sm_certificate) != self.request.smid:
            raise SignatureInvalid(
                Reason.SMID_MISMATCH, "the request's SMID is not the SM certificate's"
            )
        usage = key_usage(sm_certificate)
        if usage is None or not usage.digital_signature:
            raise UntrustedSigner(
                Reason.SIGNER_KEY_USAGE, "the SM certificate lacks keyUsage digitalSignature"
            )
        check_valid_at(sm_certificate, self.request.request_time, "SM")
        self._signed.verify_signature(sm_certificate.public_key())


def parse_request(der: bytes, *, max_size: int = MAX_REQUEST_SIZE) -> SignedRequest:
    """Parse a DER VKLOADREQ (size, structure, algorithms, field ranges); `verify` comes next."""
    signed = signed_data.read(
        der, content_type=ID_CT_VK_LOAD_REQUEST, max_size=max_size, what="VKLOADREQ"
    )
    return SignedRequest(
        request=decode_request(signed.content),
        der=der,
        signer_key_id=signed.signer_key_id,
        _signed=signed,
    )
