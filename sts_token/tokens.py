"""Token generation (vending side): credit, management, key change set and meter test tokens."""

from __future__ import annotations

import secrets
from datetime import datetime

from sts_token.amounts import TransferAmount, encode_amount
from sts_token.crc import token_crc
from sts_token.errors import InvalidValue, UnsupportedOperation
from sts_token.identifiers import EncryptionAlgorithm, ManufacturerCode
from sts_token.keys import DecoderKey, KeyParameters
from sts_token.kinds import (
    CreditSubclass,
    KeyChangeSubclass,
    ManagementKind,
    MeterTestSubclass,
    TokenClass,
)
from sts_token.tid import Tid
from sts_token.token_key import TokenKey
from sts_token.token_number import Token


def plain_block(token_class: int, subclass: int, payload: int) -> int:
    """The 64-bit data block ``subclass | payload | CRC`` before encryption (SPEC 2)."""
    crc = token_crc((token_class << 48) | (subclass << 44) | payload)
    return (subclass << 60) | (payload << 16) | crc


def _encrypted(key: TokenKey, token_class: TokenClass, subclass: int, payload: int) -> Token:
    return Token.from_block(token_class, key.encrypt(plain_block(token_class, subclass, payload)))


def _rnd(rnd: int | None) -> int:
    if rnd is None:
        return secrets.randbelow(16)
    if isinstance(rnd, bool) or not isinstance(rnd, int) or not 0 <= rnd <= 15:
        raise InvalidValue(f"RND must be an integer 0..15, got {rnd!r}")
    return rnd


def _tid(key: TokenKey, issued: datetime | Tid) -> Tid:
    return issued if isinstance(issued, Tid) else Tid.at(issued, key.base_date)


def _timed_payload(rnd: int | None, tid: Tid, value_field: int) -> int:
    return (_rnd(rnd) << 40) | (tid.value << 16) | value_field


def credit_token(
    key: TokenKey,
    subclass: CreditSubclass,
    amount: TransferAmount,
    issued: datetime | Tid,
    *,
    rnd: int | None = None,
) -> Token:
    """Class 0 credit transfer token; ``rnd`` defaults to a CSPRNG nibble."""
    payload = _timed_payload(rnd, _tid(key, issued), amount.field)
    return _encrypted(key, TokenClass.CREDIT, CreditSubclass(subclass), payload)


def management_value_field(kind: ManagementKind, value: int) -> int:
    """The 16-bit value field: watts amount-encoded (rounded up) or a raw 16-bit value."""
    if kind.amount_encoded:
        return encode_amount(value)
    if kind is ManagementKind.CLEAR_TAMPER and value != 0:
        raise InvalidValue("clear-tamper carries no value (its field is all zero)")
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 0xFFFF:
        raise InvalidValue(f"{kind.cli_name} value must be an integer 0..65535, got {value!r}")
    return value


def management_token(
    key: TokenKey,
    kind: ManagementKind,
    value: int,
    issued: datetime | Tid,
    *,
    rnd: int | None = None,
) -> Token:
    """Class 2 management token with RND/TID (power limits in watts, register or raw value)."""
    payload = _timed_payload(rnd, _tid(key, issued), management_value_field(kind, value))
    return _encrypted(key, TokenClass.MANAGEMENT, kind, payload)


def key_change_tokens(
    key: TokenKey,
    new_key: DecoderKey,
    new_params: KeyParameters,
    *,
    rollover: bool | None = None,
) -> tuple[Token, ...]:
    """The key change set carrying ``new_key``, each section encrypted with the current ``key``.

    EA07 gives 2 tokens, EA11 4 (in section order 1st..4th). KENHO/KENLO come from the new key's
    KEN. ``rollover`` defaults to "the base date changes", the case where the meter must reset
    its TID history.
    """
    if new_key.ea is not key.ea or new_params.ea is not key.ea:
        raise UnsupportedOperation(
            f"a key change set keeps the algorithm: current key is EA{key.ea.value}, "
            f"new key is EA{new_key.ea.value}"
        )
    ro = (new_params.base_date != key.base_date) if rollover is None else rollover
    ken = new_params.ken.value
    first_word, *rest = (
        int.from_bytes(new_key.value[i : i + 4], "big") for i in range(0, len(new_key.value), 4)
    )
    last_word = rest.pop()
    first = (
        ((ken >> 4) << 40)
        | (new_params.krn.value << 36)
        | (int(ro) << 35)
        | (new_params.key_type.value << 32)
        | first_word
    )
    second = ((ken & 0xF) << 40) | (new_params.tariff_index.value << 32) | last_word
    sections = [(KeyChangeSubclass.FIRST, first), (KeyChangeSubclass.SECOND, second)]
    if key.ea is EncryptionAlgorithm.EA11:
        sgc = new_params.sgc.value
        sections += [
            (KeyChangeSubclass.THIRD, ((sgc & 0xFFF) << 32) | rest[0]),
            (KeyChangeSubclass.FOURTH, ((sgc >> 12) << 32) | rest[1]),
        ]
    return tuple(_encrypted(key, TokenClass.MANAGEMENT, sub, payload) for sub, payload in sections)


def meter_test_token(
    subclass: MeterTestSubclass, control: int, manufacturer_code: ManufacturerCode
) -> Token:
    """Class 1 initiate meter test/display token (not encrypted, no key)."""
    subclass = MeterTestSubclass(subclass)
    if len(manufacturer_code.digits) != subclass.code_digits:
        raise InvalidValue(
            f"meter test subclass {subclass.value} needs a {subclass.code_digits}-digit "
            f"manufacturer code, got {manufacturer_code.digits!r}"
        )
    bits = subclass.control_bits
    if isinstance(control, bool) or not isinstance(control, int) or not 0 <= control < 1 << bits:
        raise InvalidValue(f"control must be an integer 0..{(1 << bits) - 1}, got {control!r}")
    payload = (control << (44 - bits)) | manufacturer_code.value
    block = plain_block(TokenClass.METER_TEST, subclass, payload)
    return Token.from_block(TokenClass.METER_TEST, block)
