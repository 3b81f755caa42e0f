"""Token generation (vending side): credit, management, key change set and meter test tokens."""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from datetime import datetime

from sts_token.amounts import TransferAmount, encode_amount
from sts_token.crc import token_crc
from sts_token.errors import InvalidValue, UnsupportedOperation
from sts_token.identifiers import BaseDate, EncryptionAlgorithm, ManufacturerCode
from sts_token.keys import DecoderKey, KeyParameters
from sts_token.kinds import (
    CreditSubclass,
    KeyChangeSubclass,
    ManagementKind,
    MeterTestSubclass,
    TokenClass,
)
from sts_token.tid import Tid
from sts_token.token_batch import ea11_tokens
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


def _tid(base_date: BaseDate, issued: datetime | Tid) -> Tid:
    return issued if isinstance(issued, Tid) else Tid.at(issued, base_date)


def _timed_payload(rnd: int | None, tid: Tid, value_field: int) -> int:
    return (_rnd(rnd) << 40) | (tid.value << 16) | value_field


def credit_payload(
    base_date: BaseDate, amount: TransferAmount, issued: datetime | Tid, rnd: int | None
) -> int:
    """The 44-bit ``RND | TID | amount`` payload of a credit token for a key of ``base_date``."""
    return _timed_payload(rnd, _tid(base_date, issued), amount.field)


def credit_token(
    key: TokenKey,
    subclass: CreditSubclass,
    amount: TransferAmount,
    issued: datetime | Tid,
    *,
    rnd: int | None = None,
) -> Token:
    """Class 0 credit transfer token; ``rnd`` defaults to a CSPRNG nibble."""
    payload = credit_payload(key.base_date, amount, issued, rnd)
    return _encrypted(key, TokenClass.CREDIT, CreditSubclass(subclass), payload)


def credit_tokens(
    key: TokenKey,
    subclass: CreditSubclass,
    amounts: Sequence[TransferAmount],
    issued: Sequence[datetime | Tid],
    *,
    rnds: Sequence[int] | None = None,
) -> list[Token]:
    """Many credit tokens under one key: token i is ``credit_token(key, subclass, amounts[i],
    issued[i], rnd=rnds[i])``, made in one pass of the batch engine for an EA11 key."""
    if rnds is None:
        rnds = [byte & 0xF for byte in secrets.token_bytes(len(amounts))]
    if not len(amounts) == len(issued) == len(rnds):
        raise InvalidValue("credit_tokens needs as many issue times and RNDs as amounts")
    subclass = CreditSubclass(subclass)
    fields = {amount: amount.field for amount in set(amounts)}
    base_date = key.base_date
    payloads = [
        _timed_payload(rnd, _tid(base_date, when), fields[amount])
        for amount, when, rnd in zip(amounts, issued, rnds, strict=True)
    ]
    if key.ea is EncryptionAlgorithm.EA11:
        classes = [TokenClass.CREDIT] * len(payloads)
        return ea11_tokens([key.decoder_key.value], classes, [subclass] * len(payloads), payloads)
    return [_encrypted(key, TokenClass.CREDIT, subclass, payload) for payload in payloads]


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
    payload = _timed_payload(rnd, _tid(key.base_date, issued), management_value_field(kind, value))
    return _encrypted(key, TokenClass.MANAGEMENT, kind, payload)


def key_change_sections(
    ea: EncryptionAlgorithm,
    base_date: BaseDate,
    new_key: DecoderKey,
    new_params: KeyParameters,
    rollover: bool | None,
) -> list[tuple[KeyChangeSubclass, int]]:
    """(subclass, payload) of each section of the key change set carrying ``new_key`` for a
    current key of algorithm ``ea`` and ``base_date`` (see `key_change_tokens`)."""
    if new_key.ea is not ea or new_params.ea is not ea:
        raise UnsupportedOperation(
            f"a key change set keeps the algorithm: current key is EA{ea.value}, "
            f"new key is EA{new_key.ea.value}"
        )
    ro = (new_params.base_date != base_date) if rollover is None else rollover
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
    if ea is EncryptionAlgorithm.EA11:
        sgc = new_params.sgc.value
        sections += [
            (KeyChangeSubclass.THIRD, ((sgc & 0xFFF) << 32) | rest[0]),
            (KeyChangeSubclass.FOURTH, ((sgc >> 12) << 32) | rest[1]),
        ]
    return sections


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
    sections = key_change_sections(key.ea, key.base_date, new_key, new_params, rollover)
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
