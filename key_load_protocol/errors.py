"""Every way a key-load message can be refused, as exceptions with a stable machine-readable reason.

    ProtocolError                  base; `.reason` is a `Reason`, `str(exc)` a one-line explanation
    ├── InvalidValue               a domain value out of its range (also a ValueError)
    ├── MalformedMessage           too large, not DER, wrong content type, wrong structure
    ├── UnsupportedAlgorithm       an algorithm or curve outside the profile (e.g. a SHA-1 KDF)
    ├── SignatureInvalid           the signature, message digest or signer identity does not check out
    ├── UntrustedSigner            the signer certificate does not chain to the pinned root, or is
    │                              unfit (key usage, validity, not a KMC key-load signer)
    ├── UnsuitableRecipient        the SM certificate cannot receive an EKLF (no keyAgreement, no SKI...)
    ├── DecryptionFailed           the envelope does not open with this private key
    └── NotAnAnswer                a genuine EKLF that does not answer this SM's outstanding request

Messages never carry key material, plaintext or nonces: they name the field or the check that failed.
"""

from __future__ import annotations

import enum
from collections.abc import Iterator
from contextlib import contextmanager


class Reason(enum.StrEnum):
    """Stable codes for logs, audit records, HTTP problem details and CLI exit messages."""

    INVALID_FIELD = "invalid-field"
    KCV_MISMATCH = "kcv-mismatch"
    KEY_MISMATCH = "key-mismatch"
    TOO_LARGE = "too-large"
    NOT_DER = "not-der"
    WRONG_CONTENT_TYPE = "wrong-content-type"
    WRONG_ECONTENT_TYPE = "wrong-econtent-type"
    BAD_STRUCTURE = "bad-structure"
    UNSUPPORTED_VERSION = "unsupported-version"
    UNSUPPORTED_DIGEST = "unsupported-digest"
    UNSUPPORTED_SIGNATURE_ALGORITHM = "unsupported-signature-algorithm"
    UNSUPPORTED_CURVE = "unsupported-curve"
    UNSUPPORTED_RECIPIENT_TYPE = "unsupported-recipient-type"
    UNSUPPORTED_KDF = "unsupported-kdf"
    UNSUPPORTED_KEY_WRAP = "unsupported-key-wrap"
    UNSUPPORTED_CONTENT_ENCRYPTION = "unsupported-content-encryption"
    SIGNER_NOT_FOUND = "signer-not-found"
    SIGNER_MISMATCH = "signer-mismatch"
    DIGEST_MISMATCH = "digest-mismatch"
    BAD_SIGNATURE = "bad-signature"
    MISSING_SIGNING_TIME = "missing-signing-time"
    CERTIFICATE_NOT_VALID = "certificate-not-valid"
    UNTRUSTED_CHAIN = "untrusted-chain"
    SIGNER_KEY_USAGE = "signer-key-usage"
    SIGNER_PURPOSE = "signer-purpose"
    RECIPIENT_KEY_USAGE = "recipient-key-usage"
    RECIPIENT_NO_KEY_ID = "recipient-no-key-id"
    RECIPIENT_SMID_MISMATCH = "recipient-smid-mismatch"
    NOT_FOR_THIS_KEY = "not-for-this-key"
    BAD_PADDING = "bad-padding"
    SMID_MISMATCH = "smid-mismatch"
    UNKNOWN_NONCE = "unknown-nonce"
    SEQUENCE_NOT_INCREASING = "sequence-not-increasing"


class ProtocolError(Exception):
    """Base of every refusal raised by `key_load_protocol`."""

    def __init__(self, reason: Reason, message: str) -> None:
        super().__init__(message)
        self.reason = reason


class InvalidValue(ProtocolError, ValueError):
    """A field of a request, key or key-load file is outside its documented range."""

    def __init__(self, field: str, message: str, reason: Reason = Reason.INVALID_FIELD) -> None:
        super().__init__(reason, f"{field}: {message}")
        self.field = field


class MalformedMessage(ProtocolError):
    """The bytes are not the CMS structure the profile requires."""


class UnsupportedAlgorithm(ProtocolError):
    """A well-formed message uses an algorithm, parameter or curve the profile does not allow."""


class SignatureInvalid(ProtocolError):
    """The CMS signature (or the message digest it covers) does not verify."""


class UntrustedSigner(ProtocolError):
    """The signer's certificate is not acceptable: chain, validity, key usage or purpose."""


class UnsuitableRecipient(ProtocolError):
    """The SM certificate cannot be used to address an EKLF."""


class DecryptionFailed(ProtocolError):
    """The enveloped key-load file cannot be opened with the given private key."""


class NotAnAnswer(ProtocolError):
    """An authentic EKLF that this SM must still refuse (wrong SMID, stale nonce or sequence)."""


@contextmanager
def decoding(what: str) -> Iterator[None]:
    """Turn any asn1crypto/cryptography parse failure inside the block into `MalformedMessage`.

    asn1crypto parses lazily, so errors surface on field access; the original exception is
    dropped (`from None`) because its text may quote the undecodable bytes.
    """
    try:
        yield
    except ProtocolError:
        raise
    except (ValueError, TypeError, KeyError, IndexError, OverflowError, AttributeError):
        raise MalformedMessage(
            Reason.NOT_DER, f"{what} is not valid DER for its structure"
        ) from None
