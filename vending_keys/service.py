"""Key-store use cases: supply groups, key generation, authorisations, approvals, lifecycle, expiry.

Each state-changing function is a use case (`kmc.database.use_case`): it commits its change with
its audit entry, or rolls both back when it refuses. In live mode key generation and authorisation are
two-person operations: `propose_*` queues an `Approval`, and `approve` by a different user carries
it out. In test mode `propose_*` carries it out at once.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from flask import Flask, current_app
from sqlalchemy import bindparam, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import contains_eager

from key_load_protocol import KeyIdentity, key_check_value
from key_load_protocol.identifiers import supply_group_code
from kmc import clock, keystore
from kmc.audit import service as audit
from kmc.database import db, use_case
from kmc.errors import (
    Conflict,
    Forbidden,
    InvalidInput,
    KMCError,
    NotFound,
    PolicyRefusal,
    identifier_input,
)
from kmc.listing import Listing, ListRequest, Page, page_of
from kmc.permissions import Caller, Permission
from sm_registry import service as registry
from vending_keys.domain import (
    KEY_TYPES,
    AuthorisationLimits,
    AuthorisationSpec,
    KeySpec,
    sealing_identity,
)
from vending_keys.models import (
    NAME_LENGTH,
    REASON_LENGTH,
    Approval,
    Authorisation,
    SupplyGroup,
    VendingKey,
)

GENERATE = "key.generate"
AUTHORISE = "key.authorize"


def _live() -> bool:
    return bool(current_app.config["KMC_MODE"] == "live")


def init_app(app: Flask, *, holders: Callable[[int], list[str]]) -> None:
    """Register who can tell which SMs hold a key (key loading, a feature above this one)."""
    app.extensions["kmc.key_holders"] = holders


def recipients_of(key: VendingKey) -> list[str]:
    """Every SMID the key was issued to (for a compromised key's notice)."""
    holders: Callable[[int], list[str]] = current_app.extensions["kmc.key_holders"]
    return holders(key.id)


def identity_of(key: VendingKey) -> KeyIdentity:
    return KeyIdentity(key.sgc, key.krn, key.kt)


def describe_key(key: VendingKey) -> dict[str, Any]:
    """What the UI, API and CLI show of a key: attributes and KCV, never the key."""
    return {
        "sgc": key.sgc,
        "krn": key.krn,
        "kt": key.kt,
        "key_type": KEY_TYPES.get(key.kt, "?"),
        "dkga": key.dkga,
        "eas": key.eas.split(","),
        "base_date": key.base_date,
        "ken": key.ken,
        "act": key.act.isoformat(),
        "exp": key.exp.isoformat(),
        "refresh_days": key.refresh_days,
        "kcv": key.kcv,
        "state": key.state,
        "state_reason": key.state_reason,
        "proposed_by": key.proposed_by,
        "approved_by": key.approved_by,
    }


def describe_authorisation(auth: Authorisation) -> dict[str, Any]:
    return {
        "sgc": auth.key.sgc,
        "krn": auth.key.krn,
        "kt": auth.key.kt,
        "smid": auth.smid,
        "iut": auth.iut.isoformat(),
        "clm": auth.clm,
        "resource_limit": auth.resource_limit,
        "expires_at": auth.expires_at.isoformat() if auth.expires_at else None,
        "proposed_by": auth.proposed_by,
        "approved_by": auth.approved_by,
    }


def describe_approval(approval: Approval) -> dict[str, Any]:
    """A proposal with everything the approver decides on: the proposed spec's fields."""
    return {
        "id": approval.id,
        "action": approval.action,
        "subject": approval.subject,
        "payload": json.loads(approval.payload),
        "state": approval.state,
        "proposed_by": approval.proposed_by,
        "proposed_at": approval.proposed_at.isoformat(),
        "decided_by": approval.decided_by,
        "decided_at": approval.decided_at.isoformat() if approval.decided_at else None,
        "outcome": approval.outcome,
    }


@dataclass(frozen=True)
class Outcome:
    """What a `propose_*` or `approve` call did: created the object, or queued it for approval."""

    key: VendingKey | None = None
    authorisation: Authorisation | None = None
    approval: Approval | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "key": describe_key(self.key) if self.key else None,
            "authorisation": (
                describe_authorisation(self.authorisation) if self.authorisation else None
            ),
            "approval": describe_approval(self.approval) if self.approval else None,
        }


