"""Validated identity values of an STS meter and its key (PAN, SGC, TI, KRN, KT, KEN, base date).

Each value checks itself once in its constructor, so code that receives one never re-validates it.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import datetime
from typing import TypeVar

from sts_token.errors import InvalidPan, InvalidValue

_STS_IIN = "600727"


_LUHN_DOUBLED = (0, 2, 4, 6, 8, 1, 3, 5, 7, 9)  # 2d, less 9 when above 9


def luhn_check_digit(payload: str) -> str:
    """The Luhn (mod 10) check digit that makes ``payload + digit`` valid; used by PAN and DRN.

    From the right, the digits next to the check digit's place and every second one after
    them are doubled."""
    doubled = sum(_LUHN_DOUBLED[int(char)] for char in payload[-1::-2])
    total = doubled + sum(int(char) for char in payload[-2::-2])
    return str((10 - total % 10) % 10)


def _require_digits(text: str, what: str, lengths: tuple[int, ...]) -> None:
    if not (text.isascii() and text.isdigit()) or len(text) not in lengths:
        expected = " or ".join(str(n) for n in lengths)
        raise InvalidPan(f"{what} must be {expected} decimal digits, got {len(text)} characters")


class EncryptionAlgorithm(enum.Enum):
    """Token encryption algorithm: EA07 (Standard Transfer Algorithm) or EA11 (MISTY1)."""

    EA07 = "07"
    EA11 = "11"

    @property
    def key_bytes(self) -> int:
        """Decoder key length: 64 bits for EA07, 128 bits for EA11."""
        return 8 if self is EncryptionAlgorithm.EA07 else 16

    @classmethod
    def parse(cls, text: str) -> EncryptionAlgorithm:
        """Accept ``07``/``7``/``EA07`` and ``11``/``EA11``."""
        return _parse_code(cls, text, "EA")


class DecoderKeyAlgorithm(enum.Enum):
    """Decoder key generation algorithm: DKGA02 (DES, 64-bit VK) or DKGA04 (HMAC-SHA-256)."""

    DKGA02 = "02"
    DKGA04 = "04"

    @property
    def vending_key_bytes(self) -> int:
        """Vending key length: 64 bits for DKGA02, 160 bits for DKGA04."""
        return 8 if self is DecoderKeyAlgorithm.DKGA02 else 20

    @classmethod
    def parse(cls, text: str) -> DecoderKeyAlgorithm:
        """Accept ``02``/``2``/``DKGA02`` and ``04``/``4``/``DKGA04``."""
        return _parse_code(cls, text, "DKGA")


_Code = TypeVar("_Code", EncryptionAlgorithm, DecoderKeyAlgorithm)


def _parse_code(kind: type[_Code], text: str, prefix: str) -> _Code:
    code = text.strip().upper().removeprefix(prefix).zfill(2)
    try:
        return kind(code)
    except ValueError:
        allowed = " or ".join(member.value for member in kind)
        raise InvalidValue(f"{prefix} must be {allowed}, got {text!r}") from None


@dataclass(frozen=True)
class ManufacturerCode:
    """Meter manufacturer code: 2 digits (STS IIN 600727 PANs) or 4 digits (4-digit IIN PANs)."""

    digits: str

    def __post_init__(self) -> None:
        if not (self.digits.isascii() and self.digits.isdigit()) or len(self.digits) not in (2, 4):
            raise InvalidValue(
                f"manufacturer code must be 2 or 4 decimal digits, got {self.digits!r}"
            )

    @property
    def value(self) -> int:
        """The code as the binary integer carried in class 1 tokens ("07" -> 7)."""
        return int(self.digits)


@dataclass(frozen=True)
class Pan:
    """18-digit meter primary account number: IIN + DRN + Luhn check digit.

    The IIN is either the 6-digit STS IIN 600727 followed by an 11-digit DRN (2-digit manufacturer
    code) or a 4-digit IIN followed by a 13-digit DRN (4-digit manufacturer code).
    """

    digits: str

    def __post_init__(self) -> None:
        _require_digits(self.digits, "PAN", (18,))
        expected = luhn_check_digit(self.digits[:17])
        if self.digits[17] != expected:
            raise InvalidPan(
                f"PAN check digit is {self.digits[17]}, Luhn requires {expected} for this PAN"
            )

    @classmethod
    def from_iin_drn(cls, iin: str, drn: str) -> Pan:
        """Build a PAN from its IIN and the meter's DRN (whose own Luhn digit is checked)."""
        _require_digits(iin, "IIN", (4, 6))
        _require_digits(drn, "DRN", (17 - len(iin),))
        if len(iin) == 6 and iin != _STS_IIN:
            raise InvalidPan(f"a 6-digit IIN must be the STS IIN {_STS_IIN}, got {iin}")
        if len(iin) == 4 and (iin + drn).startswith(_STS_IIN):
            raise InvalidPan(f"IIN {iin} with this DRN would read as the STS IIN {_STS_IIN}")
        expected = luhn_check_digit(drn[:-1])
        if drn[-1] != expected:
            raise InvalidPan(f"DRN check digit is {drn[-1]}, Luhn requires {expected}")
        body = iin + drn
        return cls(body + luhn_check_digit(body))

    @property
    def iin_length(self) -> int:
        """6 for the STS IIN 600727, otherwise 4."""
        return 6 if self.digits.startswith(_STS_IIN) else 4

    @property
    def iin(self) -> str:
        """The issuer identification number."""
        return self.digits[: self.iin_length]

    @property
    def drn(self) -> str:
        """The decoder reference number (meter number), including its own check digit."""
        return self.digits[self.iin_length : 17]

    @property
    def manufacturer_code(self) -> ManufacturerCode:
        """2-digit code after the STS IIN, or the 4-digit code after a 4-digit IIN."""
        width = 2 if self.iin_length == 6 else 4
        return ManufacturerCode(self.drn[:width])


