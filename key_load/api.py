"""`/api/v1/keyload`: an SM's VKLOADREQ in (DER body), its EKLF out (DER body)."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, request

from key_load import service
from key_load.http import eklf_response
from key_load.schemas import EKLF, VKLOADREQ, IssueQuery, Issues
from kmc.access import allow, current_caller
from kmc.api.schema import operation
from kmc.permissions import Permission


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


def register(bp: Blueprint) -> None:
    bp.add_url_rule("/keyload", "keyload", process, methods=["POST"])
    bp.add_url_rule("/keyload/issues", "keyload_issues", issues)
    bp.add_url_rule("/keyload/issues/<int:issue_id>/eklf", "keyload_eklf", download)
