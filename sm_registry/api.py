"""`/api/v1` routes of the SM registry: manufacturers, registration (single, bulk), lifecycle, exports."""

from __future__ import annotations

import base64
from dataclasses import asdict
from typing import Any

from flask import Blueprint

from kmc.access import allow, current_caller
from kmc.api.schema import load, operation
from kmc.errors import InvalidInput
from kmc.permissions import Permission
from sm_registry import service
from sm_registry.export import record_of
from sm_registry.schemas import (
    BulkItem,
    BulkRegistration,
    CertificateChain,
    ExportQuery,
    Manufacturer,
    Manufacturers,
    NewManufacturer,
    OnlineKeyload,
    Registration,
    SecurityModule,
    SecurityModules,
    SignedExport,
    SmFilter,
    StateChange,
    Verdicts,
)


def _shown(sm: Any) -> dict[str, Any]:
    """The SM as the API shows it: its registry record and whether it may load keys online."""
    return {**asdict(record_of(sm)), "online_keyload": sm.online_keyload}


def _csr(item: dict[str, Any]) -> bytes:
    """A CSR given as PEM text (`csr`) or base64 DER (`csr_base64`)."""
    pem, encoded = item.get("csr"), item.get("csr_base64")
    if isinstance(pem, str) and encoded is None:
        return pem.encode()
    if isinstance(encoded, str) and pem is None:
        try:
            return base64.b64decode(encoded, validate=True)
        except ValueError:  # binascii.Error, or a character outside ASCII
            raise InvalidInput("bad_base64", "'csr_base64' is not valid base64") from None
    raise InvalidInput("missing_field", "give exactly one of 'csr' (PEM) or 'csr_base64' (DER)")


@allow(Permission.REGISTRY_READ)
@operation("Manufacturers (a manufacturer sees only itself)", responses={200: Manufacturers})
def list_manufacturers() -> dict[str, Any]:
    return {
        "manufacturers": [
            {"id_man": m.id_man, "name": m.name, "contact": m.contact}
            for m in service.list_manufacturers(current_caller())
        ]
    }


@allow(Permission.MANUFACTURERS_MANAGE)
@operation(
    "Create a manufacturer", body=NewManufacturer, responses={201: Manufacturer}, errors=(409,)
)
def add_manufacturer(body: dict[str, Any]) -> tuple[dict[str, Any], int]:
    made = service.create_manufacturer(
        current_caller(), body["id_man"], body["name"], body["contact"] or ""
    )
    return {"id_man": made.id_man, "name": made.name, "contact": made.contact}, 201


@allow(Permission.SMS_REGISTER)
@operation(
    "Register one SM from its CSR; it starts pending",
    body=Registration,
    responses={201: SecurityModule},
    errors=(404, 409, 422),
)
def register_sm(body: dict[str, Any]) -> tuple[dict[str, Any], int]:
    sm = service.register(
        current_caller(), _csr(body), body["kind"], body["certification"], body["id_man"]
    )
    return _shown(sm), 201


@allow(Permission.SMS_REGISTER)
@operation(
    "Register many SMs; each item gets its own verdict",
    body=BulkRegistration,
    responses={200: Verdicts},
    errors=(404, 413, 422),
)
def register_bulk(body: dict[str, Any]) -> dict[str, Any]:
    # Items that do not even decode get their verdict here; the rest go to the service in order.
    slots: list[service.ItemResult | None] = []
    decoded: list[tuple[str, bytes]] = []
    for index, item in enumerate(body["items"]):
        name = str(index)
        try:
            if not isinstance(item, dict):
                raise InvalidInput("bad_item", "each item is an object")
            checked = load(BulkItem, item)
            name = checked.get("name", name)
            decoded.append((name, _csr(checked)))
            slots.append(None)
        except InvalidInput as refused:
            slots.append(
                service.ItemResult(name, False, reason=refused.reason, message=refused.message)
            )
    verdicts = service.register_many(
        current_caller(), decoded, body["kind"], body["certification"], body["id_man"]
    )
    results = [slot or next(verdicts) for slot in slots]
    accepted = sum(r.accepted for r in results)
    return {
        "accepted": accepted,
        "refused": len(results) - accepted,
        "items": [r.as_dict() for r in results],
    }


def _filter(query: dict[str, Any]) -> service.SmFilter:
    return service.SmFilter(
        query.get("id_man"), query.get("smid"), query.get("state"),
        query.get("since"), query.get("until"),
    )  # fmt: skip


@allow(Permission.REGISTRY_READ)
@operation(
    "SMs the caller may see, filtered (dates are registration days, YYYY-MM-DD)",
    query=SmFilter,
    responses={200: SecurityModules},
)
def list_sms(query: dict[str, Any]) -> dict[str, Any]:
    return {
        "security_modules": [_shown(s) for s in service.list_sms(current_caller(), _filter(query))]
    }


@allow(Permission.REGISTRY_READ)
@operation("One SM with its history", responses={200: SecurityModule}, errors=(404,))
def get_sm(smid: str) -> dict[str, Any]:
    return _shown(service.get_sm(current_caller(), smid))


@allow(Permission.REGISTRY_READ)
@operation(
    "The SM certificate and the SM Issuing CA certificate (PEM)",
    responses={200: CertificateChain},
    errors=(404,),
)
def certificate(smid: str) -> dict[str, Any]:
    chain = service.certificate_chain(smid, current_caller())
    return {"smid": smid, "certificate_chain_pem": chain.pem().decode()}


@allow(Permission.SMS_CHANGE_STATE)
@operation(
    "approve (issues the certificate), suspend, resume, revoke; "
    "manufacturers may only revoke their own",
    body=StateChange,
    responses={200: SecurityModule},
    errors=(404, 409, 422),
)
def change_state(smid: str, action: str, body: dict[str, Any]) -> dict[str, Any]:
    changed = service.change_state(current_caller(), smid, action, body["reason"])
    return _shown(changed)


@allow(Permission.SMS_ONLINE_KEYLOAD)
@operation(
    "Let the SM load its keys online (POST /api/v1/sm/keyload), or stop it; audited",
    body=OnlineKeyload,
    responses={200: SecurityModule},
    errors=(404, 409),
)
def online_keyload(smid: str, body: dict[str, Any]) -> dict[str, Any]:
    changed = service.set_online_keyload(current_caller(), smid, body["enabled"], body["reason"])
    return _shown(changed)


@allow(Permission.REGISTRY_READ)
@operation(
    "Signed export of the allocation records the caller may see",
    query=ExportQuery,
    responses={200: SignedExport},
)
def export(query: dict[str, Any]) -> dict[str, Any]:
    signed = service.export_registry(current_caller(), query["format"], _filter(query))
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
        "/sms/<smid>/online-keyload", "registry_online_keyload", online_keyload, methods=["POST"]
    )
    bp.add_url_rule(
        "/sms/<smid>/<any(approve, suspend, resume, revoke):action>",
        "registry_change_state",
        change_state,
        methods=["POST"],
    )
