"""Registry use cases: manufacturers, SM registration, lifecycle, listing, certificates, exports.

Every function that changes something is a use case (`kmc.database.use_case`): it writes the
change and its audit entry together and they commit, or it raises a `KMCError` having written
nothing (except the audit record of a refused key re-use, which STS 600-10-1 §4.5 makes worth
keeping: an `audited_refusal`). Manufacturer callers are confined to their own ID_man here,
whichever interface they came through.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from itertools import islice
from typing import cast

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from flask import Flask, current_app
from sqlalchemy import Select, bindparam, func, select, text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import selectinload

from key_load_protocol.identifiers import IdMan, Smid
from kmc import clock, pki
from kmc.audit import service as audit
from kmc.database import audited_refusal, db, keep_record, use_case
from kmc.errors import (
    Conflict,
    Forbidden,
    InvalidInput,
    KMCError,
    NotFound,
    PolicyRefusal,
    identifier_input,
)
from kmc.listing import Listing, ListRequest, Page, contains, page_of
from kmc.permissions import Caller, Permission
from sm_registry import certificates, export, inspection
from sm_registry.csr import RegistrationRequest, parse_request
from sm_registry.identifiers import CertificationReference, parse_kind
from sm_registry.models import SM_STATES, Manufacturer, SecurityModule, SmStateEvent

RULE = "STS 600-10-1 §4.5"
MAX_REASON = 500
MAX_NAME = 120
MAX_CONTACT = 200
# Bulk registration commits this many items per use case (see register_many).
COMMIT_EVERY = 100
# action → (states it may start from, state it leads to)
TRANSITIONS = {
    "approve": (("pending",), "active"),
    "suspend": (("active",), "suspended"),
    "resume": (("suspended",), "active"),
    "revoke": (("pending", "active", "suspended"), "revoked"),
}
# A manufacturer may give up its own SM (lost, destroyed, compromised), nothing more.
MANUFACTURER_ACTIONS = ("revoke",)
# What the SM list does to several selected SMs at once (revoking asks for each SMID typed),
# and how its verdicts say it was done.
BULK_ACTIONS = {"approve": "approved", "suspend": "suspended"}
MAX_BULK_SELECTION = 500


def _live() -> bool:
    return bool(current_app.config["KMC_MODE"] == "live")


# --- manufacturers -------------------------------------------------------------------------


def _manufacturer_text(name: str, contact: str) -> tuple[str, str]:
    name, contact = name.strip(), contact.strip()
    if not 1 <= len(name) <= MAX_NAME:
        raise InvalidInput("bad_name", f"the manufacturer name must be 1-{MAX_NAME} characters")
    if len(contact) > MAX_CONTACT:
        raise InvalidInput("bad_contact", f"the contact must be at most {MAX_CONTACT} characters")
    return name, contact


@use_case
@identifier_input()
def create_manufacturer(caller: Caller, id_man: str, name: str, contact: str = "") -> Manufacturer:
    caller.require(Permission.MANUFACTURERS_MANAGE)
    actor = caller.name
    ident = IdMan.parse(id_man)
    name, contact = _manufacturer_text(name, contact)
    if db.session.get(Manufacturer, ident.value) is not None:
        raise Conflict("duplicate_id_man", f"manufacturer {ident} already exists")
    manufacturer = Manufacturer(
        id_man=ident.value, name=name, contact=contact, created_at=clock.now()
    )
    db.session.add(manufacturer)
    try:
        # A racing creation of the same ID_man is refused by the primary key, here.
        db.session.flush()
    except IntegrityError:
        raise Conflict("duplicate_id_man", f"manufacturer {ident} already exists") from None
    audit.record(
        actor,
        "manufacturer.create",
        "manufacturer",
        ident.value,
        {"name": name, "contact": contact},
    )
    return manufacturer


def get_manufacturer(caller: Caller, id_man: str) -> Manufacturer:
    """The manufacturer, if the caller may see it (a manufacturer sees only its own)."""
    found = db.session.scalars(
        _manufacturers(caller).where(Manufacturer.id_man == id_man.strip().upper())
    ).first()
    if found is None:
        raise NotFound("unknown_manufacturer", f"no manufacturer with ID_man {id_man}")
    return cast(Manufacturer, found)


@use_case
def update_manufacturer(caller: Caller, id_man: str, name: str, contact: str) -> Manufacturer:
    """Change a manufacturer's name and contact (its ID_man never changes: SMIDs carry it)."""
    caller.require(Permission.MANUFACTURERS_MANAGE)
    name, contact = _manufacturer_text(name, contact)
    manufacturer = get_manufacturer(caller, id_man)
    before = {"name": manufacturer.name, "contact": manufacturer.contact}
    after = {"name": name, "contact": contact}
    if before == after:
        raise InvalidInput("unchanged", f"manufacturer {manufacturer.id_man} already reads so")
    manufacturer.name, manufacturer.contact = name, contact
    audit.record(
        caller.name,
        "manufacturer.update",
        "manufacturer",
        manufacturer.id_man,
        {"from": before, "to": after},
    )
    return manufacturer


