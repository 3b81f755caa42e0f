"""The shapes of the key-load API: DER in and out, the issue records as JSON."""

from __future__ import annotations

from marshmallow import fields

from key_load.http import EKLF_MEDIA_TYPE, REQUEST_MEDIA_TYPES
from kmc.api.schema import Binary, Output, Query, Timestamp, WholeNumber

VKLOADREQ = Binary(
    "A VKLOADREQ (DER CMS SignedData, docs/protocol.md)",
    REQUEST_MEDIA_TYPES,
)
EKLF = Binary(
    "The EKLF (DER CMS SignedData over EnvelopedData, docs/protocol.md)",
    (EKLF_MEDIA_TYPE,),
    headers={
        "X-KMC-SMID": {"type": "string"},
        "X-KMC-Sequence": {"type": "integer"},
        "X-KMC-File-SHA256": {"type": "string", "description": "on a new issue only"},
        "Content-Disposition": {"type": "string"},
    },
)


class IssueQuery(Query):
    smid = fields.String(metadata={"description": "only the EKLFs issued to this SM"})


class IssuedKey(Output):
    sgc = fields.String(required=True)
    krn = WholeNumber(required=True)
    kt = WholeNumber(required=True)
    kcv = fields.String(required=True, metadata={"description": "key check value, never the key"})


class Issue(Output):
    """One issued EKLF"""

    id = WholeNumber(required=True)
    smid = fields.String(required=True)
    sequence = WholeNumber(required=True)
    issued_at = Timestamp(required=True)
    issued_by = fields.String(required=True)
    request_time = Timestamp(required=True)
    request_sha256 = fields.String(required=True)
    file_sha256 = fields.String(required=True)
    keys = fields.List(fields.Nested(IssuedKey), required=True)


class Issues(Output):
    """Issued EKLFs, newest first"""

    issues = fields.List(fields.Nested(Issue), required=True)
