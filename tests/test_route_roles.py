"""Every registered route × every role gets exactly the status this table expects.

The table is written by hand, independently of the `@allow(...)` marks on the views: a route
missing from it fails the test, so a new route cannot ship without someone deciding who may use it.
Web routes: anonymous → 302 to the login page, a role not allowed → 403. API routes (bearer token):
anonymous → 401, a role not allowed → 403. POST routes are sent with a valid CSRF token and an
empty form, so an allowed role gets the view's own answer (usually a redirect back).
"""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from factories.callers import caller
from kmc.accounts.service import create_token
from tests.conftest import csrf_token, login

ROLES = ("admin", "operator", "manufacturer", "auditor")
ROLE_USER = {
    "admin": "admin1",
    "operator": "operator1",
    "manufacturer": "maker1",
    "auditor": "auditor1",
}
EVERYONE = frozenset(ROLES)
KEY_MANAGERS = frozenset({"admin", "operator"})
KEY_READERS = frozenset({"admin", "operator", "auditor"})
SM_UPLOADERS = frozenset({"admin", "manufacturer"})
SM_LIFECYCLE = frozenset({"admin", "operator", "manufacturer"})
INSPECTORS = frozenset({"admin", "auditor"})


@dataclass(frozen=True)
class Route:
    path: str
    roles: frozenset[str]  # who gets `ok`; "public" routes list every role and allow anonymous
    ok: int = 200
    method: str = "GET"
    public: bool = False


