"""An STS meter's token acceptance rules (IEC 62055-41, the decoder side), on a plain state value.

* Classes 0 and 2 are decrypted with the meter's current decoder key; a CRC failure means the
  digits were mistyped or the token was made for another key (`crc_mismatch`).
* TID memory: the meter remembers the `TID_MEMORY` most recent TIDs it accepted, filled at
  manufacture with the TID of the manufacture time. A token whose TID is already remembered is
  refused (`tid_used`), and one at or below the oldest remembered TID is refused (`tid_old`);
  an accepted TID replaces the oldest one.
* KEN: a token whose TID's top 8 bits exceed the key expiry number is refused (`key_expired`).
* Key type: no credit under key type 0 or 1, the initialisation and default keys (`default_key`).
* Key change: the 2 (EA07) or 4 (EA11) sections may come in any order across entries; once the set
  is complete the meter switches to the new key, KRN, KT, KEN, TI (and SGC for EA11). With the
  rollover flag (RO) it moves to the next base date and its TID memory is reset to zero.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from meter_emulator.errors import StateError, TokenRefused
from sts_token import (
    BaseDate,
    CreditTransfer,
    DecoderKey,
    EncryptionAlgorithm,
    KeyChangeSection,
    ManagementInstruction,
    ManagementKind,
    MeterTestInstruction,
    Tid,
    Token,
    TokenError,
    TokenKey,
    assemble_key_change,
    decode_token,
    load_ea07_tables,
)

TID_MEMORY = 50
BASE_DATES = (1993, 2014, 2035)
DEFAULT_KEY_TYPES = frozenset({0, 1})
REGISTERS = ("electricity", "water", "gas", "time", "currency")
ALL_REGISTERS = 0xFFFF
_SETTINGS = {
    ManagementKind.SET_MAX_POWER_LIMIT: "max_power_limit_w",
    ManagementKind.SET_TARIFF_RATE: "tariff_rate",
    ManagementKind.SET_MAX_PHASE_POWER_UNBALANCE: "max_phase_power_unbalance_w",
    ManagementKind.SET_WATER_METER_FACTOR: "water_meter_factor",
}


@dataclass(frozen=True)
class MeterState:
    """Everything a meter keeps between tokens; the decoder key never appears in `repr`."""

    pan: str
    sgc: str
    ti: int
    krn: int
    kt: int
    ken: int
    base_date: int
    dkga: str
    ea: str
    decoder_key: bytes = field(repr=False)
    tid_memory: tuple[int, ...]
    credit_tenths: dict[str, int] = field(default_factory=lambda: dict.fromkeys(REGISTERS, 0))
    settings: dict[str, int] = field(default_factory=dict)
    tamper: bool = False
    pending_key_change: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if len(self.tid_memory) != TID_MEMORY:
            raise StateError("bad_state", f"the TID memory must hold {TID_MEMORY} entries")
        if self.base_date not in BASE_DATES:
            raise StateError("bad_state", "the base date must be 1993, 2014 or 2035")
        DecoderKey(self.decoder_key, EncryptionAlgorithm(self.ea))

    def to_json(self) -> dict[str, Any]:
        """The state file's content (the decoder key included: the meter must keep it)."""
        data = dataclasses.asdict(self)
        data["decoder_key"] = self.decoder_key.hex()
        data["tid_memory"] = list(self.tid_memory)
        data["pending_key_change"] = list(self.pending_key_change)
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> MeterState:
        try:
            return cls(
                **{
                    **data,
                    "decoder_key": bytes.fromhex(data["decoder_key"]),
                    "tid_memory": tuple(data["tid_memory"]),
                    "pending_key_change": tuple(data["pending_key_change"]),
                }
            )
        except (KeyError, TypeError, ValueError, TokenError):
            raise StateError("bad_state", "the meter state file is damaged") from None

    def describe(self) -> dict[str, Any]:
        """What `show` prints: identity, key parameters, balances, settings; never the key."""
        return {
            "pan": self.pan,
            "sgc": self.sgc,
            "ti": f"{self.ti:02d}",
            "krn": self.krn,
            "kt": self.kt,
            "ken": self.ken,
            "base_date": self.base_date,
            "dkga": self.dkga,
            "ea": self.ea,
            "credit": {name: str(tenths / 10) for name, tenths in self.credit_tenths.items()},
            "settings": self.settings,
            "tamper": self.tamper,
            "tid_memory": {"oldest": self.tid_memory[0], "newest": self.tid_memory[-1]},
            "pending_key_change_sections": len(self.pending_key_change),
        }


def manufactured(
    *,
    pan: str,
    sgc: str,
    ti: int,
    krn: int,
    kt: int,
    ken: int,
    base_date: BaseDate,
    dkga: str,
    decoder_key: DecoderKey,
    manufacture_tid: int,
) -> MeterState:
    """A new meter: TID memory filled with the manufacture TID (as meters leave the factory)."""
    return MeterState(
        pan=pan,
        sgc=sgc,
        ti=ti,
        krn=krn,
        kt=kt,
        ken=ken,
        base_date=base_date.year,
        dkga=dkga,
        ea=decoder_key.ea.value,
        decoder_key=decoder_key.value,
        tid_memory=(manufacture_tid,) * TID_MEMORY,
    )


@dataclass(frozen=True)
class Accepted:
    """What an accepted token did, and the meter state after it."""

    kind: str
    message: str
    state: MeterState
    details: dict[str, Any]


def token_key(state: MeterState, ea07_tables: str | None = None) -> TokenKey:
    """The meter's current key, ready to decrypt (EA07 needs the tables)."""
    ea = EncryptionAlgorithm(state.ea)
    tables = load_ea07_tables(ea07_tables) if ea is EncryptionAlgorithm.EA07 else None
    return TokenKey(
        DecoderKey(state.decoder_key, ea), BaseDate(state.base_date), ea07_tables=tables
    )


