"""`/api/v1` routes of the key store: supply groups, keys, authorisations, approvals, expiry."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, request

from kmc import clock
from kmc.access import actor_name, allow
from kmc.api.openapi import error_responses, json_body, json_response
from kmc.errors import InvalidInput
from vending_keys import service
from vending_keys.domain import (
    AuthorisationSpec,
    KeySpec,
    default_exp,
    key_identity,
    parse_clm,
    parse_time,
)

MANAGERS = ("admin", "operator")
READERS = ("admin", "operator", "auditor")


def _body() -> dict[str, Any]:
    data = request.get_json(silent=True)
    if not isinstance(data, dict):
        raise InvalidInput("invalid_json", "send a JSON object (Content-Type: application/json)")
    return data


def _field(data: dict[str, Any], name: str, kind: type, required: bool = True) -> Any:
    value = data.get(name)
    if value is None:
        if required:
            raise InvalidInput("missing_field", f"'{name}' is required")
        return None
    if not isinstance(value, kind) or isinstance(value, bool):
        raise InvalidInput("invalid_field", f"'{name}' must be a {kind.__name__}")
    return value


@allow(*READERS)
def list_supply_groups() -> dict[str, Any]:
    return {
        "supply_groups": [
            {"sgc": g.sgc, "name": g.name, "utility": g.utility, "cluster": g.cluster}
            for g in service.list_supply_groups()
        ]
    }


@allow(*MANAGERS)
def add_supply_group() -> tuple[dict[str, Any], int]:
    data = _body()
    group = service.add_supply_group(
        actor_name(),
        _field(data, "sgc", str),
        _field(data, "name", str),
        _field(data, "utility", str, False) or "",
        _field(data, "cluster", str, False) or "",
    )
    return {"sgc": group.sgc, "name": group.name}, 201


@allow(*READERS)
def list_keys() -> dict[str, Any]:
    return {"keys": [service.describe_key(k) for k in service.list_keys(request.args.get("sgc"))]}


@allow(*MANAGERS)
def generate_key() -> tuple[dict[str, Any], int]:
    data = _body()
    act = parse_time(_field(data, "act", str, False), "act") or clock.now()
    eas = _field(data, "eas", list)
    spec = KeySpec(
        key_identity(_field(data, "sgc", str), _field(data, "krn", int), _field(data, "kt", int)),
        _field(data, "dkga", str),
        frozenset(str(ea) for ea in eas),
        _field(data, "base_date", int),
        _field(data, "ken", int),
        act,
        parse_time(_field(data, "exp", str, False), "exp") or default_exp(act),
        _field(data, "refresh_days", int, False),
    )
    outcome = service.propose_key(actor_name(), spec)
    return outcome.as_dict(), 202 if outcome.approval else 201


@allow(*MANAGERS)
def authorise(sgc: str, krn: int, kt: int) -> tuple[dict[str, Any], int]:
    data = _body()
    spec = AuthorisationSpec(
        key_identity(sgc, krn, kt),
        _field(data, "smid", str),
        parse_time(_field(data, "iut", str, False), "iut"),
        parse_clm(_field(data, "clm", str, False)),
        _field(data, "resource_limit", int, False),
        parse_time(_field(data, "expires_at", str, False), "expires_at"),
    )
    outcome = service.propose_authorisation(actor_name(), spec)
    return outcome.as_dict(), 202 if outcome.approval else 201


@allow(*MANAGERS)
def change_state(sgc: str, krn: int, kt: int, change: str) -> dict[str, Any]:
    reason = _field(_body(), "reason", str)
    identity = key_identity(sgc, krn, kt)
    if change == "deactivate":
        key = service.deactivate_key(actor_name(), identity, reason)
    else:
        key = service.compromise_key(actor_name(), identity, reason)
    recipients = service.recipients_of(key)
    return {**service.describe_key(key), "issued_to": recipients}


@allow(*READERS)
def list_approvals() -> dict[str, Any]:
    return {"approvals": [service.describe_approval(a) for a in service.list_approvals()]}


@allow(*MANAGERS)
def approve(approval_id: int) -> dict[str, Any]:
    outcome = service.approve(actor_name(), approval_id)
    return outcome.as_dict()


@allow(*MANAGERS)
def reject(approval_id: int) -> dict[str, Any]:
    reason = _field(_body(), "reason", str)
    return service.describe_approval(service.reject(actor_name(), approval_id, reason))


@allow(*READERS)
def expiring() -> dict[str, Any]:
    try:
        days = int(request.args.get("within", "30"))
    except ValueError:
        raise InvalidInput("invalid_field", "'within' must be a number of days") from None
    return {"expiring": [w.as_dict() for w in service.expiring(days)]}


def register(bp: Blueprint) -> None:
    bp.add_url_rule("/supply-groups", "supply_groups", list_supply_groups)
    bp.add_url_rule("/supply-groups", "add_supply_group", add_supply_group, methods=["POST"])
    bp.add_url_rule("/keys", "keys", list_keys)
    bp.add_url_rule("/keys", "generate_key", generate_key, methods=["POST"])
    bp.add_url_rule("/keys/expiring", "keys_expiring", expiring)
    key_path = "/keys/<sgc>/<int:krn>/<int:kt>"
    bp.add_url_rule(f"{key_path}/authorisations", "authorise", authorise, methods=["POST"])
    bp.add_url_rule(
        f"{key_path}/<any(deactivate, compromise):change>",
        "change_key_state",
        change_state,
        methods=["POST"],
    )
    bp.add_url_rule("/approvals", "approvals", list_approvals)
    bp.add_url_rule("/approvals/<int:approval_id>/approve", "approve", approve, methods=["POST"])
    bp.add_url_rule("/approvals/<int:approval_id>/reject", "reject", reject, methods=["POST"])


_KEY = {
    "type": "object",
    "description": "A vending key's attributes and key check value (never the key).",
    "properties": {
        "sgc": {"type": "string"},
        "krn": {"type": "integer"},
        "kt": {"type": "integer"},
        "key_type": {"type": "string", "enum": ["VDDK", "VUDK", "VCDK"]},
        "dkga": {"type": "string"},
        "eas": {"type": "array", "items": {"type": "string"}},
        "base_date": {"type": "integer"},
        "ken": {"type": "integer"},
        "act": {"type": "string", "format": "date-time"},
        "exp": {"type": "string", "format": "date-time"},
        "refresh_days": {"type": ["integer", "null"]},
        "kcv": {"type": "string"},
        "state": {"type": "string", "enum": ["active", "deactivated", "compromised"]},
    },
}
_APPROVAL = {
    "type": "object",
    "description": "A two-person proposal with the values the approver decides on.",
    "properties": {
        "id": {"type": "integer"},
        "action": {"type": "string", "enum": ["key.generate", "key.authorize"]},
        "subject": {"type": "string"},
        "payload": {
            "type": "object",
            "description": "The proposed key attributes (sgc, krn, kt, dkga, eas, base_date, "
            "ken, act, exp, refresh_days) or authorisation (sgc, krn, kt, smid, iut, clm, "
            "resource_limit, expires_at); never key material.",
        },
        "state": {"type": "string", "enum": ["pending", "approved", "rejected"]},
        "proposed_by": {"type": "string"},
        "proposed_at": {"type": "string", "format": "date-time"},
        "decided_by": {"type": ["string", "null"]},
        "decided_at": {"type": ["string", "null"], "format": "date-time"},
        "outcome": {"type": "string", "description": "the reason of a rejection"},
    },
}
_OUTCOME = {
    "type": "object",
    "description": "Created at once (201, test mode) or queued for a second user's approval (202).",
    "properties": {
        "key": {"oneOf": [_KEY, {"type": "null"}]},
        "authorisation": {"type": ["object", "null"]},
        "approval": {"oneOf": [_APPROVAL, {"type": "null"}]},
    },
}
_KEY_PARAMS = [
    {"name": "sgc", "in": "path", "required": True, "schema": {"type": "string"}},
    {"name": "krn", "in": "path", "required": True, "schema": {"type": "integer"}},
    {"name": "kt", "in": "path", "required": True, "schema": {"type": "integer"}},
]


PATHS = {
    "/api/v1/supply-groups": {
        "get": {
            "summary": "Supply groups",
            "responses": {"200": json_response("Supply groups"), **error_responses(401, 403)},
        },
        "post": {
            "summary": "Add a supply group (admin, operator)",
            "requestBody": json_body(
                {
                    "sgc": {"type": "string", "pattern": "^[0-9]{6}$"},
                    "name": {"type": "string"},
                    "utility": {"type": "string"},
                    "cluster": {"type": "string"},
                },
                ["sgc", "name"],
            ),
            "responses": {
                "201": json_response("Added"),
                **error_responses(400, 401, 403, 409),
            },
        },
    },
    "/api/v1/keys": {
        "get": {
            "summary": "Vending keys with their check values",
            "parameters": [{"name": "sgc", "in": "query", "schema": {"type": "string"}}],
            "responses": {
                "200": json_response(
                    "Keys",
                    {"type": "object", "properties": {"keys": {"type": "array", "items": _KEY}}},
                ),
                **error_responses(401, 403),
            },
        },
        "post": {
            "summary": "Generate a vending key (live mode: propose it for approval)",
            "requestBody": json_body(
                {
                    "sgc": {"type": "string"},
                    "krn": {"type": "integer", "minimum": 1, "maximum": 9},
                    "kt": {"type": "integer", "enum": [1, 2, 3]},
                    "dkga": {"type": "string", "enum": ["02", "04"]},
                    "eas": {"type": "array", "items": {"type": "string", "enum": ["07", "11"]}},
                    "base_date": {"type": "integer", "enum": [1993, 2014, 2035]},
                    "ken": {"type": "integer", "minimum": 0, "maximum": 255},
                    "act": {"type": "string", "format": "date-time"},
                    "exp": {"type": "string", "format": "date-time"},
                    "refresh_days": {"type": "integer"},
                },
                ["sgc", "krn", "kt", "dkga", "eas", "base_date", "ken"],
            ),
            "responses": {
                "201": json_response("Generated", _OUTCOME),
                "202": json_response("Proposed, awaiting approval", _OUTCOME),
                **error_responses(400, 401, 403, 404, 409),
            },
        },
    },
    "/api/v1/keys/expiring": {
        "get": {
            "summary": "Keys near EXP or refresh, authorisations near IUT or expiry",
            "parameters": [
                {
                    "name": "within",
                    "in": "query",
                    "description": "days ahead (default 30)",
                    "schema": {"type": "integer", "minimum": 0, "maximum": 36500},
                }
            ],
            "responses": {"200": json_response("Warnings"), **error_responses(400, 401, 403)},
        }
    },
    "/api/v1/keys/{sgc}/{krn}/{kt}/authorisations": {
        "post": {
            "summary": "Authorise an active SM for a key (live mode: propose it for approval)",
            "parameters": _KEY_PARAMS,
            "requestBody": json_body(
                {
                    "smid": {"type": "string"},
                    "iut": {"type": "string", "format": "date-time"},
                    "clm": {"type": "string", "description": "decimal amount"},
                    "resource_limit": {"type": "integer"},
                    "expires_at": {"type": "string", "format": "date-time"},
                },
                ["smid"],
            ),
            "responses": {
                "201": json_response("Authorised", _OUTCOME),
                "202": json_response("Proposed, awaiting approval", _OUTCOME),
                **error_responses(400, 401, 403, 404, 409, 422),
            },
        }
    },
    "/api/v1/keys/{sgc}/{krn}/{kt}/{change}": {
        "post": {
            "summary": "Deactivate or mark compromised; lists the SMs the key was issued to",
            "parameters": [
                *_KEY_PARAMS,
                {
                    "name": "change",
                    "in": "path",
                    "required": True,
                    "schema": {"type": "string", "enum": ["deactivate", "compromise"]},
                },
            ],
            "requestBody": json_body({"reason": {"type": "string"}}, ["reason"]),
            "responses": {
                "200": json_response("New state"),
                **error_responses(400, 401, 403, 404, 409),
            },
        }
    },
    "/api/v1/approvals": {
        "get": {
            "summary": "Pending two-person approvals, with the proposed values",
            "responses": {
                "200": json_response(
                    "Approvals",
                    {
                        "type": "object",
                        "properties": {"approvals": {"type": "array", "items": _APPROVAL}},
                    },
                ),
                **error_responses(401, 403),
            },
        }
    },
    "/api/v1/approvals/{approval_id}/approve": {
        "post": {
            "summary": "Approve another user's proposal (carries it out)",
            "parameters": [
                {
                    "name": "approval_id",
                    "in": "path",
                    "required": True,
                    "schema": {"type": "integer"},
                }
            ],
            "responses": {
                "200": json_response("Carried out", _OUTCOME),
                **error_responses(401, 403, 404, 409, 422),
            },
        }
    },
    "/api/v1/approvals/{approval_id}/reject": {
        "post": {
            "summary": "Reject a proposal; a reason (1 to 500 characters) is required",
            "parameters": [
                {
                    "name": "approval_id",
                    "in": "path",
                    "required": True,
                    "schema": {"type": "integer"},
                }
            ],
            "requestBody": json_body({"reason": {"type": "string", "maxLength": 500}}, ["reason"]),
            "responses": {
                "200": json_response("Rejected", _APPROVAL),
                **error_responses(400, 401, 403, 404, 409),
            },
        }
    },
}
