"""Appending to, verifying, exporting and checkpointing the audit chain stored in the database."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from cryptography.hazmat.primitives import serialization
from flask import current_app, has_request_context
from sqlalchemy import DateTime, Select, event, insert, select, text, type_coerce
from sqlalchemy.orm import Session

from kmc import clock, pki
from kmc.access import current_actor
from kmc.audit.chain import (
    GENESIS,
    ROW_FIELDS,
    ChainReport,
    Row,
    canonical_json,
    entry_hash,
    format_time,
    verify_rows,
)
from kmc.audit.models import AuditCheckpoint, AuditEntry
from kmc.audit.offline import CHECKPOINT_PREFIX
from kmc.command_line import system_actor
from kmc.database import db, use_case
from kmc.errors import KMCError
from kmc.listing import Listing, ListRequest, Page, contains, page_of

# Arbitrary constant naming the PostgreSQL advisory lock that serialises appends ("KMCA").
_PG_AUDIT_LOCK = 0x4B4D4341
_SECRET_FIELDS = frozenset(
    {"key", "key_value", "vending_key", "password", "secret", "token", "private_key"}
)


def _check_no_secrets(details: dict[str, Any]) -> None:
    leaked = _SECRET_FIELDS.intersection(k.lower() for k in details)
    if leaked:
        raise ValueError(f"audit details must not carry secret fields: {sorted(leaked)}")


_PG_LOCK_STATEMENT = text("SELECT pg_advisory_xact_lock(:k)")


def _lock_chain() -> None:
    """Serialise appenders until the surrounding transaction ends.

    PostgreSQL: a transaction-scoped advisory lock. SQLite: transactions already begin with
    BEGIN IMMEDIATE (see kmc.database.configure_sqlite), so the write lock is held.
    """
    if db.session.get_bind().dialect.name == "postgresql":
        db.session.connection().execute(_PG_LOCK_STATEMENT, {"k": _PG_AUDIT_LOCK})


_HEAD = "kmc.audit.head"


@event.listens_for(Session, "after_soft_rollback")
def _forget_head_after_rollback(session: Session, _transaction: Any) -> None:
    """A rollback (savepoint or whole transaction) may have removed entries appended under it."""
    session.info.pop(_HEAD, None)


@event.listens_for(Session, "after_transaction_end")
def _forget_head_after_transaction(session: Session, transaction: Any) -> None:
    if transaction.parent is None:  # the lock ends with the outermost transaction
        session.info.pop(_HEAD, None)


_HEAD_ENTRY = select(AuditEntry.seq, AuditEntry.entry_hash).order_by(AuditEntry.seq.desc()).limit(1)


def _chain_head() -> tuple[int, str]:
    """(seq, entry_hash) of the last entry, locking the chain for this transaction.

    Once this transaction holds the lock, nobody else can append, so the head it appended last
    is remembered in `session.info` (forgotten on any rollback and at transaction end): a
    transaction appending many entries pays the lock and the read once.
    """
    cached: tuple[int, str] | None = db.session.info.get(_HEAD)
    if cached is not None:
        return cached
    _lock_chain()
    last = db.session.connection().execute(_HEAD_ENTRY).first()
    return (last[0], last[1]) if last else (0, GENESIS)


# Built once: compiling the statement per append would cost about as much as running it.
_INSERT_ENTRY = insert(AuditEntry.__table__)


def record(
    actor: str,
    action: str,
    object_type: str,
    object_id: str,
    details: dict[str, Any] | None = None,
) -> None:
    """Append one entry in the current transaction; the caller commits it with its change.

    A Core INSERT sent at once, not an ORM object flushed later: key loading appends one entry
    per EKLF, and the unit of work cost more than the row.
    """
    details = details or {}
    _check_no_secrets(details)
    head_seq, prev = _chain_head()
    seq = head_seq + 1
    at = clock.now()
    details_text = canonical_json(details)
    object_id = str(object_id)
    digest = entry_hash(
        seq, format_time(at), actor, action, object_type, object_id, details_text, prev
    )
    db.session.connection().execute(
        _INSERT_ENTRY,
        {
            "seq": seq,
            "at": at,
            "actor": actor,
            "action": action,
            "object_type": object_type,
            "object_id": object_id,
            "details": details_text,
            "prev_hash": prev,
            "entry_hash": digest,
        },
    )
    db.session.info[_HEAD] = (seq, digest)


def _rows(batch: int = 20_000) -> Iterator[Row]:
    """Stream the chain in sequence order, straight from the driver (no ORM objects)."""
    columns = (
        AuditEntry.seq,
        type_coerce(AuditEntry.at, DateTime),  # naive UTC straight from the driver: faster
        AuditEntry.actor,
        AuditEntry.action,
        AuditEntry.object_type,
        AuditEntry.object_id,
        AuditEntry.details,
        AuditEntry.prev_hash,
        AuditEntry.entry_hash,
    )
    last = 0
    while True:
        chunk = db.session.execute(
            select(*columns).where(AuditEntry.seq > last).order_by(AuditEntry.seq).limit(batch)
        ).all()
        if not chunk:
            return
        for seq, at, actor, action, otype, oid, details, prev, stored in chunk:
            yield (seq, format_time(at), actor, action, otype, oid, details, prev, stored)
        last = chunk[-1][0]


@dataclass(frozen=True)
class Verification:
    chain: ChainReport
    checkpoints: int
    bad_checkpoint: int | None = None

    @property
    def ok(self) -> bool:
        return self.chain.ok and self.bad_checkpoint is None

    def as_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "entries": self.chain.entries,
            "head_seq": self.chain.head_seq,
            "head_hash": self.chain.head_hash,
            "first_bad_seq": self.chain.first_bad_seq,
            "problem": self.chain.problem,
            "checkpoints": self.checkpoints,
            "bad_checkpoint": self.bad_checkpoint,
        }


def verify() -> Verification:
    """Recompute the whole chain, then check every signed checkpoint against it."""
    report = verify_rows(_rows())
    signer = pki.current().audit_signer
    hashes = {}
    checkpoints = db.session.scalars(select(AuditCheckpoint).order_by(AuditCheckpoint.seq)).all()
    for cp in checkpoints:
        hashes[cp.seq] = cp.entry_hash
    if checkpoints:
        wanted = set(hashes)
        found = {
            seq: h
            for seq, h in db.session.execute(
                select(AuditEntry.seq, AuditEntry.entry_hash).where(AuditEntry.seq.in_(wanted))
            )
        }
        for cp in checkpoints:
            signed_ok = signer.verify(
                checkpoint_message(cp.seq, cp.entry_hash, cp.at), cp.signature
            )
            if not signed_ok or found.get(cp.seq) != cp.entry_hash:
                return Verification(report, len(checkpoints), cp.seq)
    return Verification(report, len(checkpoints))


def checkpoint_message(seq: int, head_hash: str, at: datetime) -> bytes:
    """What a checkpoint signature covers (documented in docs/audit.md)."""
    return f"{CHECKPOINT_PREFIX}:{seq}:{head_hash}:{format_time(at)}".encode()


@use_case
def checkpoint() -> AuditCheckpoint | None:
    """Sign the current chain head with the KMC audit key; None when the log is empty."""
    _lock_chain()
    head = db.session.execute(
        select(AuditEntry.seq, AuditEntry.entry_hash).order_by(AuditEntry.seq.desc()).limit(1)
    ).first()
    if head is None:
        return None
    existing = db.session.get(AuditCheckpoint, head[0])
    if existing is not None:
        return existing
    at = clock.now()
    cp = AuditCheckpoint(
        seq=head[0],
        entry_hash=head[1],
        at=at,
        signature=pki.current().audit_signer.sign(checkpoint_message(head[0], head[1], at)),
    )
    db.session.add(cp)
    db.session.flush()
    return cp


def latest_checkpoint() -> AuditCheckpoint | None:
    """The newest signed checkpoint (what `kmc audit verify` checks the chain against)."""
    return db.session.scalars(
        select(AuditCheckpoint).order_by(AuditCheckpoint.seq.desc()).limit(1)
    ).first()


def export_lines(mode: str) -> Iterator[str]:
    """The log as JSON Lines: a header, every entry, then every checkpoint (see docs/audit.md)."""
    signer = pki.current().audit_signer.certificate
    yield (
        canonical_json(
            {
                "kmc_audit_export": {
                    "version": 1,
                    "mode": mode,
                    "audit_signer_certificate": signer.public_bytes(
                        serialization.Encoding.PEM
                    ).decode(),
                }
            }
        )
        + "\n"
    )
    for row in _rows():
        yield canonical_json({"entry": dict(zip(ROW_FIELDS, row, strict=True))}) + "\n"
    for cp in db.session.scalars(select(AuditCheckpoint).order_by(AuditCheckpoint.seq)):
        yield (
            canonical_json(
                {
                    "checkpoint": {
                        "seq": cp.seq,
                        "entry_hash": cp.entry_hash,
                        "at": format_time(cp.at),
                        "signature": cp.signature.hex(),
                    }
                }
            )
            + "\n"
        )


@dataclass(frozen=True)
class AuditQuery:
    """What an auditor narrows the log by: text found anywhere in the actor, action, object type
    or object id (case-insensitive), and a date range (whole UTC days)."""

    actor: str | None = None
    action: str | None = None
    object_type: str | None = None
    object_id: str | None = None
    since: date | None = None
    until: date | None = None


AUDIT_LIST = Listing(
    sorts={
        "seq": AuditEntry.seq,
        "actor": AuditEntry.actor,
        "action": AuditEntry.action,
        "object": AuditEntry.object_type,
    },
    searched=(AuditEntry.actor, AuditEntry.action, AuditEntry.object_id, AuditEntry.details),
    tiebreak=(AuditEntry.seq,),
    descending=True,  # newest first
)


def _matching(where: AuditQuery) -> Select[tuple[AuditEntry]]:
    query = select(AuditEntry)
    for field in ("actor", "action", "object_type", "object_id"):
        value = getattr(where, field)
        if value and value.strip():
            query = query.where(contains(getattr(AuditEntry, field), value.strip()))
    if where.since:
        query = query.where(AuditEntry.at >= datetime.combine(where.since, time(), UTC))
    if where.until:
        query = query.where(
            AuditEntry.at < datetime.combine(where.until, time(), UTC) + timedelta(days=1)
        )
    return query


def search(where: AuditQuery, asked: ListRequest | None = None) -> Page[AuditEntry]:
    """One page of matching entries, newest first unless asked otherwise."""
    return page_of(_matching(where), AUDIT_LIST, asked or ListRequest())


KEYSTORE_FAULT = "keystore.fault"


def record_keystore_fault(refusal: KMCError) -> None:
    """The audit entry of an HSM fault (`kmc.keystore.audited_fault`): who asked (the request's
    user, else the shell user of this process), the reason and the message, nothing else."""
    user = current_actor() if has_request_context() else None
    record(
        user.username if user is not None else system_actor(),
        KEYSTORE_FAULT,
        "key_store",
        current_app.config.get("KMC_PKCS11_TOKEN") or current_app.config["KMC_KEYSTORE"],
        {"reason": refusal.reason, "message": refusal.message},
    )