def _refuse_virtual_when_live(smid: str, kind: str) -> None:
    """STS 600-10-1: a live KMC never binds a key to a non-certified SM."""
    if _live() and kind != "certified":
        raise PolicyRefusal("sm_virtual", f"a live KMC binds keys to certified SMs only ({smid})")


def require_usable(smid: str) -> SecurityModule:
    """The SM a vending key may be authorised for: registered, active, and in a live KMC
    certified (STS 600-10-1: a live KMC never binds a key to a non-certified SM)."""
    sm = db.session.get(SecurityModule, smid)
    if sm is None:
        raise NotFound("unknown_smid", f"no security module {smid}")
    if sm.state != "active":
        raise PolicyRefusal("sm_not_active", f"SM {smid} is {sm.state}, not active")
    _refuse_virtual_when_live(smid, sm.kind)
    return sm


# Built once, columns only: it runs on every key load (docs/keys.md, "Figures").
_LOADABLE = select(SecurityModule.state, SecurityModule.kind, SecurityModule.certificate_der).where(
    SecurityModule.smid == bindparam("smid")
)


def loadable_certificate(smid: str) -> bytes:
    """The KMC certificate (DER) of an SM that may receive keys now: registered, active,
    certified in a live KMC, and holding a KMC certificate."""
    row = db.session.connection().execute(_LOADABLE, {"smid": smid}).first()
    if row is None:
        raise NotFound("unknown_smid", f"no security module {smid} is registered")
    state, kind, certificate_der = row
    if state != "active":
        raise PolicyRefusal(f"sm_{state}", f"SM {smid} is {state}, not active")
    _refuse_virtual_when_live(smid, kind)
    if certificate_der is None:
        raise PolicyRefusal("sm_not_certified", f"SM {smid} has no KMC certificate yet")
    return bytes(certificate_der)


_ONLINE = select(SecurityModule.online_keyload).where(SecurityModule.smid == bindparam("smid"))


def require_online_keyload(smid: str) -> None:
    """Refuse (422 `online_keyload_disabled`) unless an operator lets SM `smid` load online."""
    if not db.session.connection().execute(_ONLINE, {"smid": smid}).scalar():
        raise PolicyRefusal(
            "online_keyload_disabled",
            f"online key loading is not enabled for SM {smid}; an operator enables it",
        )


def manufacturer_exists(id_man: str) -> bool:
    return db.session.get(Manufacturer, id_man) is not None


MANUFACTURER_LIST = Listing(
    sorts={
        "id_man": Manufacturer.id_man,
        "name": Manufacturer.name,
        "contact": Manufacturer.contact,
        "since": Manufacturer.created_at,
    },
    searched=(Manufacturer.id_man, Manufacturer.name, Manufacturer.contact),
    tiebreak=(Manufacturer.id_man,),
)


def _manufacturers(caller: Caller) -> Select[tuple[Manufacturer]]:
    caller.require(Permission.REGISTRY_READ)
    query = select(Manufacturer)
    if caller.is_manufacturer:
        query = query.where(Manufacturer.id_man == caller.id_man)
    return query


def list_manufacturers(caller: Caller) -> list[Manufacturer]:
    return list(db.session.scalars(_manufacturers(caller).order_by(Manufacturer.id_man)))


def manufacturers_page(caller: Caller, asked: ListRequest) -> Page[Manufacturer]:
    return page_of(_manufacturers(caller), MANUFACTURER_LIST, asked)


# --- registration --------------------------------------------------------------------------


def _check_kind_policy(kind: str, certification: CertificationReference | None) -> None:
    """The §4.5 rule: in a live KMC, only certified SMs get a public key bound to them."""
    if kind == "virtual":
        if certification is not None:
            raise InvalidInput(
                "certification_not_allowed", "a virtual SM has no certification reference"
            )
        if _live():
            raise PolicyRefusal(
                "virtual_sm_refused",
                f"{RULE}: a live KMC never associates a public key with a virtual or software SM",
            )
    elif certification is None:
        if _live():
            raise PolicyRefusal(
                "uncertified_sm",
                f"{RULE}: a live KMC registers only certified SMs; give the certification reference",
            )
        raise InvalidInput(
            "certification_required",
            "a certified SM needs its certification reference (model, firmware, version, number)",
        )


