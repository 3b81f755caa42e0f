"""The JSON shapes of the SM registry API. Requests are checked for types and presence here; the
value rules (kinds, states, formats, identifiers) stay with the domain that enforces them for the
web and the CLI too, and are documented here from the same constants."""

from __future__ import annotations

from typing import Any

from marshmallow import ValidationError, fields, validate

from kmc.api.schema import Flag, Input, Output, Query, Text, Timestamp, Unchecked, WholeNumber
from sm_registry.bulk import MAX_ITEM_NAME, MAX_ITEMS
from sm_registry.csr import MAX_CSR_BYTES
from sm_registry.export import FORMATS
from sm_registry.identifiers import KINDS, CertificationReference
from sm_registry.models import SM_STATES
from sm_registry.service import MAX_CONTACT, MAX_NAME, MAX_REASON

_REF_FIELDS = ("model", "firmware", "version", "number")
# Room for a CSR of MAX_CSR_BYTES in base64 or PEM; a longer one is refused before decoding.
MAX_CSR_TEXT = 2 * MAX_CSR_BYTES


class CertificationParts(Output):
    """An SM's certification reference, field by field"""

    model = fields.String(required=True)
    firmware = fields.String(required=True)
    version = fields.String(required=True)
    number = fields.String(required=True)


class Certification(fields.Field):
    """A certification reference: a REF string (`model=...,firmware=...,version=...,number=...`)
    or an object with those four fields; refused as `bad_certification` otherwise."""

    def __init__(self, **kwargs: Any) -> None:
        described = {
            "reason": "bad_certification",
            "oneOf": [
                {"type": "string", "description": "model=...,firmware=...,version=...,number=..."},
                {"$ref": "#/components/schemas/CertificationParts"},
                {"type": "null"},
            ],
        }
        super().__init__(load_default=None, allow_none=True, metadata=described, **kwargs)

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> Any:
        if isinstance(value, str):
            return CertificationReference.parse(value)
        if isinstance(value, dict) and set(value) == set(_REF_FIELDS):
            return CertificationReference(**value)
        raise ValidationError("a REF string or an object with model, firmware, version, number")


class Upload(Input):
    kind = fields.String(
        required=True, validate=validate.OneOf(KINDS), metadata={"reason": "bad_kind"}
    )
    certification = Certification()
    id_man = fields.String(
        load_default=None,
        allow_none=True,
        metadata={"description": "admins: the manufacturer the SMs belong to"},
    )


class CsrFields(Input):
    """Exactly one of `csr` (PEM) or `csr_base64` (DER, base64)"""

    exactly_one_of = ("csr", "csr_base64")

    csr = Text(
        max_length=MAX_CSR_TEXT,
        load_default=None,
        allow_none=True,
        metadata={"description": "PKCS#10, PEM"},
    )
    csr_base64 = Text(
        max_length=MAX_CSR_TEXT,
        load_default=None,
        allow_none=True,
        metadata={"description": "PKCS#10, DER, base64", "pattern": "^[A-Za-z0-9+/]*={0,2}$"},
    )


class Registration(Upload, CsrFields):
    pass


class BulkItem(CsrFields):
    name = Text(
        max_length=MAX_ITEM_NAME, name=True, metadata={"description": "echoed in the verdict"}
    )


class BulkRegistration(Upload):
    items = fields.List(
        Unchecked(BulkItem),
        required=True,
        validate=validate.Length(min=1, max=MAX_ITEMS),
        metadata={"reason": "bad_items"},
    )


class NewManufacturer(Input):
    id_man = fields.String(required=True, metadata={"pattern": "^[0-9A-F]{4}$"})
    name = Text(
        max_length=MAX_NAME,
        name=True,
        required=True,
        too_long="bad_name",
        metadata={"minLength": 1},
    )
    contact = Text(
        max_length=MAX_CONTACT,
        name=True,
        load_default="",
        allow_none=True,
        too_long="bad_contact",
    )


class Manufacturer(Output):
    """A manufacturer"""

    id_man = fields.String(required=True)
    name = fields.String(required=True)
    contact = fields.String(required=True)


class Manufacturers(Output):
    """Manufacturers"""

    manufacturers = fields.List(fields.Nested(Manufacturer), required=True)


class SmFilter(Query):
    id_man = fields.String()
    smid = fields.String()
    state = fields.String(metadata={"enum": list(SM_STATES)})
    since = fields.Date(metadata={"reason": "bad_date", "description": "registered on or after"})
    until = fields.Date(metadata={"reason": "bad_date", "description": "registered on or before"})


class ExportQuery(SmFilter):
    format = fields.String(required=True, metadata={"reason": "bad_format", "enum": list(FORMATS)})


class StateChange(Input):
    reason = Text(
        max_length=MAX_REASON, required=True, too_long="reason_required", metadata={"minLength": 1}
    )


class OnlineKeyload(Input):
    enabled = Flag(
        required=True,
        metadata={"description": "true: the SM may load its keys online; false: it may not"},
    )
    reason = Text(
        max_length=MAX_REASON, required=True, too_long="reason_required", metadata={"minLength": 1}
    )


class HistoryEntry(Output):
    at = Timestamp(required=True)
    from_state = fields.String(
        data_key="from", attribute="from", required=True, allow_none=True,
        validate=validate.OneOf(SM_STATES),
    )  # fmt: skip
    to = fields.String(required=True, validate=validate.OneOf(SM_STATES))
    actor = fields.String(required=True)
    reason = fields.String(required=True, allow_none=True)


class SecurityModule(Output):
    """An SM with its history"""

    smid = fields.String(required=True)
    id_man = fields.String(required=True)
    manufacturer = fields.String(required=True)
    kind = fields.String(required=True, validate=validate.OneOf(KINDS))
    certification = fields.Nested(CertificationParts, required=True, allow_none=True)
    state = fields.String(required=True, validate=validate.OneOf(SM_STATES))
    registered_at = Timestamp(required=True)
    registered_by = fields.String(required=True)
    public_key_sha256 = fields.String(required=True)
    certificate_sha256 = fields.String(required=True, allow_none=True)
    history = fields.List(fields.Nested(HistoryEntry), required=True)
    online_keyload = fields.Boolean(
        required=True,
        metadata={"description": "whether the SM may send its own VKLOADREQ (/api/v1/sm/keyload)"},
    )


class SecurityModules(Output):
    """SMs"""

    security_modules = fields.List(fields.Nested(SecurityModule), required=True)


class Verdict(Output):
    name = fields.String(required=True)
    result = fields.String(required=True, validate=validate.OneOf(("accepted", "refused")))
    smid = fields.String(required=True, allow_none=True)
    reason = fields.String(required=True, allow_none=True)
    message = fields.String(required=True, allow_none=True)


class Verdicts(Output):
    """Each item's verdict"""

    accepted = WholeNumber(required=True)
    refused = WholeNumber(required=True)
    items = fields.List(fields.Nested(Verdict), required=True)


class CertificateChain(Output):
    """The SM certificate and the SM Issuing CA certificate (PEM)"""

    smid = fields.String(required=True)
    certificate_chain_pem = fields.String(required=True)


class SignedExport(Output):
    """The file and its detached CMS signature (DER), both base64"""

    filename = fields.String(required=True)
    kmc_mode = fields.String(required=True)
    content_base64 = fields.String(required=True)
    signature_base64 = fields.String(required=True)
