"""Turning a VKLOADREQ into an EKLF: every check, then issue and record in one use case.

A refusal must leave an audit entry while nothing else is written, so every refusal is an
`audited_refusal` (`kmc.database`): the use case rolls the work back, then commits the refusal's
audit entry on its own and raises the `KMCError`. On success the EKLF, the issuance record
(keys, per-SM sequence, request and file hashes) and the audit entry commit together.

Two callers reach the same use case: an operator carrying the SM's request (`keys-load`), and
the SM itself online (`keys-load-online`, `Caller.security_module`), whom nothing but the
request's signature under its registered certificate authenticates; for it the use case also
asks that an operator enabled online key loading for that SM. `fetch_issued` hands an SM the
EKLF it was already issued again, for the same signed request, never a second one.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from cryptography import x509
from flask import current_app
from sqlalchemy import bindparam, func, insert, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import selectinload

from key_load.http import REQUEST_MEDIA_TYPES
from key_load.models import IssuedKey, KeyLoadIssue
from key_load_protocol import (
    MAX_REQUEST_SIZE,
    KeyIdentity,
    KeyLoadFile,
    LoadedKey,
    MalformedMessage,
    ProtocolError,
    SignedRequest,
    build_eklf,
    parse_request,
)
from kmc import clock, keystore, pki
from kmc.audit import service as audit
from kmc.database import RunAgain, audited_refusal, db, use_case
from kmc.errors import (
    Conflict,
    Forbidden,
    InvalidInput,
    KMCError,
    NotFound,
    PolicyRefusal,
    UnsupportedMediaType,
)
from kmc.listing import Listing, ListRequest, Page, page_of
from kmc.permissions import Caller, Permission
from sm_registry import inspection
from sm_registry import service as registry
from vending_keys import service as keys

# How far a request's time may be from the KMC clock, either way (docs/keys.md).
REQUEST_TIME_WINDOW = dt.timedelta(minutes=10)
# A different request of the same SM taking our sequence number between read and commit is
# retried this many times; a racing copy of the same request is a replay and is refused.
_SEQUENCE_ATTEMPTS = 5


@dataclass(frozen=True)
class Issued:
    """The result of a processed request: the EKLF and what it was recorded as."""

    issue_id: int
    smid: str
    sequence: int
    eklf: bytes = field(repr=False)
    file_sha256: str
    keys: tuple[dict[str, Any], ...]

    def as_dict(self) -> dict[str, Any]:
        return {
            "issue_id": self.issue_id,
            "smid": self.smid,
            "sequence": self.sequence,
            "file_sha256": self.file_sha256,
            "keys": list(self.keys),
        }


def _protocol_refusal(error: ProtocolError) -> KMCError:
    reason = error.reason.value.replace("-", "_")
    if isinstance(error, MalformedMessage) or error.reason.value == "invalid-field":
        return InvalidInput(reason, f"the VKLOADREQ is refused: {error}")
    return PolicyRefusal(reason, f"the VKLOADREQ is refused: {error}")


def _record_refusal(actor: str, der: bytes, smid: str | None, reason: str, message: str) -> None:
    audit.record(
        actor,
        "keyload.refuse",
        "sm",
        smid or "unknown",
        {
            "reason": reason,
            "message": message,
            "request_sha256": hashlib.sha256(der).hexdigest(),
            "request_bytes": len(der),
        },
    )


def _audited(actor: str, der: bytes, smid: str | None, refusal: KMCError) -> KMCError:
    """`refusal`, marked to be audited once the refused work is rolled back."""
    return audited_refusal(
        refusal, lambda: _record_refusal(actor, der, smid, refusal.reason, refusal.message)
    )


def _parse(der: bytes) -> SignedRequest:
    if len(der) > MAX_REQUEST_SIZE:
        raise InvalidInput(
            "too_large", f"the request is larger than {MAX_REQUEST_SIZE} bytes; refused unread"
        )
    try:
        return parse_request(der)
    except ProtocolError as error:
        raise _protocol_refusal(error) from None


@dataclass(frozen=True)
class _History:
    """What the issuance needs to know of the SM's past EKLFs, read with the SM in one query."""

    replayed_sequence: int | None  # the sequence of the EKLF that answered this nonce before
    last_sequence: int