@identifier_input()
def _uploader_id_man(caller: Caller, as_manufacturer: str | None) -> IdMan:
    """The ID_man a registration is for: the manufacturer's own, or the one an admin names."""
    caller.require(Permission.SMS_REGISTER)
    if caller.is_manufacturer:
        own = IdMan(caller.id_man or "")
        if as_manufacturer and IdMan.parse(as_manufacturer) != own:
            raise Forbidden(
                "id_man_mismatch", f"a manufacturer account may register SMs only for {own}"
            )
        return own
    if not as_manufacturer:
        raise InvalidInput(
            "manufacturer_required",
            "an admin must name the manufacturer (ID_man) the SMs belong to",
        )
    ident = IdMan.parse(as_manufacturer)
    if db.session.get(Manufacturer, ident.value) is None:
        raise NotFound("unknown_manufacturer", f"no manufacturer with ID_man {ident}")
    return ident


def _key_reuse(caller: Caller, request: RegistrationRequest, bound_to: str) -> Conflict:
    """The refusal of an attempt to bind a key that already belongs to an SM; it is audited."""

    def record() -> None:
        audit.record(
            caller.name,
            "sm.register.refused",
            "sm",
            request.smid.value,
            {
                "reason": "duplicate_public_key",
                "public_key_sha256": request.public_key_sha256,
                "bound_to": bound_to,
            },
        )

    return audited_refusal(
        Conflict(
            "duplicate_public_key",
            f"{RULE}: this public key already belongs to another SM; one key, one SM",
        ),
        record,
    )


def _duplicate_smid(smid: str) -> Conflict:
    return Conflict("duplicate_smid", f"SMID {smid} is already registered")


@dataclass(frozen=True)
class _Upload:
    """What holds for every item of an upload, once checked: who uploads, for which ID_man, what."""

    caller: Caller
    id_man: IdMan
    kind: str
    certification: CertificationReference | None


def _upload_scope(
    caller: Caller,
    kind: str,
    certification: CertificationReference | None,
    as_manufacturer: str | None,
) -> _Upload:
    """Check what holds for a whole upload (kind, §4.5 policy, uploader)."""
    _check_kind_policy(parse_kind(kind), certification)
    return _Upload(caller, _uploader_id_man(caller, as_manufacturer), kind, certification)


@use_case
def register(
    caller: Caller,
    csr: bytes,
    kind: str,
    certification: CertificationReference | None = None,
    as_manufacturer: str | None = None,
) -> SecurityModule:
    """Register one SM (state pending) from its signed CSR; refusals write nothing (but the
    audit entry of a key re-use attempt)."""
    upload = _upload_scope(caller, kind, certification, as_manufacturer)
    return _register(upload, _read_request(csr, upload.id_man))


def _read_request(csr: bytes, id_man: IdMan) -> RegistrationRequest:
    """The verified CSR, if it may register under `id_man` (its subject OU, if any, agrees)."""
    request = parse_request(csr)
    if request.id_man is not None and request.id_man != id_man:
        raise Forbidden(
            "id_man_mismatch",
            f"the CSR subject OU names ID_man {request.id_man}, but the upload is for {id_man}",
        )
    return request


def _add_registration(upload: _Upload, request: RegistrationRequest) -> SecurityModule:
    """Add one SM, its history row and its audit entry to the session; nothing is checked here."""
    smid, actor, certification = request.smid.value, upload.caller.name, upload.certification
    now = clock.now()
    sm = SecurityModule(
        smid=smid,
        id_man=upload.id_man.value,
        kind=upload.kind,
        state="pending",
        public_key_der=request.public_key_der,
        public_key_sha256=request.public_key_sha256,
        cert_model=certification.model if certification else None,
        cert_firmware=certification.firmware if certification else None,
        cert_firmware_version=certification.version if certification else None,
        cert_number=certification.number if certification else None,
        csr_der=request.csr_der,
        registered_at=now,
        registered_by=actor,
        online_keyload=not _live(),
    )
    details: dict[str, object] = {
        "id_man": upload.id_man.value,
        "kind": upload.kind,
        "public_key_sha256": request.public_key_sha256,
    }
    if certification is not None:
        details["certification"] = str(certification)
    db.session.add(sm)
    db.session.add(
        SmStateEvent(smid=smid, from_state=None, to_state="pending", actor=actor, reason="", at=now)
    )
    audit.record(actor, "sm.register", "sm", smid, details)
    return sm