def _fitting(text: str, limit: int, reason: str, what: str) -> str:
    """`text` stripped, or `InvalidInput(reason)` when it is longer than its column holds."""
    stripped = text.strip()
    if len(stripped) > limit:
        raise InvalidInput(reason, f"{what} may be at most {limit} characters")
    return stripped


def _reason(text: str, what: str) -> str:
    """A required free-text reason (state change, rejection) that fits its column."""
    reason = _fitting(text, REASON_LENGTH, "reason_too_long", "the reason")
    if not reason:
        raise InvalidInput("reason_required", what)
    return reason


# Supply groups


def _group_text(name: str, utility: str, cluster: str) -> tuple[str, str, str]:
    name = _fitting(name, NAME_LENGTH, "invalid_name", "the name")
    if not name:
        raise InvalidInput("invalid_name", "a supply group needs a name")
    utility = _fitting(utility, NAME_LENGTH, "invalid_utility", "the utility")
    cluster = _fitting(cluster, NAME_LENGTH, "invalid_cluster", "the cluster")
    return name, utility, cluster


@use_case
def add_supply_group(
    caller: Caller, sgc: str, name: str, utility: str = "", cluster: str = ""
) -> SupplyGroup:
    caller.require(Permission.KEYS_MANAGE)
    actor = caller.name
    with identifier_input():
        supply_group_code(sgc)
    name, utility, cluster = _group_text(name, utility, cluster)
    if db.session.get(SupplyGroup, sgc) is not None:
        raise Conflict("duplicate_sgc", f"supply group {sgc} already exists")
    group = SupplyGroup(
        sgc=sgc,
        name=name,
        utility=utility,
        cluster=cluster,
        created_at=clock.now(),
        created_by=actor,
    )
    db.session.add(group)
    try:
        db.session.flush()
    except IntegrityError:
        raise Conflict("duplicate_sgc", f"supply group {sgc} already exists") from None
    audit.record(
        actor,
        "sgc.add",
        "supply_group",
        sgc,
        {"name": group.name, "utility": group.utility, "cluster": group.cluster},
    )
    return group


def find_supply_group(sgc: str) -> SupplyGroup:
    group = db.session.get(SupplyGroup, sgc)
    if group is None:
        raise NotFound("unknown_sgc", f"no supply group {sgc}")
    return group


@use_case
def update_supply_group(
    caller: Caller, sgc: str, name: str, utility: str = "", cluster: str = ""
) -> SupplyGroup:
    """Rename a supply group or change its utility or cluster; the SGC itself never changes
    (keys and meters carry it)."""
    caller.require(Permission.KEYS_MANAGE)
    name, utility, cluster = _group_text(name, utility, cluster)
    group = find_supply_group(sgc)
    before = {"name": group.name, "utility": group.utility, "cluster": group.cluster}
    after = {"name": name, "utility": utility, "cluster": cluster}
    if before == after:
        raise InvalidInput("unchanged", f"supply group {sgc} already reads so")
    group.name, group.utility, group.cluster = name, utility, cluster
    audit.record(caller.name, "sgc.update", "supply_group", sgc, {"from": before, "to": after})
    return group


def list_supply_groups() -> Sequence[SupplyGroup]:
    return db.session.scalars(select(SupplyGroup).order_by(SupplyGroup.sgc)).all()


SUPPLY_GROUP_LIST = Listing(
    sorts={
        "sgc": SupplyGroup.sgc,
        "name": SupplyGroup.name,
        "utility": SupplyGroup.utility,
        "cluster": SupplyGroup.cluster,
        "since": SupplyGroup.created_at,
    },
    searched=(SupplyGroup.sgc, SupplyGroup.name, SupplyGroup.utility, SupplyGroup.cluster),
    tiebreak=(SupplyGroup.sgc,),
)


def supply_groups_page(caller: Caller, asked: ListRequest) -> Page[SupplyGroup]:
    caller.require(Permission.KEYS_READ)
    return page_of(select(SupplyGroup), SUPPLY_GROUP_LIST, asked)