def _decode(text: str, key: TokenKey) -> tuple[Token, Any]:
    try:
        token = Token.parse("".join(ch for ch in text if ch not in " -"))
        return token, decode_token(token, key)
    except TokenError as error:
        raise TokenRefused(error.reason, error.message) from None


def _check_tid(state: MeterState, tid: Tid) -> tuple[int, ...]:
    """The TID memory after accepting `tid`, or the reason it is refused."""
    if tid.value >> 16 > state.ken:
        raise TokenRefused(
            "key_expired", f"TID {tid.value} is past the key expiry number KEN {state.ken}"
        )
    if tid.value <= state.tid_memory[0]:
        raise TokenRefused(
            "tid_old",
            f"TID {tid.value} is not above the oldest remembered TID {state.tid_memory[0]}",
        )
    if tid.value in state.tid_memory:
        raise TokenRefused("tid_used", f"a token with TID {tid.value} was already accepted")
    return tuple(sorted((*state.tid_memory[1:], tid.value)))


def _credit(state: MeterState, credit: CreditTransfer) -> Accepted:
    if state.kt in DEFAULT_KEY_TYPES:
        raise TokenRefused(
            "default_key", f"no credit is accepted under key type {state.kt} (a default key)"
        )
    memory = _check_tid(state, credit.tid)
    register = credit.subclass.cli_name
    balances = {
        **state.credit_tenths,
        register: state.credit_tenths[register] + credit.amount.tenths,
    }
    after = dataclasses.replace(state, tid_memory=memory, credit_tenths=balances)
    balance = balances[register] / 10
    return Accepted(
        "credit",
        f"credit {credit.amount.carried} {register}; balance {balance}",
        after,
        {
            "register": register,
            "amount": str(credit.amount.carried),
            "balance": str(balance),
            "tid": credit.tid.value,
        },
    )


def _management(state: MeterState, instruction: ManagementInstruction) -> Accepted:
    memory = _check_tid(state, instruction.tid)
    after = dataclasses.replace(state, tid_memory=memory)
    kind = instruction.kind
    if kind is ManagementKind.CLEAR_CREDIT:
        cleared = (
            list(REGISTERS)
            if instruction.value == ALL_REGISTERS
            else [REGISTERS[instruction.value]]
            if instruction.value < len(REGISTERS)
            else []
        )
        after = dataclasses.replace(
            after, credit_tenths={**state.credit_tenths, **dict.fromkeys(cleared, 0)}
        )
        message = f"cleared credit: {', '.join(cleared) or 'no such register'}"
    elif kind is ManagementKind.CLEAR_TAMPER:
        after = dataclasses.replace(after, tamper=False)
        message = "tamper condition cleared"
    else:
        setting = _SETTINGS[kind]
        after = dataclasses.replace(after, settings={**state.settings, setting: instruction.value})
        message = f"{setting} set to {instruction.value}"
    return Accepted(
        kind.cli_name, message, after, {"value": instruction.value, "tid": instruction.tid.value}
    )


def _next_base_date(year: int) -> int:
    later = [y for y in BASE_DATES if y > year]
    if not later:
        raise TokenRefused("no_next_base_date", f"no base date follows {year}; rollover refused")
    return later[0]


def _key_change(
    state: MeterState, token: Token, section: KeyChangeSection, key: TokenKey
) -> Accepted:
    pending = [
        t for t in state.pending_key_change if _decode(t, key)[1].section is not section.section
    ]
    pending.append(token.digits)
    needed = 2 if key.ea is EncryptionAlgorithm.EA07 else 4
    if len(pending) < needed:
        after = dataclasses.replace(state, pending_key_change=tuple(pending))
        return Accepted(
            "key-change-section",
            f"key change section {section.section.name.lower()} held ({len(pending)} of {needed})",
            after,
            {"held": len(pending), "needed": needed},
        )
    try:
        new = assemble_key_change([_decode(t, key)[1] for t in pending], key.ea)
    except TokenError as error:
        raise TokenRefused(error.reason, error.message) from None
    base_date = _next_base_date(state.base_date) if new.rollover else state.base_date
    after = dataclasses.replace(
        state,
        decoder_key=new.decoder_key.value,
        krn=new.krn.value,
        kt=new.key_type.value,
        ken=new.ken.value,
        ti=new.tariff_index.value,
        sgc=new.sgc.digits if new.sgc is not None else state.sgc,
        base_date=base_date,
        tid_memory=(0,) * TID_MEMORY if new.rollover else state.tid_memory,
        pending_key_change=(),
    )
    return Accepted(
        "key-change",
        f"key changed: SGC {after.sgc} KRN {after.krn} KT {after.kt} KEN {after.ken} TI {after.ti:02d}"
        + (f", rolled over to base date {base_date}" if new.rollover else ""),
        after,
        {
            "sgc": after.sgc,
            "krn": after.krn,
            "kt": after.kt,
            "ken": after.ken,
            "rollover": new.rollover,
        },
    )


def enter(state: MeterState, text: str, *, ea07_tables: str | None = None) -> Accepted:
    """Apply one token to the meter, or raise `TokenRefused` (the state is then unchanged)."""
    key = token_key(state, ea07_tables)
    token, decoded = _decode(text, key)
    if isinstance(decoded, MeterTestInstruction):
        return Accepted(
            "test", f"meter test: control {decoded.control:#x}", state, {"control": decoded.control}
        )
    if isinstance(decoded, CreditTransfer):
        return _credit(state, decoded)
    if isinstance(decoded, ManagementInstruction):
        return _management(state, decoded)
    return _key_change(state, token, decoded, key)
