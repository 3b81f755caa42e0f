"""`/api/v1` routes of the SM registry: manufacturers, registration (single, bulk), lifecycle, exports."""

from __future__ import annotations

import base64
import binascii
import datetime as dt
from dataclasses import asdict
from typing import Any

from flask import Blueprint, request

from kmc.access import actor_name, allow, current_actor
from kmc.api.openapi import error_responses, json_body, json_response
from kmc.errors import InvalidInput
from sm_registry import service
from sm_registry.bulk import MAX_ITEMS
from sm_registry.export import FORMATS, record_of
from sm_registry.identifiers import KINDS, CertificationReference

EVERYONE = ("admin", "operator", "manufacturer", "auditor")
UPLOADERS = ("admin", "manufacturer")
LIFECYCLE = ("admin", "operator", "manufacturer")  # the service narrows manufacturers to revoke


def _caller() -> service.Caller:
    user = current_actor()
    assert user is not None  # access.enforce authenticated the request
    return service.Caller.of(user)


def _body() -> dict[str, Any]:
    data = request.get_json(silent=True)
    if not isinstance(data, dict):
        raise InvalidInput("invalid_json", "send a JSON object (Content-Type: application/json)")
    return data


def _text(data: dict[str, Any], name: str, required: bool = True) -> str | None:
    value = data.get(name)
    if value is None:
        if required:
            raise InvalidInput("missing_field", f"'{name}' is required")
        return None
    if not isinstance(value, str):
        raise InvalidInput("invalid_field", f"'{name}' must be a string")
    return value


def _certification(data: dict[str, Any]) -> CertificationReference | None:
    value = data.get("certification")
    if value is None:
        return None
    if isinstance(value, str):
        return CertificationReference.parse(value)
    if isinstance(value, dict) and set(value) == {"model", "firmware", "version", "number"}:
        return CertificationReference(**value)
    raise InvalidInput(
        "bad_certification",
        "'certification' is a REF string or an object with model, firmware, version, number",
    )


def _csr(item: dict[str, Any]) -> bytes:
    """A CSR given as PEM text (`csr`) or base64 DER (`csr_base64`)."""
    pem, encoded = item.get("csr"), item.get("csr_base64")
    if isinstance(pem, str) and encoded is None:
        return pem.encode()
    if isinstance(encoded, str) and pem is None:
        try:
            return base64.b64decode(encoded, validate=True)
        except binascii.Error:
            raise InvalidInput("bad_base64", "'csr_base64' is not valid base64") from None
    raise InvalidInput("missing_field", "give exactly one of 'csr' (PEM) or 'csr_base64' (DER)")


@allow("admin", "operator", "auditor", "manufacturer")
def list_manufacturers() -> dict[str, Any]:
    return {
        "manufacturers": [
            {"id_man": m.id_man, "name": m.name, "contact": m.contact}
            for m in service.list_manufacturers(_caller())
        ]
    }


@allow("admin")
def add_manufacturer() -> tuple[dict[str, Any], int]:
    data = _body()
    made = service.create_manufacturer(
        actor_name(), _text(data, "id_man") or "", _text(data, "name") or "",
        _text(data, "contact", False) or "",
    )  # fmt: skip
    return {"id_man": made.id_man, "name": made.name, "contact": made.contact}, 201


@allow(*UPLOADERS)
def register_sm() -> tuple[dict[str, Any], int]:
    data = _body()
    sm = service.register(
        _caller(), _csr(data), _text(data, "kind") or "", _certification(data),
        _text(data, "id_man", False),
    )  # fmt: skip
    return asdict(record_of(sm)), 201


@allow(*UPLOADERS)
def register_bulk() -> dict[str, Any]:
    data = _body()
    items = data.get("items")
    if not isinstance(items, list) or not items or len(items) > MAX_ITEMS:
        raise InvalidInput("bad_items", f"'items' is a list of 1-{MAX_ITEMS} objects")
    kind, certification = _text(data, "kind") or "", _certification(data)
    id_man = _text(data, "id_man", False)
    # Items that do not even decode get their verdict here; the rest go to the service in order.
    slots: list[service.ItemResult | None] = []
    decoded: list[tuple[str, bytes]] = []
    for index, item in enumerate(items):
        name = str(item.get("name", index)) if isinstance(item, dict) else str(index)
        try:
            if not isinstance(item, dict):
                raise InvalidInput("bad_item", "each item is an object")
            decoded.append((name, _csr(item)))
            slots.append(None)
        except InvalidInput as refused:
            slots.append(
                service.ItemResult(name, False, reason=refused.reason, message=refused.message)
            )
    verdicts = service.register_many(_caller(), decoded, kind, certification, id_man)
    results = [slot or next(verdicts) for slot in slots]
    accepted = sum(r.accepted for r in results)
    return {
        "accepted": accepted,
        "refused": len(results) - accepted,
        "items": [r.as_dict() for r in results],
    }