# Keys


def find_key(identity: KeyIdentity, *, for_update: bool = False) -> VendingKey:
    """The key with this identity; `for_update` locks its row until the transaction ends and
    reads it afresh, so a state change decides on the state no one else can still change."""
    query = select(VendingKey).where(
        VendingKey.sgc == identity.sgc,
        VendingKey.krn == identity.krn,
        VendingKey.kt == identity.kt,
    )
    if for_update:
        query = query.with_for_update().execution_options(populate_existing=True)
    key = db.session.scalar(query)
    if key is None:
        raise NotFound("unknown_key", f"no vending key {identity}")
    return key


def list_keys(sgc: str | None = None) -> Sequence[VendingKey]:
    query = select(VendingKey).order_by(VendingKey.sgc, VendingKey.krn, VendingKey.kt)
    if sgc is not None:
        query = query.where(VendingKey.sgc == sgc)
    return db.session.scalars(query).all()


KEY_LIST = Listing(
    sorts={
        "sgc": VendingKey.sgc,
        "krn": VendingKey.krn,
        "kt": VendingKey.kt,
        "state": VendingKey.state,
        "act": VendingKey.act,
        "exp": VendingKey.exp,
        "created": VendingKey.created_at,
    },
    searched=(VendingKey.sgc, VendingKey.kcv, VendingKey.state, VendingKey.dkga),
    tiebreak=(VendingKey.sgc, VendingKey.krn, VendingKey.kt),
)


def keys_page(caller: Caller, asked: ListRequest) -> Page[VendingKey]:
    caller.require(Permission.KEYS_READ)
    return page_of(select(VendingKey), KEY_LIST, asked)


def open_key(key: VendingKey) -> bytes:
    """The key material, unsealed for building a key-load file; never log or show it."""
    return unseal(identity_of(key), key.key_sealed)


def unseal(identity: KeyIdentity, sealed: bytes) -> bytes:
    """Open sealed key material bound to `identity` (a row moved to another key does not open)."""
    return keystore.current().open(sealed, sealing_identity(identity))


def _check_key_can_be_generated(spec: KeySpec) -> None:
    if db.session.get(SupplyGroup, spec.identity.sgc) is None:
        raise NotFound("unknown_sgc", f"no supply group {spec.identity.sgc}")
    existing = db.session.scalar(
        select(VendingKey.id).where(
            VendingKey.sgc == spec.identity.sgc,
            VendingKey.krn == spec.identity.krn,
            VendingKey.kt == spec.identity.kt,
        )
    )
    if existing is not None:
        raise Conflict("duplicate_key", f"vending key {spec.identity} already exists")


def _generate(spec: KeySpec, proposed_by: str, approved_by: str | None) -> VendingKey:
    _check_key_can_be_generated(spec)
    sealed, kcv = keystore.current().generate_secret(
        spec.key_length,
        sealing_identity(spec.identity),
        lambda material: key_check_value(spec.dkga, material),
    )
    key = VendingKey(
        sgc=spec.identity.sgc,
        krn=spec.identity.krn,
        kt=spec.identity.kt,
        dkga=spec.dkga,
        eas=",".join(sorted(spec.eas)),
        base_date=spec.base_date,
        ken=spec.ken,
        act=spec.act,
        exp=spec.exp,
        refresh_days=spec.refresh_days,
        key_sealed=sealed,
        kcv=kcv.hex().upper(),
        state="active",
        created_at=clock.now(),
        proposed_by=proposed_by,
        approved_by=approved_by,
    )
    db.session.add(key)
    try:
        db.session.flush()
    except IntegrityError:
        raise Conflict("duplicate_key", f"vending key {spec.identity} already exists") from None
    details = describe_key(key)
    audit.record(approved_by or proposed_by, GENERATE, "vending_key", str(spec.identity), details)
    return key


def _queue(
    actor: str,
    action: str,
    subject: str,
    spec: KeySpec | AuthorisationSpec,
    noted: dict[str, str] | None = None,
) -> Approval:
    approval = Approval(
        action=action,
        subject=subject,
        payload=spec.to_json(),
        state="pending",
        proposed_by=actor,
        proposed_at=clock.now(),
    )
    db.session.add(approval)
    db.session.flush()
    audit.record(
        actor,
        f"{action}.propose",
        "approval",
        str(approval.id),
        {"subject": subject, **spec.as_dict(), **(noted or {})},
    )
    return approval


