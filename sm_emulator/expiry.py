"""Key-expiry warnings (STS 202-6): what about a key register will stop vending soon.

Each warning has a stable `code`, the register it concerns and the time it takes effect:

* `iut_soon` / `iut_passed`: the key's issue-until time (the SM's last minute of use).
* `ken_soon` / `ken_passed`: the TID's top 8 bits reach the key expiry number; past it every
  meter refuses the key's tokens (`key_expired_ken`), so the meters need a key change set.
* `tid_range_ending`: the 24-bit minute count from the key's base date runs out (about 31.9
  years: base date 1993 ended in November 2024); the meters need a rollover key change to a key
  with the next base date.
* `credit_limit_near` / `resource_limit_near`: at least `LIMIT_SHARE` of the CLM or resource
  limit is used; the KMC must issue a new key load with a higher limit.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from sm_emulator.registers import KeyRegister
from sts_token import BaseDate, Tid

# Warn this long before a date takes effect.
HORIZON = dt.timedelta(days=90)
MAX_KEN = 255  # KEN 255: no TID is past it
# Warn when this share of a limit is used.
LIMIT_SHARE = Decimal("0.9")


@dataclass(frozen=True)
class ExpiryWarning:
    code: str
    register: KeyRegister
    at: dt.datetime | None
    message: str

    def to_dict(self) -> dict[str, Any]:
        identity = self.register.identity
        return {
            "code": self.code,
            "sgc": identity.sgc,
            "krn": identity.krn,
            "kt": identity.kt,
            "at": None if self.at is None else self.at.isoformat(),
            "message": self.message,
        }


def _date_warning(
    register: KeyRegister, now: dt.datetime, when: dt.datetime, code: str, what: str
) -> ExpiryWarning | None:
    if when <= now:
        return ExpiryWarning(
            f"{code}_passed", register, when, f"{register.identity}: {what} has passed"
        )
    if when - now <= HORIZON:
        return ExpiryWarning(f"{code}_soon", register, when, f"{register.identity}: {what} is near")
    return None


def register_warnings(register: KeyRegister, now: dt.datetime) -> list[ExpiryWarning]:
    """The warnings for one register at `now` (aware UTC)."""
    found: list[ExpiryWarning | None] = []
    found.append(_date_warning(register, now, register.iut, "iut", f"IUT {register.iut:%Y-%m-%d}"))
    base = BaseDate(register.base_date)
    if register.ken < MAX_KEN:
        # The first minute whose TID's top 8 bits exceed KEN.
        ken_end = Tid((register.ken + 1) << 16).datetime(base).replace(tzinfo=dt.UTC)
        found.append(_date_warning(register, now, ken_end, "ken", f"KEN {register.ken}"))
    last = Tid.last_time(base).replace(tzinfo=dt.UTC)
    if last - now <= HORIZON:
        found.append(
            ExpiryWarning(
                "tid_range_ending",
                register,
                last,
                f"{register.identity}: the TID range of base date {base.year} ends "
                f"{last:%Y-%m-%d %H:%M}; move its meters to a key with the next base date",
            )
        )
    if register.clm and register.currency_used >= register.clm * LIMIT_SHARE:
        found.append(
            ExpiryWarning(
                "credit_limit_near",
                register,
                None,
                f"{register.identity}: {register.currency_used} of the credit limit {register.clm} used",
            )
        )
    if register.resource_limit and register.units_used_tenths >= (
        register.resource_limit * 10 * LIMIT_SHARE
    ):
        found.append(
            ExpiryWarning(
                "resource_limit_near",
                register,
                None,
                f"{register.identity}: {Decimal(register.units_used_tenths) / 10} of the "
                f"resource limit {register.resource_limit} used",
            )
        )
    return [w for w in found if w is not None]


def warnings(registers: list[KeyRegister], now: dt.datetime) -> list[ExpiryWarning]:
    """Every register's warnings, in register order."""
    return [w for r in registers for w in register_warnings(r, now)]
