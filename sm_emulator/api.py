"""The vending service: an HTTPS JSON API over one SM's state folder (WSGI, Werkzeug).

    POST /api/v1/tokens/credit       credit token (every class 0 subclass)
    POST /api/v1/tokens/management   management token (class 2)
    POST /api/v1/tokens/test         meter test token (class 1: no key, no TID)
    POST /api/v1/tokens/key-change   key change set (rollover, KEN)
    POST /api/v1/tokens/decode       decode a meter's token (support desks)
    GET  /api/v1/keys                key registers (KCVs, limits used and left, dates) + warnings
    GET  /api/v1/warnings            key-expiry warnings (STS 202-6)
    POST /api/v1/keyload             load keys from the KMC online (`serve --kmc URL`)
    /page/                           the SM operator's page (sm_emulator.page; login required)
    GET  /api/v1/openapi.json        this API's OpenAPI 3.1 document, generated from the schemas

The vending side never imports the KMC or Flask (import-linter contract), so the application is
plain Werkzeug; bodies are parsed and validated by the marshmallow schemas in
`sm_emulator.schemas` and the OpenAPI document is generated from them with apispec, the same
libraries the KMC uses. Every refusal is a 4xx `{"error": reason, "message": ...}` with the
reason the CLI prints; the state changes only when a token is issued.

Authentication: with mutual TLS the TLS layer (`sm_emulator.serving`) admits only clients whose
certificate chains to `--client-ca`; with `--tokens-file` every request also needs
`Authorization: Bearer <token>`, whose SHA-256 must be in the file (`sm_emulator.bearer`).

Each serving thread has its own `SecurityModule` (SQLite connections are per thread) for its
reads, its unsealed keys and key derivation; the vends' writes of all threads of a worker process go through
one `GroupCommit` (concurrent vends share a transaction and its fsync, each answered after that
commit), and the state folder's writer lock orders them with the other processes' writes.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from apispec import APISpec
from apispec.ext.marshmallow import MarshmallowPlugin
from marshmallow import Schema, ValidationError
from werkzeug.exceptions import HTTPException
from werkzeug.routing import Map, Rule
from werkzeug.wrappers import Request, Response
from werkzeug.wsgi import get_input_stream

from sm_emulator import schemas
from sm_emulator.bearer import BearerTokens
from sm_emulator.clock import Clock
from sm_emulator.errors import InvalidRequest, LoadRefused, SmError, StateUnavailable, VendRefused
from sm_emulator.expiry import warnings
from sm_emulator.module import SecurityModule
from sm_emulator.online import Kmc, KmcRefused, load_online
from sm_emulator.page import Page
from sm_emulator.store import DATABASE_FILE, GroupCommit
from sm_emulator.vending import MeterKey, Vending, key_identity, parse_currency, parse_key
from sts_token import (
    CreditSubclass,
    EncryptionAlgorithm,
    ManagementKind,
    ManufacturerCode,
    MeterTestSubclass,
    Pan,
    TariffIndex,
    TokenError,
    TransferAmount,
    meter_test_token,
)
from sts_token.kinds import ALL_REGISTERS

_log = logging.getLogger(__name__)

API_VERSION = "1.0.0"
MAX_BODY_BYTES = 16 * 1024  # a vend request is a few hundred bytes

Handler = Callable[["VendingService", dict[str, Any]], dict[str, Any]]


class _Operation:
    """One route: its method, path, body and answer schemas, and the handler."""

    def __init__(
        self,
        method: str,
        path: str,
        summary: str,
        handler: Handler,
        body: type[Schema] | None,
        answer: type[Schema],
    ) -> None:
        self.method, self.path, self.summary = method, path, summary
        self.handler, self.body, self.answer = handler, body, answer
        # One instance per route, shared by the serving threads: building a schema deep-copies
        # its declared fields (a quarter of a vend's Python time); `load` keeps no state on it.
        self.loader = None if body is None else body()


_OPERATIONS: list[_Operation] = []


def _operation(
    method: str, path: str, summary: str, body: type[Schema] | None, answer: type[Schema]
) -> Callable[[Handler], Handler]:
    def register(handler: Handler) -> Handler:
        _OPERATIONS.append(_Operation(method, path, summary, handler, body, answer))
        return handler

    return register


def _meter(body: dict[str, Any]) -> MeterKey:
    return MeterKey(
        key_identity(body["sgc"], body["krn"], body["kt"]),
        Pan(body["pan"]),
        TariffIndex.parse(body["ti"]),
        EncryptionAlgorithm(body["ea"]) if "ea" in body else None,
    )


@_operation(
    "POST", "/api/v1/tokens/credit", "Issue a credit token", schemas.CreditSchema,
    schemas.TokensSchema,
)  # fmt: skip
def credit(service: VendingService, body: dict[str, Any]) -> dict[str, Any]:
    units, paid = TransferAmount.from_decimal(body["amount"]), parse_currency(body["currency"])
    subclass = CreditSubclass[body["subclass"].upper()]
    return service.vending().credit(_meter(body), subclass, units, paid).to_dict()


@_operation(
    "POST", "/api/v1/tokens/management", "Issue a management token", schemas.ManagementSchema,
    schemas.TokensSchema,
)  # fmt: skip
def management(service: VendingService, body: dict[str, Any]) -> dict[str, Any]:
    kind = ManagementKind[body["kind"].upper().replace("-", "_")]
    takes = kind.takes
    for name in ("value", "register"):
        if name in body and name != takes:
            raise InvalidRequest("invalid_field", f"kind {kind.cli_name} takes no {name}")
    if takes == "value" and "value" not in body:
        raise InvalidRequest("invalid_field", f"kind {kind.cli_name} needs a value")
    if takes == "register":
        field = body.get("register", ALL_REGISTERS)
    else:
        field = body["value"] if takes == "value" else 0
    return service.vending().management(_meter(body), kind, field).to_dict()


@_operation(
    "POST", "/api/v1/tokens/test", "Issue a meter test token (class 1)", schemas.MeterTestSchema,
    schemas.TokensSchema,
)  # fmt: skip
def meter_test(service: VendingService, body: dict[str, Any]) -> dict[str, Any]:
    token = meter_test_token(
        MeterTestSubclass(body["subclass"]),
        body["control"],
        ManufacturerCode(body["manufacturer_code"]),
    )
    return {"kind": "test", "tokens": [token.digits], "tid": None}


@_operation(
    "POST", "/api/v1/tokens/key-change", "Issue a key change set", schemas.KeyChangeSchema,
    schemas.TokensSchema,
)  # fmt: skip
def key_change(service: VendingService, body: dict[str, Any]) -> dict[str, Any]:
    meter = _meter(body)
    new = key_identity(body["new_sgc"], body["new_krn"], body["new_kt"])
    new_ti = TariffIndex.parse(body["new_ti"]) if "new_ti" in body else None
    return service.vending().key_change(meter, new, new_ti, body.get("rollover")).to_dict()


@_operation(
    "POST", "/api/v1/tokens/decode", "Decode a meter's token", schemas.DecodeSchema,
    schemas.DecodedSchema,
)  # fmt: skip
def decode(service: VendingService, body: dict[str, Any]) -> dict[str, Any]:
    return {"fields": service.vending().decode(_meter(body), body["token"]).to_dict()}


@_operation("GET", "/api/v1/keys", "Key registers and warnings", None, schemas.KeysSchema)
def keys(service: VendingService, body: dict[str, Any]) -> dict[str, Any]:
    sm = service.sm()
    registers = sm.registers()
    return {
        "smid": sm.smid,
        "keys": [r.to_dict() for r in registers],
        "warnings": [w.to_dict() for w in warnings(registers, sm.clock())],
    }


@_operation("GET", "/api/v1/warnings", "Key-expiry warnings", None, schemas.WarningsSchema)
def expiry_warnings(service: VendingService, body: dict[str, Any]) -> dict[str, Any]:
    sm = service.sm()
    return {"warnings": [w.to_dict() for w in warnings(sm.registers(), sm.clock())]}


@_operation(
    "POST", "/api/v1/keyload", "Load keys from the KMC online (request, receive, load)",
    schemas.KeyloadSchema, schemas.LoadedSchema,
)  # fmt: skip
def keyload(service: VendingService, body: dict[str, Any]) -> dict[str, Any]:
    if service.kmc is None:
        raise KmcRefused("no_kmc", "this service was started without --kmc URL")
    wanted = tuple(parse_key(k) for k in body["keys"]) if "keys" in body else None
    return load_online(service.sm(), service.kmc, wanted).to_dict()


def _read_body(request: Request) -> bytes:
    """The body, up to MAX_BODY_BYTES, or `InvalidRequest` (`body_too_large`). A chunked body
    has no Content-Length: it is read one byte past the limit (werkzeug's own limit would cut
    it at the limit, to be refused as bad JSON rather than as too large)."""
    too_large = InvalidRequest("body_too_large", f"the body is over {MAX_BODY_BYTES} bytes")
    if (request.content_length or 0) > MAX_BODY_BYTES:
        raise too_large
    stream = get_input_stream(request.environ, max_content_length=None)
    raw = b""
    while len(raw) <= MAX_BODY_BYTES and (chunk := stream.read(MAX_BODY_BYTES + 1 - len(raw))):
        raw += chunk
    if len(raw) > MAX_BODY_BYTES:
        raise too_large
    return raw


def _status(error: Exception) -> int:
    if isinstance(error, VendRefused):
        return 404 if error.reason == "no_such_key" else 422
    if isinstance(error, KmcRefused):
        return 502 if error.reason == "kmc_unreachable" else 422
    if isinstance(error, LoadRefused):
        return 422
    if isinstance(error, StateUnavailable):
        return 503
    return 413 if error.reason == "body_too_large" else 400


def _json(data: Any, status: int = 200) -> Response:
    return Response(json.dumps(data), status=status, mimetype="application/json")


def _refusal(status: int, reason: str, message: str, **extra: Any) -> Response:
    return _json({"error": reason, "message": message, **extra}, status)


def openapi_document(bearer: bool) -> dict[str, Any]:
    """The API's OpenAPI 3.1 document, generated from the schemas."""
    spec = APISpec(
        title="SM emulator vending service",
        version=API_VERSION,
        openapi_version="3.1.0",
        plugins=[MarshmallowPlugin()],
    )
    spec.components.schema("Refusal", schema=schemas.RefusalSchema)
    if bearer:
        spec.components.security_scheme("bearer", {"type": "http", "scheme": "bearer"})
    error = {"content": {"application/json": {"schema": "Refusal"}}}
    for op in _OPERATIONS:
        answer = {
            "200": {"description": "OK", "content": {"application/json": {"schema": op.answer}}}
        }
        refusals = {
            "400": {"description": "Bad input", **error},
            "401": {"description": "No or wrong bearer token", **error},
            "500": {"description": "A defect of the service (logged)", **error},
        }
        if op.body is not None:
            refusals |= {
                "404": {"description": "Key not held", **error},
                "413": {"description": "Body over the size limit", **error},
                "422": {"description": "Refused by the SM rules (or the KMC's)", **error},
                "503": {"description": "The SM's state could not be written", **error},
            }
        if op.handler is keyload:
            refusals["502"] = {"description": "The KMC could not be reached", **error}
        entry: dict[str, Any] = {
            "summary": op.summary,
            "operationId": op.handler.__name__,
            "responses": answer | refusals,
        }
        if op.body is not None:
            entry["requestBody"] = {
                "required": True,
                "content": {"application/json": {"schema": op.body}},
            }
        if bearer:
            entry["security"] = [{"bearer": []}]
        spec.path(path=op.path, operations={op.method.lower(): entry})
    return spec.to_dict()


