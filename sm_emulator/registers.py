"""A key register: one vending key's attributes, its counters, and the rules they impose on vending.

The rules (STS 600-4-2 key attributes, IEC 62055-41 token rules), each a `VendRefused` reason:

* `key_not_yet_active` / `key_use_expired`: tokens only from ACT until IUT (the SM's dates of use;
  EXP binds the KMC's issuing, not the SM).
* `credit_limit`: the currency value of all credit vended under the key stays within its CLM.
* `resource_limit`: the units vended under the key (the carried amounts, in the natural unit)
  stay within its resource limit.
* `default_key`: no credit under key type 0 or 1 (the initialisation and default keys, VDDK in
  docs/keys.md): a meter on its default key must first be moved to a unique or common key.
* `key_expired_ken`: the token's TID must not lie past the key's expiry number (KEN is compared
  with the top 8 bits of the 24-bit TID, as the meter does).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import sqlite3
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from key_load_protocol import KeyIdentity, LoadedKey
from sm_emulator.errors import VendRefused

# IEC 62055-41 key types: 0 initialisation (DITK), 1 default (DDTK), 2 unique (DUTK), 3 common (DCTK).
DEFAULT_KEY_TYPES = frozenset({0, 1})
MIN_REGISTERS = 25  # STS 600-10-1: an SM holds keys of at least 25 supply groups


@dataclass(frozen=True)
class KeyRegister:
    """What the SM holds for one vending key (the key value itself stays sealed in the store)."""

    slot: int
    identity: KeyIdentity
    ken: int
    base_date: int
    dkga: str
    eas: frozenset[str]
    act: dt.datetime
    exp: dt.datetime
    iut: dt.datetime
    clm: Decimal | None
    resource_limit: int | None
    refresh_days: int | None
    kcv: str
    sequence: int
    loaded_at: dt.datetime
    currency_used: Decimal
    units_used_tenths: int
    tokens_issued: int

    @classmethod
    def from_row(cls, row: sqlite3.Row) -> KeyRegister:
        return cls(
            slot=row["slot"],
            identity=KeyIdentity(row["sgc"], row["krn"], row["kt"]),
            ken=row["ken"],
            base_date=row["base_date"],
            dkga=row["dkga"],
            eas=frozenset(row["eas"].split(",")),
            act=dt.datetime.fromisoformat(row["act"]),
            exp=dt.datetime.fromisoformat(row["exp"]),
            iut=dt.datetime.fromisoformat(row["iut"]),
            clm=None if row["clm"] is None else Decimal(row["clm"]),
            resource_limit=row["resource_limit"],
            refresh_days=row["refresh_days"],
            kcv=row["kcv"],
            sequence=row["sequence"],
            loaded_at=dt.datetime.fromisoformat(row["loaded_at"]),
            currency_used=Decimal(row["currency_used"]),
            units_used_tenths=row["units_used"],
            tokens_issued=row["tokens_issued"],
        )

    def with_counters(
        self, currency_used: Decimal, units_used_tenths: int, tokens_issued: int
    ) -> KeyRegister:
        """This register (the same load) with its counters as read again."""
        return dataclasses.replace(
            self,
            currency_used=currency_used,
            units_used_tenths=units_used_tenths,
            tokens_issued=tokens_issued,
        )

    def to_dict(self) -> dict[str, Any]:
        """Metadata, counters and the key check value; never the key."""
        return {
            "slot": self.slot,
            "sgc": self.identity.sgc,
            "krn": self.identity.krn,
            "kt": self.identity.kt,
            "ken": self.ken,
            "base_date": self.base_date,
            "dkga": self.dkga,
            "eas": sorted(self.eas),
            "kcv": self.kcv,
            "act": self.act.isoformat(),
            "exp": self.exp.isoformat(),
            "iut": self.iut.isoformat(),
            "clm": None if self.clm is None else str(self.clm),
            "currency_used": str(self.currency_used),
            "currency_left": None if self.clm is None else str(self.clm - self.currency_used),
            "resource_limit": self.resource_limit,
            "units_used": str(Decimal(self.units_used_tenths) / 10),
            "units_left": (
                None
                if self.resource_limit is None
                else str(Decimal(self.resource_limit * 10 - self.units_used_tenths) / 10)
            ),
            "refresh_days": self.refresh_days,
            "tokens_issued": self.tokens_issued,
            "loaded_from_sequence": self.sequence,
            "loaded_at": self.loaded_at.isoformat(),
        }

    def check_usable(self, now: dt.datetime) -> None:
        """Tokens only between ACT and IUT."""
        if now < self.act:
            raise VendRefused(
                "key_not_yet_active",
                f"{self.identity} is not active until {self.act:%Y-%m-%dT%H:%M:%SZ}",
            )
        if now >= self.iut:
            raise VendRefused(
                "key_use_expired",
                f"{self.identity} may not be used after its IUT {self.iut:%Y-%m-%dT%H:%M:%SZ}",
            )

    def check_credit(self, currency: Decimal, carried_tenths: int) -> None:
        """Credit is allowed under this key type and within CLM and the resource limit."""
        if self.identity.kt in DEFAULT_KEY_TYPES:
            raise VendRefused(
                "default_key",
                f"no credit tokens under key type {self.identity.kt} (a default key): "
                "move the meter to a unique or common key first",
            )
        if self.clm is not None and self.currency_used + currency > self.clm:
            raise VendRefused(
                "credit_limit",
                f"{self.identity}: {currency} would take the currency vended to "
                f"{self.currency_used + currency}, above the credit limit {self.clm}",
            )
        if (
            self.resource_limit is not None
            and self.units_used_tenths + carried_tenths > self.resource_limit * 10
        ):
            units = Decimal(self.units_used_tenths + carried_tenths) / 10
            raise VendRefused(
                "resource_limit",
                f"{self.identity}: the units vended would reach {units}, above the resource "
                f"limit {self.resource_limit}",
            )

    def check_ken(self, tid: int) -> None:
        """The meter refuses a token whose TID lies past the key's expiry number."""
        if tid >> 16 > self.ken:
            raise VendRefused(
                "key_expired_ken",
                f"{self.identity}: TID {tid} is past the key expiry number KEN {self.ken}",
            )


def register_values(key: LoadedKey) -> dict[str, Any]:
    """The columns a loaded key sets in its register (the counters are left alone)."""
    return {
        "ken": key.ken,
        "base_date": key.base_date,
        "dkga": key.dkga,
        "eas": ",".join(sorted(key.eas)),
        "act": key.act.isoformat(),
        "exp": key.exp.isoformat(),
        "iut": key.iut.isoformat(),
        "clm": None if key.clm is None else str(key.clm),
        "resource_limit": key.resource_limit,
        "refresh_days": key.refresh_days,
        "kcv": key.kcv.hex().upper(),
    }