def _filter() -> service.SmFilter:
    def day(name: str) -> dt.date | None:
        value = request.args.get(name)
        if not value:
            return None
        try:
            return dt.date.fromisoformat(value)
        except ValueError:
            raise InvalidInput("bad_date", f"'{name}' must be a date YYYY-MM-DD") from None

    return service.SmFilter(
        request.args.get("id_man") or None,
        request.args.get("smid") or None,
        request.args.get("state") or None,
        day("since"),
        day("until"),
    )


@allow(*EVERYONE)
def list_sms() -> dict[str, Any]:
    return {
        "security_modules": [asdict(record_of(s)) for s in service.list_sms(_caller(), _filter())]
    }


@allow(*EVERYONE)
def get_sm(smid: str) -> dict[str, Any]:
    return asdict(record_of(service.get_sm(_caller(), smid)))


@allow(*EVERYONE)
def certificate(smid: str) -> dict[str, Any]:
    chain = service.certificate_chain(smid, _caller())
    return {"smid": smid, "certificate_chain_pem": chain.pem().decode()}


@allow(*LIFECYCLE)
def change_state(smid: str, action: str) -> dict[str, Any]:
    reason = _text(_body(), "reason") or ""
    return asdict(record_of(service.change_state(_caller(), smid, action, reason)))


@allow(*EVERYONE)
def export() -> dict[str, Any]:
    signed = service.export_registry(_caller(), request.args.get("format", ""), _filter())
    return {
        "filename": signed.filename,
        "kmc_mode": signed.mode,
        "content_base64": base64.b64encode(signed.content).decode(),
        "signature_base64": base64.b64encode(signed.signature).decode(),
    }


def register(bp: Blueprint) -> None:
    bp.add_url_rule("/manufacturers", "registry_manufacturers", list_manufacturers)
    bp.add_url_rule(
        "/manufacturers", "registry_add_manufacturer", add_manufacturer, methods=["POST"]
    )
    bp.add_url_rule("/sms", "registry_sms", list_sms)
    bp.add_url_rule("/sms", "registry_register", register_sm, methods=["POST"])
    bp.add_url_rule("/sms/bulk", "registry_register_bulk", register_bulk, methods=["POST"])
    bp.add_url_rule("/sms/export", "registry_export", export)
    bp.add_url_rule("/sms/<smid>", "registry_sm", get_sm)
    bp.add_url_rule("/sms/<smid>/certificate", "registry_certificate", certificate)
    bp.add_url_rule(
        "/sms/<smid>/<any(approve, suspend, resume, revoke):action>",
        "registry_change_state",
        change_state,
        methods=["POST"],
    )


_CERTIFICATION = {
    "oneOf": [
        {"type": "string", "description": "model=...,firmware=...,version=...,number=..."},
        {
            "type": "object",
            "required": ["model", "firmware", "version", "number"],
            "properties": {
                k: {"type": "string"} for k in ("model", "firmware", "version", "number")
            },
        },
        {"type": "null"},
    ]
}
_CSR_FIELDS = {
    "csr": {"type": "string", "description": "PKCS#10 CSR, PEM"},
    "csr_base64": {"type": "string", "description": "PKCS#10 CSR, DER, base64"},
}
_UPLOAD = {
    "kind": {"type": "string", "enum": list(KINDS)},
    "certification": _CERTIFICATION,
    "id_man": {"type": "string", "description": "admins: the manufacturer the SMs belong to"},
}
_SM = {
    "type": "object",
    "properties": {
        "smid": {"type": "string"},
        "id_man": {"type": "string"},
        "manufacturer": {"type": "string"},
        "kind": {"type": "string", "enum": list(KINDS)},
        "certification": _CERTIFICATION,
        "state": {"type": "string", "enum": ["pending", "active", "suspended", "revoked"]},
        "registered_at": {"type": "string", "format": "date-time"},
        "registered_by": {"type": "string"},
        "public_key_sha256": {"type": "string"},
        "certificate_sha256": {"type": ["string", "null"]},
        "history": {"type": "array", "items": {"type": "object"}},
    },
}
_MANUFACTURER_FIELDS: dict[str, Any] = {
    k: {"type": "string"} for k in ("id_man", "name", "contact")
}
_MANUFACTURER = {"type": "object", "properties": _MANUFACTURER_FIELDS}
_FILTERS = [
    {"name": n, "in": "query", "required": False, "schema": {"type": "string"}}
    for n in ("id_man", "smid", "state", "since", "until")
]
_SMID = {"name": "smid", "in": "path", "required": True, "schema": {"type": "string"}}


