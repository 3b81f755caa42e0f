"""The STS key-load protocol: VKLOADREQ (SM → KMC) and EKLF (KMC → SM), on CMS and X.509.

Pure library (no Flask, no database), shared by the KMC and the SM emulator; specified in
docs/protocol.md. Exceptions are described in `key_load_protocol.errors`.
"""

from key_load_protocol.eklf import MAX_EKLF_SIZE, build_eklf, open_eklf
from key_load_protocol.errors import (
    DecryptionFailed,
    InvalidValue,
    MalformedMessage,
    NotAnAnswer,
    ProtocolError,
    Reason,
    SignatureInvalid,
    UnsuitableRecipient,
    UnsupportedAlgorithm,
    UntrustedSigner,
)
from key_load_protocol.identifiers import IdMan, InvalidIdentifier, Smid
from key_load_protocol.kcv import key_check_value
from key_load_protocol.model import KeyIdentity, KeyLoadFile, KeyLoadRequest, LoadedKey
from key_load_protocol.request import (
    MAX_REQUEST_SIZE,
    SignedRequest,
    build_request,
    parse_request,
)
from key_load_protocol.schema import (
    ID_CT_ENHANCED_KEY_LOAD_FILE,
    ID_CT_VK_LOAD_REQUEST,
    ID_KP_KMC_AUDIT_SIGNING,
    ID_KP_KMC_KEY_LOAD_SIGNING,
)

__all__ = [
    "ID_CT_ENHANCED_KEY_LOAD_FILE",
    "ID_CT_VK_LOAD_REQUEST",
    "ID_KP_KMC_AUDIT_SIGNING",
    "ID_KP_KMC_KEY_LOAD_SIGNING",
    "MAX_EKLF_SIZE",
    "MAX_REQUEST_SIZE",
    "DecryptionFailed",
    "IdMan",
    "InvalidIdentifier",
    "InvalidValue",
    "KeyIdentity",
    "KeyLoadFile",
    "KeyLoadRequest",
    "LoadedKey",
    "MalformedMessage",
    "NotAnAnswer",
    "ProtocolError",
    "Reason",
    "SignatureInvalid",
    "Smid",
    "SignedRequest",
    "UnsuitableRecipient",
    "UnsupportedAlgorithm",
    "UntrustedSigner",
    "build_eklf",
    "build_request",
    "key_check_value",
    "open_eklf",
    "parse_request",
]
