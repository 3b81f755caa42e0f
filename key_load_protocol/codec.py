"""DER encoding of the protocol's own content types (VKLoadRequest, KeyLoadFile) to and from values.

Decoding is strict: the version must be 1, every field passes the same validation as a value
built in code, and the bytes must be exactly what `encode_*` makes of the resulting value.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from decimal import Decimal
from typing import TypeVar

from asn1crypto import core

from key_load_protocol import der, schema
from key_load_protocol.errors import (
    InvalidValue,
    MalformedMessage,
    Reason,
    UnsupportedAlgorithm,
    decoding,
)
from key_load_protocol.model import (
    MAX_CLM_DECIMALS,
    PROTOCOL_VERSION,
    KeyIdentity,
    KeyLoadFile,
    KeyLoadRequest,
    LoadedKey,
    decimal_parts,
)

_Structure = TypeVar("_Structure", bound=core.Asn1Value)
_Value = TypeVar("_Value")


def _strict_decode(
    der: bytes,
    spec: type[_Structure],
    what: str,
    convert: Callable[[_Structure], _Value],
    encode: Callable[[_Value], bytes],
) -> _Value:
    """Parse, validate and convert; then insist the bytes are exactly our encoding of the value.

    The re-encoding check refuses BER, trailing data, unsorted lists and fractional seconds in
    one place, so every accepted message has a single byte form (and a single digest).
    """
    with decoding(what):
        parsed = spec.load(der, strict=True)
        if parsed["version"].native != PROTOCOL_VERSION:
            raise UnsupportedAlgorithm(Reason.UNSUPPORTED_VERSION, f"{what} version is not 1")
        value = convert(parsed)
    if encode(value) != der:
        raise MalformedMessage(Reason.NOT_DER, f"{what} is not the DER encoding of its value")
    return value


def _identity(value: KeyIdentity) -> bytes:
    return der.sequence(
        der.numeric_string(value.sgc), der.integer(value.krn), der.integer(value.kt)
    )


def _identity_value(parsed: schema.KeyIdentity) -> KeyIdentity:
    return KeyIdentity(parsed["sgc"].native, parsed["krn"].native, parsed["kt"].native)


def encode_request(request: KeyLoadRequest) -> bytes:
    """The DER of the VKLoadRequest that a VKLOADREQ signs."""
    keys = (
        der.implicit(0, der.NULL)
        if request.keys is None
        else der.implicit(1, der.sequence(*(_identity(k) for k in request.keys)))
    )
    return der.sequence(
        der.integer(PROTOCOL_VERSION),
        der.numeric_string(request.smid),
        der.octet_string(request.nonce),
        der.generalized_time(request.request_time),
        keys,
    )


def _request_value(parsed: schema.VKLoadRequest) -> KeyLoadRequest:
    keys = parsed["keys"]
    return KeyLoadRequest(
        smid=parsed["smid"].native,
        nonce=parsed["nonce"].native,
        request_time=parsed["request_time"].native,
        keys=None
        if keys.name == "all_authorised"
        else tuple(_identity_value(k) for k in keys.chosen),
    )


def decode_request(der: bytes) -> KeyLoadRequest:
    """Parse VKLoadRequest DER (the eContent of a VKLOADREQ) into a validated value."""
    return _strict_decode(
        der, schema.VKLoadRequest, "VKLoadRequest", _request_value, encode_request
    )


def _loaded_key(key: LoadedKey) -> bytes:
    optional = []
    if key.clm is not None:
        significand, decimals = decimal_parts(key.clm)
        optional.append(
            der.implicit(0, der.sequence(der.integer(significand), der.integer(decimals)))
        )
    if key.resource_limit is not None:
        optional.append(der.implicit(1, der.integer(key.resource_limit)))
    if key.refresh_days is not None:
        optional.append(der.implicit(2, der.integer(key.refresh_days)))
    return der.sequence(
        _identity(key.identity),
        der.integer(key.ken),
        der.integer(key.base_date),
        der.numeric_string(key.dkga),
        der.sequence(*(der.numeric_string(ea) for ea in sorted(key.eas))),
        der.octet_string(key.key_value),
        der.octet_string(key.kcv),
        der.generalized_time(key.act),
        der.generalized_time(key.exp),
        der.generalized_time(key.iut),
        *optional,
    )


def _loaded_key_value(parsed: schema.LoadedKey) -> LoadedKey:
    eas = [ea.native for ea in parsed["allowed_eas"]]
    if eas != sorted(set(eas)):
        raise InvalidValue("eas", "must be listed once each, in ascending order")
    credit = parsed["credit_limit"]
    if not isinstance(credit, core.Void) and not 0 <= credit["decimals"].native <= MAX_CLM_DECIMALS:
        raise InvalidValue("clm", f"decimals must be 0 to {MAX_CLM_DECIMALS}")
    key = LoadedKey(
        identity=_identity_value(parsed["identity"]),
        ken=parsed["ken"].native,
        base_date=parsed["base_date"].native,
        dkga=parsed["dkga"].native,
        eas=frozenset(eas),
        key_value=parsed["key_value"].native,
        act=parsed["activation_time"].native,
        exp=parsed["expiry_time"].native,
        iut=parsed["issue_until_time"].native,
        clm=None
        if isinstance(credit, core.Void)
        else Decimal(credit["significand"].native).scaleb(-credit["decimals"].native),
        resource_limit=parsed["resource_limit"].native,
        refresh_days=parsed["refresh_days"].native,
    )
    if not secrets.compare_digest(key.kcv, parsed["key_check_value"].native):
        raise InvalidValue(
            "key_check_value", f"does not match the key for {key.identity}", Reason.KCV_MISMATCH
        )
    return key


def encode_key_load_file(klf: KeyLoadFile) -> bytes:
    """The DER of the KeyLoadFile that an EKLF envelope encrypts."""
    return der.sequence(
        der.integer(klf.version),
        der.numeric_string(klf.smid),
        der.octet_string(klf.nonce),
        der.generalized_time(klf.issue_time),
        der.integer(klf.sequence),
        der.utf8_string(klf.kmc_id),
        der.sequence(*(_loaded_key(k) for k in klf.keys)),
    )


def _key_load_file_value(parsed: schema.KeyLoadFile) -> KeyLoadFile:
    return KeyLoadFile(
        smid=parsed["smid"].native,
        nonce=parsed["request_nonce"].native,
        issue_time=parsed["issue_time"].native,
        sequence=parsed["sequence"].native,
        kmc_id=parsed["kmc_id"].native,
        keys=tuple(_loaded_key_value(k) for k in parsed["keys"]),
    )


def decode_key_load_file(der: bytes) -> KeyLoadFile:
    """Parse KeyLoadFile DER (the plaintext of an EKLF) into a validated value."""
    return _strict_decode(
        der, schema.KeyLoadFile, "KeyLoadFile", _key_load_file_value, encode_key_load_file
    )