PATHS = {
    "/api/v1/manufacturers": {
        "get": {
            "summary": "Manufacturers (a manufacturer sees only itself)",
            "responses": {
                "200": json_response(
                    "Manufacturers",
                    {
                        "type": "object",
                        "properties": {"manufacturers": {"type": "array", "items": _MANUFACTURER}},
                    },
                ),
                **error_responses(401, 403),
            },
        },
        "post": {
            "summary": "Create a manufacturer (admin)",
            "requestBody": json_body(_MANUFACTURER_FIELDS, ["id_man", "name"]),
            "responses": {
                "201": json_response("Created", _MANUFACTURER),
                **error_responses(400, 401, 403, 409),
            },
        },
    },
    "/api/v1/sms": {
        "get": {
            "summary": "SMs the caller may see, filtered (dates are registration days, YYYY-MM-DD)",
            "parameters": _FILTERS,
            "responses": {
                "200": json_response(
                    "SMs",
                    {
                        "type": "object",
                        "properties": {"security_modules": {"type": "array", "items": _SM}},
                    },
                ),
                **error_responses(400, 401),
            },
        },
        "post": {
            "summary": "Register one SM from its CSR (manufacturer, admin); it starts pending",
            "requestBody": json_body({**_CSR_FIELDS, **_UPLOAD}, ["kind"]),
            "responses": {
                "201": json_response("Registered", _SM),
                **error_responses(400, 401, 403, 404, 409, 422),
            },
        },
    },
    "/api/v1/sms/bulk": {
        "post": {
            "summary": "Register many SMs; each item gets its own verdict",
            "requestBody": json_body(
                {
                    **_UPLOAD,
                    "items": {
                        "type": "array",
                        "maxItems": MAX_ITEMS,
                        "items": {
                            "type": "object",
                            "properties": {"name": {"type": "string"}, **_CSR_FIELDS},
                        },
                    },
                },
                ["kind", "items"],
            ),
            "responses": {
                "200": json_response(
                    "Verdicts",
                    {
                        "type": "object",
                        "properties": {
                            "accepted": {"type": "integer"},
                            "refused": {"type": "integer"},
                            "items": {"type": "array", "items": {"type": "object"}},
                        },
                    },
                ),
                **error_responses(400, 401, 403, 413),
            },
        }
    },
    "/api/v1/sms/export": {
        "get": {
            "summary": "Signed export of the allocation records the caller may see",
            "parameters": [
                {
                    "name": "format",
                    "in": "query",
                    "required": True,
                    "schema": {"type": "string", "enum": list(FORMATS)},
                },
                *_FILTERS,
            ],
            "responses": {
                "200": json_response(
                    "The file and its detached CMS signature (DER), both base64",
                    {
                        "type": "object",
                        "properties": {
                            k: {"type": "string"}
                            for k in ("filename", "kmc_mode", "content_base64", "signature_base64")
                        },
                    },
                ),
                **error_responses(400, 401),
            },
        }
    },
    "/api/v1/sms/{smid}": {
        "get": {
            "summary": "One SM with its history",
            "parameters": [_SMID],
            "responses": {"200": json_response("The SM", _SM), **error_responses(401, 404)},
        }
    },
    "/api/v1/sms/{smid}/certificate": {
        "get": {
            "summary": "The SM certificate and the SM Issuing CA certificate (PEM)",
            "parameters": [_SMID],
            "responses": {
                "200": json_response(
                    "PEM chain",
                    {
                        "type": "object",
                        "properties": {
                            "smid": {"type": "string"},
                            "certificate_chain_pem": {"type": "string"},
                        },
                    },
                ),
                **error_responses(401, 404),
            },
        }
    },
    "/api/v1/sms/{smid}/{action}": {
        "post": {
            "summary": "approve (issues the certificate), suspend, resume, revoke; manufacturers may only revoke their own",
            "parameters": [
                _SMID,
                {
                    "name": "action",
                    "in": "path",
                    "required": True,
                    "schema": {"type": "string", "enum": list(service.TRANSITIONS)},
                },
            ],
            "requestBody": json_body(
                {"reason": {"type": "string", "maxLength": service.MAX_REASON}}, ["reason"]
            ),
            "responses": {
                "200": json_response("The SM after the change", _SM),
                **error_responses(400, 401, 403, 404, 409, 422),
            },
        }
    },
}
