"""Account pages: login, logout and password change (`auth`), accounts and API tokens (`admin`)."""

from __future__ import annotations

from flask import Blueprint, flash, redirect, render_template, request, session, url_for
from flask_login import current_user, login_user, logout_user
from werkzeug.wrappers import Response

from kmc.access import (
    PUBLIC,
    allow,
    client_address,
    current_caller,
    forget_sign_in,
    remember_sign_in,
)
from kmc.accounts import service
from kmc.accounts.forms import (
    ChangePasswordForm,
    CreateTokenForm,
    CreateUserForm,
    LoginForm,
    RevokeTokenForm,
    RoleForm,
    ToggleUserForm,
)
from kmc.listing import ListRequest
from kmc.permissions import ROLES, Permission
from kmc.web import RESUME_KEY, attempt, same_site_path

auth = Blueprint("auth", __name__)
admin = Blueprint("admin", __name__, url_prefix="/admin")


def _safe_next(target: str | None) -> str:
    """Only same-site paths are followed after login (no open redirect)."""
    return same_site_path(target) or url_for("main.home")


@auth.route("/login", methods=["GET", "POST"])
@allow(PUBLIC)
def login() -> str | Response:
    form = LoginForm()
    if form.validate_on_submit():
        outcome = service.authenticate(
            form.username.data or "", form.password.data or "", client_address()
        )
        if outcome.user is None:
            assert outcome.refusal is not None
            flash(outcome.refusal.message, "danger")
        else:
            # A new session at login: nothing from before it (its CSRF token included) survives
            # but the form an expired session left to fill in again (kmc.web, never secrets).
            kept = session.get(RESUME_KEY)
            session.clear()
            if kept is not None:
                session[RESUME_KEY] = kept
            session.permanent = (
                True  # idle timeout: PERMANENT_SESSION_LIFETIME, renewed per request
            )
            login_user(outcome.user)
            return remember_sign_in(redirect(_safe_next(request.args.get("next"))))
    return render_template("auth/login.html", form=form)


@auth.route("/logout", methods=["POST"])
@allow(Permission.OWN_ACCOUNT)
def logout() -> Response:
    service.record_logout(current_user)
    logout_user()
    flash("You are logged out.", "info")
    return forget_sign_in(redirect(url_for("auth.login")))


@auth.route("/account/password", methods=["GET", "POST"])
@allow(Permission.OWN_ACCOUNT)
def change_password() -> str | Response:
    form = ChangePasswordForm()
    if form.validate_on_submit():
        changed = attempt(
            lambda: service.change_password(
                current_user, form.current.data or "", form.new.data or ""
            )
        )
        if changed is not None:
            login_user(current_user)  # this session continues under the new nonce; others end
            flash("Password changed.", "success")
            return redirect(url_for("main.home"))
    return render_template("auth/change_password.html", form=form)


@admin.route("/users", methods=["GET", "POST"])
@allow(Permission.USERS_MANAGE)
def users() -> str | Response:
    form = CreateUserForm()
    if form.validate_on_submit():
        user = attempt(
            lambda: service.create_user(
                current_caller(),
                form.username.data or "",
                form.role.data or "",
                form.password.data or "",
                form.id_man.data or None,
                must_change=True,
            )
        )
        if user is not None:
            flash(
                f"User {user.username} created; they must change the password at first login.",
                "success",
            )
            return redirect(url_for("admin.users"))
    return render_template(
        "admin/users.html",
        form=form,
        page=service.users_page(current_caller(), ListRequest.from_args(request.args)),
        standings=service.login_standings(),
        toggle=ToggleUserForm(),
        roles=ROLES,
    )


@admin.route("/users/<username>/<any(enable, disable):change>", methods=["POST"])
@allow(Permission.USERS_MANAGE)
def toggle_user(username: str, change: str) -> Response:
    if ToggleUserForm().validate_on_submit():
        if attempt(lambda: service.set_active(current_caller(), username, change == "enable")):
            flash(f"User {username} {change}d.", "success")
    return redirect(url_for("admin.users"))


@admin.route("/users/<username>/unlock", methods=["POST"])
@allow(Permission.USERS_MANAGE)
def unlock_user(username: str) -> Response:
    if ToggleUserForm().validate_on_submit():
        if attempt(lambda: service.unlock(current_caller(), username)):
            flash(f"Back-off of {username} cleared.", "success")
    return redirect(url_for("admin.users"))


@admin.route("/users/<username>/reset-password", methods=["POST"])
@allow(Permission.USERS_MANAGE)
def reset_password(username: str) -> str | Response:
    """The one-time password is shown on this answer alone (no-store, like every page)."""
    if ToggleUserForm().validate_on_submit():
        reset = attempt(lambda: service.reset_password(current_caller(), username))
        if reset is not None:
            return render_template("admin/password_reset.html", reset=reset)
    return redirect(url_for("admin.users"))


@admin.route("/users/<username>/role", methods=["POST"])
@allow(Permission.USERS_MANAGE)
def set_role(username: str) -> Response:
    form = RoleForm()
    if not form.validate_on_submit():
        flash("choose one of the roles; an ID_man has 4 characters", "danger")
        return redirect(url_for("admin.users"))
    role = form.role.data or ""
    # The row's ID_man box still shows a manufacturer's ID_man when another role is chosen.
    id_man = (form.id_man.data or None) if role == "manufacturer" else None
    user = attempt(lambda: service.set_role(current_caller(), username, role, id_man))
    if user is not None:
        bound = f" ({user.id_man})" if user.id_man else ""
        flash(f"{user.username} is now {user.role}{bound}.", "success")
    return redirect(url_for("admin.users"))


@admin.route("/tokens", methods=["GET", "POST"])
@allow(Permission.USERS_MANAGE)
def tokens() -> str | Response:
    form = CreateTokenForm()
    issued = None
    if form.validate_on_submit():
        issued = attempt(
            lambda: service.create_token(
                current_caller(), form.username.data or "", form.name.data or ""
            )
        )
        if issued is not None:
            flash("Token created. Copy it now: it is shown only once.", "warning")
    return render_template(
        "admin/tokens.html",
        form=form,
        tokens=service.list_tokens(),
        issued=issued,
        revoke=RevokeTokenForm(),
    )


@admin.route("/tokens/<int:token_id>/revoke", methods=["POST"])
@allow(Permission.USERS_MANAGE)
def revoke_token(token_id: int) -> Response:
    if RevokeTokenForm().validate_on_submit():
        if attempt(lambda: service.revoke_token(current_caller(), token_id)):
            flash(f"Token {token_id} revoked.", "success")
    return redirect(url_for("admin.tokens"))
