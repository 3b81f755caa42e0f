"""The landing page after login."""

from __future__ import annotations

from flask import Blueprint, redirect, render_template, url_for
from flask_login import current_user
from werkzeug.wrappers import Response

from kmc.access import PUBLIC, allow
from kmc.accounts.models import ROLES

bp = Blueprint("main", __name__)


@bp.route("/")
@allow(PUBLIC)
def index() -> Response:
    return redirect(url_for("main.home" if current_user.is_authenticated else "auth.login"))


@bp.route("/home")
@allow(*ROLES)
def home() -> str:
    return render_template("home.html")
