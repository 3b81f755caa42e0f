"""Who may call which route: every view declares its roles, and anything undeclared is refused.

`allow(...)` marks a view; `enforce()` runs before every request (deny by default). Web views
use the Flask-Login session; `/api/` views use only `Authorization: Bearer` tokens, never the
session cookie, so the API needs no CSRF token and a browser session cannot drive it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol, TypeVar

from flask import Flask, current_app, flash, g, redirect, request, url_for
from flask_login import current_user
from werkzeug.wrappers import Response

from kmc.errors import Forbidden, NotAuthenticated
from kmc.extensions import login_manager
from kmc.permissions import Caller, Permission, roles_with


class User(Protocol):
    """What access control needs of an account (the accounts feature's model provides it)."""

    username: str
    role: str
    id_man: str | None
    must_change_password: bool


PUBLIC = "public"
# Set at login for the browser's session and removed at logout: an anonymous visit that still
# carries it comes from a session that expired, not from someone who never logged in.
SIGNED_IN_COOKIE = "kmc_signed_in"
F = TypeVar("F", bound=Callable[..., Any])


def init_app(
    app: Flask,
    *,
    session_user: Callable[[str], User | None],
    token_user: Callable[[str, str], User | None],
    named_user: Callable[[str], User],
) -> None:
    """Register how a session identity, a bearer token (with the client address it came from,
    which bad tokens are counted against) and a CLI `--as` name become an account (the
    accounts feature provides them; access control itself knows no tables)."""
    login_manager.user_loader(session_user)
    app.extensions["kmc.token_user"] = token_user
    app.extensions["kmc.named_user"] = named_user


def allow(rule: Permission | str) -> Callable[[F], F]:
    """Declare who may use a view: a permission (every role holding it, `kmc.permissions`) or
    PUBLIC. The service the view calls checks the same permission again."""
    roles = frozenset({PUBLIC}) if rule == PUBLIC else roles_with(Permission(rule))

    def mark(view: F) -> F:
        view.kmc_roles = roles  # type: ignore[attr-defined]
        return view

    return mark


def remember_sign_in(response: Response) -> Response:
    """Mark the browser as logged in (no secret: it only chooses the login page's notice)."""
    response.set_cookie(
        SIGNED_IN_COOKIE,
        "1",
        httponly=True,
        samesite="Lax",
        secure=bool(current_app.config.get("SESSION_COOKIE_SECURE")),
    )
    return response


def forget_sign_in(response: Response) -> Response:
    response.delete_cookie(SIGNED_IN_COOKIE, httponly=True, samesite="Lax")
    return response


def _to_login() -> Response:
    """The login page, returning here after login; it says so (once) when the session expired."""
    response = redirect(url_for("auth.login", next=request.full_path))
    if request.cookies.get(SIGNED_IN_COOKIE):
        flash("Your session expired (it ends after a time without use). Log in again.", "warning")
        forget_sign_in(response)
    return response


def is_api_request() -> bool:
    return request.path.startswith("/api/")


def client_address() -> str:
    """The address the request came from (the peer: a proxy in front must pass the client's,
    see docs/accounts.md)."""
    return request.remote_addr or "unknown"


def current_actor() -> User | None:
    """The authenticated user of this request (API token or web session), or None."""
    if is_api_request():
        return g.get("api_user")
    return current_user if current_user.is_authenticated else None


def current_caller() -> Caller:
    """The caller of this request, for the service it calls (the route has authenticated it)."""
    user = current_actor()
    if user is None:
        raise NotAuthenticated("not_authenticated", "log in or send a valid API token")
    return Caller.of(user)


def enforce() -> Response | None:
    if request.endpoint is None:
        return None  # 404/405 are produced by routing
    view = current_app.view_functions[request.endpoint]
    roles = getattr(view, "kmc_roles", None)
    if request.endpoint in ("static", "bootstrap.static"):
        return None
    if roles is None:
        current_app.logger.error("route %s declares no roles; refused", request.endpoint)
        raise Forbidden("forbidden", "this route is not available")
    if is_api_request():
        header = request.headers.get("Authorization", "")
        scheme, _, presented = header.partition(" ")
        g.api_user = (
            current_app.extensions["kmc.token_user"](presented.strip(), client_address())
            if scheme.lower() == "bearer"
            else None
        )
    if PUBLIC in roles:
        return None
    user = current_actor()
    if user is None:
        if is_api_request():
            raise NotAuthenticated(
                "not_authenticated", "send a valid API token as 'Authorization: Bearer <token>'"
            )
        return _to_login()
    if (
        user.must_change_password
        and not is_api_request()
        and request.endpoint
        not in (
            "auth.change_password",
            "auth.logout",
        )
    ):
        return redirect(url_for("auth.change_password"))
    if user.role not in roles:
        raise Forbidden("forbidden", "your role does not allow this")
    return None