def _register(upload: _Upload, request: RegistrationRequest) -> SecurityModule:
    """Add one SM with its history row and audit entry in a savepoint of the use case.

    A refusal rolls the savepoint back, so nothing of this item stays in the transaction
    (a key re-use attempt raises an audited refusal). Uniqueness is decided by the database
    constraints, so racing uploads end in the same Conflicts.
    """
    try:
        with db.session.begin_nested():
            return _add_registration(upload, request)
    except IntegrityError:
        # The primary key (SMID) or the unique key hash refused it, even under racing uploads.
        bound = _bound_smid(request.public_key_sha256)
        if bound is not None and bound != request.smid.value:
            raise _key_reuse(upload.caller, request, bound) from None
        raise _duplicate_smid(request.smid.value) from None


def _bound_smid(public_key_sha256: str) -> str | None:
    return db.session.scalar(
        select(SecurityModule.smid).where(SecurityModule.public_key_sha256 == public_key_sha256)
    )


@dataclass(frozen=True)
class ItemResult:
    """One bulk item's verdict."""

    name: str
    accepted: bool
    smid: str | None = None
    reason: str | None = None
    message: str | None = None

    def as_dict(self) -> dict[str, object]:
        return {
            "name": self.name,
            "result": "accepted" if self.accepted else "refused",
            "smid": self.smid,
            "reason": self.reason,
            "message": self.message,
        }


def register_many(
    caller: Caller,
    items: Iterable[tuple[str, bytes | KMCError]],
    kind: str,
    certification: CertificationReference | None = None,
    as_manufacturer: str | None = None,
) -> Iterator[ItemResult]:
    """Register each (name, CSR) on its own: an accepted item is committed, a refused one is not.

    An item may carry, instead of the CSR, why its file could not be read: it is refused so.

    A refusal of the upload as a whole (kind, policy, uploader) is raised before any item.
    Items are handled in groups of `COMMIT_EVERY`, each group one use case (each accepted SM
    with its history row and audit entry, each key re-use attempt with its audit entry), and
    verdicts are yielded only once their group is committed, so an "accepted" is never reported
    for something not yet durable (called inside another use case, the groups join it and
    commit with it).
    """
    upload = _upload_scope(caller, kind, certification, as_manufacturer)  # now, not at next()

    def verdicts() -> Iterator[ItemResult]:
        iterator = iter(items)
        while group := list(islice(iterator, COMMIT_EVERY)):
            yield from _register_group(upload, group)

    return verdicts()


# A bulk item once its CSR was read: the verified request, or why it was refused.
_Read = tuple[str, RegistrationRequest | KMCError]


@use_case
def _register_group(upload: _Upload, group: list[tuple[str, bytes | KMCError]]) -> list[ItemResult]:
    """Verify a group of CSRs, write what is accepted; the verdicts in item order.

    The fast path decides uniqueness from one look-up per group and writes every row in
    batched INSERTs, in a savepoint. Should those INSERTs still hit a constraint (another
    upload committed the same SMID or key in between), the savepoint is rolled back and the
    group redone item by item in savepoints, so the database constraints decide exactly as
    for a single registration.
    """
    read: list[_Read] = []
    for name, data in group:
        if isinstance(data, KMCError):
            read.append((name, data))
            continue
        try:
            read.append((name, _read_request(data, upload.id_man)))
        except KMCError as refused:
            read.append((name, refused))
    _plan_for_the_table_as_it_is()
    try:
        with db.session.begin_nested():
            return _add_group(upload, read)
    except IntegrityError:
        return [_register_item(upload, item) for item in read]


