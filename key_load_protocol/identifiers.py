"""The identifiers every layer shares: SMID, ID_man, and the SGC, KRN, KT and KEN of a vending key.

One rule per identifier, checked once in a constructor; the registry, the key store, key loading,
the protocol and the SM emulator all use these (docs/protocol.md, "Identifiers"). SMID and ID_man
are STS 600-4-2 security-module concepts and live here; the SGC, KRN, KT and KEN are the token
engine's types (`sts_token.identifiers`), re-checked here only for what the protocol narrows (the
KRN is 1..9 on the wire, the token field has 4 bits).

A refusal is `InvalidIdentifier`: a `ValueError` (and a protocol `InvalidValue`, so `.field` names
the field and `.reason` is `Reason.INVALID_FIELD`) whose `.code` is stable: `invalid_smid`,
`invalid_id_man`, `invalid_sgc`, `invalid_krn`, `invalid_kt`, `invalid_ken`; its message starts
with the field name (`krn: the KRN must be ...`). The KMC maps it to its `InvalidInput` in one place
(`kmc.errors.identifier_input`).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from key_load_protocol.errors import InvalidValue
from sts_token.errors import TokenError
from sts_token.identifiers import KeyExpiryNumber, KeyRevisionNumber, KeyType, SupplyGroupCode

# 1-16 ASCII decimal digits, no leading zero: an SMID is a number with exactly one spelling.
_SMID = re.compile(r"[1-9][0-9]{0,15}", re.ASCII)
_ID_MAN = re.compile(r"[0-9A-F]{4}", re.ASCII)
MAX_SMID_DIGITS = 16
# IEC 62055-41 key revision numbers; the key change token's 4-bit field could carry up to 15.
MAX_KRN = 9
MAX_KEN = 255  # the key expiry number is one byte
_T = TypeVar("_T")


class InvalidIdentifier(InvalidValue):
    """An SMID, ID_man, SGC, KRN, KT or KEN outside its rule; `.code` is the stable reason."""

    def __init__(self, field: str, code: str, detail: str) -> None:
        super().__init__(field, detail)
        self.code = code


@dataclass(frozen=True)
class Smid:
    """A security module identifier: 1 to 16 decimal digits without a leading zero."""

    value: str

    def __post_init__(self) -> None:
        if not isinstance(self.value, str) or not _SMID.fullmatch(self.value):
            raise InvalidIdentifier(
                "smid",
                "invalid_smid",
                f"SMID must be 1-16 decimal digits without a leading zero, got {self.value!r:.40}",
            )

    def __str__(self) -> str:
        return self.value


@dataclass(frozen=True)
class IdMan:
    """A manufacturer identifier (ID_man): 4 hexadecimal digits, held upper case."""

    value: str

    def __post_init__(self) -> None:
        if not isinstance(self.value, str) or not _ID_MAN.fullmatch(self.value):
            raise InvalidIdentifier(
                "id_man",
                "invalid_id_man",
                f"ID_man must be 4 hexadecimal digits, got {self.value!r:.40}",
            )

    @classmethod
    def parse(cls, text: str) -> IdMan:
        """User input: surrounding spaces are dropped and lower case is accepted."""
        return cls(text.strip().upper() if isinstance(text, str) else text)

    def __str__(self) -> str:
        return self.value


def _token_value(field: str, code: str, make: Callable[[], _T], rule: str | None = None) -> _T:
    try:
        return make()
    except TokenError as error:
        raise InvalidIdentifier(field, code, rule or str(error)) from None


def supply_group_code(value: str) -> SupplyGroupCode:
    """The SGC: exactly 6 ASCII decimal digits (`sts_token.SupplyGroupCode`)."""
    if not isinstance(value, str):
        raise InvalidIdentifier("sgc", "invalid_sgc", "SGC must be a string of 6 decimal digits")
    return _token_value("sgc", "invalid_sgc", lambda: SupplyGroupCode(value))


def key_revision_number(value: int) -> KeyRevisionNumber:
    """The KRN of a vending key: an integer 1..9 (`sts_token.KeyRevisionNumber`, narrowed)."""
    rule = f"the KRN must be an integer from 1 to {MAX_KRN}"
    krn = _token_value("krn", "invalid_krn", lambda: KeyRevisionNumber(value), rule)
    if krn.value > MAX_KRN:
        raise InvalidIdentifier("krn", "invalid_krn", rule)
    return krn


def key_type(value: int) -> KeyType:
    """The KT: an integer 0..3 (`sts_token.KeyType`)."""
    rule = "the KT must be an integer from 0 to 3"
    return _token_value("kt", "invalid_kt", lambda: KeyType(value), rule)


def key_expiry_number(value: int) -> KeyExpiryNumber:
    """The KEN: an integer 0..MAX_KEN (`sts_token.KeyExpiryNumber`)."""
    rule = f"the KEN must be an integer from 0 to {MAX_KEN}"
    return _token_value("ken", "invalid_ken", lambda: KeyExpiryNumber(value), rule)
