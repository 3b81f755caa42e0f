"""The values a VKLOADREQ and a KeyLoadFile carry, validated once when constructed.

Ranges follow IEC 62055-41 / STS 600-4-2 vocabulary: SMID (security module ID), SGC (supply group
code), KRN (key revision number), KT (key type), KEN (key expiry number), BDT (base date), DKGA
(decoder key generation algorithm), EA (encryption algorithm). The identifiers (SMID, SGC, KRN,
KT, KEN) are checked by `key_load_protocol.identifiers`, the one rule every layer uses.
"""

from __future__ import annotations

import datetime as dt
import secrets
from collections.abc import Collection
from dataclasses import dataclass, field
from decimal import Decimal

from key_load_protocol.errors import InvalidValue, NotAnAnswer, Reason
from key_load_protocol.identifiers import (
    Smid,
    key_expiry_number,
    key_revision_number,
    key_type,
    supply_group_code,
)
from key_load_protocol.kcv import DKGA02_KEY_LENGTH, DKGA04_KEY_LENGTH, key_check_value

PROTOCOL_VERSION = 1
NONCE_LENGTH = 32
MAX_KEYS = 1024
MAX_SEQUENCE = 2**63 - 1
MAX_LIMIT = 2**63 - 1
MAX_CLM_DECIMALS = 6
MAX_REFRESH_DAYS = 3650
MAX_KMC_ID_LENGTH = 64
BASE_DATES = frozenset({1993, 2014, 2035})
KEY_LENGTHS = {"02": DKGA02_KEY_LENGTH, "04": DKGA04_KEY_LENGTH}
ALLOWED_EAS = {"02": frozenset({"07"}), "04": frozenset({"07", "11"})}


def _integer(name: str, value: object, low: int, high: int) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
        raise InvalidValue(name, f"must be an integer from {low} to {high}")


def _utc_seconds(owner: object, name: str) -> None:
    """Store the attribute as an aware UTC datetime truncated to whole seconds (the wire precision)."""
    value = getattr(owner, name)
    if not isinstance(value, dt.datetime) or value.utcoffset() is None:
        raise InvalidValue(name, "must be a timezone-aware datetime")
    object.__setattr__(owner, name, value.astimezone(dt.UTC).replace(microsecond=0))


def _nonce(value: object) -> None:
    if not isinstance(value, bytes) or len(value) != NONCE_LENGTH:
        raise InvalidValue("nonce", f"must be exactly {NONCE_LENGTH} bytes")


def _unique_keys(name: str, identities: list[KeyIdentity], allow_empty: bool) -> None:
    if not allow_empty and not identities:
        raise InvalidValue(name, "must name at least one key (use None for all authorised keys)")
    if len(identities) > MAX_KEYS:
        raise InvalidValue(name, f"at most {MAX_KEYS} keys")
    if len(set(identities)) != len(identities):
        raise InvalidValue(name, "names the same key twice")


def decimal_parts(value: Decimal) -> tuple[int, int]:
    """Split a finite Decimal into (significand, decimals): value == significand / 10**decimals."""
    exponent = value.as_tuple().exponent
    decimals = max(0, -exponent) if isinstance(exponent, int) else 0
    return int(value.scaleb(decimals)), decimals


@dataclass(frozen=True)
class KeyIdentity:
    """Which vending key: supply group code, key revision number and key type."""

    sgc: str
    krn: int
    kt: int

    def __post_init__(self) -> None:
        supply_group_code(self.sgc)
        key_revision_number(self.krn)
        key_type(self.kt)

    def __str__(self) -> str:
        return f"SGC {self.sgc} KRN {self.krn} KT {self.kt}"


@dataclass(frozen=True)
class KeyLoadRequest:
    """What an SM asks for: its SMID, a fresh nonce, when, and which keys (None: all authorised)."""

    smid: str
    nonce: bytes = field(repr=False)
    request_time: dt.datetime
    keys: tuple[KeyIdentity, ...] | None

    def __post_init__(self) -> None:
        Smid(self.smid)
        _nonce(self.nonce)
        _utc_seconds(self, "request_time")
        if self.keys is not None:
            if not isinstance(self.keys, tuple) or not all(
                isinstance(k, KeyIdentity) for k in self.keys
            ):
                raise InvalidValue("keys", "must be a tuple of KeyIdentity or None")
            _unique_keys("keys", list(self.keys), allow_empty=False)

    @classmethod
    def new(
        cls, smid: str, keys: tuple[KeyIdentity, ...] | None, *, request_time: dt.datetime
    ) -> KeyLoadRequest:
        """A request with a fresh 256-bit random nonce: the normal way for an SM to make one."""
        return cls(smid, secrets.token_bytes(NONCE_LENGTH), request_time, keys)


