"""The auditor's view of the audit log: paged, filterable, exportable as JSON Lines."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta

from flask import Blueprint, Response, current_app, render_template, request, stream_with_context
from sqlalchemy import Select, func, select

from kmc.access import allow
from kmc.audit.models import AuditEntry
from kmc.audit.service import export_lines
from kmc.database import db
from kmc.web.forms import AuditFilterForm

bp = Blueprint("audit_ui", __name__, url_prefix="/audit")
PAGE_SIZE = 50


def _filtered(form: AuditFilterForm) -> Select[tuple[AuditEntry]]:
    query = select(AuditEntry)
    for field in ("actor", "action", "object_type", "object_id"):
        value = getattr(form, field).data
        if value:
            query = query.where(getattr(AuditEntry, field) == value.strip())
    if form.since.data:
        query = query.where(AuditEntry.at >= datetime.combine(form.since.data, time(), UTC))
    if form.until.data:
        query = query.where(
            AuditEntry.at < datetime.combine(form.until.data, time(), UTC) + timedelta(days=1)
        )
    return query


@bp.route("/")
@allow("admin", "auditor")
def log() -> str:
    form = AuditFilterForm(request.args)
    page = max(request.args.get("page", 1, type=int) or 1, 1)
    query = _filtered(form) if form.validate() else select(AuditEntry)
    total = db.session.scalar(select(func.count()).select_from(query.subquery())) or 0
    entries = db.session.scalars(
        query.order_by(AuditEntry.seq.desc()).limit(PAGE_SIZE).offset((page - 1) * PAGE_SIZE)
    ).all()
    pages = max((total + PAGE_SIZE - 1) // PAGE_SIZE, 1)
    args = {k: v for k, v in request.args.items() if k != "page"}
    return render_template(
        "audit/log.html", form=form, entries=entries, page=page, pages=pages, total=total, args=args
    )


@bp.route("/export.jsonl")
@allow("admin", "auditor")
def export() -> Response:
    return Response(
        stream_with_context(export_lines(current_app.config["KMC_MODE"])),
        mimetype="application/x-ndjson",
        headers={"Content-Disposition": "attachment; filename=kmc-audit.jsonl"},
    )
