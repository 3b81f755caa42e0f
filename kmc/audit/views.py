"""The auditor's view of the audit log: paged, filterable, exportable as JSON Lines."""

from __future__ import annotations

from flask import (
    Blueprint,
    Response,
    current_app,
    render_template,
    request,
    stream_with_context,
    url_for,
)

from kmc.access import allow
from kmc.audit import service
from kmc.audit.forms import AuditFilterForm
from kmc.audit.labels import action_label
from kmc.listing import ListRequest
from kmc.permissions import Caller, Permission
from kmc.web import HomeItem, HomePanel, when

bp = Blueprint("audit_ui", __name__, url_prefix="/audit")
bp.add_app_template_filter(action_label, "action_label")


def home_panel(caller: Caller) -> HomePanel | None:
    """The audit chain's newest signed checkpoint (what an auditor verifies against)."""
    if not caller.may(Permission.AUDIT_READ):
        return None
    latest = service.latest_checkpoint()
    item = (
        HomeItem(
            f"Last signed checkpoint: entry {latest.seq}", when(latest.at), url_for("audit_ui.log")
        )
        if latest is not None
        else HomeItem("No checkpoint signed yet", "none", url_for("audit_ui.log"), "warning")
    )
    return HomePanel("Audit log", (item,))


@bp.route("/")
@allow(Permission.AUDIT_READ)
def log() -> str:
    form = AuditFilterForm(request.args)
    where = (
        service.AuditQuery(
            **{name: form[name].data for name in ("actor", "action", "object_type", "object_id")},
            since=form.since.data,
            until=form.until.data,
        )
        if form.validate()
        else service.AuditQuery()
    )
    found = service.search(where, ListRequest.from_args(request.args))
    return render_template("audit/log.html", form=form, page=found)


@bp.route("/export.jsonl")
@allow(Permission.AUDIT_READ)
def export() -> Response:
    return Response(
        stream_with_context(service.export_lines(current_app.config["KMC_MODE"])),
        mimetype="application/x-ndjson",
        headers={"Content-Disposition": "attachment; filename=kmc-audit.jsonl"},
    )