def _add_group(upload: _Upload, read: list[_Read]) -> list[ItemResult]:
    """Add a group's accepted rows and key re-use audits, deciding as `_register` would in turn."""
    requests = [request for _, request in read if isinstance(request, RegistrationRequest)]
    taken = set(
        db.session.scalars(
            select(SecurityModule.smid).where(
                SecurityModule.smid.in_({r.smid.value for r in requests})
            )
        )
    )
    bound = {
        key_hash: smid
        for key_hash, smid in db.session.execute(
            select(SecurityModule.public_key_sha256, SecurityModule.smid).where(
                SecurityModule.public_key_sha256.in_({r.public_key_sha256 for r in requests})
            )
        )
    }
    verdicts = []
    # Nothing is flushed before the savepoint ends, which then sends one batched INSERT per
    # table (SQLite takes history rows one by one: only so do their generated ids come back
    # in order).
    with db.session.no_autoflush:
        for name, request in read:
            if isinstance(request, KMCError):
                verdicts.append(_refused(name, request))
                continue
            smid, key_hash = request.smid.value, request.public_key_sha256
            holder = bound.get(key_hash)
            if smid in taken or holder is not None:
                refusal = (
                    _key_reuse(upload.caller, request, holder)
                    if holder is not None and holder != smid
                    else _duplicate_smid(smid)
                )
                keep_record(refusal)
                verdicts.append(_refused(name, refusal))
                continue
            _add_registration(upload, request)
            taken.add(smid)
            bound[key_hash] = smid
            verdicts.append(ItemResult(name, True, smid=smid))
    return verdicts


def _plan_for_the_table_as_it_is() -> None:
    """Keep the group's look-ups on the indexes however much the upload has grown the table.

    psycopg prepares a statement once it has run five times, and PostgreSQL may then keep a
    generic plan made while the table was nearly empty: a sequential scan, ever slower as the
    upload fills the table (measured on a fresh KMC: 0.3 ms per look-up at first, 27 ms at
    10,000 SMs). The setting lasts until the transaction ends.
    """
    if db.session.get_bind().dialect.name == "postgresql":
        db.session.execute(text("SET LOCAL plan_cache_mode = force_custom_plan"))


def _register_item(upload: _Upload, item: _Read) -> ItemResult:
    name, request = item
    if isinstance(request, KMCError):
        return _refused(name, request)
    try:
        _register(upload, request)
    except KMCError as refused:
        keep_record(refused)  # a key re-use attempt's audit entry stays with the group
        return _refused(name, refused)
    return ItemResult(name, True, smid=request.smid.value)


def _refused(name: str, refusal: KMCError) -> ItemResult:
    return ItemResult(name, False, reason=refusal.reason, message=refusal.message)


# --- lifecycle -----------------------------------------------------------------------------


def _scoped(query: Select[tuple[SecurityModule]], caller: Caller) -> Select[tuple[SecurityModule]]:
    """The SMs the caller may see: all of them, or a manufacturer's own."""
    caller.require(Permission.REGISTRY_READ)
    if caller.is_manufacturer:
        return query.where(SecurityModule.id_man == caller.id_man)
    return query


def get_sm(caller: Caller, smid: str, *, for_update: bool = False) -> SecurityModule:
    """The SM, if it exists and the caller may see it (another manufacturer's SM looks absent)."""
    query = _scoped(select(SecurityModule).where(SecurityModule.smid == smid), caller)
    if for_update:
        query = query.with_for_update()
    sm = cast(SecurityModule | None, db.session.scalars(query).first())
    if sm is None:
        raise NotFound("unknown_sm", f"no SM with SMID {smid}")
    return sm


def _checked_change(caller: Caller, action: str, reason: str) -> str:
    """Whether `caller` may take `action` on SMs, with a reason; the reason, stripped."""
    if action not in TRANSITIONS:
        raise InvalidInput("bad_action", f"action must be one of {', '.join(TRANSITIONS)}")
    caller.require(Permission.SMS_CHANGE_STATE)
    if caller.is_manufacturer and action not in MANUFACTURER_ACTIONS:
        raise Forbidden("forbidden", f"your role may not {action} SMs")
    reason = reason.strip()
    if not 1 <= len(reason) <= MAX_REASON:
        raise InvalidInput("reason_required", f"give a reason of 1-{MAX_REASON} characters")
    return reason


def selection(smids: Iterable[str]) -> list[str]:
    """The SMIDs a bulk action of SMs is asked for: stripped, each once, in the order given;
    at least one and at most `MAX_BULK_SELECTION` (`bad_selection`), so a request is refused
    whole before any SM is touched."""
    chosen = list(dict.fromkeys(smid.strip() for smid in smids if smid.strip()))
    if not 1 <= len(chosen) <= MAX_BULK_SELECTION:
        raise InvalidInput(
            "bad_selection", f"select at least one SM and at most {MAX_BULK_SELECTION}"
        )
    return chosen


