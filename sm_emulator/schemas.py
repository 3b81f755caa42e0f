"""The vending service's request and response bodies, as marshmallow schemas.

Input rules live here once: unknown fields, wrong types and out-of-range values are refused
before any state is read; the OpenAPI document (`sm_emulator.api`) is generated from the same
classes. Domain checks the schema cannot see (PAN check digit, amount encodability, the SM's
rules) are the library's, with the same reasons as the CLI.
"""

from __future__ import annotations

from marshmallow import RAISE, Schema, fields, validate

from sts_token import CreditSubclass, ManagementKind

_SGC = fields.String(
    required=True, validate=validate.Regexp(r"^[0-9]{6}$"), metadata={"example": "600100"}
)
_DIGITS = validate.Regexp(r"^[0-9]+(\.[0-9]+)?$", error="a non-negative decimal, as a string")


class _Strict(Schema):
    class Meta:
        unknown = RAISE


class MeterSchema(_Strict):
    """The meter and the key register a token is issued under."""

    pan = fields.String(
        required=True,
        validate=validate.Regexp(r"^[0-9]{12,18}$"),
        metadata={"description": "The meter's PAN (IIN + DRN, with check digit)"},
    )
    sgc = _SGC
    krn = fields.Integer(required=True, strict=True, validate=validate.Range(1, 9))
    kt = fields.Integer(required=True, strict=True, validate=validate.Range(0, 3))
    ti = fields.String(required=True, validate=validate.Regexp(r"^[0-9]{1,2}$"))
    ea = fields.String(validate=validate.OneOf(["07", "11"]))


class CreditSchema(MeterSchema):
    subclass = fields.String(
        load_default="electricity", validate=validate.OneOf([s.cli_name for s in CreditSubclass])
    )
    amount = fields.String(
        required=True,
        validate=_DIGITS,
        metadata={"description": "Units in the natural unit, 0.1 resolution", "example": "12.5"},
    )
    currency = fields.String(
        required=True,
        validate=_DIGITS,
        metadata={"description": "What the customer paid: counted against the key's CLM"},
    )


class ManagementSchema(MeterSchema):
    kind = fields.String(
        required=True, validate=validate.OneOf([k.cli_name for k in ManagementKind])
    )
    value = fields.Integer(strict=True, validate=validate.Range(0, 0xFFFF))
    register = fields.Integer(strict=True, validate=validate.Range(0, 0xFFFF))


class KeyChangeSchema(MeterSchema):
    new_sgc = _SGC
    new_krn = fields.Integer(required=True, strict=True, validate=validate.Range(1, 9))
    new_kt = fields.Integer(required=True, strict=True, validate=validate.Range(0, 3))
    new_ti = fields.String(validate=validate.Regexp(r"^[0-9]{1,2}$"))
    rollover = fields.Boolean(
        metadata={"description": "RO flag; default: set when the base date changes"}
    )


class MeterTestSchema(_Strict):
    subclass = fields.Integer(required=True, strict=True, validate=validate.OneOf([0, 1]))
    control = fields.Integer(required=True, strict=True, validate=validate.Range(min=0))
    manufacturer_code = fields.String(required=True, validate=validate.Regexp(r"^[0-9]{2,4}$"))


class DecodeSchema(MeterSchema):
    token = fields.String(required=True, validate=validate.Regexp(r"^[0-9]{20}$"))


class TokensSchema(Schema):
    kind = fields.String(required=True)
    tokens = fields.List(fields.String(), required=True)
    tid = fields.Integer(allow_none=True)
    pan = fields.String()
    sgc = fields.String()
    krn = fields.Integer()
    kt = fields.Integer()
    currency_used = fields.String()
    units_used = fields.String()
    subclass = fields.String()
    amount = fields.String()
    currency = fields.String()
    management = fields.String()
    value = fields.Integer()
    new_sgc = fields.String()
    new_krn = fields.Integer()
    new_kt = fields.Integer()
    new_ti = fields.String()
    rollover = fields.Boolean()


class DecodedSchema(Schema):
    fields_ = fields.Dict(data_key="fields", required=True)


class RegisterSchema(Schema):
    slot = fields.Integer()
    sgc = fields.String()
    krn = fields.Integer()
    kt = fields.Integer()
    ken = fields.Integer()
    base_date = fields.Integer()
    dkga = fields.String()
    eas = fields.List(fields.String())
    kcv = fields.String()
    act = fields.String()
    exp = fields.String()
    iut = fields.String()
    clm = fields.String(allow_none=True)
    currency_used = fields.String()
    currency_left = fields.String(allow_none=True)
    resource_limit = fields.Integer(allow_none=True)
    units_used = fields.String()
    units_left = fields.String(allow_none=True)
    refresh_days = fields.Integer(allow_none=True)
    tokens_issued = fields.Integer()
    loaded_from_sequence = fields.Integer()
    loaded_at = fields.String()


class WarningSchema(Schema):
    code = fields.String(required=True)
    sgc = fields.String()
    krn = fields.Integer()
    kt = fields.Integer()
    at = fields.String(allow_none=True)
    message = fields.String()


class KeysSchema(Schema):
    smid = fields.String()
    keys = fields.List(fields.Nested(RegisterSchema))
    warnings = fields.List(fields.Nested(WarningSchema))


class WarningsSchema(Schema):
    warnings = fields.List(fields.Nested(WarningSchema))


class KeyloadSchema(_Strict):
    keys = fields.List(
        fields.String(validate=validate.Length(max=40), metadata={"example": "600100:1:2"}),
        validate=validate.Length(min=1, max=64),
        metadata={"description": "SGC:KRN:KT of each key wanted; absent: every authorised key"},
    )


class LoadedSchema(Schema):
    sequence = fields.Integer(required=True)
    kmc_id = fields.String(required=True)
    keys = fields.List(fields.Nested(RegisterSchema), required=True)


class RefusalSchema(Schema):
    error = fields.String(required=True, metadata={"description": "Stable reason code"})
    message = fields.String(required=True)
    fields_ = fields.Dict(data_key="fields", metadata={"description": "Per-field problems"})
