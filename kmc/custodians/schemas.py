"""The JSON shapes of the custodians API."""

from __future__ import annotations

from marshmallow import fields, validate

from kmc.api.schema import Input, Output


class ShareInput(Input):
    share = fields.String(
        required=True,
        validate=validate.Length(min=1, max=1000),
        metadata={"description": "one custodian's SLIP-39 share (its words, space-separated)"},
    )


class Custody(Output):
    """Whether the KMC is sealed, and how far the next unsealing has come"""

    sealed = fields.Boolean(required=True)
    entered = fields.Integer(required=True, metadata={"description": "shares held so far"})
    threshold = fields.Integer(required=True)
    shares = fields.Integer(required=True)
