"""Pure values of the key store (no Flask, no database), each validated once in its constructor.

Key types follow IEC 62055-41 naming for the keys a KMC vends: KT 1 = VDDK (default key),
KT 2 = VUDK (unique key), KT 3 = VCDK (common key). KT 0 (the initialisation key) is not vended
by this KMC. The identifiers (SGC, KRN, KT, KEN, SMID) are the shared types of
`key_load_protocol.identifiers`, and the ranges of DKGA, EA and base date those of the key-load
protocol (`key_load_protocol.model`), so every key stored here can be carried in an EKLF.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterable
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any

from key_load_protocol import KeyIdentity
from key_load_protocol.identifiers import Smid, key_expiry_number
from key_load_protocol.model import (
    ALLOWED_EAS,
    BASE_DATES,
    KEY_LENGTHS,
    MAX_CLM_DECIMALS,
    MAX_LIMIT,
    MAX_REFRESH_DAYS,
    decimal_parts,
)
from kmc.errors import InvalidInput, identifier_input

KEY_TYPES = {1: "VDDK", 2: "VUDK", 3: "VCDK"}
DKGAS = tuple(sorted(KEY_LENGTHS))
EAS = ("07", "11")
# EXP when none is given: ten years after ACT, so every key has a bounded, reviewable life.
DEFAULT_LIFETIME = dt.timedelta(days=3652)


def key_identity(sgc: str, krn: int, kt: int) -> KeyIdentity:
    """The (SGC, KRN, KT) of a vending key this KMC manages, or `InvalidInput`."""
    with identifier_input():
        identity = KeyIdentity(sgc, krn, kt)
    if kt not in KEY_TYPES:
        raise InvalidInput(
            "invalid_key_type",
            "kt: must be 1 (VDDK), 2 (VUDK) or 3 (VCDK); KT 0 is not vended by the KMC",
        )
    return identity


def sealing_identity(identity: KeyIdentity) -> bytes:
    """The associated data binding a sealed key to its row (a ciphertext cannot be moved)."""
    return f"vk:{identity.sgc}:{identity.krn}:{identity.kt}".encode()


def parse_time(text: str | None, name: str) -> dt.datetime | None:
    """An ISO 8601 date or date-time from the command line or a form; UTC when no zone is given."""
    if text is None or text == "":
        return None
    try:
        value = dt.datetime.fromisoformat(text)
    except ValueError:
        raise InvalidInput("invalid_time", f"{name}: not an ISO 8601 date or date-time") from None
    return value if value.tzinfo else value.replace(tzinfo=dt.UTC)


def _aware(name: str, value: dt.datetime) -> dt.datetime:
    if value.utcoffset() is None:
        raise InvalidInput("invalid_time", f"{name} must carry a time zone")
    try:
        return value.astimezone(dt.UTC).replace(microsecond=0)
    except OverflowError:
        raise InvalidInput("invalid_time", f"{name} in UTC lies outside years 1 to 9999") from None


_LATEST = dt.datetime.max.replace(tzinfo=dt.UTC)


def default_exp(act: dt.datetime) -> dt.datetime:
    """EXP when none is given: ACT + `DEFAULT_LIFETIME`, or `InvalidInput` past year 9999."""
    try:
        return act + DEFAULT_LIFETIME
    except OverflowError:
        raise InvalidInput(
            "invalid_time", "ACT + 10 years (the default EXP) is past year 9999: give an EXP"
        ) from None


def _time_text(value: dt.datetime | None) -> str | None:
    return None if value is None else value.isoformat()


def _time_value(text: str | None) -> dt.datetime | None:
    return None if text is None else dt.datetime.fromisoformat(text)


@dataclass(frozen=True)
class KeySpec:
    """Everything needed to generate one vending key except the key itself."""

    identity: KeyIdentity
    dkga: str
    eas: frozenset[str]
    base_date: int
    ken: int
    act: dt.datetime
    exp: dt.datetime
    refresh_days: int | None = None

    def __post_init__(self) -> None:
        if self.identity.kt not in KEY_TYPES:
            raise InvalidInput("invalid_key_type", "kt: must be 1, 2 or 3")
        if self.dkga not in KEY_LENGTHS:
            raise InvalidInput("invalid_dkga", "the DKGA must be 02 or 04")
        if not self.eas or not self.eas <= ALLOWED_EAS[self.dkga]:
            allowed = " and ".join(sorted(ALLOWED_EAS[self.dkga]))
            raise InvalidInput(
                "invalid_ea",
                f"DKGA {self.dkga} keys allow EA {allowed} only (EA 11 needs DKGA 04)",
            )
        if self.base_date not in BASE_DATES:
            raise InvalidInput("invalid_base_date", "the base date must be 1993, 2014 or 2035")
        with identifier_input():
            key_expiry_number(self.ken)
        object.__setattr__(self, "act", _aware("act", self.act))
        object.__setattr__(self, "exp", _aware("exp", self.exp))
        if not self.act < self.exp:
            raise InvalidInput("invalid_validity", "EXP must be after ACT")
        if self.refresh_days is not None:
            self._check_refresh(self.refresh_days)

    @classmethod
    def from_input(
        cls,
        *,
        sgc: str,
        krn: int,
        kt: int,
        dkga: str,
        eas: Iterable[str],
        base_date: int,
        ken: int,
        act: str | None,
        exp: str | None,
        refresh_days: int | None,
        now: dt.datetime,
    ) -> KeySpec:
        """The one constructor the form, the JSON schema and the CLI share: times as ISO 8601
        text (ACT defaults to now, EXP to ACT + 10 years)."""
        active_from = parse_time(act, "act") or now
        return cls(
            key_identity(sgc, krn, kt),
            dkga,
            frozenset(str(ea) for ea in eas),
            int(base_date),
            ken,
            active_from,
            parse_time(exp, "exp") or default_exp(active_from),
            refresh_days,
        )

    def _check_refresh(self, days: int) -> None:
        if not 1 <= days <= MAX_REFRESH_DAYS:
            raise InvalidInput(
                "invalid_refresh", f"the refresh period must be 1 to {MAX_REFRESH_DAYS} days"
            )
        if self.act > _LATEST - dt.timedelta(days=days):  # expiry warnings show ACT + period
            raise InvalidInput(
                "invalid_refresh", "the refresh date (ACT + refresh period) is past year 9999"
            )

    @property
    def key_length(self) -> int:
        return KEY_LENGTHS[self.dkga]

    def as_dict(self) -> dict[str, Any]:
        """The proposal as JSON-ready fields: what an approver reviews (no key material)."""
        return {
            "sgc": self.identity.sgc,
            "krn": self.identity.krn,
            "kt": self.identity.kt,
            "dkga": self.dkga,
            "eas": sorted(self.eas),
            "base_date": self.base_date,
            "ken": self.ken,
            "act": _time_text(self.act),
            "exp": _time_text(self.exp),
            "refresh_days": self.refresh_days,
        }

    def to_json(self) -> str:
        return json.dumps(self.as_dict(), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> KeySpec:
        data: dict[str, Any] = json.loads(text)
        act, exp = _time_value(data["act"]), _time_value(data["exp"])
        assert act is not None and exp is not None
        return cls(
            key_identity(data["sgc"], data["krn"], data["kt"]),
            data["dkga"],
            frozenset(data["eas"]),
            data["base_date"],
            data["ken"],
            act,
            exp,
            data["refresh_days"],
        )


def parse_clm(text: str | None) -> Decimal | None:
    """A currency credit limit from user input: a non-negative decimal, at most 6 places."""
    if text is None or text == "":
        return None
    try:
        value = Decimal(text)
    except InvalidOperation:
        raise InvalidInput("invalid_clm", "the credit limit must be a decimal amount") from None
    if not value.is_finite() or value < 0:
        raise InvalidInput("invalid_clm", "the credit limit must be a non-negative amount")
    significand, decimals = decimal_parts(value)
    if decimals > MAX_CLM_DECIMALS or significand > MAX_LIMIT:
        raise InvalidInput(
            "invalid_clm", f"the credit limit allows at most {MAX_CLM_DECIMALS} decimal places"
        )
    return value


@dataclass(frozen=True)
class AuthorisationLimits:
    """What an authorisation allows, whichever SM it is for: use-until time (IUT), credit and
    resource limits, and when the authorisation itself ends. A bulk authorisation gives one set
    of limits to every SM."""

    iut: dt.datetime | None = None  # None: the key's EXP
    clm: Decimal | None = None
    resource_limit: int | None = None
    expires_at: dt.datetime | None = None

    def __post_init__(self) -> None:
        if self.iut is not None:
            object.__setattr__(self, "iut", _aware("iut", self.iut))
        if self.expires_at is not None:
            object.__setattr__(self, "expires_at", _aware("expires", self.expires_at))
        if self.clm is not None:
            parse_clm(str(self.clm))
        if self.resource_limit is not None and not 0 <= self.resource_limit <= MAX_LIMIT:
            raise InvalidInput("invalid_resource_limit", "the resource limit is out of range")

    @classmethod
    def from_input(
        cls,
        *,
        iut: str | None,
        clm: str | None,
        resource_limit: int | None,
        expires: str | None,
    ) -> AuthorisationLimits:
        """The limits as the form, the JSON schema and the CLI give them (times as text)."""
        return cls(
            parse_time(iut, "iut"),
            parse_clm(clm),
            resource_limit,
            parse_time(expires, "expires_at"),
        )

    def for_sm(self, identity: KeyIdentity, smid: str) -> AuthorisationSpec:
        return AuthorisationSpec(
            identity, smid.strip(), self.iut, self.clm, self.resource_limit, self.expires_at
        )


@dataclass(frozen=True)
class AuthorisationSpec:
    """A key authorisation for one SM: its limits (`AuthorisationLimits`, checked there)."""

    identity: KeyIdentity
    smid: str
    iut: dt.datetime | None = None  # None: the key's EXP
    clm: Decimal | None = None
    resource_limit: int | None = None
    expires_at: dt.datetime | None = None

    def __post_init__(self) -> None:
        with identifier_input():
            Smid(self.smid)
        limits = AuthorisationLimits(self.iut, self.clm, self.resource_limit, self.expires_at)
        object.__setattr__(self, "iut", limits.iut)
        object.__setattr__(self, "expires_at", limits.expires_at)

    @classmethod
    def from_input(
        cls,
        *,
        sgc: str,
        krn: int,
        kt: int,
        smid: str,
        iut: str | None,
        clm: str | None,
        resource_limit: int | None,
        expires: str | None,
    ) -> AuthorisationSpec:
        """The one constructor the form, the JSON schema and the CLI share (times as text)."""
        identity = key_identity(sgc, krn, kt)
        limits = AuthorisationLimits.from_input(
            iut=iut, clm=clm, resource_limit=resource_limit, expires=expires
        )
        return limits.for_sm(identity, smid)

    def as_dict(self) -> dict[str, Any]:
        """The proposal as JSON-ready fields: what an approver reviews."""
        return {
            "sgc": self.identity.sgc,
            "krn": self.identity.krn,
            "kt": self.identity.kt,
            "smid": self.smid,
            "iut": _time_text(self.iut),
            "clm": None if self.clm is None else str(self.clm),
            "resource_limit": self.resource_limit,
            "expires_at": _time_text(self.expires_at),
        }

    def to_json(self) -> str:
        return json.dumps(self.as_dict(), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> AuthorisationSpec:
        data: dict[str, Any] = json.loads(text)
        return cls(
            key_identity(data["sgc"], data["krn"], data["kt"]),
            data["smid"],
            _time_value(data["iut"]),
            parse_clm(data["clm"]),
            data["resource_limit"],
            _time_value(data["expires_at"]),
        )