def _bounded_int(value: int, what: str, low: int, high: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise InvalidValue(f"{what} must be an integer {low}..{high}, got {value!r}")


@dataclass(frozen=True)
class SupplyGroupCode:
    """6-digit supply group code (SGC)."""

    digits: str

    def __post_init__(self) -> None:
        if not (self.digits.isascii() and self.digits.isdigit()) or len(self.digits) != 6:
            raise InvalidValue(f"SGC must be exactly 6 decimal digits, got {self.digits!r}")

    @property
    def value(self) -> int:
        """Binary value of the code, as carried in the EA11 key change 3rd/4th sections."""
        return int(self.digits)


@dataclass(frozen=True)
class TariffIndex:
    """2-digit tariff index (TI) 00..99."""

    value: int

    def __post_init__(self) -> None:
        _bounded_int(self.value, "tariff index", 0, 99)

    @classmethod
    def parse(cls, text: str) -> TariffIndex:
        """Accept ``1`` or ``01``."""
        if not (text.isascii() and text.isdigit()) or len(text) > 2:
            raise InvalidValue(f"tariff index must be 1 or 2 decimal digits, got {text!r}")
        return cls(int(text))

    @property
    def digits(self) -> str:
        """The two-digit form used in key derivation."""
        return f"{self.value:02d}"


@dataclass(frozen=True)
class KeyRevisionNumber:
    """Key revision number (KRN) 1..15 (one hex digit in DKGA02/DKGA04, 4 bits in key change)."""

    value: int

    def __post_init__(self) -> None:
        _bounded_int(self.value, "key revision number", 1, 15)


@dataclass(frozen=True)
class KeyType:
    """Key type (KT) 0..3; 2 bits in the key change 1st section."""

    value: int

    def __post_init__(self) -> None:
        _bounded_int(self.value, "key type", 0, 3)


@dataclass(frozen=True)
class KeyExpiryNumber:
    """Key expiry number (KEN) 0..255, sent as two nibbles (KENHO, KENLO) in a key change."""

    value: int

    def __post_init__(self) -> None:
        _bounded_int(self.value, "key expiry number", 0, 255)


@dataclass(frozen=True)
class BaseDate:
    """TID base date: 00:00 on 1 January of 1993, 2014 or 2035."""

    year: int

    def __post_init__(self) -> None:
        if self.year not in (1993, 2014, 2035):
            raise InvalidValue(f"base date must be 1993, 2014 or 2035, got {self.year!r}")

    @property
    def start(self) -> datetime:
        """The instant TID 0 stands for (naive wall clock)."""
        return datetime(self.year, 1, 1)

    @property
    def code(self) -> str:
        """Two-digit form used in DKGA04 ("93", "14", "35")."""
        return f"{self.year % 100:02d}"