@use_case
def propose_key(caller: Caller, spec: KeySpec) -> Outcome:
    """Generate a key now (test mode) or queue it for a second person's approval (live mode)."""
    caller.require(Permission.KEYS_MANAGE)
    actor = caller.name
    if _live():
        _check_key_can_be_generated(spec)
        return Outcome(approval=_queue(actor, GENERATE, str(spec.identity), spec))
    return Outcome(key=_generate(spec, actor, None))


def _set_key_state(actor: str, identity: KeyIdentity, state: str, reason: str) -> VendingKey:
    reason = _reason(reason, "say why the key's state changes")
    # Locked, so a concurrent compromise is seen here and never overwritten (compromised is final).
    key = find_key(identity, for_update=True)
    if key.state == "compromised":
        raise Conflict("key_compromised", f"vending key {identity} is already compromised")
    if key.state == state:
        raise Conflict("same_state", f"vending key {identity} is already {state}")
    previous = key.state
    key.state, key.state_reason, key.state_changed_at = state, reason, clock.now()
    audit.record(
        actor,
        f"key.{'deactivate' if state == 'deactivated' else 'compromise'}",
        "vending_key",
        str(identity),
        {"from": previous, "to": state, "reason": key.state_reason},
    )
    return key


@dataclass(frozen=True)
class KeyStateChange:
    key: VendingKey
    issued_to: list[str]  # every SM the key went to: whom to tell of a compromise


STATE_CHANGES = ("deactivate", "compromise")


@use_case
def change_key_state(
    caller: Caller, identity: KeyIdentity, change: str, reason: str
) -> KeyStateChange:
    """Deactivate or compromise a key (`change` one of STATE_CHANGES); says who holds it."""
    caller.require(Permission.KEYS_MANAGE)
    actor = caller.name
    if change not in STATE_CHANGES:
        raise InvalidInput(
            "invalid_change", f"the change must be one of {', '.join(STATE_CHANGES)}"
        )
    key = _set_key_state(
        actor, identity, "deactivated" if change == "deactivate" else "compromised", reason
    )
    return KeyStateChange(key, recipients_of(key))


# Grants: what key loading reads of the keys authorised for an SM


@dataclass(frozen=True)
class Grant:
    """One authorised key as key loading reads it: the key's columns and its authorisation's."""

    key_id: int
    sgc: str
    krn: int
    kt: int
    ken: int
    base_date: int
    dkga: str
    eas: str
    key_sealed: bytes = field(repr=False)
    act: dt.datetime
    exp: dt.datetime
    refresh_days: int | None
    kcv: str
    state: str
    iut: dt.datetime
    clm: str | None
    resource_limit: int | None
    expires_at: dt.datetime | None

    @property
    def identity(self) -> KeyIdentity:
        return KeyIdentity(self.sgc, self.krn, self.kt)


def refusal_for(grant: Grant | None, key: Grant | VendingKey, now: dt.datetime) -> str | None:
    """Why `key` cannot go to the SM under `grant` (None: not authorised) now, or None if it can."""
    if key.state == "compromised":
        return "key_compromised"
    if key.state != "active":
        return "key_not_active"
    if now < key.act:
        return "key_not_yet_active"
    if now > key.exp:
        return "key_expired"
    if grant is None:
        return "key_not_authorised"
    if grant.iut <= now or (grant.expires_at is not None and grant.expires_at <= now):
        return "authorisation_expired"
    return None


