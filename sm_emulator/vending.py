"""Issuing tokens from the key registers, under the SM's rules (see `sm_emulator.registers`).

The meter's key is derived and the rules are checked outside any write transaction, on the
register as the SM holds it in memory (its key unsealed while the register holds the same load,
`SecurityModule.open_key`), or on the register as committed (one read, no transaction) the
first time or before any refusal.
Then, inside one (`BEGIN IMMEDIATE`, or a savepoint of a group commit, `sm_emulator.store`), the
register's rules are checked against its counters as they are now, a TID is taken from the
meter's TID store, the counters move and the token is built with that TID; the transaction
commits (durably, `synchronous=FULL`) before the token is returned, so a crash can lose a token
but never let a limit be exceeded or a TID be reused. A refusal rolls back that vend alone.
Vends of one meter (and of one register, whose counters they share) are serialised by the
database's single writer; everything before the write transaction runs in parallel.

TIDs follow the STS point-of-sale practice: the issue minute since the key's base date; if that
TID was already issued to this meter (PAN), the next free one. No two tokens with a TID ever go
to the same meter, whichever key or process issued them.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any

from key_load_protocol import KeyIdentity, ProtocolError
from sm_emulator.errors import InvalidRequest, SmError, VendRefused
from sm_emulator.module import SecurityModule
from sm_emulator.registers import DEFAULT_KEY_TYPES, KeyRegister
from sm_emulator.store import Writer
from sts_token import (
    CreditSubclass,
    DecodedToken,
    DecoderKey,
    EncryptionAlgorithm,
    KeyParameters,
    ManagementKind,
    Pan,
    TariffIndex,
    Tid,
    TidOutOfRange,
    Token,
    TokenClass,
    TokenError,
    TokenKey,
    TransferAmount,
    VendingKey,
    credit_token,
    decode_token,
    derive_decoder_key,
    key_change_tokens,
    load_ea07_tables,
    management_token,
)
from sts_token.amounts import representable
from sts_token.tid import TID_LIMIT

MAX_CURRENCY_DECIMALS = 6

# Called inside a vend's transaction with its tokens, to record them with the counters
# (`sm-emulator batch` journals each line's tokens this way).
Journal = Callable[[sqlite3.Connection, tuple[Token, ...]], None]


def parse_currency(text: str) -> Decimal:
    """The currency value of a credit vend: a non-negative decimal, at most 6 places."""
    try:
        value = Decimal(text)
    except InvalidOperation:
        raise InvalidRequest(
            "invalid_currency", f"--currency {text!r} is not a decimal amount"
        ) from None
    exponent = value.as_tuple().exponent
    if (
        not value.is_finite()
        or value < 0
        or (isinstance(exponent, int) and -exponent > MAX_CURRENCY_DECIMALS)
    ):
        raise InvalidRequest(
            "invalid_currency",
            f"--currency must be a non-negative amount with at most {MAX_CURRENCY_DECIMALS} decimals",
        )
    return value


def key_identity(sgc: str, krn: int, kt: int) -> KeyIdentity:
    """The (SGC, KRN, KT) of a request, or `InvalidRequest` (`invalid_key`)."""
    try:
        return KeyIdentity(sgc, krn, kt)
    except ProtocolError as error:
        raise InvalidRequest("invalid_key", str(error)) from None


def parse_key(text: str) -> KeyIdentity:
    """A key named `SGC:KRN:KT` (`--key`, the service's key-load request); KRN and KT in ASCII
    decimal digits, checked by KeyIdentity."""
    parts = text.split(":")
    if len(parts) != 3 or not all(p.isascii() and p.isdigit() and len(p) <= 4 for p in parts[1:]):
        raise InvalidRequest("invalid_key", f"key {text!r:.60}: expected SGC:KRN:KT")
    return key_identity(parts[0], int(parts[1]), int(parts[2]))


@dataclass(frozen=True)
class MeterKey:
    """Which register and which meter: the key identity plus the meter's PAN, TI and (if the key
    allows both) the encryption algorithm."""

    identity: KeyIdentity
    pan: Pan
    ti: TariffIndex
    ea: EncryptionAlgorithm | None = None


@dataclass(frozen=True)
class Vended:
    """Tokens issued by one vend, with what they were issued under."""

    kind: str
    tokens: tuple[Token, ...]
    pan: str
    register: KeyRegister
    tid: int | None
    details: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "tokens": [t.digits for t in self.tokens],
            "pan": self.pan,
            "sgc": self.register.identity.sgc,
            "krn": self.register.identity.krn,
            "kt": self.register.identity.kt,
            "tid": self.tid,
            **self.details,
            "currency_used": str(self.register.currency_used),
            "units_used": str(Decimal(self.register.units_used_tenths) / 10),
        }


def _naive_utc(now: dt.datetime) -> dt.datetime:
    return now.astimezone(dt.UTC).replace(tzinfo=None)


def _issue_tid(
    db: sqlite3.Connection, pan: str, tid: int, slot: int, kind: str, now: dt.datetime
) -> bool:
    """Record `tid` as issued to this meter, if it has no token with that TID yet; whether it
    was free."""
    recorded = db.execute(
        "INSERT INTO issued_tid (pan, tid, slot, kind, issued_at) VALUES (?, ?, ?, ?, ?)"
        " ON CONFLICT DO NOTHING",
        (pan, tid, slot, kind, now.isoformat()),
    )
    return recorded.rowcount == 1


def _next_free_tid(db: sqlite3.Connection, pan: str, minute: int) -> int:
    """The first TID after `minute` (which this meter already has) that this meter has not."""
    row = db.execute(
        "SELECT t.tid + 1 FROM issued_tid t WHERE t.pan = ? AND t.tid >= ? AND NOT EXISTS "
        "(SELECT 1 FROM issued_tid u WHERE u.pan = t.pan AND u.tid = t.tid + 1) "
        "ORDER BY t.tid LIMIT 1",
        (pan, minute),
    ).fetchone()
    tid: int = row[0]
    return tid


def _register(db: sqlite3.Connection, identity: KeyIdentity) -> KeyRegister:
    """A held register as it is in `db` (registers are never removed once loaded)."""
    row = db.execute(
        "SELECT * FROM key_register WHERE sgc = ? AND krn = ? AND kt = ?",
        (identity.sgc, identity.krn, identity.kt),
    ).fetchone()
    return KeyRegister.from_row(row)


@dataclass(frozen=True)
class _Held:
    """A register with the meter's key derived from it, under the vend's algorithm."""

    register: KeyRegister
    key: TokenKey
    params: KeyParameters
    ea: EncryptionAlgorithm


class Vending:
    """Token issuing for one opened security module.

    A vend reads the register and derives the meter's key outside a transaction, then hands a
    short work to `writer` (the SM's own store, or a `GroupCommit` shared by a process's
    threads): check the rules against the register as it is now, claim the TID, move the
    counters, build the token with that TID. The token is returned once the writer's commit is
    durable.
    """

    def __init__(
        self, sm: SecurityModule, *, ea07_tables: str | None = None, writer: Writer | None = None
    ) -> None:
        self.sm = sm
        self.ea07_tables = ea07_tables
        self.writer: Writer = sm.store if writer is None else writer

    def _algorithm(
        self, register: KeyRegister, requested: EncryptionAlgorithm | None
    ) -> EncryptionAlgorithm:
        if requested is None:
            if len(register.eas) != 1:
                raise InvalidRequest(
                    "ea_ambiguous",
                    f"{register.identity} allows EA {' and '.join(sorted(register.eas))}: give --ea",
                )
            return EncryptionAlgorithm(next(iter(register.eas)))
        if requested.value not in register.eas:
            raise VendRefused(
                "ea_not_allowed", f"{register.identity} is not authorised for EA{requested.value}"
            )
        return requested

    def _token_key(
        self,
        register: KeyRegister,
        key_value: bytes,
        pan: Pan,
        ti: TariffIndex,
        ea: EncryptionAlgorithm,
    ) -> tuple[TokenKey, KeyParameters]:
        identity = register.identity
        params = KeyParameters.from_values(
            dkga=register.dkga,
            ea=ea.value,
            sgc=identity.sgc,
            ti=ti.value,
            krn=identity.krn,
            kt=identity.kt,
            base_date=register.base_date,
            ken=register.ken,
        )
        decoder = derive_decoder_key(VendingKey(key_value), pan, params)
        tables = load_ea07_tables(self.ea07_tables) if ea is EncryptionAlgorithm.EA07 else None
        return TokenKey(decoder, params.base_date, ea07_tables=tables), params

    def _held(
        self,
        db: sqlite3.Connection,
        identity: KeyIdentity,
        pan: Pan,
        ti: TariffIndex,
        ea: EncryptionAlgorithm | None,
    ) -> _Held:
        register, key_value = self.sm.open_key(db, identity)
        return self._derive(register, key_value, pan, ti, ea)

    def _derive(
        self,
        register: KeyRegister,
        key_value: bytes,
        pan: Pan,
        ti: TariffIndex,
        ea: EncryptionAlgorithm | None,
    ) -> _Held:
        algorithm = self._algorithm(register, ea)
        key, params = self._token_key(register, key_value, pan, ti, algorithm)
        return _Held(register, key, params, algorithm)

    def _prepare(
        self,
        identity: KeyIdentity,
        pan: Pan,
        ti: TariffIndex,
        ea: EncryptionAlgorithm | None,
        rules: Callable[[KeyRegister], None],
    ) -> _Held:
        """A register that passes `rules` and the meter's derived key, before the write
        transaction (which checks the rules again on the register as it is then).

        From the register as this SM holds it in memory if it does (no read): it may be behind
        the state, which only the write transaction can tell, so a refusal on it is not given
        but decided again on the register as committed now (one read, no transaction).
        """
        kept = self.sm.kept_key(identity)
        if kept is not None:
            try:
                held = self._derive(*kept, pan, ti, ea)
                rules(held.register)
                return held
            except (SmError, TokenError):
                pass  # perhaps refused only for being behind: decided below on the state
        held = self._held(self.sm.store.autocommit(), identity, pan, ti, ea)
        rules(held.register)
        return held

    def _fresh(
        self,
        db: sqlite3.Connection,
        held: _Held,
        pan: Pan,
        ti: TariffIndex,
        ea: EncryptionAlgorithm | None,
    ) -> _Held:
        """`held` with the register as it is inside the write transaction (the counters other
        vends moved since it was read); derived again only if the key was reloaded since."""
        register, key_value = self.sm.open_key(db, held.register.identity)
        if register.sequence != held.register.sequence:
            return self._derive(register, key_value, pan, ti, ea)
        return dataclasses.replace(held, register=register)

    def _claim_tid(
        self,
        db: sqlite3.Connection,
        register: KeyRegister,
        key: TokenKey,
        pan: Pan,
        now: dt.datetime,
        kind: str,
    ) -> Tid:
        try:
            minute = Tid.at(_naive_utc(now), key.base_date).value
        except TidOutOfRange as error:
            raise VendRefused("tid_out_of_range", error.message) from None
        # Claimed by one statement when the minute is free (the common case); a refusal
        # below rolls the claim back with the rest of the vend.
        tid = minute
        if not _issue_tid(db, pan.digits, minute, register.slot, kind, now):
            tid = _next_free_tid(db, pan.digits, minute)
            if tid >= TID_LIMIT:
                raise VendRefused(
                    "tid_exhausted",
                    f"meter {pan.digits} has no free TID left under base date {key.base_date.year}",
                )
            _issue_tid(db, pan.digits, tid, register.slot, kind, now)
        register.check_ken(tid)
        return Tid(tid)

    def credit(
        self,
        meter: MeterKey,
        subclass: CreditSubclass,
        amount: TransferAmount,
        currency: Decimal,
        *,
        journal: Journal | None = None,
    ) -> Vended:
        """A credit token, counted against the key's CLM (currency) and resource limit (units)."""
        now = self.sm.clock()
        carried = representable(amount.tenths)

        def rules(register: KeyRegister) -> None:
            register.check_usable(now)
            register.check_credit(currency, carried)

        held = self._prepare(meter.identity, meter.pan, meter.ti, meter.ea, rules)

        def vend(db: sqlite3.Connection) -> tuple[KeyRegister, Tid, Token]:
            fresh = self._fresh(db, held, meter.pan, meter.ti, meter.ea)
            register = fresh.register
            rules(register)
            tid = self._claim_tid(db, register, fresh.key, meter.pan, now, "credit")
            token = credit_token(fresh.key, subclass, amount, tid)
            if journal is not None:
                journal(db, (token,))
            after = dataclasses.replace(
                register,
                currency_used=register.currency_used + currency,
                units_used_tenths=register.units_used_tenths + carried,
                tokens_issued=register.tokens_issued + 1,
            )
            db.execute(
                "UPDATE key_register SET currency_used = ?, units_used = ?, tokens_issued = ?"
                " WHERE slot = ?",
                (
                    str(after.currency_used),
                    after.units_used_tenths,
                    after.tokens_issued,
                    after.slot,
                ),
            )
            return after, tid, token

        after, tid, token = self.writer.write(vend)
        details = {
            "subclass": subclass.cli_name,
            "amount": str(Decimal(carried) / 10),
            "currency": str(currency),
        }
        return Vended("credit", (token,), meter.pan.digits, after, tid.value, details)

    def management(self, meter: MeterKey, kind: ManagementKind, value: int) -> Vended:
        """A management token (class 2 with a TID)."""
        now = self.sm.clock()

        def rules(register: KeyRegister) -> None:
            register.check_usable(now)

        held = self._prepare(meter.identity, meter.pan, meter.ti, meter.ea, rules)

        def vend(db: sqlite3.Connection) -> tuple[KeyRegister, Tid, Token]:
            fresh = self._fresh(db, held, meter.pan, meter.ti, meter.ea)
            rules(fresh.register)
            tid = self._claim_tid(db, fresh.register, fresh.key, meter.pan, now, kind.cli_name)
            return (
                self._count(db, fresh.register),
                tid,
                management_token(fresh.key, kind, value, tid),
            )

        after, tid, token = self.writer.write(vend)
        details = {"management": kind.cli_name, "value": value}
        return Vended("management", (token,), meter.pan.digits, after, tid.value, details)

    def key_change(
        self,
        meter: MeterKey,
        new: KeyIdentity,
        new_ti: TariffIndex | None = None,
        rollover: bool | None = None,
        *,
        journal: Journal | None = None,
    ) -> Vended:
        """The key change set moving the meter from `meter.identity` to `new`.

        The new key must be within its dates of use; the current key only encrypts the set (a
        meter must be movable off a key whose IUT has passed), so it need only be held. The
        set carries no TID: it is built before the write transaction, which counts it (and
        journals it) against a target register that must still be the one it was built from.
        """
        now = self.sm.clock()
        ti = new_ti or meter.ti

        def build(db: sqlite3.Connection) -> tuple[_Held, _Held, tuple[Token, ...]]:
            current = self._held(db, meter.identity, meter.pan, meter.ti, meter.ea)
            target = self._held(db, new, meter.pan, ti, current.ea)
            target.register.check_usable(now)
            set_ = key_change_tokens(
                current.key, target.key.decoder_key, target.params, rollover=rollover
            )
            return current, target, set_

        with self.sm.store.snapshot() as db:
            built = build(db)

        def count(db: sqlite3.Connection) -> tuple[KeyRegister, _Held, _Held, tuple[Token, ...]]:
            current, target, tokens = built
            fresh_current = _register(db, meter.identity)
            fresh_target = _register(db, new)
            if (fresh_current.sequence, fresh_target.sequence) != (
                current.register.sequence,
                target.register.sequence,
            ):
                current, target, tokens = build(db)  # a key was reloaded since the snapshot
            fresh_target.check_usable(now)
            if journal is not None:
                journal(db, tokens)
            return self._count(db, fresh_target), current, target, tokens

        after, current, target, tokens = self.writer.write(count)
        details = {
            "new_sgc": new.sgc,
            "new_krn": new.krn,
            "new_kt": new.kt,
            "new_ti": target.params.tariff_index.digits,
            "rollover": (
                (target.register.base_date != current.register.base_date)
                if rollover is None
                else rollover
            ),
        }
        return Vended("key-change", tokens, meter.pan.digits, after, None, details)

    def manufacturing_key(self, meter: MeterKey) -> DecoderKey:
        """The decoder key a meter is manufactured with, derived from a default key register.

        Only key types 0 and 1 (initialisation and default keys) may leave the SM this way: a
        meter made with one accepts no credit until moved to a unique or common key by a key
        change set, which only the SM can issue.
        """
        if meter.identity.kt not in DEFAULT_KEY_TYPES:
            raise VendRefused(
                "export_refused",
                f"key type {meter.identity.kt} decoder keys never leave the SM; only default "
                "keys (KT 0 or 1) are exported, for meter manufacture",
            )
        return self._held_key(meter, usable=True).decoder_key

    def decode(self, meter: MeterKey, token: str) -> DecodedToken:
        """Decode a token issued to `meter` (support desks): the decoder key stays inside the SM.

        Any held key decodes, whatever its dates of use: a token issued before its IUT is
        still worth explaining after it. Class 1 tokens need no key and no register.
        """
        parsed = Token.parse(token)
        if parsed.token_class == TokenClass.METER_TEST:
            return decode_token(parsed)
        return decode_token(parsed, self._held_key(meter, usable=False))

    def _held_key(self, meter: MeterKey, *, usable: bool) -> TokenKey:
        with self.sm.store.snapshot() as db:
            register, key_value = self.sm.open_key(db, meter.identity)
        if usable:
            register.check_usable(self.sm.clock())
        ea = self._algorithm(register, meter.ea)
        key, _ = self._token_key(register, key_value, meter.pan, meter.ti, ea)
        return key

    @staticmethod
    def _count(db: sqlite3.Connection, register: KeyRegister) -> KeyRegister:
        db.execute(
            "UPDATE key_register SET tokens_issued = tokens_issued + 1 WHERE slot = ?",
            (register.slot,),
        )
        return dataclasses.replace(register, tokens_issued=register.tokens_issued + 1)