class VendingService:
    """The WSGI application over one state folder."""

    def __init__(
        self,
        state: Path,
        *,
        clock: Clock,
        tokens: BearerTokens | None = None,
        ea07_tables: str | None = None,
        kmc: Kmc | None = None,
    ) -> None:
        self.state = state
        self.clock = clock
        self.tokens = tokens
        self.kmc = kmc
        self.ea07_tables = ea07_tables
        self._local = threading.local()
        self._writer: GroupCommit | None = None
        self._writer_lock = threading.Lock()
        self._document = json.dumps(openapi_document(tokens is not None))
        self._map = Map([Rule("/api/v1/openapi.json", endpoint=None, methods=["GET"])])
        self._handlers: dict[str, _Operation] = {}
        for op in _OPERATIONS:
            self._map.add(Rule(op.path, endpoint=op.handler.__name__, methods=[op.method]))
            self._handlers[op.handler.__name__] = op
        SecurityModule(state, clock=clock).close()  # fail at start-up, not on the first request
        self.page = Page(self)
        for rule in Page.RULES:
            self._map.add(rule.empty())

    def sm(self) -> SecurityModule:
        """This thread's opened SM (one SQLite connection per thread)."""
        sm: SecurityModule | None = getattr(self._local, "sm", None)
        if sm is None:
            sm = self._local.sm = SecurityModule(self.state, clock=self.clock)
        return sm

    def writer(self) -> GroupCommit:
        """This process's group commit, opened on first use (in the worker, after the fork)."""
        with self._writer_lock:
            if self._writer is None:
                self._writer = GroupCommit(self.state / DATABASE_FILE)
            return self._writer

    def vending(self) -> Vending:
        return Vending(self.sm(), ea07_tables=self.ea07_tables, writer=self.writer())

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        request = Request(environ)
        request.max_content_length = MAX_BODY_BYTES
        try:
            response = self._respond(request)
        except Exception:  # a defect: its traceback to the log, never to the client
            _log.exception("%s %s: internal error", request.method, request.path)
            response = _refusal(
                500, "internal_error", "the service failed on this request; its log says why"
            )
        return response(environ, start_response)

    def _respond(self, request: Request) -> Response:
        try:
            endpoint, _ = self._map.bind_to_environ(request.environ).match()
        except HTTPException as error:
            reason = {404: "not_found", 405: "method_not_allowed"}.get(
                error.code or 0, "bad_request"
            )
            return _refusal(error.code or 400, reason, error.description or reason)
        if isinstance(endpoint, str) and endpoint.startswith("page:"):
            return self.page(endpoint, request)  # its own login (a browser sends no bearer)
        if self.tokens is not None and not self.tokens.admits(request.headers.get("Authorization")):
            response = _refusal(401, "unauthorised", "a valid bearer token is required")
            response.headers["WWW-Authenticate"] = "Bearer"
            return response
        if endpoint is None:
            return Response(self._document, mimetype="application/json")
        operation = self._handlers[endpoint]
        try:
            body = self._body(request, operation.loader)
            return _json(operation.handler(self, body))
        except ValidationError as error:
            return _refusal(
                400, "invalid_request", "the body does not match the schema", fields=error.messages
            )
        except (SmError, TokenError) as error:
            if isinstance(error, StateUnavailable):
                _log.error("%s: %s", error.reason, error.cause)
            return _refusal(_status(error), error.reason, error.message)

    @staticmethod
    def _body(request: Request, schema: Schema | None) -> dict[str, Any]:
        if schema is None:
            return {}
        raw = _read_body(request)
        try:
            data = json.loads(raw)
        except (UnicodeDecodeError, json.JSONDecodeError):
            raise InvalidRequest("invalid_json", "the body is not JSON") from None
        if not isinstance(data, dict):
            raise InvalidRequest("invalid_json", "the body must be a JSON object")
        loaded: dict[str, Any] = schema.load(data)
        return loaded