def change_states(
    caller: Caller, smids: Iterable[str], action: str, reason: str
) -> list[ItemResult]:
    """`change_state` for each selected SM with one reason (a bulk action of the SM list): each
    SM is its own use case, changed and audited on its own or refused on its own; the verdicts
    in the order given (a SMID given twice counts once). A refusal of the request as a whole
    (action, role, reason, selection) is raised before any SM changes."""
    if action not in BULK_ACTIONS:
        raise InvalidInput("bad_action", f"a bulk action is {' or '.join(BULK_ACTIONS)}")
    _checked_change(caller, action, reason)
    verdicts = []
    for smid in selection(smids):
        try:
            verdicts.append(
                ItemResult(smid, True, smid=change_state(caller, smid, action, reason).smid)
            )
        except KMCError as refused:
            verdicts.append(_refused(smid, refused))
    return verdicts


@use_case
def change_state(caller: Caller, smid: str, action: str, reason: str) -> SecurityModule:
    """Move an SM along its lifecycle, with the actor and reason in the audit log and history."""
    reason = _checked_change(caller, action, reason)
    sm = get_sm(caller, smid, for_update=True)
    sources, target = TRANSITIONS[action]
    if sm.state not in sources:
        raise Conflict(
            "bad_transition", f"SM {smid} is {sm.state}; it cannot be {action.removesuffix('e')}ed"
        )
    now = clock.now()
    details: dict[str, object] = {"from": sm.state, "to": target, "reason": reason}
    if action == "approve":
        certificate = _certify(sm, now)
        sm.certificate_der = certificate.public_bytes(serialization.Encoding.DER)
        details["certificate_serial"] = format(certificate.serial_number, "x")
        details["certificate_sha256"] = certificate.fingerprint(hashes.SHA256()).hex()
    db.session.add(
        SmStateEvent(
            smid=smid,
            from_state=sm.state,
            to_state=target,
            actor=caller.name,
            reason=reason,
            at=now,
        )
    )
    sm.state = target
    audit.record(caller.name, f"sm.{action}", "sm", smid, details)
    return sm


@use_case
def set_online_keyload(caller: Caller, smid: str, enabled: bool, reason: str) -> SecurityModule:
    """Let the SM send its own VKLOADREQs to the KMC (`POST /api/v1/sm/keyload`), or stop it;
    audited with the actor and the reason. A revoked SM is never enabled."""
    caller.require(Permission.SMS_ONLINE_KEYLOAD)
    reason = reason.strip()
    if not 1 <= len(reason) <= MAX_REASON:
        raise InvalidInput("reason_required", f"give a reason of 1-{MAX_REASON} characters")
    sm = get_sm(caller, smid, for_update=True)
    if enabled and sm.state == "revoked":
        raise Conflict("sm_revoked", f"SM {smid} is revoked; it never loads keys again")
    details = {"from": sm.online_keyload, "to": enabled, "reason": reason}
    sm.online_keyload = enabled
    audit.record(caller.name, "sm.online_keyload", "sm", smid, details)
    return sm


def certification_of(sm: SecurityModule) -> CertificationReference | None:
    if sm.cert_model is None:
        return None
    return CertificationReference(
        model=sm.cert_model,
        firmware=sm.cert_firmware or "",
        version=sm.cert_firmware_version or "",
        number=sm.cert_number or "",
    )


def _certify(sm: SecurityModule, now: dt.datetime) -> x509.Certificate:
    certification = certification_of(sm)
    # Re-checked at approval: a database carried over from a test KMC may hold virtual SMs.
    _check_kind_policy(sm.kind, certification)
    return certificates.issue(
        pki.current().issuing,
        Smid(sm.smid),
        IdMan(sm.id_man),
        sm.public_key_der,
        certificates.SmProfile(sm.kind, certification),
        now,
    )


def certificate_chain(smid: str, caller: Caller | None = None) -> certificates.CertificateChain:
    """An SM's certificate and its chain to the KMC root, for key loading and downloads.

    The certificate exists once the SM was approved; callers that load keys must also check
    `SecurityModule.state == "active"` (a suspended or revoked SM keeps its certificate).
    """
    sm = get_sm(caller, smid) if caller else db.session.get(SecurityModule, smid)
    if sm is None:
        raise NotFound("unknown_sm", f"no SM with SMID {smid}")
    if sm.certificate_der is None:
        raise NotFound("no_certificate", f"SM {smid} has no certificate yet (state {sm.state})")
    kmc_pki = pki.current()
    return certificates.CertificateChain(
        x509.load_der_x509_certificate(sm.certificate_der),
        (kmc_pki.issuing.certificate,),
        kmc_pki.root.certificate,
    )


# --- inspection ----------------------------------------------------------------------------


