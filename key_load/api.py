"""`/api/v1/keyload`: an SM's VKLOADREQ in (DER body), its EKLF out (DER body)."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, request

from key_load import service
from key_load.http import EKLF_MEDIA_TYPE, eklf_response
from kmc.access import actor_name, allow
from kmc.api.openapi import error_responses, json_response

MANAGERS = ("admin", "operator")
READERS = ("admin", "operator", "auditor")


@allow(*MANAGERS)
def process() -> Response:
    # One byte past the cap is enough for the service to refuse an oversized body unread.
    der = request.stream.read(service.MAX_REQUEST_SIZE + 1)
    issued = service.process_request(actor_name(), der)
    response = eklf_response(issued.eklf, issued.smid, issued.sequence)
    response.headers["X-KMC-File-SHA256"] = issued.file_sha256
    return response


@allow(*READERS)
def issues() -> dict[str, Any]:
    return {
        "issues": [service.describe_issue(i) for i in service.list_issues(request.args.get("smid"))]
    }


@allow(*MANAGERS)
def download(issue_id: int) -> Response:
    issue = service.find_issue(issue_id)
    return eklf_response(issue.file_der, issue.smid, issue.sequence)


def register(bp: Blueprint) -> None:
    bp.add_url_rule("/keyload", "keyload", process, methods=["POST"])
    bp.add_url_rule("/keyload/issues", "keyload_issues", issues)
    bp.add_url_rule("/keyload/issues/<int:issue_id>/eklf", "keyload_eklf", download)


_EKLF = {
    "description": "The EKLF (DER CMS SignedData over EnvelopedData, docs/protocol.md)",
    "headers": {
        "X-KMC-SMID": {"schema": {"type": "string"}},
        "X-KMC-Sequence": {"schema": {"type": "integer"}},
    },
    "content": {EKLF_MEDIA_TYPE: {"schema": {"type": "string", "format": "binary"}}},
}
PATHS = {
    "/api/v1/keyload": {
        "post": {
            "summary": "Process a VKLOADREQ into an EKLF (refusals are audited, nothing issued)",
            "requestBody": {
                "required": True,
                "content": {
                    "application/cms": {"schema": {"type": "string", "format": "binary"}},
                    "application/octet-stream": {"schema": {"type": "string", "format": "binary"}},
                },
            },
            "responses": {"200": _EKLF, **error_responses(400, 401, 403, 404, 409, 413, 422)},
        }
    },
    "/api/v1/keyload/issues": {
        "get": {
            "summary": "Issued EKLFs (newest first): SM, sequence, keys with KCVs, hashes",
            "parameters": [{"name": "smid", "in": "query", "schema": {"type": "string"}}],
            "responses": {"200": json_response("Issues"), **error_responses(401, 403)},
        }
    },
    "/api/v1/keyload/issues/{issue_id}/eklf": {
        "get": {
            "summary": "Download an issued EKLF again (the same file, not a new issue)",
            "parameters": [
                {"name": "issue_id", "in": "path", "required": True, "schema": {"type": "integer"}}
            ],
            "responses": {"200": _EKLF, **error_responses(401, 403, 404)},
        }
    },
}