# Built once, like the other statements here; columns, not ORM objects (loading an SM's five
# authorisations and keys as objects cost more than the query).
_GRANTS_OF_SM = (
    select(
        VendingKey.id.label("key_id"),
        VendingKey.sgc,
        VendingKey.krn,
        VendingKey.kt,
        VendingKey.ken,
        VendingKey.base_date,
        VendingKey.dkga,
        VendingKey.eas,
        VendingKey.key_sealed,
        VendingKey.act,
        VendingKey.exp,
        VendingKey.refresh_days,
        VendingKey.kcv,
        VendingKey.state,
        Authorisation.iut,
        Authorisation.clm,
        Authorisation.resource_limit,
        Authorisation.expires_at,
    )
    .join_from(Authorisation, VendingKey, Authorisation.key_id == VendingKey.id)
    .where(Authorisation.smid == bindparam("smid"))
    .order_by(Authorisation.id)
)
# FOR SHARE on the keys about to be issued: a compromise or deactivation (which locks the key
# row FOR UPDATE, or updates it) then waits for this issuance to commit, so the key's "issued
# to" list names this SM; or this waits for the compromise, and the state read here under the
# lock is the state checked.
_LOCK_KEYS = (
    select(VendingKey.id, VendingKey.state)
    .where(VendingKey.id.in_(bindparam("ids", expanding=True)))
    .order_by(VendingKey.id)
    .with_for_update(read=True)
)


def locked(grants: list[Grant]) -> list[Grant]:
    """`grants` with their keys held against a state change until this transaction ends, and
    with the key state read under that lock.

    SQLite needs nothing: every KMC transaction there takes the database's write lock at
    BEGIN IMMEDIATE, so a compromise and a key load never overlap.
    """
    connection = db.session.connection()
    if not grants or connection.dialect.name == "sqlite":
        return grants
    states = dict(connection.execute(_LOCK_KEYS, {"ids": [g.key_id for g in grants]}).all())
    return [replace(g, state=states[g.key_id]) for g in grants]


def grants_of(smid: str) -> list[Grant]:
    """Every key authorised for the SM, with its authorisation, read as columns (hot path)."""
    return [Grant(*row) for row in db.session.connection().execute(_GRANTS_OF_SM, {"smid": smid})]


# Authorisations


def _active_key(identity: KeyIdentity) -> VendingKey:
    key = find_key(identity)
    if key.state != "active":
        raise PolicyRefusal("key_not_active", f"vending key {identity} is {key.state}")
    return key


def _iut_of(key: VendingKey, iut: dt.datetime | None) -> dt.datetime:
    """The authorisation's IUT (default the key's EXP), which lies between ACT and EXP."""
    iut = iut or key.exp
    if not key.act <= iut <= key.exp:
        raise InvalidInput("invalid_iut", "the IUT must lie between the key's ACT and EXP")
    return iut


def _check_authorisation(spec: AuthorisationSpec) -> tuple[VendingKey, dt.datetime]:
    key = _active_key(spec.identity)
    registry.require_usable(spec.smid)
    iut = _iut_of(key, spec.iut)
    existing = db.session.scalar(
        select(Authorisation.id).where(
            Authorisation.key_id == key.id, Authorisation.smid == spec.smid
        )
    )
    if existing is not None:
        raise Conflict(
            "duplicate_authorisation", f"SM {spec.smid} is already authorised for {spec.identity}"
        )
    return key, iut


def _authorise(
    spec: AuthorisationSpec,
    proposed_by: str,
    approved_by: str | None,
    noted: dict[str, str] | None = None,
) -> Authorisation:
    key, iut = _check_authorisation(spec)
    auth = Authorisation(
        key_id=key.id,
        smid=spec.smid,
        iut=iut,
        clm=None if spec.clm is None else str(spec.clm),
        resource_limit=spec.resource_limit,
        expires_at=spec.expires_at,
        created_at=clock.now(),
        proposed_by=proposed_by,
        approved_by=approved_by,
    )
    db.session.add(auth)
    try:
        db.session.flush()
    except IntegrityError:
        raise Conflict(
            "duplicate_authorisation", f"SM {spec.smid} is already authorised for {spec.identity}"
        ) from None
    audit.record(
        approved_by or proposed_by,
        AUTHORISE,
        "key_authorisation",
        f"{spec.identity} SMID {spec.smid}",
        {**describe_authorisation(auth), **(noted or {})},
    )
    return auth