# Built once: constructing a statement per request cost about as much as executing it.
_HISTORY = select(
    select(func.max(KeyLoadIssue.sequence))
    .where(KeyLoadIssue.smid == bindparam("smid"))
    .scalar_subquery(),
    select(KeyLoadIssue.sequence)
    .where(
        KeyLoadIssue.smid == bindparam("smid"),
        KeyLoadIssue.nonce_sha256 == bindparam("nonce_sha256"),
    )
    .scalar_subquery(),
)
# Table (Core) inserts on the session's connection: the ORM's bulk-insert path around them cost
# more than the statements.
_INSERT_ISSUE = insert(KeyLoadIssue.__table__).returning(KeyLoadIssue.__table__.c.id)
_INSERT_ISSUED_KEYS = insert(IssuedKey.__table__)


def _security_module(smid: str, nonce_sha256: str) -> tuple[x509.Certificate, _History]:
    """The SM's registered certificate, whether this nonce was answered before and its last
    sequence number; refused unless the SM may receive keys (`registry.loadable`)."""
    certificate_der = registry.loadable_certificate(smid)
    last_sequence, replayed_sequence = (
        db.session.connection()
        .execute(_HISTORY, {"smid": smid, "nonce_sha256": nonce_sha256})
        .one()
    )
    return x509.load_der_x509_certificate(certificate_der), _History(
        replayed_sequence=replayed_sequence, last_sequence=last_sequence or 0
    )


def _check_signature(signed: SignedRequest, certificate: x509.Certificate) -> None:
    try:
        signed.verify(certificate)
    except ProtocolError as error:
        raise _protocol_refusal(error) from None


def _verify(signed: SignedRequest, certificate: x509.Certificate, now: dt.datetime) -> None:
    """The request time is within the window, and the registered SM key signed the request."""
    skew = signed.request.request_time - now
    if skew > REQUEST_TIME_WINDOW:
        raise PolicyRefusal("future_request", "the request time is ahead of the KMC clock")
    if -skew > REQUEST_TIME_WINDOW:
        raise PolicyRefusal("stale_request", "the request time is too far in the past")
    _check_signature(signed, certificate)


def _admit(caller: Caller, smid: str) -> None:
    """An SM calling for itself (its signature verified): only for its own SMID, and only once
    an operator enabled online key loading for it. An operator caller passes unchanged."""
    if not caller.is_security_module:
        return
    if caller.smid != smid:
        raise Forbidden("other_sm", f"{caller.name} may load keys only for itself, not {smid}")
    registry.require_online_keyload(smid)


def _nonce_sha256(signed: SignedRequest) -> str:
    return hashlib.sha256(signed.request.nonce).hexdigest()


def _selected_keys(
    smid: str, wanted: Sequence[KeyIdentity] | None, now: dt.datetime
) -> list[keys.Grant]:
    """The keys to issue; a named key that cannot be issued refuses the whole request.

    The keys are checked after they are locked, so the state checked is the state issued.
    """
    authorised = {grant.identity: grant for grant in keys.grants_of(smid)}
    if wanted is None:
        chosen = [
            g for g in keys.locked(list(authorised.values())) if keys.refusal_for(g, g, now) is None
        ]
        if not chosen:
            raise PolicyRefusal("no_authorised_keys", f"SM {smid} has no key it may receive now")
        return chosen
    locked = {
        g.identity: g for g in keys.locked([authorised[i] for i in wanted if i in authorised])
    }
    for identity in wanted:
        grant = locked.get(identity)
        # Not authorised: look the key up only to say precisely why (unknown or not authorised).
        problem = keys.refusal_for(grant, grant or keys.find_key(identity), now)
        if problem is not None:
            raise PolicyRefusal(problem, f"{identity} cannot be issued to SM {smid}: {problem}")
    return [locked[identity] for identity in wanted]


def _loaded(grant: keys.Grant) -> LoadedKey:
    return LoadedKey(
        identity=grant.identity,
        ken=grant.ken,
        base_date=grant.base_date,
        dkga=grant.dkga,
        eas=frozenset(grant.eas.split(",")),
        key_value=keys.unseal(grant.identity, grant.key_sealed),
        act=grant.act,
        exp=grant.exp,
        iut=grant.iut,
        clm=None if grant.clm is None else Decimal(grant.clm),
        resource_limit=grant.resource_limit,
        refresh_days=grant.refresh_days,
    )


