"""The JSON shapes of the accounts API."""

from __future__ import annotations

from marshmallow import fields, validate

from kmc.api.schema import Output
from kmc.permissions import ROLES


class Account(Output):
    """An account (never its password or tokens)"""

    username = fields.String(required=True)
    role = fields.String(required=True, validate=validate.OneOf(ROLES))
    id_man = fields.String(
        required=True, allow_none=True, metadata={"description": "manufacturers: their ID_MAN"}
    )
    active = fields.Boolean(required=True)


class Accounts(Output):
    """All accounts"""

    users = fields.List(fields.Nested(Account), required=True)