@use_case
def propose_authorisation(
    caller: Caller, spec: AuthorisationSpec, *, reason: str | None = None
) -> Outcome:
    """Authorise now (test mode) or queue for a second person's approval (live mode). A bulk
    authorisation's reason is kept in the audit entry (of the authorisation, or of the proposal)."""
    caller.require(Permission.KEYS_MANAGE)
    actor = caller.name
    noted = {"reason": reason} if reason is not None else None
    if _live():
        _check_authorisation(spec)
        subject = f"{spec.identity} SMID {spec.smid}"
        return Outcome(approval=_queue(actor, AUTHORISE, subject, spec, noted))
    return Outcome(authorisation=_authorise(spec, actor, None, noted))


@dataclass(frozen=True)
class BulkVerdict:
    """One SM of a bulk authorisation: authorised (test mode), proposed for a second person's
    approval (live mode), or refused with the single authorisation's reason."""

    smid: str
    outcome: Outcome | None = None
    refusal: KMCError | None = None

    @property
    def result(self) -> str:
        if self.outcome is None:
            return "refused"
        return "proposed" if self.outcome.approval is not None else "authorised"

    def as_dict(self) -> dict[str, Any]:
        approval = self.outcome.approval if self.outcome is not None else None
        return {
            "smid": self.smid,
            "result": self.result,
            "approval_id": approval.id if approval is not None else None,
            "reason": self.refusal.reason if self.refusal is not None else None,
            "message": self.refusal.message if self.refusal is not None else None,
        }


BULK_RESULTS = ("authorised", "proposed", "refused")


def bulk_counts(verdicts: Sequence[BulkVerdict]) -> dict[str, int]:
    """How many SMs of a bulk authorisation got each result (the page's flash, the API's reply)."""
    return {result: sum(v.result == result for v in verdicts) for result in BULK_RESULTS}


def authorise_many(
    caller: Caller,
    identity: KeyIdentity,
    smids: Iterable[str],
    limits: AuthorisationLimits,
    reason: str,
) -> list[BulkVerdict]:
    """`propose_authorisation` of one key for each selected SM with the same limits and one
    reason (the bulk authorisation of the key's page and the API). The request is refused whole
    first (role, reason, key unknown or not active, an IUT outside its ACT..EXP, 1 to
    `registry.MAX_BULK_SELECTION` SMIDs); then each SM is its own use case, authorised (in live
    mode proposed) and audited on its own, or refused on its own; the verdicts in the order
    given (a SMID given twice counts once)."""
    caller.require(Permission.KEYS_MANAGE)
    reason = _reason(reason, "give one reason for the bulk authorisation")
    _iut_of(_active_key(identity), limits.iut)
    verdicts = []
    for smid in registry.selection(smids):
        try:
            outcome = propose_authorisation(caller, limits.for_sm(identity, smid), reason=reason)
        except KMCError as refused:
            verdicts.append(BulkVerdict(smid, refusal=refused))
        else:
            verdicts.append(BulkVerdict(smid, outcome))
    return verdicts


@use_case
def revoke_authorisation(
    caller: Caller, identity: KeyIdentity, smid: str, reason: str
) -> dict[str, Any]:
    """Withdraw an SM's authorisation for a key: no further EKLF carries that key to that SM.
    The row goes (the SM may be authorised afresh later); the audit entry keeps what it was.
    An SM that already holds the key keeps it (docs/keys.md, "Revoking an authorisation")."""
    caller.require(Permission.KEYS_MANAGE)
    reason = _reason(reason, "revoking an authorisation")
    key = find_key(identity)
    auth = db.session.scalar(
        select(Authorisation)
        .where(Authorisation.key_id == key.id, Authorisation.smid == smid)
        .with_for_update()
    )
    if auth is None:
        raise NotFound("unknown_authorisation", f"SM {smid} is not authorised for {identity}")
    revoked = describe_authorisation(auth)
    db.session.delete(auth)
    audit.record(
        caller.name,
        "key.authorisation.revoke",
        "key_authorisation",
        f"{identity} SMID {smid}",
        {**revoked, "reason": reason},
    )
    return revoked


def authorisations_for(smid: str) -> Sequence[Authorisation]:
    """An SM's authorisations, oldest first."""
    query = select(Authorisation).where(Authorisation.smid == smid).order_by(Authorisation.id)
    return db.session.scalars(query).all()


