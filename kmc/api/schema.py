"""Schemas at the edge of the JSON API: one decorator that parses a route's input and shapes its
output with marshmallow schemas, and records them so the OpenAPI document is built from them.

    @allow(Permission.USERS_MANAGE)
    @operation("Create a manufacturer", body=NewManufacturer, responses={201: Manufacturer},
               errors=(409,))
    def add_manufacturer(body: dict[str, Any]) -> tuple[dict[str, Any], int]: ...

The view receives the loaded JSON body as `body=` and the loaded query string as `query=`; it
returns a value (dumped with the schema of the first status in `responses`), a `(value, status)`
pair, or a ready `Response` (binary media types, `Binary`). A field that fails its schema is
refused with 400 and the field's stable reason: its `metadata["reason"]` if it declares one, else
`missing_field` (absent or null) or `invalid_field` (wrong type or value).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from flask import current_app, request
from marshmallow import EXCLUDE, RAISE, Schema, ValidationError, fields, pre_load
from werkzeug.wrappers import Response

from kmc import text
from kmc.errors import InvalidInput

MAX_DEPTH = 32  # a JSON body nested deeper than this is refused (`too_deep`) before any schema

_MISSING_MESSAGES = {
    fields.Field.default_error_messages["required"],
    fields.Field.default_error_messages["null"],
}


class Input(Schema):
    """A request body: unknown fields are ignored (clients may send more than we read).
    `exactly_one_of` names string fields of which the view requires exactly one (documented as
    a `oneOf`; the view refuses both or neither)."""

    exactly_one_of: tuple[str, ...] = ()

    class Meta:
        unknown = EXCLUDE


class Query(Input):
    """A query string: an empty parameter (`?smid=`) means the parameter is absent."""

    @pre_load
    def _drop_empty(self, data: Mapping[str, Any], **_: Any) -> dict[str, Any]:
        return {k: v for k, v in data.items() if v != ""}


class Output(Schema):
    """A response body: the document forbids fields it does not declare (additionalProperties
    false), so a field the API returns but the schema lacks is drift that the tests catch."""

    class Meta:
        unknown = RAISE


class Timestamp(fields.String):
    """An ISO 8601 date-time the services already formatted (`datetime.isoformat()`)."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(metadata={"format": "date-time", **kwargs.pop("metadata", {})}, **kwargs)