ROUTES: dict[str, Route] = {
    "main.index": Route("/", EVERYONE, ok=302, public=True),
    "main.home": Route("/home", EVERYONE),
    "main.glossary": Route("/glossary", EVERYONE),
    "main.certificates": Route("/certificates", EVERYONE),
    "main.certificate": Route("/certificates/root.pem", EVERYONE),
    "auth.login": Route("/login", EVERYONE, public=True),
    "auth.logout": Route("/logout", EVERYONE, ok=302, method="POST"),
    "auth.change_password": Route("/account/password", EVERYONE),
    "admin.users": Route("/admin/users", frozenset({"admin"})),
    "admin.toggle_user": Route(
        "/admin/users/auditor1/disable", frozenset({"admin"}), ok=302, method="POST"
    ),
    "admin.unlock_user": Route(
        "/admin/users/auditor1/unlock", frozenset({"admin"}), ok=302, method="POST"
    ),
    "admin.reset_password": Route(
        "/admin/users/ghost/reset-password", frozenset({"admin"}), ok=302, method="POST"
    ),
    "admin.set_role": Route(
        "/admin/users/auditor1/role", frozenset({"admin"}), ok=302, method="POST"
    ),
    "admin.tokens": Route("/admin/tokens", frozenset({"admin"})),
    "admin.revoke_token": Route(
        "/admin/tokens/999/revoke", frozenset({"admin"}), ok=302, method="POST"
    ),
    "audit_ui.log": Route("/audit/", frozenset({"admin", "auditor"})),
    "audit_ui.export": Route("/audit/export.jsonl", frozenset({"admin", "auditor"})),
    "keys.index": Route("/keys/", KEY_READERS),
    "keys.supply_groups": Route("/keys/supply-groups", KEY_READERS),
    "keys.authorisations": Route("/keys/authorisations", KEY_READERS),
    "keys.supply_group": Route("/keys/supply-groups/123456", KEY_READERS, ok=404),
    "keys.revoke_authorisation": Route(
        "/keys/123456/1/1/authorisations/9999/revoke", KEY_MANAGERS, ok=302, method="POST"
    ),
    "keys.add_supply_group": Route("/keys/supply-groups", KEY_MANAGERS, ok=200, method="POST"),
    "keys.generate": Route("/keys/generate", KEY_MANAGERS, ok=200, method="POST"),
    "keys.detail": Route("/keys/123456/1/1", KEY_READERS, ok=404),
    "keys.authorise": Route("/keys/123456/1/1/authorise", KEY_MANAGERS, ok=404, method="POST"),
    "keys.authorise_many": Route("/keys/123456/1/1/authorise-many", KEY_MANAGERS, ok=404),
    "keys.authorise_many_post": Route(
        "/keys/123456/1/1/authorise-many", KEY_MANAGERS, ok=404, method="POST"
    ),
    "keys.change_state": Route("/keys/123456/1/1/deactivate", KEY_MANAGERS, ok=302, method="POST"),
    "keys.approvals": Route("/keys/approvals", KEY_READERS),
    "keys.decide": Route("/keys/approvals/999/approve", KEY_MANAGERS, ok=302, method="POST"),
    "keys.expiring": Route("/keys/expiring", KEY_READERS),
    "keyload.index": Route("/keyload/", KEY_READERS),
    "custodians.index": Route("/custodians/", KEY_MANAGERS),
    "custodians.share": Route("/custodians/share", KEY_MANAGERS, ok=302, method="POST"),
    "custodians.seal": Route("/custodians/seal", KEY_MANAGERS, ok=302, method="POST"),
    "keyload.process": Route("/keyload/process", KEY_MANAGERS, ok=302, method="POST"),
    "keyload.issue": Route("/keyload/issues/999", KEY_READERS, ok=404),
    "keyload.download": Route("/keyload/issues/999/eklf", KEY_MANAGERS, ok=404),
    "api.supply_groups": Route("/api/v1/supply-groups", KEY_READERS),
    "api.add_supply_group": Route("/api/v1/supply-groups", KEY_MANAGERS, ok=400, method="POST"),
    "api.keys": Route("/api/v1/keys", KEY_READERS),
    "api.generate_key": Route("/api/v1/keys", KEY_MANAGERS, ok=400, method="POST"),
    "api.keys_expiring": Route("/api/v1/keys/expiring", KEY_READERS),
    "api.authorise": Route(
        "/api/v1/keys/123456/1/1/authorisations", KEY_MANAGERS, ok=400, method="POST"
    ),
    "api.authorise_many": Route(
        "/api/v1/keys/123456/1/1/authorisations/bulk", KEY_MANAGERS, ok=400, method="POST"
    ),
    "api.change_key_state": Route(
        "/api/v1/keys/123456/1/1/compromise", KEY_MANAGERS, ok=400, method="POST"
    ),
    "api.approvals": Route("/api/v1/approvals", KEY_READERS),
    "api.approve": Route("/api/v1/approvals/999/approve", KEY_MANAGERS, ok=404, method="POST"),
    "api.reject": Route("/api/v1/approvals/999/reject", KEY_MANAGERS, ok=400, method="POST"),
    "api.custody": Route("/api/v1/custodians", KEY_MANAGERS, ok=409),
    "api.enter_share": Route("/api/v1/custodians/shares", KEY_MANAGERS, ok=400, method="POST"),
    "api.seal": Route("/api/v1/custodians/seal", KEY_MANAGERS, ok=409, method="POST"),
    "api.keyload": Route("/api/v1/keyload", KEY_MANAGERS, ok=415, method="POST"),
    "api.keyload_issues": Route("/api/v1/keyload/issues", KEY_READERS),
    "api.keyload_eklf": Route("/api/v1/keyload/issues/999/eklf", KEY_MANAGERS, ok=404),
    "registry.sms": Route("/registry/", EVERYONE),
    "registry.export": Route("/registry/export.csv.zip", EVERYONE),
    "registry.sm": Route("/registry/sms/999", EVERYONE, ok=404),
    "registry.change_state": Route("/registry/sms/999/change", SM_LIFECYCLE, ok=302, method="POST"),
    "registry.bulk_change": Route("/registry/sms/bulk", SM_LIFECYCLE, ok=302, method="POST"),
    "registry.online_keyload": Route(
        "/registry/sms/999/online-keyload", KEY_MANAGERS, ok=302, method="POST"
    ),
    "registry.certificate": Route("/registry/sms/999/certificate.pem", EVERYONE, ok=404),
    "registry.register": Route("/registry/register", SM_UPLOADERS),
    "registry.manufacturers": Route("/registry/manufacturers", KEY_READERS),
    "registry.manufacturer": Route("/registry/manufacturers/9999", KEY_READERS, ok=404),
    "registry.inspection": Route("/registry/manufacturers/9999/inspection", INSPECTORS, ok=404),
    "registry.inspection_export": Route(
        "/registry/manufacturers/9999/inspection.json.zip", INSPECTORS, ok=404
    ),
    "api.registry_manufacturers": Route("/api/v1/manufacturers", EVERYONE),
    "api.registry_add_manufacturer": Route(
        "/api/v1/manufacturers", frozenset({"admin"}), ok=400, method="POST"
    ),
    "api.registry_sms": Route("/api/v1/sms", EVERYONE),
    "api.registry_register": Route("/api/v1/sms", SM_UPLOADERS, ok=400, method="POST"),
    "api.registry_register_bulk": Route("/api/v1/sms/bulk", SM_UPLOADERS, ok=400, method="POST"),
    "api.registry_export": Route("/api/v1/sms/export?format=json", EVERYONE),
    "api.registry_sm": Route("/api/v1/sms/999", EVERYONE, ok=404),
    "api.registry_certificate": Route("/api/v1/sms/999/certificate", EVERYONE, ok=404),
    "api.registry_change_state": Route(
        "/api/v1/sms/999/approve", SM_LIFECYCLE, ok=400, method="POST"
    ),
    "api.registry_online_keyload": Route(
        "/api/v1/sms/999/online-keyload", KEY_MANAGERS, ok=400, method="POST"
    ),
    # The SM's own routes: no account at all, the signed VKLOADREQ authenticates (here none).
    "api.sm_keyload": Route("/api/v1/sm/keyload", EVERYONE, ok=415, method="POST", public=True),
    "api.sm_keyload_issue": Route("/api/v1/sm/keyload/issues/1", EVERYONE, ok=401, public=True),
    "api.openapi": Route("/api/v1/openapi.json", EVERYONE, public=True),
    "api_docs.page": Route("/api/docs/", EVERYONE, public=True),
    "api_docs.asset": Route("/api/docs/swagger-ui-bundle.js", EVERYONE, public=True),
    "api.whoami": Route("/api/v1/whoami", EVERYONE),
    "api.users": Route("/api/v1/users", frozenset({"admin", "auditor"})),
}
UNCHECKED = {"static", "bootstrap.static"}


