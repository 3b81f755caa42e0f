"""Builds the OpenAPI 3.1 document from the routes of the API blueprint: each route's path and
methods from Flask's URL map, its roles from `@allow`, its schemas from `@operation` (apispec with
its marshmallow plugin turns the schemas into JSON Schema components)."""

from __future__ import annotations

import re
from typing import Any

from apispec import APISpec
from apispec.ext.marshmallow import MarshmallowPlugin
from flask import Flask
from marshmallow import Schema, fields
from marshmallow.validate import OneOf
from werkzeug.routing import Rule

from kmc.access import PUBLIC
from kmc.api.schema import Binary, Operation, Output, Reply, Unchecked
from kmc.errors import Unavailable
from kmc.permissions import ROLES

ERROR_STATUSES = {
    400: "Bad input",
    401: "No or bad token",
    403: "Role or binding forbids it",
    404: "Not found",
    409: "Conflict",
    413: "Too large",
    415: "Not a media type this operation takes",
    422: "Refused by KMC policy",
    429: "Too many requests (`too_many_requests`) or failed attempts (`throttled`): wait "
    "Retry-After seconds",
    500: "Internal error; nothing was changed",
    503: "The key store is sealed (`sealed`), or the HSM is missing (`hsm_unavailable`) or lacks "
    "a mechanism (`hsm_mechanism_missing`); nothing was changed but the HSM fault's audit entry",
}
_VARIABLE = re.compile(r"<(?:(?P<converter>\w+)(?:\((?P<args>[^)]*)\))?:)?(?P<name>\w+)>")
# kmc.web.StoredInteger: a path integer beyond 2**31 - 1 is no route.
_PATH_TYPES = {
    "int": {"type": "integer", "minimum": 0, "maximum": 2**31 - 1},
    "float": {"type": "number"},
}


class Error(Output):
    """Every refusal: a stable machine-readable reason and a safe message."""

    error = fields.String(required=True, metadata={"description": "stable machine-readable reason"})
    message = fields.String(required=True)
    sequence = fields.Integer(
        metadata={
            "description": "on a replayed VKLOADREQ (409 replayed_nonce, after its signature "
            "verified): the sequence of the EKLF that answered it, to fetch it again"
        }
    )


class UnavailableError(Error):
    """A refusal for now (503): the key store is sealed or the HSM fails."""

    error = fields.String(
        required=True,
        validate=OneOf(Unavailable.REASONS),
        metadata={"description": "stable machine-readable reason"},
    )


def _path(rule: Rule) -> tuple[str, list[dict[str, Any]]]:
    """The OpenAPI path template and path parameters of a Flask rule."""
    parameters = []
    for match in _VARIABLE.finditer(rule.rule):
        converter, name = match["converter"], match["name"]
        schema: dict[str, Any] = dict(_PATH_TYPES.get(converter or "", {"type": "string"}))
        if converter == "any":
            schema["enum"] = [item.strip() for item in match["args"].split(",")]
        parameters.append({"name": name, "in": "path", "required": True, "schema": schema})
    return _VARIABLE.sub(r"{\g<name>}", rule.rule), parameters


class _Plugin(MarshmallowPlugin):
    """apispec's marshmallow plugin, plus `Input.exactly_one_of` as a `oneOf`."""

    def schema_helper(self, name: str, _: Any, schema: Any = None, **kwargs: Any) -> Any:
        built = super().schema_helper(name, _, schema=schema, **kwargs)
        one_of = getattr(schema, "exactly_one_of", ())
        if built is not None and one_of:
            built["oneOf"] = [
                {"required": [field], "properties": {field: {"type": "string"}}} for field in one_of
            ]
        return built


def _unchecked(self: Any, field: Any, ret: dict[str, Any]) -> dict[str, Any]:
    """An `Unchecked` member: any value, the nested schema for those that fit it."""
    if not isinstance(field, Unchecked):
        return {}
    nested = {"$ref": ret.pop("$ref")}
    return {
        "anyOf": [nested, {}],
        "description": "checked on its own: one that does not fit gets its own refused verdict",
    }


def _admits_empty(schema: dict[str, Any]) -> bool:
    return schema.get("type") == "string" and not schema.keys() & {
        "enum",
        "format",
        "pattern",
        "minLength",
    }


