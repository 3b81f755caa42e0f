"""Every failure the token engine reports, as one small exception tree.

Callers catch :class:`TokenError` for "this token operation failed"; each subclass carries a stable
machine-readable ``reason`` so the KMC, the emulators and the CLI can map it (HTTP status, exit code,
message) in exactly one place. Messages never contain key material.

    TokenError
    ├── InvalidValue                 a domain value failed validation at construction
    │   ├── InvalidPan               PAN/IIN/DRN length, digits or Luhn check digit
    │   ├── InvalidKey               vending or decoder key of the wrong length / not hex
    │   └── InvalidAmount            amount negative, too fine or above the 16-bit encoding maximum
    ├── TidOutOfRange                issue time before the base date or past the 24-bit TID range
    ├── UnsupportedOperation         a combination the engine deliberately does not build
    ├── Ea07TablesMissing            EA07 needs the licensed tables and none were supplied
    ├── Ea07TablesInvalid            the supplied EA07 tables file is unreadable or inconsistent
    ├── InvalidTokenNumber           the 20 digits are not a well-formed token
    ├── KeyRequired                  a class 0/2 token cannot be decoded without a decoder key
    ├── CrcMismatch                  decoded block fails its CRC: corrupted or made for another key
    └── KeyChangeIncomplete          a key change set is missing, duplicates or mixes sections
"""

from __future__ import annotations


class TokenError(Exception):
    """Base of every token-engine failure; ``reason`` is the stable machine-readable code."""

    reason: str = "token_error"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InvalidValue(TokenError):
    """A domain value (SGC, TI, KRN, date, field value...) failed validation."""

    reason = "invalid_value"


class InvalidPan(InvalidValue):
    """The PAN, IIN or DRN has the wrong length, non-digits or a wrong check digit."""

    reason = "invalid_pan"


class InvalidKey(InvalidValue):
    """A vending or decoder key is not hex or has the wrong length for its algorithm."""

    reason = "invalid_key"


class InvalidAmount(InvalidValue):
    """An amount is negative, finer than the unit allows, or above the encodable maximum."""

    reason = "invalid_amount"


class TidOutOfRange(TokenError):
    """The issue time cannot be expressed as a 24-bit minute count from the base date."""

    reason = "tid_out_of_range"


class UnsupportedOperation(TokenError):
    """A parameter combination outside what the specification covers (e.g. DKGA02 with EA11)."""

    reason = "unsupported"


class Ea07TablesMissing(TokenError):
    """EA07 was requested but no licensed EA07 tables were supplied (file or STS_EA07_TABLES)."""

    reason = "ea07_tables_missing"


class Ea07TablesInvalid(TokenError):
    """The EA07 tables file exists but cannot be read or is not a consistent set of tables."""

    reason = "ea07_tables_invalid"


class InvalidTokenNumber(TokenError):
    """The token text is not 20 decimal digits below 2**66, or carries the reserved class 3."""

    reason = "invalid_token_number"


class KeyRequired(TokenError):
    """Decoding a class 0 or class 2 token needs the meter's decoder key."""

    reason = "key_required"


class CrcMismatch(TokenError):
    """The decoded block's CRC does not match: corrupted digits or a token for another key."""

    reason = "crc_mismatch"


class KeyChangeIncomplete(TokenError):
    """A key change set cannot be assembled: sections missing, repeated or not key-change tokens."""

    reason = "key_change_incomplete"