def _expected(route: Route, role: str | None) -> int:
    if route.public or (role is not None and role in route.roles):
        return route.ok
    if role is None:
        return 401 if route.path.startswith("/api/") else 302
    return 403


def test_every_route_is_in_the_table(app):
    registered = {rule.endpoint for rule in app.url_map.iter_rules()} - UNCHECKED
    assert registered - ROUTES.keys() == set(), "routes without an access decision in ROUTES"
    assert ROUTES.keys() - registered == set(), "ROUTES lists endpoints that no longer exist"


@pytest.mark.parametrize("role", [None, *ROLES])
def test_route_role_matrix(app, client, role):
    headers = {}
    if role is not None:
        login(client, ROLE_USER[role])
        with app.app_context():
            issued = create_token(caller("test"), ROLE_USER[role], "matrix")
            headers = {"Authorization": f"Bearer {issued.secret}"}
    token = csrf_token(client, "/login")
    wrong = []
    for endpoint, route in sorted(ROUTES.items()):
        if route.method == "POST":
            response = client.post(route.path, data={"csrf_token": token}, headers=headers)
        else:
            response = client.get(route.path, headers=headers)
        response.close()  # a static file (the API docs' assets) is streamed from an open file
        if response.status_code != _expected(route, role):
            wrong.append(f"{endpoint}: {response.status_code}, expected {_expected(route, role)}")
        if endpoint == "auth.logout" and role is not None:
            login(client, ROLE_USER[role])  # the matrix logged us out; carry on as the same role
            token = csrf_token(client, "/home")
    assert wrong == []