@dataclass(frozen=True)
class SmFilter:
    """What an auditor narrows the allocation list by (all optional; dates are registration days,
    UTC; the SMID matches anywhere in it)."""

    id_man: str | None = None
    smid: str | None = None
    state: str | None = None
    registered_from: dt.date | None = None
    registered_until: dt.date | None = None

    def __post_init__(self) -> None:
        if self.id_man:
            with identifier_input():
                IdMan.parse(self.id_man)
        if self.state and self.state not in SM_STATES:
            raise InvalidInput("bad_state", f"state must be one of {', '.join(SM_STATES)}")

    def as_dict(self) -> dict[str, str]:
        return {k: str(v) for k, v in self.__dict__.items() if v}


def count_by_state(caller: Caller, id_man: str | None = None) -> dict[str, int]:
    """How many SMs the caller may see are in each state (the home page's counts), of one
    manufacturer if `id_man` is given."""
    scoped = _scoped(select(SecurityModule), caller)
    if id_man is not None:
        scoped = scoped.where(SecurityModule.id_man == id_man)
    query = scoped.subquery()
    rows = db.session.execute(select(query.c.state, func.count()).group_by(query.c.state))
    return {state: count for state, count in rows}


SM_LIST = Listing(
    sorts={
        "smid": SecurityModule.smid,
        "id_man": SecurityModule.id_man,
        "kind": SecurityModule.kind,
        "state": SecurityModule.state,
        "registered": SecurityModule.registered_at,
        "uploader": SecurityModule.registered_by,
    },
    searched=(
        SecurityModule.smid,
        SecurityModule.id_man,
        SecurityModule.registered_by,
        SecurityModule.cert_model,
        SecurityModule.cert_number,
    ),
    tiebreak=(SecurityModule.smid,),
)


def _sms(caller: Caller, where: SmFilter) -> Select[tuple[SecurityModule]]:
    query = _scoped(select(SecurityModule), caller).options(
        selectinload(SecurityModule.events), selectinload(SecurityModule.manufacturer)
    )
    if where.id_man:
        query = query.where(SecurityModule.id_man == IdMan.parse(where.id_man).value)
    if where.smid:
        query = query.where(contains(SecurityModule.smid, where.smid.strip()))
    if where.state:
        query = query.where(SecurityModule.state == where.state)
    if where.registered_from:
        query = query.where(
            SecurityModule.registered_at
            >= dt.datetime.combine(where.registered_from, dt.time(), dt.UTC)
        )
    if where.registered_until:
        query = query.where(
            SecurityModule.registered_at
            < dt.datetime.combine(where.registered_until, dt.time(), dt.UTC) + dt.timedelta(days=1)
        )
    return query


def list_sms(caller: Caller, where: SmFilter | None = None) -> list[SecurityModule]:
    """Every SM the caller may see that matches (exports, the API, the CLI)."""
    query = _sms(caller, where or SmFilter())
    return list(db.session.scalars(query.order_by(SecurityModule.id_man, SecurityModule.smid)))


def sms_page(caller: Caller, where: SmFilter, asked: ListRequest) -> Page[SecurityModule]:
    """One page of the SM list (the registry page)."""
    return page_of(_sms(caller, where), SM_LIST, asked)


@dataclass(frozen=True)
class SignedExport:
    """An export file and its detached CMS signature by the KMC audit signer."""

    filename: str
    content: bytes
    signature: bytes = field(repr=False)
    mode: str


@use_case
def export_registry(caller: Caller, fmt: str, where: SmFilter | None = None) -> SignedExport:
    """The allocation records the caller may see, as CSV or JSON, signed; the export is audited."""
    caller.require(Permission.REGISTRY_READ)
    where = where or SmFilter()
    sms = list_sms(caller, where)
    header = _header(caller, clock.now(), where.as_dict())
    records = [export.record_of(sm) for sm in sms]
    content = export.render(fmt, header, records)
    filename = f"sm-registry-{header.kmc_mode}-{header.generated_at:%Y%m%dT%H%M%SZ}.{fmt}"
    return _signed(caller, filename, content, len(records), header.filters)


def _header(caller: Caller, at: dt.datetime, filters: dict[str, str]) -> export.ExportHeader:
    return export.ExportHeader(
        kmc_name=current_app.config["KMC_NAME"],
        kmc_mode=current_app.config["KMC_MODE"],
        generated_at=at,
        generated_by=caller.name,
        filters=filters,
    )


