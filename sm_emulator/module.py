"""The software security module: its state folder, identity, key requests and key loading.

    STATE/sm.key     the SM's P-384 private key (PKCS#8 PEM, 0600)
    STATE/state.db   SQLite (WAL): identity, pinned root, certificate, outstanding requests,
                     loaded files, key registers (keys sealed), counters, per-meter TID store

Loading follows STS 600-4-2 and docs/protocol.md: the EKLF's signature and chain are checked
against the pinned root before anything is decrypted; the SMID, the nonce (an outstanding
request, then consumed), the sequence number (strictly increasing) and the issue time (between
the request and now) are checked; then every key is installed in one transaction, or none is.
A request is outstanding until answered or until `request_lifetime` has passed (docs/protocol.md
§7); expired requests are forgotten. Vending lives in `sm_emulator.vending`.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import sqlite3
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from key_load_protocol import (
    KeyIdentity,
    KeyLoadFile,
    KeyLoadRequest,
    LoadedKey,
    ProtocolError,
    build_request,
    open_eklf,
)
from sm_emulator import identity
from sm_emulator.clock import Clock, system_now
from sm_emulator.errors import InvalidRequest, LoadRefused, StateError, VendRefused
from sm_emulator.registers import MIN_REGISTERS, KeyRegister, register_values
from sm_emulator.sealing import RegisterSeal
from sm_emulator.store import DATABASE_FILE, SCHEMA_VERSION, Store

PRIVATE_KEY_FILE = "sm.key"
MAX_REGISTERS = 1024
# How long a request stays outstanding (docs/protocol.md §7 "until answered or expired"): long
# enough for an operator to carry the request to the KMC and the file back the same day.
REQUEST_LIFETIME = dt.timedelta(hours=24)
# How far the KMC's clock may be from the SM's when it stamps the file's issue time; the KMC
# allows the same either way for the request time (docs/keys.md).
CLOCK_SKEW = dt.timedelta(minutes=10)


def _reason(error: ProtocolError) -> str:
    return error.reason.value.replace("-", "_")


@dataclass(frozen=True)
class Loaded:
    """What a successful `load` installed."""

    sequence: int
    kmc_id: str
    registers: tuple[KeyRegister, ...]

    def to_dict(self) -> dict[str, Any]:
        return {
            "sequence": self.sequence,
            "kmc_id": self.kmc_id,
            "keys": [r.to_dict() for r in self.registers],
        }


class SecurityModule:
    """One SM's state folder, opened; every method is one use case and one transaction."""

    def __init__(
        self,
        folder: Path,
        *,
        clock: Clock = system_now,
        request_lifetime: dt.timedelta = REQUEST_LIFETIME,
    ) -> None:
        if request_lifetime <= dt.timedelta(0):
            raise InvalidRequest(
                "invalid_request_lifetime", "the request lifetime must be positive"
            )
        database = folder / DATABASE_FILE
        if not database.exists():
            raise StateError(
                "not_initialised", f"{folder} holds no SM state; run `sm-emulator init` first"
            )
        self.folder = folder
        self.clock = clock
        self.request_lifetime = request_lifetime
        self.store = Store(database)
        with self.store.snapshot() as db:
            row = db.execute("SELECT * FROM identity").fetchone()
        if row is None or row["schema_version"] != SCHEMA_VERSION:
            raise StateError("bad_state", f"{database} is not an SM emulator state database")
        self.smid: str = row["smid"]
        self.id_man: str = row["id_man"]
        self.kind: str = row["kind"]
        self.register_count: int = row["register_count"]
        self.private_key = identity.load_private_key(folder / PRIVATE_KEY_FILE)
        self._seal = RegisterSeal(self.private_key, self.smid)
        # Registers opened for vending, keys unsealed (see `open_key`).
        self._opened: dict[KeyIdentity, tuple[KeyRegister, bytes]] = {}

    def __repr__(self) -> str:
        return f"SecurityModule(smid={self.smid}, folder={self.folder})"

    def close(self) -> None:
        self.store.close()

    @classmethod
    def initialise(
        cls,
        folder: Path,
        *,
        smid: str,
        id_man: str,
        kind: str = "virtual",
        registers: int = MIN_REGISTERS,
        clock: Clock = system_now,
    ) -> tuple[SecurityModule, bytes]:
        """Create the state folder and key pair; returns the module and its CSR (PEM)."""
        smid, id_man = identity.check_smid(smid), identity.check_id_man(id_man)
        if kind not in identity.KINDS:
            raise StateError("invalid_kind", "the SM kind must be virtual or certified")
        if not MIN_REGISTERS <= registers <= MAX_REGISTERS:
            raise StateError(
                "invalid_register_count",
                f"an SM has {MIN_REGISTERS} to {MAX_REGISTERS} key registers (STS 600-10-1)",
            )
        if (folder / DATABASE_FILE).exists() or (folder / PRIVATE_KEY_FILE).exists():
            raise StateError("already_initialised", f"{folder} already holds an SM")
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        os.chmod(folder, 0o700)
        key = identity.generate_private_key(folder / PRIVATE_KEY_FILE)
        store = Store(folder / DATABASE_FILE)
        store.create_schema()
        with store.transaction() as db:
            db.execute(
                "INSERT INTO identity (id, schema_version, smid, id_man, kind, register_count,"
                " created_at) VALUES (1, ?, ?, ?, ?, ?, ?)",
                (SCHEMA_VERSION, smid, id_man, kind, registers, clock().isoformat()),
            )
        store.close()
        return cls(folder, clock=clock), identity.registration_request(key, smid, id_man)

    def _identity_row(self, db: sqlite3.Connection) -> sqlite3.Row:
        row: sqlite3.Row = db.execute("SELECT * FROM identity").fetchone()
        return row

    def root(self) -> x509.Certificate:
        with self.store.snapshot() as db:
            pem = self._identity_row(db)["root_pem"]
        if pem is None:
            raise StateError("no_root", "no KMC root is pinned; run `sm-emulator trust` first")
        return x509.load_pem_x509_certificate(pem)

    def certificate(self) -> x509.Certificate:
        with self.store.snapshot() as db:
            pem = self._identity_row(db)["certificate_pem"]
        if pem is None:
            raise StateError(
                "no_certificate", "no SM certificate installed; run `sm-emulator install-cert`"
            )
        return x509.load_pem_x509_certificate(pem)

    def status(self) -> dict[str, Any]:
        now = self.clock()
        with self.store.snapshot() as db:
            row = self._identity_row(db)
            outstanding = len(self._outstanding(db)) - len(self._expired(db, now))
            used = db.execute("SELECT count(*) FROM key_register").fetchone()[0]
        certificate = (
            None
            if row["certificate_pem"] is None
            else x509.load_pem_x509_certificate(row["certificate_pem"])
        )
        return {
            "smid": self.smid,
            "id_man": self.id_man,
            "kind": self.kind,
            "root_pinned": row["root_pem"] is not None,
            "certificate_serial": None if certificate is None else f"{certificate.serial_number:x}",
            "last_sequence": row["last_sequence"],
            "outstanding_requests": outstanding,
            "registers": {"used": used, "total": self.register_count},
        }

    def trust(self, root_pem: bytes) -> x509.Certificate:
        """Pin the KMC root; a different root than the one pinned is refused."""
        root = identity.parse_root(root_pem)
        pem = root.public_bytes(serialization.Encoding.PEM)
        with self.store.transaction() as db:
            pinned = self._identity_row(db)["root_pem"]
            if pinned is not None and pinned != pem:
                raise StateError(
                    "root_already_pinned",
                    "another KMC root is already pinned; an SM trusts one KMC for its lifetime",
                )
            db.execute("UPDATE identity SET root_pem = ?", (pem,))
        return root

    def install_certificate(self, bundle: bytes) -> identity.InstalledCertificate:
        """Store the SM certificate the KMC issued, once it checks out against root and key."""
        installed = identity.check_sm_certificate(
            bundle,
            root=self.root(),
            private_key=self.private_key,
            smid=self.smid,
            now=self.clock(),
        )
        with self.store.transaction() as db:
            db.execute(
                "UPDATE identity SET certificate_pem = ?, chain_pem = ?",
                (
                    installed.certificate.public_bytes(serialization.Encoding.PEM),
                    installed.chain_pem(),
                ),
            )
        return installed

    def request(self, keys: tuple[KeyIdentity, ...] | None) -> bytes:
        """A signed VKLOADREQ (DER) with a fresh nonce, remembered as outstanding."""
        certificate = self.certificate()
        now = self.clock()
        request = KeyLoadRequest.new(self.smid, keys, request_time=now)
        der = build_request(request, sm_private_key=self.private_key, sm_certificate=certificate)
        described = "all" if keys is None else json.dumps([str(k) for k in keys])
        with self.store.transaction() as db:
            self._forget_expired(db, now)
            db.execute(
                "INSERT INTO outstanding_request (nonce, made_at, keys) VALUES (?, ?, ?)",
                (request.nonce, now.isoformat(), described),
            )
        return der

    def _outstanding(self, db: sqlite3.Connection) -> dict[bytes, dt.datetime]:
        """Every remembered request's nonce and when it was made, expired ones included."""
        rows = db.execute("SELECT nonce, made_at FROM outstanding_request")
        return {nonce: dt.datetime.fromisoformat(made_at) for nonce, made_at in rows}

    def _expired(self, db: sqlite3.Connection, now: dt.datetime) -> list[bytes]:
        return [
            nonce
            for nonce, made_at in self._outstanding(db).items()
            if now - made_at > self.request_lifetime
        ]

    def _forget_expired(self, db: sqlite3.Connection, now: dt.datetime) -> None:
        db.executemany(
            "DELETE FROM outstanding_request WHERE nonce = ?",
            [(n,) for n in self._expired(db, now)],
        )

    def _check_times(self, klf: KeyLoadFile, made_at: dt.datetime, now: dt.datetime) -> None:
        """The request is not expired, and the file was issued between the request and now."""
        if now - made_at > self.request_lifetime:
            hours = self.request_lifetime / dt.timedelta(hours=1)
            raise LoadRefused(
                "request_expired",
                f"the key-load file answers a request made more than {hours:g} hours ago",
            )
        if klf.issue_time < made_at - CLOCK_SKEW:
            raise LoadRefused(
                "issued_before_request",
                "the key-load file's issue time is before the request it answers was made",
            )
        if klf.issue_time > now + CLOCK_SKEW:
            raise LoadRefused(
                "issued_in_future", "the key-load file's issue time is ahead of the SM's clock"
            )

    def load(self, der: bytes) -> Loaded:
        """Verify, open and check an EKLF, then install all its keys or none."""
        digest = hashlib.sha256(der).hexdigest()
        root = self.root()
        self._refuse_if_loaded(digest)
        try:
            klf = open_eklf(der, trusted_root=root, sm_private_key=self.private_key)
        except ProtocolError as error:
            raise LoadRefused(_reason(error), f"the key-load file is refused: {error}") from None
        now = self.clock()
        with self.store.transaction() as db:
            self._refuse_if_loaded(digest, db)
            outstanding = self._outstanding(db)
            try:
                klf.check_answers(
                    smid=self.smid,
                    outstanding_nonces=list(outstanding),
                    last_sequence=self._identity_row(db)["last_sequence"],
                )
            except ProtocolError as error:
                raise LoadRefused(
                    _reason(error), f"the key-load file is refused: {error}"
                ) from None
            self._check_times(klf, outstanding[klf.nonce], now)
            slots = self._install(db, klf, now)
            db.execute("DELETE FROM outstanding_request WHERE nonce = ?", (klf.nonce,))
            self._forget_expired(db, now)
            db.execute(
                "INSERT INTO loaded_file (sequence, file_sha256, kmc_id, issue_time, loaded_at,"
                " key_count) VALUES (?, ?, ?, ?, ?, ?)",
                (
                    klf.sequence,
                    digest,
                    klf.kmc_id,
                    klf.issue_time.isoformat(),
                    now.isoformat(),
                    len(klf.keys),
                ),
            )
            db.execute("UPDATE identity SET last_sequence = ?", (klf.sequence,))
            registers = tuple(
                KeyRegister.from_row(
                    db.execute("SELECT * FROM key_register WHERE slot = ?", (s,)).fetchone()
                )
                for s in slots
            )
        return Loaded(klf.sequence, klf.kmc_id, registers)

    def _refuse_if_loaded(self, digest: str, db: sqlite3.Connection | None = None) -> None:
        query = "SELECT sequence FROM loaded_file WHERE file_sha256 = ?"
        if db is None:
            with self.store.snapshot() as snapshot:
                row = snapshot.execute(query, (digest,)).fetchone()
        else:
            row = db.execute(query, (digest,)).fetchone()
        if row is not None:
            raise LoadRefused(
                "already_loaded", f"this key-load file (sequence {row[0]}) was loaded before"
            )

    def _install(self, db: sqlite3.Connection, klf: KeyLoadFile, now: dt.datetime) -> list[int]:
        """Put every key of the file in a register (same identity: same register); slot numbers."""
        held = {
            KeyIdentity(r["sgc"], r["krn"], r["kt"]): (r["slot"], r["kcv"])
            for r in db.execute("SELECT slot, sgc, krn, kt, kcv FROM key_register")
        }
        new = [k for k in klf.keys if k.identity not in held]
        free = sorted(set(range(1, self.register_count + 1)) - {s for s, _ in held.values()})
        if len(new) > len(free):
            raise LoadRefused(
                "registers_full",
                f"the file brings {len(new)} new key(s) but only {len(free)} of "
                f"{self.register_count} key registers are free",
            )
        slots = []
        for key in klf.keys:
            if key.identity in held:
                slot, kcv = held[key.identity]
                if kcv != key.kcv.hex().upper():
                    raise LoadRefused(
                        "key_conflict",
                        f"{key.identity} is already held with another key value (KCV {kcv})",
                    )
                self._update(db, slot, key, klf.sequence, now)
            else:
                slot = free.pop(0)
                self._insert(db, slot, key, klf.sequence, now)
            slots.append(slot)
        return slots

    def _insert(
        self, db: sqlite3.Connection, slot: int, key: LoadedKey, sequence: int, now: dt.datetime
    ) -> None:
        values = {
            "slot": slot,
            "sgc": key.identity.sgc,
            "krn": key.identity.krn,
            "kt": key.identity.kt,
            **register_values(key),
            "sealed_key": self._seal.seal(key.identity, key.key_value),
            "sequence": sequence,
            "loaded_at": now.isoformat(),
        }
        columns = ", ".join(values)
        marks = ", ".join("?" for _ in values)
        db.execute(f"INSERT INTO key_register ({columns}) VALUES ({marks})", tuple(values.values()))

    def _update(
        self, db: sqlite3.Connection, slot: int, key: LoadedKey, sequence: int, now: dt.datetime
    ) -> None:
        # The counters stay: a reloaded key never regains headroom it already used.
        values = {**register_values(key), "sequence": sequence, "loaded_at": now.isoformat()}
        assignments = ", ".join(f"{name} = ?" for name in values)
        db.execute(
            f"UPDATE key_register SET {assignments} WHERE slot = ?", (*values.values(), slot)
        )

    def recent_tokens(self, limit: int) -> list[dict[str, Any]]:
        """The latest issued tokens' records (PAN, TID, kind, register, time), newest first."""
        with self.store.snapshot() as db:
            rows = db.execute(
                "SELECT pan, tid, kind, slot, issued_at FROM issued_tid"
                " ORDER BY issued_at DESC, tid DESC LIMIT ?",
                (limit,),
            ).fetchall()
        return [dict(row) for row in rows]

    def registers(self) -> list[KeyRegister]:
        with self.store.snapshot() as db:
            rows = db.execute("SELECT * FROM key_register ORDER BY slot").fetchall()
        return [KeyRegister.from_row(r) for r in rows]

    def open_key(
        self, db: sqlite3.Connection, slot_identity: KeyIdentity
    ) -> tuple[KeyRegister, bytes]:
        """A register as it is in `db` now and its unsealed key value.

        The SM keeps each register it opened, with its key unsealed, in memory while the
        register holds the same load (slot and load sequence: a reload is a new sequence), as
        a hardware SM holds its loaded keys: then only the counters and the sequence are read
        (one statement) and kept with it. Otherwise the whole row is read and the key unsealed
        and kept. At rest the keys stay sealed.
        """
        row = db.execute(
            "SELECT slot, sequence, currency_used, units_used, tokens_issued FROM key_register"
            " WHERE sgc = ? AND krn = ? AND kt = ?",
            (slot_identity.sgc, slot_identity.krn, slot_identity.kt),
        ).fetchone()
        if row is None:
            raise VendRefused("no_such_key", f"no key register holds {slot_identity}")
        slot, sequence, currency_used, units_used, tokens_issued = row
        kept = self._opened.get(slot_identity)
        if kept is not None and (kept[0].slot, kept[0].sequence) == (slot, sequence):
            counters = Decimal(currency_used), units_used, tokens_issued
            kept = kept[0].with_counters(*counters), kept[1]
            self._opened[slot_identity] = kept
            return kept
        full = db.execute("SELECT * FROM key_register WHERE slot = ?", (slot,)).fetchone()
        opened = KeyRegister.from_row(full), self._seal.open(slot_identity, full["sealed_key"])
        self._opened[slot_identity] = opened
        return opened

    def kept_key(self, slot_identity: KeyIdentity) -> tuple[KeyRegister, bytes] | None:
        """The register as `open_key` last read it, with its unsealed key, if this SM has opened
        it; read nothing. It may not be the state: counters moved and keys reloaded since, or
        counters read inside a shared transaction that then did not commit."""
        return self._opened.get(slot_identity)
