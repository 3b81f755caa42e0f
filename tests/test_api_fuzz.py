"""Schemathesis against the KMC's own OpenAPI document, in process through the WSGI app: for every
role and anonymous, every operation gets `FUZZ_EXAMPLES` generated requests that follow the
document and as many that break it. Any 5xx, any response the document does not describe and any
405 without `Allow` fails the test. docs/fuzzing.md says what runs and why."""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest
import schemathesis
from flask.testing import FlaskClient
from hypothesis import HealthCheck, Phase, given, settings
from schemathesis import GenerationMode
from schemathesis.checks import (
    content_type_conformance,
    negative_data_rejection,
    not_a_server_error,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)
from schemathesis.config import SchemathesisConfig
from werkzeug.exceptions import MethodNotAllowed

from factories.callers import caller
from kmc.accounts.service import create_token
from kmc.permissions import ROLES
from tests.conftest import ACCOUNTS

# Generated requests per operation, per role and per generation mode (valid / invalid input): the
# one bound on the run's size (docs/fuzzing.md gives the time it takes).
FUZZ_EXAMPLES = 6
ANONYMOUS = "anonymous"
# The first test account of each role (tests/conftest.py ACCOUNTS).
ACCOUNT_OF_ROLE = {role: name for name, (role, _) in reversed(ACCOUNTS.items())}
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]
# kmc.api.schema.Input: a parameter or field the API does not read is ignored, not refused.
CONFIG = SchemathesisConfig.from_dict({"generation": {"allow-extra-parameters": False}})
# Requests sent per (role, backend); tests/conftest.py prints them at the end of the run.
CASES_RUN: Counter[tuple[str, str]] = Counter()
UNUSED_METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE")


def _headers(app: Any, role: str) -> dict[str, str]:
    if role == ANONYMOUS:
        return {}
    with app.app_context():
        issued = create_token(caller("test"), ACCOUNT_OF_ROLE[role], f"fuzz {role}")
    return {"Authorization": f"Bearer {issued.secret}"}


def _breakable(operation: dict[str, Any]) -> bool:
    """Whether the operation has input a request can break: a JSON body, or a parameter with
    more than "any string" in its schema (a query or path value is always some string)."""
    plain = [{"type": "string"}]
    content = operation.get("requestBody", {}).get("content", {})
    return any("schema" in media for media in content.values()) or any(
        {k: v for k, v in p["schema"].items() if k != "description"} not in plain
        for p in operation["parameters"]
    )


def _fuzz(
    operation: Any, mode: GenerationMode, headers: dict[str, str], run_by: tuple[str, str]
) -> None:
    checks = [*CHECKS, negative_data_rejection] if mode == GenerationMode.NEGATIVE else CHECKS

    @settings(
        max_examples=FUZZ_EXAMPLES,
        deadline=None,
        database=None,
        phases=[Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(operation.as_strategy(generation_mode=mode, headers=headers))
    def run(case: Any) -> None:
        response = case.call()
        case.validate_response(response, checks=checks)
        CASES_RUN[run_by] += 1

    run()


def _routes(routes: Any, path: str, method: str) -> bool:
    try:
        routes.match(path, method)
    except MethodNotAllowed:
        return False
    return True


def _check_unused_methods(
    app: Any, schema: Any, headers: dict[str, str], run_by: tuple[str, str]
) -> None:
    """Every method a path does not serve is a 405 naming the methods it does serve (unless the
    URL is another route's, as GET /sms/bulk is the SM called "bulk")."""
    client = FlaskClient(app, app.response_class)  # not DocumentedClient: these are undocumented
    routes = app.url_map.bind("localhost")
    for path, methods in schema.raw_schema["paths"].items():
        concrete = path
        for parameter in next(iter(methods.values()))["parameters"]:
            if parameter["in"] == "path":  # a value that routes: the first of an enum, else 1
                value = parameter["schema"].get("enum", ["1"])[0]
                concrete = concrete.replace(f"{{{parameter['name']}}}", value)
        for method in UNUSED_METHODS:
            if method.lower() in methods or _routes(routes, concrete, method):
                continue
            response = client.open(concrete, method=method, headers=headers)
            assert response.status_code == 405, (method, path, response.status_code)
            allowed = {m.strip() for m in response.headers.get("Allow", "").split(",")}
            assert {m.upper() for m in methods} <= allowed, (method, path)
            CASES_RUN[run_by] += 1


@pytest.mark.parametrize("role", [*ROLES, ANONYMOUS])
def test_no_input_breaks_the_api_or_its_document(app, backend, role):
    headers = _headers(app, role)
    schema = schemathesis.openapi.from_wsgi("/api/v1/openapi.json", app, config=CONFIG)
    failures = []
    for result in schema.get_all_operations():
        operation = result.ok()
        modes = [GenerationMode.POSITIVE]
        if _breakable(operation.definition.raw):
            modes.append(GenerationMode.NEGATIVE)
        for mode in modes:
            try:
                _fuzz(operation, mode, headers, (role, backend))
            except (Exception, BaseExceptionGroup) as error:  # report every operation's failure
                failures.append(f"{operation.label} ({mode.value}): {error}")
    _check_unused_methods(app, schema, headers, (role, backend))
    assert not failures, "\n\n".join(failures)
