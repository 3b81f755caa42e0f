"""Assembles the OpenAPI 3.1 document from the path fragments each API module declares."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

ERROR = {"$ref": "#/components/schemas/Error"}


def json_response(description: str, schema: dict[str, Any] | None = None) -> dict[str, Any]:
    return {
        "description": description,
        "content": {"application/json": {"schema": schema or {"type": "object"}}},
    }


def json_body(properties: dict[str, Any], required: list[str]) -> dict[str, Any]:
    """A required JSON request body: an object with these properties."""
    schema = {"type": "object", "required": required, "properties": properties}
    return {"required": True, "content": {"application/json": {"schema": schema}}}


def error_responses(*statuses: int) -> dict[str, Any]:
    names = {
        400: "Bad input",
        401: "No or bad token",
        403: "Role or binding forbids it",
        404: "Not found",
        409: "Conflict",
        413: "Too large",
        422: "Refused by KMC policy",
    }
    return {str(s): json_response(names[s], ERROR) for s in statuses}


def build_document(kmc_name: str, fragments: Iterable[dict[str, Any]]) -> dict[str, Any]:
    paths: dict[str, Any] = {
        "/api/v1/openapi.json": {
            "get": {
                "summary": "This OpenAPI document",
                "security": [],
                "responses": {"200": json_response("The document")},
            }
        }
    }
    for fragment in fragments:
        paths.update(fragment)
    return {
        "openapi": "3.1.0",
        "info": {"title": f"{kmc_name} API", "version": "1"},
        "servers": [{"url": "/"}],
        "security": [{"bearer": []}],
        "paths": paths,
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            "schemas": {
                "Error": {
                    "type": "object",
                    "required": ["error", "message"],
                    "properties": {
                        "error": {
                            "type": "string",
                            "description": "stable machine-readable reason",
                        },
                        "message": {"type": "string"},
                    },
                }
            },
        },
    }