def _issue(caller: Caller, signed: SignedRequest) -> Issued:
    actor = caller.name
    now = clock.now()
    smid = signed.request.smid
    nonce_sha256 = _nonce_sha256(signed)
    certificate, history = _security_module(smid, nonce_sha256)
    _verify(signed, certificate, now)
    _admit(caller, smid)
    if history.replayed_sequence is not None:
        raise Conflict(
            "replayed_nonce",
            f"this request was answered before (EKLF sequence {history.replayed_sequence}); "
            "replays are refused",
            sequence=history.replayed_sequence,
        )
    chosen = _selected_keys(smid, signed.request.keys, now)
    sequence = history.last_sequence + 1
    kmc = pki.current()
    klf = KeyLoadFile(
        smid=smid,
        nonce=signed.request.nonce,
        issue_time=now,
        sequence=sequence,
        kmc_id=current_app.config["KMC_NAME"],
        keys=tuple(_loaded(grant) for grant in chosen),
    )
    eklf = build_eklf(
        klf,
        sm_certificate=certificate,
        signer_key=kmc.keyload_signer.key,
        signer_certificate=kmc.keyload_signer.certificate,
        extra_certificates=(kmc.root.certificate,),
        key_agreement=keystore.current().agree,
    )
    file_sha256 = hashlib.sha256(eklf).hexdigest()
    request_sha256 = signed.digest.hex()
    # Core inserts: the ORM unit of work cost more than the EKLF's cryptography.
    connection = db.session.connection()
    issue_id = connection.scalar(
        _INSERT_ISSUE,
        {
            "smid": smid,
            "sequence": sequence,
            "nonce_sha256": nonce_sha256,
            "request_sha256": request_sha256,
            "file_sha256": file_sha256,
            "file_der": eklf,
            "request_time": signed.request.request_time,
            "issued_at": now,
            "issued_by": actor,
        },
    )
    connection.execute(
        _INSERT_ISSUED_KEYS,
        [{"issue_id": issue_id, "key_id": g.key_id, "kcv": g.kcv, "iut": g.iut} for g in chosen],
    )
    described = tuple(
        {"sgc": g.sgc, "krn": g.krn, "kt": g.kt, "kcv": g.kcv, "iut": g.iut.isoformat()}
        for g in chosen
    )
    audit.record(
        actor,
        "keyload.issue",
        "sm",
        smid,
        {
            "issue_id": issue_id,
            "sequence": sequence,
            "keys": list(described),
            "request_sha256": request_sha256,
            "file_sha256": file_sha256,
        },
    )
    return Issued(issue_id, smid, sequence, eklf, file_sha256, described)


def _require_loader(caller: Caller) -> None:
    caller.require(
        Permission.KEYS_LOAD_ONLINE if caller.is_security_module else Permission.KEYS_LOAD
    )


def _check_media_type(media_type: str | None) -> None:
    if media_type is not None and media_type not in REQUEST_MEDIA_TYPES:
        raise UnsupportedMediaType(
            "unsupported_media_type",
            f"a VKLOADREQ is sent as {', '.join(REQUEST_MEDIA_TYPES)}, not {media_type or 'no type'}",
        )


@use_case(attempts=_SEQUENCE_ATTEMPTS)
def process_request(caller: Caller, der: bytes, media_type: str | None = None) -> Issued:
    """Check a VKLOADREQ and issue its EKLF, or refuse it (audited) with a precise reason.

    `media_type`: what an HTTP client declared the body to be (None from a file)."""
    _require_loader(caller)
    actor = caller.name
    signed: SignedRequest | None = None
    try:
        _check_media_type(media_type)
        signed = _parse(der)
        return _issue(caller, signed)
    except IntegrityError:
        # Another process committed first: the same request (a replay, refused on the next
        # attempt by the nonce check) or another request of this SM taking our sequence.
        busy = Conflict("busy", "too many concurrent requests for this SM; retry")
        raise RunAgain(
            _audited(actor, der, signed.request.smid if signed else None, busy)
        ) from None
    except KMCError as refusal:
        _audited(actor, der, signed.request.smid if signed else None, refusal)
        raise


def claimed_smid(der: bytes) -> str | None:
    """The SMID a VKLOADREQ names, unverified (None if it does not parse): whom to count an
    online request against, and who it claims to be."""
    try:
        return _parse(der).request.smid
    except KMCError:
        return None


def online_caller(der: bytes) -> Caller:
    """The caller of an SM's own online request: the SM the request names, admitted only once
    the request's signature verifies under that SM's registered certificate."""
    return Caller.security_module(claimed_smid(der) or "unknown")


@use_case
def record_flood(caller: Caller, der: bytes, limit: str) -> None:
    """Audit an online request the rate limit refused (the limiter answers 429 before any use
    case runs; the API audits the first refusal of a flood per key and minute, not each one)."""
    _record_refusal(
        caller.name,
        der,
        caller.smid,
        "too_many_requests",
        f"online key-load requests over the limit of {limit}; refused unread",
    )


_ISSUE_AT = select(KeyLoadIssue).where(
    KeyLoadIssue.smid == bindparam("smid"), KeyLoadIssue.sequence == bindparam("sequence")
)


