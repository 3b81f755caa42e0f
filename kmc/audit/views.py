"""The auditor's view of the audit log: paged, filterable, exportable as JSON Lines."""

from __future__ import annotations

from flask import Blueprint, Response, current_app, render_template, request, stream_with_context

from kmc.access import allow
from kmc.audit import service
from kmc.audit.forms import AuditFilterForm
from kmc.permissions import Permission

bp = Blueprint("audit_ui", __name__, url_prefix="/audit")


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
    found = service.search(where, request.args.get("page", 1, type=int) or 1)
    args = {k: v for k, v in request.args.items() if k != "page"}
    return render_template(
        "audit/log.html",
        form=form,
        entries=found.entries,
        page=found.page,
        pages=found.pages,
        total=found.total,
        args=args,
    )


@bp.route("/export.jsonl")
@allow(Permission.AUDIT_READ)
def export() -> Response:
    return Response(
        stream_with_context(service.export_lines(current_app.config["KMC_MODE"])),
        mimetype="application/x-ndjson",
        headers={"Content-Disposition": "attachment; filename=kmc-audit.jsonl"},
    )
