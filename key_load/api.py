"""`/api/v1/keyload`: an SM's VKLOADREQ in (DER body), its EKLF out (DER body), for operators;
`/api/v1/sm/keyload`: the same for the SM itself, online (docs/protocol.md, "Online key loading").

The online routes take no bearer token: the VKLOADREQ's signature under the SM's registered
certificate is the authentication, checked in the service. They are rate-limited per SM (the
SMID the request names) and per client address (Flask-Limiter, `kmc.extensions.limiter`).
"""

from __future__ import annotations

import base64
import binascii
from typing import Any

from flask import Blueprint, Response, current_app, g, request
from flask_limiter import RequestLimit
from limits import parse

from key_load import service
from key_load.http import eklf_response
from key_load.schemas import EKLF, VKLOADREQ, IssueQuery, Issues
from kmc.access import PUBLIC, allow, current_caller
from kmc.api.schema import operation
from kmc.errors import NotAuthenticated
from kmc.extensions import limiter
from kmc.permissions import Permission

# `Authorization: VKLOADREQ <base64 of the DER>`: how an SM proves itself on a GET.
AUTH_SCHEME = "vkloadreq"


@allow(Permission.KEYS_LOAD)
@operation(
    "Process a VKLOADREQ into an EKLF (refusals are audited, nothing issued)",
    body=VKLOADREQ,
    responses={200: EKLF},
    errors=(400, 404, 409, 413, 415, 422),
)
def process() -> Response:
    # One byte past the cap is enough for the service to refuse an oversized body unread.
    der = request.stream.read(service.MAX_REQUEST_SIZE + 1)
    issued = service.process_request(current_caller(), der, request.mimetype)
    response = eklf_response(issued.eklf, issued.smid, issued.sequence)
    response.headers["X-KMC-File-SHA256"] = issued.file_sha256
    return response


@allow(Permission.KEYS_READ)
@operation(
    "Issued EKLFs (newest first): SM, sequence, keys with KCVs, hashes",
    query=IssueQuery,
    responses={200: Issues},
)
def issues(query: dict[str, Any]) -> dict[str, Any]:
    return {"issues": [service.describe_issue(i) for i in service.list_issues(query.get("smid"))]}


@allow(Permission.KEYS_LOAD)
@operation(
    "Download an issued EKLF again (the same file, not a new issue)",
    responses={200: EKLF},
    errors=(404,),
)
def download(issue_id: int) -> Response:
    issue = service.find_issue(issue_id)
    return eklf_response(issue.file_der, issue.smid, issue.sequence)


def _signed_request() -> bytes:
    """The SM's VKLOADREQ: the POST body, or on a GET the `Authorization: VKLOADREQ` header
    (read once per request: the rate limits and the view share it)."""
    if "kmc_sm_request" not in g:
        if request.method == "POST":
            # One byte past the cap is enough for the service to refuse it unread.
            g.kmc_sm_request = request.stream.read(service.MAX_REQUEST_SIZE + 1)
        else:
            scheme, _, value = request.headers.get("Authorization", "").partition(" ")
            try:
                der = base64.b64decode(value.strip(), validate=True)
            except (binascii.Error, ValueError):
                der = b""
            g.kmc_sm_request = der if scheme.lower() == AUTH_SCHEME else b""
    der: bytes = g.kmc_sm_request
    return der


def _per_sm() -> str:
    return f"sm:{service.claimed_smid(_signed_request()) or 'unreadable'}"


def _sm_limit() -> str:
    return str(current_app.config["KMC_SM_KEYLOAD_LIMIT_PER_SM"])


def _address_limit() -> str:
    return str(current_app.config["KMC_SM_KEYLOAD_LIMIT_PER_ADDRESS"])


# A flood is audited, but once per key (SM or address) and minute, not once per request.
_AUDIT_FLOODS = parse("1/minute")


def _breached(limit: RequestLimit) -> None:
    if limiter.limiter.hit(_AUDIT_FLOODS, "kmc-flood-audit", limit.key):
        der = _signed_request()
        service.record_flood(service.online_caller(der), der, str(limit.limit))


_ONLINE = (
    "No bearer token: the VKLOADREQ's signature under the SM's registered certificate "
    "authenticates the SM, which must be active and have online key loading enabled by an "
    "operator. Rate-limited per SM and per client address (429 `too_many_requests`). "
    "Refusals are audited and issue nothing."
)


@allow(PUBLIC)
@limiter.limit(_sm_limit, key_func=_per_sm, on_breach=_breached)
@limiter.limit(_address_limit, on_breach=_breached)
@operation(
    "An SM's own VKLOADREQ in, its EKLF out (online key loading)",
    body=VKLOADREQ,
    responses={200: EKLF},
    errors=(403, 404, 409, 413, 415, 422, 429),
    description=_ONLINE
    + " A request answered before is refused (409 `replayed_nonce`) with the `sequence` of "
    "its EKLF, which `GET /api/v1/sm/keyload/issues/{sequence}` hands over again.",
)
def process_online() -> Response:
    der = _signed_request()
    issued = service.process_request(service.online_caller(der), der, request.mimetype)
    response = eklf_response(issued.eklf, issued.smid, issued.sequence)
    response.headers["X-KMC-File-SHA256"] = issued.file_sha256
    return response


@allow(PUBLIC)
@limiter.limit(_sm_limit, key_func=_per_sm, on_breach=_breached)
@limiter.limit(_address_limit, on_breach=_breached)
@operation(
    "The EKLF already issued to an SM at `sequence`, again (never a new issue)",
    responses={200: EKLF},
    errors=(401, 403, 404, 422, 429),
    description=_ONLINE
    + " Send the same signed VKLOADREQ the EKLF answered as `Authorization: VKLOADREQ "
    "<base64 of its DER>`; the answer is the stored file, byte for byte.",
)
def fetch_online(sequence: int) -> Response:
    der = _signed_request()
    if not der:
        raise NotAuthenticated(
            "vkloadreq_required",
            "send the signed VKLOADREQ as 'Authorization: VKLOADREQ <base64 of its DER>'",
        )
    issue = service.fetch_issued(service.online_caller(der), der, sequence)
    return eklf_response(issue.file_der, issue.smid, issue.sequence)


def register(bp: Blueprint) -> None:
    bp.add_url_rule("/sm/keyload", "sm_keyload", process_online, methods=["POST"])
    bp.add_url_rule("/sm/keyload/issues/<int:sequence>", "sm_keyload_issue", fetch_online)
    bp.add_url_rule("/keyload", "keyload", process, methods=["POST"])
    bp.add_url_rule("/keyload/issues", "keyload_issues", issues)
    bp.add_url_rule("/keyload/issues/<int:issue_id>/eklf", "keyload_eklf", download)
