"""The JSON shapes of the key-store API. Requests are checked for types and presence here; the
value rules (enums, ranges) are documented from the same constants the domain enforces them with,
so the domain's stable reasons (`invalid_dkga`, ...) are the same on the API, the web and the CLI."""

from __future__ import annotations

from marshmallow import fields, validate

from key_load_protocol.identifiers import MAX_KEN, MAX_KRN
from key_load_protocol.model import BASE_DATES, MAX_REFRESH_DAYS
from kmc.api.schema import Input, Output, Query, Text, Timestamp, WholeNumber
from sm_registry.service import MAX_BULK_SELECTION
from vending_keys.domain import DKGAS, EAS, KEY_TYPES
from vending_keys.models import APPROVAL_STATES, KEY_STATES, NAME_LENGTH, REASON_LENGTH
from vending_keys.service import AUTHORISE, BULK_RESULTS, GENERATE, MAX_WINDOW_DAYS

SGC = {"pattern": "^[0-9]{6}$", "description": "supply group code, 6 digits"}


class NewSupplyGroup(Input):
    sgc = fields.String(required=True, metadata=SGC)
    name = Text(
        max_length=NAME_LENGTH,
        name=True,
        required=True,
        too_long="invalid_name",
        metadata={"minLength": 1},
    )
    utility = Text(
        max_length=NAME_LENGTH,
        name=True,
        load_default="",
        allow_none=True,
        too_long="invalid_utility",
    )
    cluster = Text(
        max_length=NAME_LENGTH,
        name=True,
        load_default="",
        allow_none=True,
        too_long="invalid_cluster",
    )


class SupplyGroupAdded(Output):
    """Added"""

    sgc = fields.String(required=True)
    name = fields.String(required=True)


class SupplyGroup(Output):
    sgc = fields.String(required=True)
    name = fields.String(required=True)
    utility = fields.String(required=True)
    cluster = fields.String(required=True)


class SupplyGroups(Output):
    """Supply groups"""

    supply_groups = fields.List(fields.Nested(SupplyGroup), required=True)


class KeyQuery(Query):
    sgc = fields.String(metadata={"description": "only the keys of this supply group"})


class NewKey(Input):
    sgc = fields.String(required=True, metadata=SGC)
    krn = WholeNumber(required=True, metadata={"minimum": 1, "maximum": MAX_KRN})
    kt = WholeNumber(required=True, metadata={"enum": sorted(KEY_TYPES)})
    dkga = fields.String(required=True, metadata={"enum": list(DKGAS)})
    eas = fields.List(fields.String(metadata={"enum": list(EAS)}), required=True)
    base_date = WholeNumber(required=True, metadata={"enum": sorted(BASE_DATES)})
    ken = WholeNumber(required=True, metadata={"minimum": 0, "maximum": MAX_KEN})
    act = Timestamp(load_default=None, allow_none=True, metadata={"description": "default: now"})
    exp = Timestamp(
        load_default=None, allow_none=True, metadata={"description": "default: ACT + 10 years"}
    )
    refresh_days = WholeNumber(
        load_default=None, allow_none=True, metadata={"minimum": 1, "maximum": MAX_REFRESH_DAYS}
    )


class Limits(Input):
    """An authorisation's limits, the same for one SM or for each of a bulk authorisation."""

    iut = Timestamp(load_default=None, allow_none=True, metadata={"description": "issue-until"})
    clm = fields.String(
        load_default=None, allow_none=True, metadata={"description": "credit limit, decimal"}
    )
    resource_limit = WholeNumber(load_default=None, allow_none=True)
    expires_at = Timestamp(load_default=None, allow_none=True)


class NewAuthorisation(Limits):
    smid = fields.String(required=True)


class BulkAuthorisation(Limits):
    smids = fields.List(
        fields.String(validate=validate.Length(max=16)),
        required=True,
        validate=validate.Length(min=1, max=MAX_BULK_SELECTION),
        metadata={
            "reason": "bad_selection",
            "description": "the SMs to authorise, each with the same limits (a SMID given "
            "twice counts once)",
        },
    )
    reason = Text(
        max_length=REASON_LENGTH,
        required=True,
        too_long="reason_too_long",
        metadata={"minLength": 1, "description": "kept in each SM's audit entry"},
    )


class BulkVerdict(Output):
    smid = fields.String(required=True)
    result = fields.String(required=True, validate=validate.OneOf(BULK_RESULTS))
    approval_id = WholeNumber(
        required=True, allow_none=True, metadata={"description": "the proposal (live mode)"}
    )
    reason = fields.String(required=True, allow_none=True)
    message = fields.String(required=True, allow_none=True)