def _content(reply: Reply | type[Schema]) -> dict[str, Any]:
    if isinstance(reply, Binary):
        # OpenAPI 3.1: a binary body is a media type without a schema (no "format": "binary").
        return {media: {} for media in reply.media_types}
    return {"application/json": {"schema": reply}}


def _response(reply: Reply) -> dict[str, Any]:
    if isinstance(reply, Binary):
        headers = {name: {"schema": schema} for name, schema in reply.headers.items()}
        return {"description": reply.description, "headers": headers, "content": _content(reply)}
    return {"description": (reply.__doc__ or reply.__name__).strip(), "content": _content(reply)}


_RETRY_AFTER = {
    "Retry-After": {
        "description": "seconds to wait before the next attempt",
        "required": True,
        "schema": {"type": "integer", "minimum": 1},
    }
}


def _error_response(status: int) -> dict[str, Any]:
    schema = UnavailableError if status == 503 else Error
    response = {"description": ERROR_STATUSES[status], "content": _content(schema)}
    return {**response, "headers": _RETRY_AFTER} if status == 429 else response


def _operation(declared: Operation, roles: frozenset[str], path_parameters: list[Any]) -> Any:
    public = PUBLIC in roles
    # Any route may refuse bad text in its path or query (kmc.web.refuse_bad_text), fail
    # internally (kmc/web.py maps both), meet a sealed key store or a missing HSM (503), or
    # refuse a bad bearer token from an address that must wait (429, kmc.accounts.throttle).
    statuses = {*declared.errors, 400, 429, 500, 503}
    if not public:
        statuses.add(401)
        if not roles >= set(ROLES):
            statuses.add(403)
    operation: dict[str, Any] = {
        "summary": declared.summary,
        "x-roles": sorted(roles),
        "parameters": list(path_parameters),
        "responses": {
            **{str(status): _response(reply) for status, reply in declared.responses.items()},
            **{str(status): _error_response(status) for status in sorted(statuses)},
        },
    }
    who = "anyone" if public else ", ".join(r for r in ROLES if r in roles)
    operation["description"] = f"{declared.description}\n\nMay be called by: {who}.".strip()
    if public:
        operation["security"] = []
    if declared.query is not None:
        operation["parameters"].append({"in": "query", "schema": declared.query})
    if declared.body is not None:
        operation["requestBody"] = {"required": True, "content": _content(declared.body)}
    return operation


def build_document(app: Flask, blueprint: str, title: str) -> dict[str, Any]:
    """The document of every route of `blueprint`; a route without `@operation` is an error."""
    plugin = _Plugin()
    spec = APISpec(
        title=title,
        version="1",
        openapi_version="3.1.0",
        plugins=[plugin],
        servers=[{"url": "/"}],
        security=[{"bearer": []}],
    )
    plugin.converter.add_attribute_function(_unchecked)  # type: ignore[union-attr]  # set by APISpec
    spec.components.security_scheme("bearer", {"type": "http", "scheme": "bearer"})
    spec.components.schema("Error", schema=Error)
    spec.components.schema("UnavailableError", schema=UnavailableError)
    paths: dict[str, dict[str, Any]] = {}
    for rule in sorted(app.url_map.iter_rules(), key=lambda r: r.rule):
        if rule.endpoint.partition(".")[0] != blueprint:
            continue
        view = app.view_functions[rule.endpoint]
        declared: Operation | None = getattr(view, "kmc_operation", None)
        if declared is None:
            raise LookupError(f"API route {rule.endpoint} declares no @operation")
        path, parameters = _path(rule)
        for method in sorted((rule.methods or set()) - {"HEAD", "OPTIONS"}):
            operation = _operation(declared, view.kmc_roles, parameters)
            paths.setdefault(path, {})[method.lower()] = operation
    for path, operations in paths.items():
        spec.path(path=path, operations=operations)
    built = spec.to_dict()
    for operations in built["paths"].values():
        for operation in operations.values():
            for parameter in operation["parameters"]:
                # kmc.api.schema.Query: an empty query parameter is the parameter left out,
                # even where its schema refuses the empty string.
                if parameter["in"] == "query" and not _admits_empty(parameter["schema"]):
                    parameter["allowEmptyValue"] = True
    return built
