"""Token decoding (meter side): digits back to class, subclass and fields, CRC-verified.

A token that fails its CRC is refused with :class:`~sts_token.errors.CrcMismatch`: the digits were
mistyped or the token was made for another key. The two cannot be told apart from the token alone.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import TypeVar

from sts_token.amounts import TransferAmount, decode_amount
from sts_token.crc import token_crc
from sts_token.errors import (
    CrcMismatch,
    InvalidTokenNumber,
    KeyChangeIncomplete,
    KeyRequired,
    UnsupportedOperation,
)
from sts_token.identifiers import (
    EncryptionAlgorithm,
    KeyExpiryNumber,
    KeyRevisionNumber,
    KeyType,
    ManufacturerCode,
    SupplyGroupCode,
    TariffIndex,
)
from sts_token.keys import DecoderKey
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

_PAYLOAD_MASK = (1 << 44) - 1
_KEY_CHANGE_SUBCLASSES = frozenset(s.value for s in KeyChangeSubclass)
_Kind = TypeVar("_Kind", CreditSubclass, ManagementKind, MeterTestSubclass)
_WORD = 0xFFFFFFFF

JsonValue = str | int | bool | None


@dataclass(frozen=True)
class CreditTransfer:
    """Class 0: credit of ``amount`` (as carried, after the encoder's rounding up)."""

    subclass: CreditSubclass
    rnd: int
    tid: Tid
    issued_at: datetime
    amount: TransferAmount

    def to_dict(self) -> dict[str, JsonValue]:
        """Plain fields for JSON output."""
        return {
            **_timed_fields(TokenClass.CREDIT, self.subclass.value, self.subclass.cli_name, self),
            "transfer_amount": self.amount.tenths,
            "amount": str(self.amount.carried),
        }


@dataclass(frozen=True)
class ManagementInstruction:
    """Class 2 with RND/TID: ``value`` is watts for power limits, else the raw 16-bit field."""

    kind: ManagementKind
    rnd: int
    tid: Tid
    issued_at: datetime
    value: int

    def to_dict(self) -> dict[str, JsonValue]:
        """Plain fields for JSON output."""
        return {
            **_timed_fields(TokenClass.MANAGEMENT, self.kind.value, self.kind.cli_name, self),
            "value": self.value,
        }


def _timed_fields(
    token_class: TokenClass, subclass: int, kind: str, token: CreditTransfer | ManagementInstruction
) -> dict[str, JsonValue]:
    return {
        "class": token_class.value,
        "subclass": subclass,
        "kind": kind,
        "rnd": token.rnd,
        "tid": token.tid.value,
        "issued_at": token.issued_at.isoformat(timespec="minutes"),
    }


@dataclass(frozen=True)
class MeterTestInstruction:
    """Class 1 initiate meter test/display (never encrypted)."""

    subclass: MeterTestSubclass
    control: int
    manufacturer_code: ManufacturerCode

    def to_dict(self) -> dict[str, JsonValue]:
        """Plain fields for JSON output."""
        return {
            "class": TokenClass.METER_TEST.value,
            "subclass": self.subclass.value,
            "kind": "meter-test",
            "control": self.control,
            "manufacturer_code": self.manufacturer_code.digits,
        }


@dataclass(frozen=True)
class KeyChangeSection:
    """One section of a key change set; which fields are set depends on ``section``.

    1st: KENHO, KRN, RO, reserved bit, KT and the new key's first word. 2nd: KENLO, TI and the
    new key's last word. 3rd/4th (EA11): low/high 12 SGC bits and the second/third key word.
    """

    section: KeyChangeSubclass
    key_word: int
    ken_nibble: int | None = None
    krn: int | None = None
    rollover: bool | None = None
    reserved: int | None = None
    key_type: int | None = None
    tariff_index: int | None = None
    sgc_bits: int | None = None

    def to_dict(self) -> dict[str, JsonValue]:
        """Plain fields for JSON output (the key word is secret material, shown deliberately)."""
        fields: dict[str, JsonValue] = {
            "class": TokenClass.MANAGEMENT.value,
            "subclass": self.section.value,
            "kind": f"key-change-{self.section.name.lower()}",
            "key_word": f"{self.key_word:08x}",
        }
        for name in ("ken_nibble", "krn", "rollover", "reserved", "key_type", "tariff_index"):
            value = getattr(self, name)
            if value is not None:
                fields[name] = value
        if self.sgc_bits is not None:
            fields["sgc_bits"] = self.sgc_bits
        return fields


DecodedToken = CreditTransfer | ManagementInstruction | MeterTestInstruction | KeyChangeSection


def decode_token(token: Token | str, key: TokenKey | None = None) -> DecodedToken:
    """Decode and CRC-check a token; ``key`` is required for classes 0 and 2 (SPEC 10)."""
    if isinstance(token, str):
        token = Token.parse(token)
    token_class = token.token_class
    if token_class == 3:
        raise InvalidTokenNumber("token class 3 is reserved: digits are corrupted")
    if token_class == TokenClass.METER_TEST:
        plain = token.block
    elif key is None:
        raise KeyRequired("a decoder key is needed to decode class 0 and class 2 tokens")
    else:
        plain = key.decrypt(token.block)
    subclass = plain >> 60
    payload = (plain >> 16) & _PAYLOAD_MASK
    if plain & 0xFFFF != token_crc((token_class << 48) | (subclass << 44) | payload):
        raise CrcMismatch("token CRC does not match: digits mistyped or token made for another key")
    if token_class == TokenClass.METER_TEST:
        return _meter_test(subclass, payload)
    assert key is not None  # class 0/2 were decrypted with the key above
    rnd = payload >> 40
    tid = Tid((payload >> 16) & 0xFFFFFF)
    field = payload & 0xFFFF
    if token_class == TokenClass.CREDIT:
        amount = TransferAmount(decode_amount(field))
        credit = _subclass(CreditSubclass, subclass, "credit")
        return CreditTransfer(credit, rnd, tid, tid.datetime(key.base_date), amount)
    if subclass in _KEY_CHANGE_SUBCLASSES:
        return _key_change_section(KeyChangeSubclass(subclass), payload)
    kind = _subclass(ManagementKind, subclass, "management")
    value = decode_amount(field) if kind.amount_encoded else field
    return ManagementInstruction(kind, rnd, tid, tid.datetime(key.base_date), value)


def _subclass(kinds: type[_Kind], subclass: int, what: str) -> _Kind:
    try:
        return kinds(subclass)
    except ValueError:
        raise UnsupportedOperation(f"{what} subclass {subclass} is not supported") from None


def _meter_test(subclass: int, payload: int) -> MeterTestInstruction:
    kind = _subclass(MeterTestSubclass, subclass, "meter test")
    code_bits = 44 - kind.control_bits
    code = payload & ((1 << code_bits) - 1)
    if code >= 10**kind.code_digits:
        raise InvalidTokenNumber(f"manufacturer code {code} does not fit {kind.code_digits} digits")
    return MeterTestInstruction(
        kind, payload >> code_bits, ManufacturerCode(f"{code:0{kind.code_digits}d}")
    )


def _key_change_section(section: KeyChangeSubclass, payload: int) -> KeyChangeSection:
    word = payload & _WORD
    top = payload >> 32
    if section is KeyChangeSubclass.FIRST:
        return KeyChangeSection(
            section,
            word,
            ken_nibble=top >> 8,
            krn=(top >> 4) & 0xF,
            rollover=bool((top >> 3) & 1),
            reserved=(top >> 2) & 1,
            key_type=top & 3,
        )
    if section is KeyChangeSubclass.SECOND:
        return KeyChangeSection(section, word, ken_nibble=top >> 8, tariff_index=top & 0xFF)
    return KeyChangeSection(section, word, sgc_bits=top)


@dataclass(frozen=True)
class NewKey:
    """What a completed key change set tells the meter to switch to."""

    decoder_key: DecoderKey
    key_type: KeyType
    krn: KeyRevisionNumber
    ken: KeyExpiryNumber
    tariff_index: TariffIndex
    rollover: bool
    sgc: SupplyGroupCode | None
    """Only EA11 sets carry the SGC; for EA07 it is implied by the new key."""

    def to_dict(self) -> dict[str, JsonValue]:
        """Plain fields for JSON output (includes the new key: secret, shown deliberately)."""
        return {
            "decoder_key": self.decoder_key.hex(),
            "ea": self.decoder_key.ea.value,
            "key_type": self.key_type.value,
            "krn": self.krn.value,
            "ken": self.ken.value,
            "ti": self.tariff_index.digits,
            "rollover": self.rollover,
            "sgc": self.sgc.digits if self.sgc is not None else None,
        }


def assemble_key_change(sections: Iterable[KeyChangeSection], ea: EncryptionAlgorithm) -> NewKey:
    """Rebuild the new key and its parameters from the decoded sections of one set (any order).

    EA07 needs the 1st and 2nd sections, EA11 all four; the key is W0 (1st) | W1 (3rd) |
    W2 (4th) | W3 (2nd) for EA11 and NKHO (1st) | NKLO (2nd) for EA07.
    """
    needed = (
        (KeyChangeSubclass.FIRST, KeyChangeSubclass.SECOND)
        if ea is EncryptionAlgorithm.EA07
        else tuple(KeyChangeSubclass)
    )
    by_section: dict[KeyChangeSubclass, KeyChangeSection] = {}
    for item in sections:
        if item.section not in needed:
            raise KeyChangeIncomplete(
                f"section {item.section.name.lower()} does not belong to an EA{ea.value} set"
            )
        if item.section in by_section:
            raise KeyChangeIncomplete(f"section {item.section.name.lower()} given twice")
        by_section[item.section] = item
    missing = [s.name.lower() for s in needed if s not in by_section]
    if missing:
        raise KeyChangeIncomplete(f"key change set is missing section(s): {', '.join(missing)}")
    first = by_section[KeyChangeSubclass.FIRST]
    second = by_section[KeyChangeSubclass.SECOND]
    words = [first.key_word]
    sgc = None
    if ea is EncryptionAlgorithm.EA11:
        third = by_section[KeyChangeSubclass.THIRD]
        fourth = by_section[KeyChangeSubclass.FOURTH]
        words += [third.key_word, fourth.key_word]
        sgc = SupplyGroupCode(f"{(_bits(fourth.sgc_bits) << 12) | _bits(third.sgc_bits):06d}")
    words.append(second.key_word)
    key = DecoderKey(b"".join(w.to_bytes(4, "big") for w in words), ea)
    return NewKey(
        decoder_key=key,
        key_type=KeyType(_bits(first.key_type)),
        krn=KeyRevisionNumber(_bits(first.krn)),
        ken=KeyExpiryNumber((_bits(first.ken_nibble) << 4) | _bits(second.ken_nibble)),
        tariff_index=TariffIndex(_bits(second.tariff_index)),
        rollover=bool(first.rollover),
        sgc=sgc,
    )


def _bits(value: int | None) -> int:
    if value is None:
        raise KeyChangeIncomplete("a key change section lacks a field its section number requires")
    return value


def decode_key_change(tokens: Iterable[Token | str], key: TokenKey) -> NewKey:
    """Decode a whole key change set with the meter's current key and assemble the new key."""
    sections = []
    for token in tokens:
        decoded = decode_token(token, key)
        if not isinstance(decoded, KeyChangeSection):
            raise KeyChangeIncomplete("a token of the set is not a key change section")
        sections.append(decoded)
    return assemble_key_change(sections, key.ea)