class BulkVerdicts(Output):
    """Each SM's verdict, in the order given; a refused SM was left unauthorised"""

    authorised = WholeNumber(required=True)
    proposed = WholeNumber(required=True)
    refused = WholeNumber(required=True)
    items = fields.List(fields.Nested(BulkVerdict), required=True)


class Reason(Input):
    reason = Text(
        max_length=REASON_LENGTH,
        required=True,
        too_long="reason_too_long",
        metadata={"minLength": 1},
    )


class Key(Output):
    """A vending key's attributes and key check value (never the key)"""

    sgc = fields.String(required=True)
    krn = WholeNumber(required=True)
    kt = WholeNumber(required=True)
    key_type = fields.String(required=True, validate=validate.OneOf(list(KEY_TYPES.values())))
    dkga = fields.String(required=True, validate=validate.OneOf(DKGAS))
    eas = fields.List(fields.String(validate=validate.OneOf(EAS)), required=True)
    base_date = WholeNumber(required=True, validate=validate.OneOf(BASE_DATES))
    ken = WholeNumber(required=True)
    act = Timestamp(required=True)
    exp = Timestamp(required=True)
    refresh_days = WholeNumber(required=True, allow_none=True)
    kcv = fields.String(required=True)
    state = fields.String(required=True, validate=validate.OneOf(KEY_STATES))
    state_reason = fields.String(
        required=True, metadata={"description": "why it was deactivated or compromised"}
    )
    proposed_by = fields.String(required=True)
    approved_by = fields.String(required=True, allow_none=True)


class Keys(Output):
    """Keys"""

    keys = fields.List(fields.Nested(Key), required=True)


class ChangedKey(Key):
    """The key in its new state and every SM it was issued to"""

    issued_to = fields.List(fields.String(), required=True)


class Authorisation(Output):
    sgc = fields.String(required=True)
    krn = WholeNumber(required=True)
    kt = WholeNumber(required=True)
    smid = fields.String(required=True)
    iut = Timestamp(required=True)
    clm = fields.String(required=True, allow_none=True)
    resource_limit = WholeNumber(required=True, allow_none=True)
    expires_at = Timestamp(required=True, allow_none=True)
    proposed_by = fields.String(required=True)
    approved_by = fields.String(required=True, allow_none=True)


class Approval(Output):
    """A two-person proposal with the values the approver decides on"""

    id = WholeNumber(required=True)
    action = fields.String(required=True, validate=validate.OneOf((GENERATE, AUTHORISE)))
    subject = fields.String(required=True)
    payload = fields.Dict(
        required=True,
        metadata={
            "description": "The proposed key attributes (sgc, krn, kt, dkga, eas, base_date, "
            "ken, act, exp, refresh_days) or authorisation (sgc, krn, kt, smid, iut, clm, "
            "resource_limit, expires_at); never key material."
        },
    )
    state = fields.String(required=True, validate=validate.OneOf(APPROVAL_STATES))
    proposed_by = fields.String(required=True)
    proposed_at = Timestamp(required=True)
    decided_by = fields.String(required=True, allow_none=True)
    decided_at = Timestamp(required=True, allow_none=True)
    outcome = fields.String(required=True, metadata={"description": "the reason of a rejection"})


class Approvals(Output):
    """Approvals"""

    approvals = fields.List(fields.Nested(Approval), required=True)


class Outcome(Output):
    """Created at once (201, test mode) or queued for a second user's approval (202)"""

    key = fields.Nested(Key, required=True, allow_none=True)
    authorisation = fields.Nested(Authorisation, required=True, allow_none=True)
    approval = fields.Nested(Approval, required=True, allow_none=True)


class Proposed(Outcome):
    """Proposed, awaiting a second user's approval"""


class ExpiringQuery(Query):
    within = fields.Integer(
        load_default=30,
        metadata={"minimum": 0, "maximum": MAX_WINDOW_DAYS, "description": "days ahead"},
    )


class ExpiryWarning(Output):
    what = fields.String(
        required=True, validate=validate.OneOf(("exp", "refresh", "iut", "authorisation_expiry"))
    )
    sgc = fields.String(required=True)
    krn = WholeNumber(required=True)
    kt = WholeNumber(required=True)
    smid = fields.String(required=True, allow_none=True)
    at = Timestamp(required=True)


class Expiring(Output):
    """Warnings, soonest first"""

    expiring = fields.List(fields.Nested(ExpiryWarning), required=True)
