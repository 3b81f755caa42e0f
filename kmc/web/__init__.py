"""The web UI: blueprints, error pages and the single place KMC errors become flash messages."""

from __future__ import annotations

import hmac
from typing import Any

from flask import Flask, render_template, request
from flask_wtf.csrf import CSRFError
from werkzeug.exceptions import HTTPException

from key_load import views as key_load_views
from kmc import access, login_manager
from kmc.accounts.models import User
from kmc.database import db
from kmc.errors import KMCError
from sm_registry import views as sm_registry_views
from vending_keys import views as vending_keys_views

NAVIGATION = (
    # (endpoint, label, roles that see it)
    ("main.home", "Home", ("admin", "operator", "manufacturer", "auditor")),
    ("admin.users", "Users", ("admin",)),
    ("admin.tokens", "API tokens", ("admin",)),
    ("audit_ui.log", "Audit log", ("admin", "auditor")),
    ("registry.sms", "Security modules", ("admin", "operator", "manufacturer", "auditor")),
    ("registry.register", "Register SMs", ("admin", "manufacturer")),
    ("registry.manufacturers", "Manufacturers", ("admin", "operator", "auditor")),
    ("keys.index", "Keys", ("admin", "operator", "auditor")),
    ("keyload.index", "Key loading", ("admin", "operator", "auditor")),
)


@login_manager.user_loader
def _load_user(session_id: str) -> User | None:
    """The user of a session, unless its sessions were ended since (nonce compared in constant time)."""
    user_id, _, nonce = session_id.partition(":")
    user = db.session.get(User, int(user_id)) if user_id.isdigit() else None
    if user is None or not hmac.compare_digest(user.session_nonce, nonce):
        return None
    return user


def _error_page(status: int, message: str) -> tuple[str, int]:
    return render_template("error.html", status=status, message=message), status


def _api_or_page(status: int, reason: str, message: str) -> Any:
    if access.is_api_request():
        return {"error": reason, "message": message}, status
    return _error_page(status, message)


def register_web(app: Flask) -> None:
    from kmc.web import admin, audit_ui, auth, main

    for module in (auth, main, admin, audit_ui):
        app.register_blueprint(module.bp)
    app.register_blueprint(sm_registry_views.bp)
    app.register_blueprint(vending_keys_views.bp)
    app.register_blueprint(key_load_views.bp)
    app.before_request(access.enforce)

    @app.context_processor
    def _layout() -> dict[str, Any]:
        user = access.current_actor()
        role = user.role if user is not None else None
        return {
            "kmc_mode": app.config["KMC_MODE"],
            "kmc_name": app.config["KMC_NAME"],
            "navigation": [(e, label) for e, label, roles in NAVIGATION if role in roles],
        }

    @app.errorhandler(KMCError)
    def _kmc_error(error: KMCError) -> Any:
        db.session.rollback()
        return _api_or_page(error.http_status, error.reason, error.message)

    @app.errorhandler(CSRFError)
    def _csrf_error(error: CSRFError) -> Any:
        return _api_or_page(
            400, "csrf", "the form expired or was not sent by this site; reload and retry"
        )

    @app.errorhandler(HTTPException)
    def _http_error(error: HTTPException) -> Any:
        status = error.code or 500
        reason = (error.name or "error").lower().replace(" ", "_")
        return _api_or_page(status, reason, error.description or error.name)

    @app.errorhandler(Exception)
    def _unexpected(error: Exception) -> Any:
        db.session.rollback()
        app.logger.exception("unhandled error on %s %s", request.method, request.path)
        return _api_or_page(
            500, "internal_error", "the KMC hit an internal error; nothing was changed"
        )