@dataclass(frozen=True)
class LoadedKey:
    """One vending key as delivered to an SM, with its attributes; `repr` never shows the key."""

    identity: KeyIdentity
    ken: int
    base_date: int
    dkga: str
    eas: frozenset[str]
    key_value: bytes = field(repr=False)
    act: dt.datetime
    exp: dt.datetime
    iut: dt.datetime
    clm: Decimal | None = None
    resource_limit: int | None = None
    refresh_days: int | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.identity, KeyIdentity):
            raise InvalidValue("identity", "must be a KeyIdentity")
        key_expiry_number(self.ken)
        if self.base_date not in BASE_DATES:
            raise InvalidValue("base_date", "must be 1993, 2014 or 2035")
        if self.dkga not in KEY_LENGTHS:
            raise InvalidValue("dkga", 'must be "02" or "04"')
        if (
            not isinstance(self.eas, frozenset)
            or not self.eas
            or not self.eas <= ALLOWED_EAS[self.dkga]
        ):
            allowed = ", ".join(sorted(ALLOWED_EAS[self.dkga]))
            raise InvalidValue(
                "eas", f"must be a non-empty frozenset of {{{allowed}}} for DKGA{self.dkga}"
            )
        if not isinstance(self.key_value, bytes) or len(self.key_value) != KEY_LENGTHS[self.dkga]:
            raise InvalidValue(
                "key_value", f"must be {KEY_LENGTHS[self.dkga]} bytes for DKGA{self.dkga}"
            )
        for name in ("act", "exp", "iut"):
            _utc_seconds(self, name)
        if not self.act < self.exp:
            raise InvalidValue("exp", "must be after act")
        if not self.act <= self.iut <= self.exp:
            raise InvalidValue("iut", "must lie between act and exp")
        if self.clm is not None:
            if not isinstance(self.clm, Decimal) or not self.clm.is_finite() or self.clm < 0:
                raise InvalidValue("clm", "must be a finite, non-negative Decimal")
            significand, decimals = decimal_parts(self.clm)
            if decimals > MAX_CLM_DECIMALS:
                raise InvalidValue("clm", f"at most {MAX_CLM_DECIMALS} decimal places")
            if significand > MAX_LIMIT:
                raise InvalidValue("clm", "too large")
        if self.resource_limit is not None:
            _integer("resource_limit", self.resource_limit, 0, MAX_LIMIT)
        if self.refresh_days is not None:
            _integer("refresh_days", self.refresh_days, 1, MAX_REFRESH_DAYS)

    @property
    def kcv(self) -> bytes:
        """The key check value (see `key_check_value`), carried beside the key on the wire."""
        return key_check_value(self.dkga, self.key_value)


@dataclass(frozen=True)
class KeyLoadFile:
    """The plaintext of an EKLF: the answer to one request, for one SM, with its keys."""

    smid: str
    nonce: bytes = field(repr=False)
    issue_time: dt.datetime
    sequence: int
    kmc_id: str
    keys: tuple[LoadedKey, ...]
    version: int = PROTOCOL_VERSION

    def __post_init__(self) -> None:
        if self.version != PROTOCOL_VERSION:
            raise InvalidValue("version", f"must be {PROTOCOL_VERSION}")
        Smid(self.smid)
        _nonce(self.nonce)
        _utc_seconds(self, "issue_time")
        _integer("sequence", self.sequence, 1, MAX_SEQUENCE)
        if (
            not isinstance(self.kmc_id, str)
            or not 1 <= len(self.kmc_id) <= MAX_KMC_ID_LENGTH
            or not self.kmc_id.isprintable()
        ):
            raise InvalidValue("kmc_id", f"must be 1 to {MAX_KMC_ID_LENGTH} printable characters")
        if not isinstance(self.keys, tuple) or not all(isinstance(k, LoadedKey) for k in self.keys):
            raise InvalidValue("keys", "must be a tuple of LoadedKey")
        _unique_keys("keys", [k.identity for k in self.keys], allow_empty=True)

    def check_answers(
        self, *, smid: str, outstanding_nonces: Collection[bytes], last_sequence: int | None
    ) -> None:
        """The SM's own checks once the EKLF has verified and opened (docs/protocol.md, SM rules).

        Raises `NotAnAnswer` unless the file is for this SMID, answers a request still
        outstanding, and carries a sequence number above the last one accepted.
        """
        if not secrets.compare_digest(self.smid, smid):
            raise NotAnAnswer(Reason.SMID_MISMATCH, "the key-load file is for another SMID")
        if not any(secrets.compare_digest(self.nonce, n) for n in outstanding_nonces):
            raise NotAnAnswer(
                Reason.UNKNOWN_NONCE, "the key-load file answers no outstanding request"
            )
        if last_sequence is not None and self.sequence <= last_sequence:
            raise NotAnAnswer(
                Reason.SEQUENCE_NOT_INCREASING,
                f"sequence {self.sequence} is not above the last accepted {last_sequence}",
            )
