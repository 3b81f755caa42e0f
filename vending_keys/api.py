"""`/api/v1` routes of the key store: supply groups, keys, authorisations, approvals, expiry."""

from __future__ import annotations

from typing import Any

from flask import Blueprint

from kmc import clock
from kmc.access import allow, current_caller
from kmc.api.schema import operation
from kmc.permissions import Permission
from vending_keys import service
from vending_keys.domain import (
    AuthorisationLimits,
    AuthorisationSpec,
    KeySpec,
    key_identity,
)
from vending_keys.schemas import (
    Approval,
    Approvals,
    BulkAuthorisation,
    BulkVerdicts,
    ChangedKey,
    Expiring,
    ExpiringQuery,
    KeyQuery,
    Keys,
    NewAuthorisation,
    NewKey,
    NewSupplyGroup,
    Outcome,
    Proposed,
    Reason,
    SupplyGroupAdded,
    SupplyGroups,
)


@allow(Permission.KEYS_READ)
@operation("Supply groups", responses={200: SupplyGroups})
def list_supply_groups() -> dict[str, Any]:
    return {
        "supply_groups": [
            {"sgc": g.sgc, "name": g.name, "utility": g.utility, "cluster": g.cluster}
            for g in service.list_supply_groups()
        ]
    }


@allow(Permission.KEYS_MANAGE)
@operation(
    "Add a supply group",
    body=NewSupplyGroup,
    responses={201: SupplyGroupAdded},
    errors=(409,),
)
def add_supply_group(body: dict[str, Any]) -> tuple[dict[str, Any], int]:
    group = service.add_supply_group(
        current_caller(),
        body["sgc"],
        body["name"],
        body["utility"] or "",
        body["cluster"] or "",
    )
    return {"sgc": group.sgc, "name": group.name}, 201


@allow(Permission.KEYS_READ)
@operation("Vending keys with their check values", query=KeyQuery, responses={200: Keys})
def list_keys(query: dict[str, Any]) -> dict[str, Any]:
    return {"keys": [service.describe_key(k) for k in service.list_keys(query.get("sgc"))]}


@allow(Permission.KEYS_MANAGE)
@operation(
    "Generate a vending key (live mode: propose it for approval)",
    body=NewKey,
    responses={201: Outcome, 202: Proposed},
    errors=(404, 409),
)
def generate_key(body: dict[str, Any]) -> tuple[dict[str, Any], int]:
    spec = KeySpec.from_input(**body, now=clock.now())
    outcome = service.propose_key(current_caller(), spec)
    return outcome.as_dict(), 202 if outcome.approval else 201


@allow(Permission.KEYS_MANAGE)
@operation(
    "Authorise an active SM for a key (live mode: propose it for approval)",
    body=NewAuthorisation,
    responses={201: Outcome, 202: Proposed},
    errors=(404, 409, 422),
)
def authorise(sgc: str, krn: int, kt: int, body: dict[str, Any]) -> tuple[dict[str, Any], int]:
    spec = AuthorisationSpec.from_input(
        sgc=sgc,
        krn=krn,
        kt=kt,
        smid=body["smid"],
        iut=body["iut"],
        clm=body["clm"],
        resource_limit=body["resource_limit"],
        expires=body["expires_at"],
    )
    outcome = service.propose_authorisation(current_caller(), spec)
    return outcome.as_dict(), 202 if outcome.approval else 201


@allow(Permission.KEYS_MANAGE)
@operation(
    "Authorise several SMs for a key with the same limits (live mode: one proposal each)",
    body=BulkAuthorisation,
    responses={200: BulkVerdicts},
    errors=(404, 422),
)
def authorise_many(sgc: str, krn: int, kt: int, body: dict[str, Any]) -> dict[str, Any]:
    verdicts = service.authorise_many(
        current_caller(),
        key_identity(sgc, krn, kt),
        body["smids"],
        AuthorisationLimits.from_input(
            iut=body["iut"],
            clm=body["clm"],
            resource_limit=body["resource_limit"],
            expires=body["expires_at"],
        ),
        body["reason"],
    )
    return {
        **service.bulk_counts(verdicts),
        "items": [v.as_dict() for v in verdicts],
    }


@allow(Permission.KEYS_MANAGE)
@operation(
    "Deactivate or mark compromised; lists the SMs the key was issued to",
    body=Reason,
    responses={200: ChangedKey},
    errors=(404, 409),
)
def change_state(sgc: str, krn: int, kt: int, change: str, body: dict[str, Any]) -> dict[str, Any]:
    changed = service.change_key_state(
        current_caller(), key_identity(sgc, krn, kt), change, body["reason"]
    )
    return {**service.describe_key(changed.key), "issued_to": changed.issued_to}


@allow(Permission.KEYS_READ)
@operation("Pending two-person approvals, with the proposed values", responses={200: Approvals})
def list_approvals() -> dict[str, Any]:
    return {"approvals": [service.describe_approval(a) for a in service.list_approvals()]}


@allow(Permission.KEYS_MANAGE)
@operation(
    "Approve another user's proposal (carries it out)",
    responses={200: Outcome},
    errors=(404, 409, 422),
)
def approve(approval_id: int) -> dict[str, Any]:
    outcome = service.approve(current_caller(), approval_id)
    return outcome.as_dict()


@allow(Permission.KEYS_MANAGE)
@operation(
    "Reject a proposal; a reason is required",
    body=Reason,
    responses={200: Approval},
    errors=(404, 409),
)
def reject(approval_id: int, body: dict[str, Any]) -> dict[str, Any]:
    return service.describe_approval(service.reject(current_caller(), approval_id, body["reason"]))


@allow(Permission.KEYS_READ)
@operation(
    "Keys near EXP or refresh, authorisations near IUT or expiry",
    query=ExpiringQuery,
    responses={200: Expiring},
)
def expiring(query: dict[str, Any]) -> dict[str, Any]:
    return {"expiring": [w.as_dict() for w in service.expiring(query["within"])]}


def register(bp: Blueprint) -> None:
    bp.add_url_rule("/supply-groups", "supply_groups", list_supply_groups)
    bp.add_url_rule("/supply-groups", "add_supply_group", add_supply_group, methods=["POST"])
    bp.add_url_rule("/keys", "keys", list_keys)
    bp.add_url_rule("/keys", "generate_key", generate_key, methods=["POST"])
    bp.add_url_rule("/keys/expiring", "keys_expiring", expiring)
    key_path = "/keys/<sgc>/<int:krn>/<int:kt>"
    bp.add_url_rule(f"{key_path}/authorisations", "authorise", authorise, methods=["POST"])
    bp.add_url_rule(
        f"{key_path}/authorisations/bulk", "authorise_many", authorise_many, methods=["POST"]
    )
    bp.add_url_rule(
        f"{key_path}/<any(deactivate, compromise):change>",
        "change_key_state",
        change_state,
        methods=["POST"],
    )
    bp.add_url_rule("/approvals", "approvals", list_approvals)
    bp.add_url_rule("/approvals/<int:approval_id>/approve", "approve", approve, methods=["POST"])
    bp.add_url_rule("/approvals/<int:approval_id>/reject", "reject", reject, methods=["POST"])
