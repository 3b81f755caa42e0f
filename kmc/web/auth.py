"""Login, logout and password change."""

from __future__ import annotations

from urllib.parse import urlsplit

from flask import Blueprint, flash, redirect, render_template, request, session, url_for
from flask_login import current_user, login_user, logout_user
from werkzeug.wrappers import Response

from kmc.access import PUBLIC, allow
from kmc.accounts import service
from kmc.accounts.models import ROLES
from kmc.errors import KMCError
from kmc.web.forms import ChangePasswordForm, LoginForm

bp = Blueprint("auth", __name__)


def _safe_next(target: str | None) -> str:
    """Only same-site relative paths are followed after login (no open redirect)."""
    if (
        target
        and target.startswith("/")
        and not target.startswith("//")
        and not urlsplit(target).netloc
    ):
        return target
    return url_for("main.home")


@bp.route("/login", methods=["GET", "POST"])
@allow(PUBLIC)
def login() -> str | Response:
    form = LoginForm()
    if form.validate_on_submit():
        outcome = service.authenticate(form.username.data or "", form.password.data or "")
        if outcome.user is None:
            assert outcome.refusal is not None
            flash(outcome.refusal.message, "danger")
        else:
            session.permanent = (
                True  # idle timeout: PERMANENT_SESSION_LIFETIME, renewed per request
            )
            login_user(outcome.user)
            return redirect(_safe_next(request.args.get("next")))
    return render_template("auth/login.html", form=form)


@bp.route("/logout", methods=["POST"])
@allow(*ROLES)
def logout() -> Response:
    service.record_logout(current_user)
    logout_user()
    flash("You are logged out.", "info")
    return redirect(url_for("auth.login"))


@bp.route("/account/password", methods=["GET", "POST"])
@allow(*ROLES)
def change_password() -> str | Response:
    form = ChangePasswordForm()
    if form.validate_on_submit():
        try:
            service.change_password(current_user, form.current.data or "", form.new.data or "")
        except KMCError as refused:
            flash(refused.message, "danger")
        else:
            login_user(current_user)  # this session continues under the new nonce; others end
            flash("Password changed.", "success")
            return redirect(url_for("main.home"))
    return render_template("auth/change_password.html", form=form)
