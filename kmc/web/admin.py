"""Administration pages: accounts and API tokens."""

from __future__ import annotations

from flask import Blueprint, flash, redirect, render_template, url_for
from werkzeug.wrappers import Response

from kmc.access import actor_name, allow
from kmc.accounts import service
from kmc.errors import KMCError
from kmc.web.forms import CreateTokenForm, CreateUserForm, RevokeTokenForm, ToggleUserForm

bp = Blueprint("admin", __name__, url_prefix="/admin")


@bp.route("/users", methods=["GET", "POST"])
@allow("admin")
def users() -> str | Response:
    form = CreateUserForm()
    if form.validate_on_submit():
        try:
            user = service.create_user(
                actor_name(),
                form.username.data or "",
                form.role.data or "",
                form.password.data or "",
                form.id_man.data or None,
                must_change=True,
            )
        except KMCError as refused:
            flash(refused.message, "danger")
        else:
            flash(
                f"User {user.username} created; they must change the password at first login.",
                "success",
            )
            return redirect(url_for("admin.users"))
    return render_template(
        "admin/users.html", form=form, users=service.list_users(), toggle=ToggleUserForm()
    )


@bp.route("/users/<username>/<any(enable, disable):change>", methods=["POST"])
@allow("admin")
def toggle_user(username: str, change: str) -> Response:
    if ToggleUserForm().validate_on_submit():
        try:
            service.set_active(actor_name(), username, change == "enable")
        except KMCError as refused:
            flash(refused.message, "danger")
        else:
            flash(f"User {username} {change}d.", "success")
    return redirect(url_for("admin.users"))


@bp.route("/tokens", methods=["GET", "POST"])
@allow("admin")
def tokens() -> str | Response:
    form = CreateTokenForm()
    issued = None
    if form.validate_on_submit():
        try:
            issued = service.create_token(
                actor_name(), form.username.data or "", form.name.data or ""
            )
        except KMCError as refused:
            flash(refused.message, "danger")
        else:
            flash("Token created. Copy it now: it is shown only once.", "warning")
    return render_template(
        "admin/tokens.html",
        form=form,
        tokens=service.list_tokens(),
        issued=issued,
        revoke=RevokeTokenForm(),
    )


@bp.route("/tokens/<int:token_id>/revoke", methods=["POST"])
@allow("admin")
def revoke_token(token_id: int) -> Response:
    if RevokeTokenForm().validate_on_submit():
        try:
            service.revoke_token(actor_name(), token_id)
        except KMCError as refused:
            flash(refused.message, "danger")
        else:
            flash(f"Token {token_id} revoked.", "success")
    return redirect(url_for("admin.tokens"))