AUTHORISATION_LIST = Listing(
    sorts={
        "smid": Authorisation.smid,
        "sgc": VendingKey.sgc,
        "krn": VendingKey.krn,
        "kt": VendingKey.kt,
        "iut": Authorisation.iut,
        "expires": Authorisation.expires_at,
        "created": Authorisation.created_at,
    },
    searched=(Authorisation.smid, VendingKey.sgc, Authorisation.proposed_by),
    tiebreak=(Authorisation.id,),
)


def authorisations_page(caller: Caller, asked: ListRequest) -> Page[Authorisation]:
    """Every SM's authorisations, with their keys (the authorisations page)."""
    caller.require(Permission.KEYS_READ)
    query = select(Authorisation).join(Authorisation.key).options(contains_eager(Authorisation.key))
    return page_of(query, AUTHORISATION_LIST, asked)


# Approvals


def list_approvals(state: str | None = "pending") -> Sequence[Approval]:
    query = select(Approval).order_by(Approval.id)
    if state is not None:
        query = query.where(Approval.state == state)
    return db.session.scalars(query).all()


APPROVAL_LIST = Listing(
    sorts={
        "id": Approval.id,
        "action": Approval.action,
        "subject": Approval.subject,
        "state": Approval.state,
        "proposed_by": Approval.proposed_by,
        "proposed": Approval.proposed_at,
        "decided_by": Approval.decided_by,
    },
    searched=(
        Approval.action,
        Approval.subject,
        Approval.proposed_by,
        Approval.decided_by,
        Approval.outcome,
    ),
    tiebreak=(Approval.id,),
    descending=True,  # newest first
)


def approvals_page(caller: Caller, state: str | None, asked: ListRequest) -> Page[Approval]:
    """One page of the proposals, of one state or all (the approvals page)."""
    caller.require(Permission.KEYS_READ)
    query = select(Approval)
    if state:
        query = query.where(Approval.state == state)
    return page_of(query, APPROVAL_LIST, asked)


def waiting_for(caller: Caller) -> Sequence[Approval]:
    """Pending proposals this caller could approve: a second person's, never their own."""
    if not caller.may(Permission.KEYS_MANAGE):
        return ()
    query = (
        select(Approval)
        .where(Approval.state == "pending", Approval.proposed_by != caller.name)
        .order_by(Approval.id)
    )
    return db.session.scalars(query).all()


def _pending(approval_id: int) -> Approval:
    approval = db.session.get(Approval, approval_id, with_for_update=True)
    if approval is None:
        raise NotFound("unknown_approval", f"no approval {approval_id}")
    if approval.state != "pending":
        raise Conflict("approval_decided", f"approval {approval_id} is already {approval.state}")
    return approval


@use_case
def approve(caller: Caller, approval_id: int) -> Outcome:
    """Carry out a proposal; the approver must not be the proposer (two-person rule)."""
    caller.require(Permission.KEYS_MANAGE)
    actor = caller.name
    approval = _pending(approval_id)
    if approval.proposed_by == actor:
        raise Forbidden("same_person", "a proposal must be approved by a different user")
    approval.state, approval.decided_by, approval.decided_at = "approved", actor, clock.now()
    audit.record(actor, f"{approval.action}.approve", "approval", str(approval.id), {})
    if approval.action == GENERATE:
        return Outcome(
            key=_generate(KeySpec.from_json(approval.payload), approval.proposed_by, actor),
            approval=approval,
        )
    spec = AuthorisationSpec.from_json(approval.payload)
    return Outcome(authorisation=_authorise(spec, approval.proposed_by, actor), approval=approval)


@use_case
def reject(caller: Caller, approval_id: int, reason: str) -> Approval:
    caller.require(Permission.KEYS_MANAGE)
    actor = caller.name
    reason = _reason(reason, "say why the proposal is rejected")
    approval = _pending(approval_id)
    approval.state, approval.decided_by, approval.decided_at = "rejected", actor, clock.now()
    approval.outcome = reason
    audit.record(
        actor, f"{approval.action}.reject", "approval", str(approval.id), {"reason": reason}
    )
    return approval


# Expiry