def _signed(
    caller: Caller, filename: str, content: bytes, records: int, filters: dict[str, str]
) -> SignedExport:
    """Sign an export and audit it (the digest in the audit entry is the file's SHA-256)."""
    signature = export.sign_detached(pki.current().audit_signer, content)
    audit.record(
        caller.name,
        "sm.export",
        "registry",
        filename,
        {
            "format": filename.rsplit(".", 1)[1],
            "records": records,
            "sha256": hashlib.sha256(content).hexdigest(),
            "filters": filters,
        },
    )
    return SignedExport(filename, content, signature, current_app.config["KMC_MODE"])


# --- the inspection report (STS 600-10-1 §4.5) ------------------------------------------------

# The key loads issued to some SMs (key loading is a feature above this one; it registers this).
KeyLoadSource = Callable[[Sequence[str]], list[inspection.KeyLoad]]
AS_OF_FORMAT = "%Y%m%dT%H%M%S.%fZ"


def init_app(app: Flask, *, key_loads: KeyLoadSource) -> None:
    app.extensions["kmc.sm_key_loads"] = key_loads


@dataclass(frozen=True)
class InspectionReport:
    """One manufacturer's records as they stood at `as_of`, and the export that holds them."""

    manufacturer: Manufacturer
    as_of: dt.datetime
    records: list[export.ExportRecord]
    key_loads: dict[str, list[inspection.KeyLoad]]
    chart: inspection.Chart
    export_filename: str
    export_sha256: str
    signer: x509.Certificate

    @property
    def as_of_text(self) -> str:
        return f"{self.as_of:{AS_OF_FORMAT}}"


def _as_of(text: str | None) -> dt.datetime:
    now = clock.now().astimezone(dt.UTC)
    if not text:
        return now
    try:
        moment = dt.datetime.strptime(text, AS_OF_FORMAT).replace(tzinfo=dt.UTC)
    except ValueError:
        raise InvalidInput(
            "bad_as_of", "the report time must look like 20261201T191814.476727Z"
        ) from None
    if moment > now:
        raise InvalidInput("bad_as_of", "the report time is in the future")
    return moment


def _inspected(
    caller: Caller, id_man: str, as_of: dt.datetime
) -> tuple[
    Manufacturer, list[export.ExportRecord], dict[str, list[inspection.KeyLoad]], str, bytes
]:
    """The manufacturer's records and key loads as they stood at `as_of`, and the signed
    export's file name and bytes that hold exactly those."""
    caller.require(Permission.REGISTRY_INSPECT)
    manufacturer = get_manufacturer(caller, id_man)
    sms = list_sms(caller, SmFilter(id_man=manufacturer.id_man))
    records = [export.record_of(sm, as_of) for sm in sms if sm.registered_at <= as_of]
    source: KeyLoadSource = current_app.extensions["kmc.sm_key_loads"]
    loads: dict[str, list[inspection.KeyLoad]] = {r.smid: [] for r in records}
    for load in source([r.smid for r in records]):
        if load.at <= as_of:
            loads[load.smid].append(load)
    filters = {"id_man": manufacturer.id_man, "as_of": export.iso_time(as_of)}
    header = _header(caller, as_of, filters)
    filename = f"sm-inspection-{manufacturer.id_man}-{header.kmc_mode}-{as_of:{AS_OF_FORMAT}}.json"
    return manufacturer, records, loads, filename, export.inspection_json(header, records, loads)


def inspection_report(caller: Caller, id_man: str, as_of: str | None = None) -> InspectionReport:
    """The report an auditor inspects and prints; its export's SHA-256 is the one the signed
    download (`inspection_export` with the same `as_of`) has."""
    moment = _as_of(as_of)
    manufacturer, records, loads, filename, content = _inspected(caller, id_man, moment)
    registered = [dt.datetime.fromisoformat(r.registered_at) for r in records]
    loaded = [load.at for found in loads.values() for load in found]
    return InspectionReport(
        manufacturer,
        moment,
        records,
        loads,
        inspection.chart(registered, loaded),
        filename,
        hashlib.sha256(content).hexdigest(),
        pki.current().audit_signer.certificate,
    )


@use_case
def inspection_export(caller: Caller, id_man: str, as_of: str) -> SignedExport:
    """The signed JSON export of the manufacturer's records as they stood at `as_of` (the same
    bytes whenever asked, so its digest matches the report's); audited."""
    moment = _as_of(as_of)
    manufacturer, records, _, filename, content = _inspected(caller, id_man, moment)
    filters = {"id_man": manufacturer.id_man, "as_of": export.iso_time(moment)}
    return _signed(caller, filename, content, len(records), filters)
