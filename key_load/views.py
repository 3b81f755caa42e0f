"""Key-load pages: upload a VKLOADREQ, see what was issued, download an issued EKLF."""

from __future__ import annotations

from flask import Blueprint, flash, redirect, render_template, request, url_for
from werkzeug.wrappers import Response

from key_load import service
from key_load.forms import UploadRequestForm
from key_load.http import eklf_response
from kmc.access import allow, current_caller
from kmc.listing import ListRequest
from kmc.permissions import Caller, Permission
from kmc.web import HomeItem, HomePanel, attempt, when

bp = Blueprint("keyload", __name__, url_prefix="/keyload")


def home_panel(caller: Caller) -> HomePanel | None:
    """The latest EKLFs issued and VKLOADREQs refused."""
    if not caller.may(Permission.KEYS_READ):
        return None
    issued = [
        HomeItem(
            f"EKLF #{i.sequence} to SM {i.smid}",
            when(i.issued_at),
            url_for("keyload.issue", issue_id=i.id),
        )
        for i in service.list_issues(limit=5)
    ]
    refused = [
        HomeItem(f"Refused request from SM {e.object_id}", when(e.at), None, "danger")
        for e in service.recent_refusals()
    ]
    return HomePanel("Recent key loads", issued + refused)


@bp.route("/")
@allow(Permission.KEYS_READ)
def index() -> str:
    return render_template(
        "keyload/index.html",
        form=UploadRequestForm(),
        page=service.issues_page(current_caller(), ListRequest.from_args(request.args)),
    )


@bp.route("/process", methods=["POST"])
@allow(Permission.KEYS_LOAD)
def process() -> Response:
    form = UploadRequestForm()
    if not form.validate_on_submit():
        flash("Choose a VKLOADREQ file to upload.", "danger")
        return redirect(url_for("keyload.index"))
    der = form.request_file.data.stream.read(service.MAX_REQUEST_SIZE + 1)
    # A refusal is flashed; the service has rolled back and audited it already.
    issued = attempt(lambda: service.process_request(current_caller(), der))
    if issued is None:
        return redirect(url_for("keyload.index"))
    flash(
        f"EKLF #{issued.sequence} issued to SM {issued.smid} with {len(issued.keys)} key(s).",
        "success",
    )
    return redirect(url_for("keyload.issue", issue_id=issued.issue_id))


@bp.route("/issues/<int:issue_id>")
@allow(Permission.KEYS_READ)
def issue(issue_id: int) -> str:
    record = service.find_issue(issue_id)
    return render_template("keyload/issue.html", issue=service.describe_issue(record))


@bp.route("/issues/<int:issue_id>/eklf")
@allow(Permission.KEYS_LOAD)
def download(issue_id: int) -> Response:
    record = service.find_issue(issue_id)
    return eklf_response(record.file_der, record.smid, record.sequence)