@dataclass(frozen=True)
class ExpiryWarning:
    """A key or authorisation reaching a limit within the asked window."""

    what: str  # "exp", "refresh", "iut", "authorisation_expiry"
    sgc: str
    krn: int
    kt: int
    smid: str | None
    at: dt.datetime

    def as_dict(self) -> dict[str, Any]:
        return {
            "what": self.what,
            "sgc": self.sgc,
            "krn": self.krn,
            "kt": self.kt,
            "smid": self.smid,
            "at": self.at.isoformat(),
        }


# A century ahead covers every key's life; a larger window would overflow the date arithmetic.
MAX_WINDOW_DAYS = 36500


def expiring(within_days: int) -> list[ExpiryWarning]:
    """Active keys whose EXP or refresh date, and authorisations whose IUT or expiry, fall
    before now + `within_days` (already passed ones included), sorted by date."""
    if not 0 <= within_days <= MAX_WINDOW_DAYS:
        raise InvalidInput("invalid_within", f"'within' must be 0 to {MAX_WINDOW_DAYS} days")
    horizon = clock.now() + dt.timedelta(days=within_days)
    warnings: list[ExpiryWarning] = []
    for key in db.session.scalars(select(VendingKey).where(VendingKey.state == "active")):
        dates: list[tuple[str, str | None, dt.datetime | None]] = [("exp", None, key.exp)]
        if key.refresh_days is not None:
            dates.append(("refresh", None, key.act + dt.timedelta(days=key.refresh_days)))
        for auth in key.authorisations:
            dates.append(("iut", auth.smid, auth.iut))
            dates.append(("authorisation_expiry", auth.smid, auth.expires_at))
        warnings.extend(
            ExpiryWarning(what, key.sgc, key.krn, key.kt, smid, at)
            for what, smid, at in dates
            if at is not None and at <= horizon
        )
    return sorted(warnings, key=lambda w: (w.at, w.sgc, w.krn, w.kt, w.smid or ""))


# -- moving the keys to another key store (`kmc keystore migrate`) -------------------------------

REWRAP = "key.rewrap"


def keys_to_rewrap(target: keystore.KeyStore) -> list[int]:
    """Ids of the keys not yet sealed by `target`, in id order (what a migration has left)."""
    rows = db.session.execute(select(VendingKey.id, VendingKey.key_sealed).order_by(VendingKey.id))
    return [key_id for key_id, sealed in rows if not target.sealed_here(sealed)]


def _checked(key: VendingKey, material: bytes, where: str) -> bytes:
    if key_check_value(key.dkga, material).hex().upper() != key.kcv:
        raise Conflict(
            "kcv_mismatch",
            f"vending key {identity_of(key)} does not match its KCV {key.kcv} {where}; "
            "nothing of this batch was written",
        )
    return material


@use_case
def rewrap_keys(
    actor: str, source: keystore.KeyStore, target: keystore.KeyStore, ids: Sequence[int]
) -> int:
    """Re-seal keys `ids` from `source` under `target`, each checked against its KCV before and
    after (opened back from `target`), with one audit entry naming the keys and their KCVs;
    one transaction, so an interruption keeps every batch before it and nothing of this one."""
    moved = []
    for key in db.session.scalars(
        select(VendingKey).where(VendingKey.id.in_(ids)).order_by(VendingKey.id)
    ):
        if target.sealed_here(key.key_sealed):
            continue  # re-wrapped by a run that this one resumes
        binding = sealing_identity(identity_of(key))
        material = _checked(key, source.open(key.key_sealed, binding), "in the old store")
        sealed = target.seal(material, binding)
        _checked(key, target.open(sealed, binding), "once re-wrapped")
        key.key_sealed = sealed
        moved.append({"identity": str(identity_of(key)), "kcv": key.kcv})
    if moved:
        audit.record(actor, REWRAP, "key_store", target.kind, {"keys": moved})
    return len(moved)


def verify_sealed_keys(target: keystore.KeyStore) -> int:
    """Open every key from `target` and check its KCV; the number checked, or `kcv_mismatch`."""
    count = 0
    for key in db.session.scalars(select(VendingKey).order_by(VendingKey.id)):
        _checked(
            key, target.open(key.key_sealed, sealing_identity(identity_of(key))), "in the new store"
        )
        count += 1
    return count