class WholeNumber(fields.Integer):
    """A JSON integer: not a string of digits, not a boolean (JSON's true is no number)."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(strict=True, **kwargs)

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> int:
        if isinstance(value, bool):
            raise self.make_error("invalid")
        return int(super()._deserialize(value, attr, data, **kwargs))


class Flag(fields.Boolean):
    """A JSON boolean: not 1, not "true" (marshmallow's Boolean takes both)."""

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> bool:
        if not isinstance(value, bool):
            raise self.make_error("invalid")
        return value


class Text(fields.String):
    """A string that follows the text rules (kmc.text) and fits `max_length`: refused as
    `invalid_text`, or as too long with the reason `too_long` (default `"too_long"`). `name=True` for names shown on pages (no invisible
    formatting characters, one line)."""

    def __init__(
        self, *, max_length: int, name: bool = False, too_long: str = "too_long", **kwargs: Any
    ) -> None:
        metadata = {"maxLength": max_length, **kwargs.pop("metadata", {})}
        super().__init__(metadata=metadata, **kwargs)
        self.max_length = max_length
        self.for_names = name
        self.too_long = too_long

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> str:
        loaded = str(super()._deserialize(value, attr, data, **kwargs))
        what = f"'{self.data_key or attr}'"
        try:
            text.check(loaded, what, name=self.for_names)
        except text.TextRefused as refused:
            raise InvalidInput(refused.reason, str(refused)) from None
        if len(loaded) > self.max_length:
            raise InvalidInput(self.too_long, f"{what} may be at most {self.max_length} characters")
        return loaded


class Unchecked(fields.Nested):
    """A list member passed to the view as given, which checks it on its own (a bulk item that
    does not fit gets its own refused verdict instead of refusing the whole request). The
    document admits any value and names the nested schema (kmc.api.openapi)."""

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> Any:
        return value


@dataclass(frozen=True)
class Binary:
    """A non-JSON body (DER, a file download), documented with its media types; not parsed."""

    description: str
    media_types: tuple[str, ...]
    headers: Mapping[str, dict[str, Any]] = field(default_factory=dict)


Reply = type[Schema] | Binary


@dataclass(frozen=True)
class Operation:
    """What the document generator reads of a route."""

    summary: str
    responses: Mapping[int, Reply]
    body: type[Schema] | Binary | None = None
    query: type[Schema] | None = None
    errors: tuple[int, ...] = ()
    description: str = ""


def _refusal(schema: Schema, error: ValidationError) -> InvalidInput:
    messages = error.messages if isinstance(error.messages, dict) else {"_schema": error.messages}
    name, detail = next(iter(messages.items()))
    while isinstance(detail, dict):  # nested field or list item: report the innermost message
        detail = next(iter(detail.values()))
    text = detail[0] if isinstance(detail, list) and detail else str(detail)
    declared = schema.fields.get(name)
    reason = declared.metadata.get("reason") if declared is not None else None
    if reason is None:
        reason = "missing_field" if text in _MISSING_MESSAGES else "invalid_field"
    return InvalidInput(reason, f"'{name}': {text}")


def load(schema_class: type[Schema], data: Any) -> dict[str, Any]:
    """`data` checked and converted by the schema, or `InvalidInput` naming the first bad field."""
    schema = schema_class()
    try:
        return dict(schema.load(data))
    except ValidationError as error:
        raise _refusal(schema, error) from None


def _too_deep() -> InvalidInput:
    return InvalidInput("too_deep", f"the JSON body is nested more than {MAX_DEPTH} levels deep")


def checked_tree(data: Any) -> Any:
    """`data` (parsed JSON) unchanged, or `InvalidInput` if it nests deeper than MAX_DEPTH or any
    key or string in it breaks the text rules: one walk, before any schema sees it."""
    pending = [(data, 1)]
    while pending:
        value, depth = pending.pop()
        if isinstance(value, (dict, list)):
            if depth > MAX_DEPTH:
                raise _too_deep()
            items = list(value.items()) if isinstance(value, dict) else list(enumerate(value))
            for key, item in items:
                pending.append((key, depth))
                pending.append((item, depth + 1))
        elif isinstance(value, str):
            found = text.problem(value)
            if found is not None:
                raise InvalidInput(text.REASON, f"a string in the JSON body {found}")
    return data


def _json_body() -> Any:
    try:
        data = request.get_json(silent=True)
    except RecursionError:  # the parser's own limit, far above MAX_DEPTH
        raise _too_deep() from None
    if not isinstance(data, dict):
        raise InvalidInput("invalid_json", "send a JSON object (Content-Type: application/json)")
    return checked_tree(data)


def _shape(reply: Reply, value: Any) -> Any:
    if isinstance(reply, Binary):
        raise TypeError("a Binary reply is a Response the view builds itself")
    schema = reply()
    if current_app.testing:
        # Under tests the value is also read back through its schema (unknown fields refused),
        # so a field the view returns but the schema lacks fails the test that produced it.
        schema.load(value)
    return schema.dump(value)


def operation(
    summary: str,
    *,
    responses: Mapping[int, Reply],
    body: type[Schema] | Binary | None = None,
    query: type[Schema] | None = None,
    errors: tuple[int, ...] = (),
    description: str = "",
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Declare a route's input and output schemas (see the module docstring)."""
    declared = Operation(summary, responses, body, query, errors, description)
    default_status = next(iter(responses))

    def wrap(view: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(view)
        def run(*args: Any, **kwargs: Any) -> Any:
            if isinstance(body, type):
                kwargs["body"] = load(body, _json_body())
            if query is not None:
                kwargs["query"] = load(query, request.args.to_dict())
            result = view(*args, **kwargs)
            if isinstance(result, Response):
                return result
            value, status = result if isinstance(result, tuple) else (result, default_status)
            return _shape(responses[status], value), status

        run.kmc_operation = declared  # type: ignore[attr-defined]
        return run

    return wrap
