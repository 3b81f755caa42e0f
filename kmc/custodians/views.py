"""The custodian page: the seal's state, a share's entry, sealing again."""

from __future__ import annotations

from flask import Blueprint, flash, redirect, render_template, url_for
from werkzeug.wrappers import Response

from kmc.access import allow, current_caller
from kmc.custodians import service
from kmc.custodians.forms import SealForm, ShareForm
from kmc.permissions import Permission
from kmc.web import attempt, flash_form_errors

bp = Blueprint("custodians", __name__, url_prefix="/custodians")


@bp.route("/")
@allow(Permission.MASTER_KEY_CUSTODY)
def index() -> str:
    return render_template(
        "custodians/index.html", progress=service.status(), form=ShareForm(), seal_form=SealForm()
    )


@bp.route("/share", methods=["POST"])
@allow(Permission.MASTER_KEY_CUSTODY)
def share() -> Response:
    form = ShareForm()
    if not form.validate_on_submit():
        flash_form_errors(form)
    else:
        progress = attempt(lambda: service.enter_share(current_caller(), form.share.data or ""))
        if progress is not None and progress.sealed:
            flash(f"Share accepted: {progress.entered} of {progress.threshold}.", "success")
        elif progress is not None:
            flash("Share accepted: the KMC is unsealed.", "success")
    return redirect(url_for("custodians.index"))


@bp.route("/seal", methods=["POST"])
@allow(Permission.MASTER_KEY_CUSTODY)
def seal() -> Response:
    form = SealForm()
    if not form.validate_on_submit():
        flash_form_errors(form)
    elif attempt(lambda: service.seal(current_caller())) is not None:
        flash("The KMC is sealed.", "success")
    return redirect(url_for("custodians.index"))