@use_case
def fetch_issued(caller: Caller, der: bytes, sequence: int) -> KeyLoadIssue:
    """The EKLF of `sequence` again, for the SM whose signed VKLOADREQ `der` it answered: the
    same file (nothing issued), or a refusal (audited). The request time is not checked: the
    answer is the file already issued, enveloped to that SM's key (docs/protocol.md)."""
    caller.require(Permission.KEYS_LOAD_ONLINE)
    smid: str | None = None
    try:
        signed = _parse(der)
        smid = signed.request.smid
        _check_signature(
            signed, x509.load_der_x509_certificate(registry.loadable_certificate(smid))
        )
        _admit(caller, smid)
        issue = db.session.scalars(_ISSUE_AT, {"smid": smid, "sequence": sequence}).first()
        if issue is None or issue.nonce_sha256 != _nonce_sha256(signed):
            raise NotFound(
                "unknown_issue", f"no EKLF of sequence {sequence} answers this request of {smid}"
            )
    except KMCError as refusal:
        _audited(caller.name, der, smid, refusal)
        raise
    audit.record(
        caller.name,
        "keyload.fetch",
        "sm",
        smid,
        {
            "issue_id": issue.id,
            "sequence": issue.sequence,
            "request_sha256": signed.digest.hex(),
            "file_sha256": issue.file_sha256,
        },
    )
    return issue


def recipients_of(key_id: int) -> list[str]:
    """Every SMID an EKLF carrying `key` was issued to (for a compromised key's notice)."""
    return list(
        db.session.scalars(
            select(KeyLoadIssue.smid)
            .join(IssuedKey, IssuedKey.issue_id == KeyLoadIssue.id)
            .where(IssuedKey.key_id == key_id)
            .distinct()
            .order_by(KeyLoadIssue.smid)
        )
    )


def list_issues(smid: str | None = None, limit: int = 200) -> Sequence[KeyLoadIssue]:
    query = select(KeyLoadIssue).order_by(KeyLoadIssue.id.desc()).limit(limit)
    if smid is not None:
        query = query.where(KeyLoadIssue.smid == smid)
    return db.session.scalars(query).all()


def loads_of(smids: Sequence[str]) -> list[inspection.KeyLoad]:
    """The key-load files issued to these SMs, oldest first (the registry's inspection report;
    the registry checks who may read it)."""
    query = (
        select(KeyLoadIssue)
        .where(KeyLoadIssue.smid.in_(smids))
        .options(selectinload(KeyLoadIssue.keys))
        .order_by(KeyLoadIssue.issued_at, KeyLoadIssue.id)
    )
    return [
        inspection.KeyLoad(i.smid, i.sequence, i.issued_at, len(i.keys), i.file_sha256)
        for i in db.session.scalars(query)
    ]


ISSUE_LIST = Listing(
    sorts={
        "id": KeyLoadIssue.id,
        "smid": KeyLoadIssue.smid,
        "sequence": KeyLoadIssue.sequence,
        "issued_by": KeyLoadIssue.issued_by,
    },
    searched=(KeyLoadIssue.smid, KeyLoadIssue.issued_by, KeyLoadIssue.file_sha256),
    tiebreak=(KeyLoadIssue.id,),
    descending=True,  # newest first
)


def issues_page(caller: Caller, asked: ListRequest) -> Page[KeyLoadIssue]:
    """One page of the issued EKLFs (the key-loading page)."""
    caller.require(Permission.KEYS_READ)
    return page_of(select(KeyLoadIssue), ISSUE_LIST, asked)


def recent_refusals(limit: int = 5) -> list[Any]:
    """The latest refused VKLOADREQs, from the audit log (refusals leave no other record)."""
    refused = audit.AuditQuery(action="keyload.refuse")
    return audit.search(refused, ListRequest(per_page=limit)).items


def find_issue(issue_id: int) -> KeyLoadIssue:
    issue = db.session.get(KeyLoadIssue, issue_id)
    if issue is None:
        raise NotFound("unknown_issue", f"no key-load issue {issue_id}")
    return issue


def describe_issue(issue: KeyLoadIssue) -> dict[str, Any]:
    return {
        "id": issue.id,
        "smid": issue.smid,
        "sequence": issue.sequence,
        "issued_at": issue.issued_at.isoformat(),
        "issued_by": issue.issued_by,
        "request_time": issue.request_time.isoformat(),
        "request_sha256": issue.request_sha256,
        "file_sha256": issue.file_sha256,
        "keys": [
            {"sgc": k.key.sgc, "krn": k.key.krn, "kt": k.key.kt, "kcv": k.kcv} for k in issue.keys
        ],
    }
