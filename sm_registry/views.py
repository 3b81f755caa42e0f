"""Registry pages: the SM list (auditor inspection and signed exports), SM detail and lifecycle,
registration uploads for manufacturers, and manufacturers for admins."""

from __future__ import annotations

import io
import zipfile

from cryptography.hazmat.primitives import hashes, serialization
from flask import Blueprint, flash, redirect, render_template, request, url_for
from werkzeug.datastructures import FileStorage
from werkzeug.wrappers import Response

from kmc.access import allow, current_caller
from kmc.errors import InvalidInput
from kmc.listing import ListRequest, Page
from kmc.permissions import Caller, Permission
from kmc.web import (
    CERTIFICATE_FILES,
    HomeItem,
    HomePanel,
    attempt,
    flash_form_errors,
    same_site_path,
)
from sm_registry import service
from sm_registry.bulk import Item, named_item
from sm_registry.csr import MAX_CSR_BYTES
from sm_registry.forms import (
    BulkStateForm,
    EditManufacturerForm,
    ManufacturerForm,
    OnlineKeyloadForm,
    RegisterForm,
    SmFilterForm,
    StateChangeForm,
)
from sm_registry.identifiers import CertificationReference

bp = Blueprint("registry", __name__, url_prefix="/registry")


def home_panel(caller: Caller) -> HomePanel | None:
    """The SMs the caller sees, by state; pending ones are what operators act on."""
    counts = service.count_by_state(caller)
    acting = caller.may(Permission.SMS_CHANGE_STATE) and not caller.is_manufacturer
    items = [
        HomeItem(
            f"SMs {state}",
            counts.get(state, 0),
            url_for("registry.sms", state=state),
            "warning" if state == "pending" and acting and counts.get(state) else "secondary",
        )
        for state in ("pending", "active", "suspended", "revoked")
    ]
    return HomePanel("Security modules", items)


def _filter(form: SmFilterForm) -> service.SmFilter:
    if not form.validate():
        raise InvalidInput(
            "bad_filter", "the filter is not valid; check ID_man, SMID, state and dates"
        )
    return service.SmFilter(
        form.id_man.data or None,
        form.smid.data or None,
        form.state.data or None,
        form.since.data,
        form.until.data,
    )


@bp.route("/")
@allow(Permission.REGISTRY_READ)
def sms() -> str:
    form = SmFilterForm(request.args)
    asked = ListRequest.from_args(request.args)
    where = attempt(lambda: _filter(form))
    listed = (
        service.sms_page(current_caller(), where, asked)
        if where is not None
        else Page([], 0, asked)  # a filter that is not valid matches nothing, and says why
    )
    return render_template(
        "registry/sms.html",
        form=form,
        page=listed,
        args=(where or service.SmFilter()).as_dict(),
        caller=current_caller(),
        bulk=BulkStateForm() if _may_bulk(current_caller()) else None,
    )


def _may_bulk(caller: Caller) -> bool:
    """Who is offered the bulk form (the service decides who may use it)."""
    return caller.may(Permission.SMS_CHANGE_STATE) and not caller.is_manufacturer


@bp.route("/sms/bulk", methods=["POST"])
@allow(Permission.SMS_CHANGE_STATE)
def bulk_change() -> str | Response:
    """The selected SMs' verdicts on a page of their own, or the list with why nothing changed."""
    form = BulkStateForm()
    action = form.action.data or ""
    verdicts = (
        attempt(
            lambda: service.change_states(
                current_caller(), form.smid.data or [], action, form.reason.data or ""
            )
        )
        if form.validate_on_submit()
        else None
    )
    if verdicts is None:
        if form.errors:
            flash_form_errors(form)
        return redirect(same_site_path(request.referrer) or url_for("registry.sms"))
    done = sum(v.accepted for v in verdicts)
    flash(
        f"{done} {service.BULK_ACTIONS[action]}, {len(verdicts) - done} refused.",
        "success" if done == len(verdicts) else "warning",
    )
    return render_template("registry/bulk.html", verdicts=verdicts, action=action)


@bp.route("/export.<any(csv, json):fmt>.zip")
@allow(Permission.REGISTRY_READ)
def export(fmt: str) -> Response:
    return _zipped(
        service.export_registry(current_caller(), fmt, _filter(SmFilterForm(request.args)))
    )


def _zipped(signed: service.SignedExport) -> Response:
    """The export and its `.sig` in one zip: a browser download carries one file."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr(signed.filename, signed.content)
        archive.writestr(signed.filename + ".sig", signed.signature)
    return Response(
        buffer.getvalue(),
        mimetype="application/zip",
        headers={"Content-Disposition": f"attachment; filename={signed.filename}.zip"},
    )


@bp.route("/manufacturers/<id_man>/inspection")
@allow(Permission.REGISTRY_INSPECT)
def inspection(id_man: str) -> str:
    """The auditor's printable inspection report of one manufacturer."""
    report = service.inspection_report(current_caller(), id_man, request.args.get("as_of"))
    signer = report.signer
    return render_template(
        "registry/inspection.html",
        report=report,
        files=CERTIFICATE_FILES,
        signer_sha256=signer.fingerprint(hashes.SHA256()).hex(),
    )


@bp.route("/manufacturers/<id_man>/inspection.json.zip")
@allow(Permission.REGISTRY_INSPECT)
def inspection_export(id_man: str) -> Response:
    """The report's signed export (the same bytes for the same `as_of`)."""
    return _zipped(
        service.inspection_export(current_caller(), id_man, request.args.get("as_of", ""))
    )


@bp.route("/sms/<smid>")
@allow(Permission.REGISTRY_READ)
def sm(smid: str) -> str:
    caller = current_caller()
    found = service.get_sm(caller, smid)
    form = StateChangeForm()
    if caller.is_manufacturer:
        form.action.choices = list(service.MANUFACTURER_ACTIONS)
    online = OnlineKeyloadForm(enabled="off" if found.online_keyload else "on")
    return render_template(
        "registry/sm.html",
        sm=found,
        certification=service.certification_of(found),
        form=form if caller.role in ("admin", "operator", "manufacturer") else None,
        online_form=online if caller.may(Permission.SMS_ONLINE_KEYLOAD) else None,
    )


@bp.route("/sms/<smid>/online-keyload", methods=["POST"])
@allow(Permission.SMS_ONLINE_KEYLOAD)
def online_keyload(smid: str) -> Response:
    form = OnlineKeyloadForm()
    if form.validate_on_submit():
        changed = attempt(
            lambda: service.set_online_keyload(
                current_caller(), smid, form.enabled.data == "on", form.reason.data or ""
            )
        )
        if changed is not None:
            state = "on" if changed.online_keyload else "off"
            flash(f"Online key loading for SM {changed.smid} is now {state}.", "success")
    else:
        flash("choose on or off and give a reason", "danger")
    return redirect(url_for("registry.sm", smid=smid))


@bp.route("/sms/<smid>/change", methods=["POST"])
@allow(Permission.SMS_CHANGE_STATE)
def change_state(smid: str) -> Response:
    form = StateChangeForm()
    if (
        form.validate_on_submit()
        and form.action.data == "revoke"
        and ((form.confirm.data or "").strip() != smid)
    ):
        flash(
            f"Revoking SM {smid} is irreversible (it gets no further key loads): "
            "type its SMID to confirm.",
            "danger",
        )
    elif form.validate_on_submit():
        changed = attempt(
            lambda: service.change_state(
                current_caller(), smid, form.action.data or "", form.reason.data or ""
            )
        )
        if changed is not None:
            flash(f"SM {changed.smid} is now {changed.state}.", "success")
    else:
        flash("choose an action and give a reason", "danger")
    return redirect(url_for("registry.sm", smid=smid))


@bp.route("/sms/<smid>/certificate.pem")
@allow(Permission.REGISTRY_READ)
def certificate(smid: str) -> Response:
    """The SM certificate followed by the SM issuing CA (what `sm-emulator install-cert` and
    `openssl verify -untrusted` take); `?leaf=1` for the SM certificate alone."""
    chain = service.certificate_chain(smid, current_caller())
    leaf = request.args.get("leaf") == "1"
    return Response(
        chain.certificate.public_bytes(serialization.Encoding.PEM) if leaf else chain.pem(),
        mimetype="application/x-pem-file",
        headers={
            "Content-Disposition": f"attachment; filename=sm-{smid}{'-leaf' if leaf else ''}.pem"
        },
    )


def _uploads(files: list[FileStorage]) -> list[Item]:
    return [named_item(f.filename, f.stream.read(MAX_CSR_BYTES + 1)) for f in files if f.filename]


def _register(form: RegisterForm, items: list[Item]) -> list[service.ItemResult]:
    if not items:
        raise InvalidInput("no_files", "choose at least one CSR file")
    certification = None
    if any((form.model.data, form.firmware.data, form.version.data, form.number.data)):
        certification = CertificationReference(
            model=(form.model.data or "").strip(),
            firmware=(form.firmware.data or "").strip(),
            version=(form.version.data or "").strip(),
            number=(form.number.data or "").strip(),
        )
    return list(
        service.register_many(
            current_caller(), items, form.kind.data or "", certification, form.id_man.data or None
        )
    )


@bp.route("/register", methods=["GET", "POST"])
@allow(Permission.SMS_REGISTER)
def register() -> str:
    form = RegisterForm()
    results: list[service.ItemResult] = []
    if form.validate_on_submit():
        items = _uploads(request.files.getlist(form.csrs.name))
        registered = attempt(lambda: _register(form, items))
        if registered is not None:
            results = registered
            accepted = sum(r.accepted for r in results)
            flash(
                f"{accepted} accepted, {len(results) - accepted} refused.",
                "success" if accepted == len(results) else "warning",
            )
    return render_template(
        "registry/register.html", form=form, results=results, caller=current_caller()
    )


@bp.route("/manufacturers", methods=["GET", "POST"])
@allow(Permission.MANUFACTURERS_READ)
def manufacturers() -> str | Response:
    caller = current_caller()
    form = ManufacturerForm() if caller.role == "admin" else None
    if form is not None and form.validate_on_submit():
        made = attempt(
            lambda: service.create_manufacturer(
                current_caller(),
                form.id_man.data or "",
                form.name.data or "",
                form.contact.data or "",
            )
        )
        if made is not None:
            flash(f"Manufacturer {made.id_man} created.", "success")
            return redirect(url_for("registry.manufacturers"))
    return render_template(
        "registry/manufacturers.html",
        form=form,
        page=service.manufacturers_page(caller, ListRequest.from_args(request.args)),
    )


@bp.route("/manufacturers/<id_man>", methods=["GET", "POST"])
@allow(Permission.MANUFACTURERS_READ)
def manufacturer(id_man: str) -> str | Response:
    """One manufacturer, its SM counts, and (for admins) its editable name and contact."""
    caller = current_caller()
    found = service.get_manufacturer(caller, id_man)
    # The service decides who may edit; the form is shown to those who may.
    form = EditManufacturerForm(obj=found if request.method == "GET" else None)
    if form.validate_on_submit():
        changed = attempt(
            lambda: service.update_manufacturer(
                caller, found.id_man, form.name.data or "", form.contact.data or ""
            )
        )
        if changed is not None:
            flash(f"Manufacturer {changed.id_man} updated.", "success")
            return redirect(url_for("registry.manufacturer", id_man=changed.id_man))
    return render_template(
        "registry/manufacturer.html",
        manufacturer=found,
        counts=service.count_by_state(caller, id_man=found.id_man),
        form=form if caller.may(Permission.MANUFACTURERS_MANAGE) else None,
        inspect=caller.may(Permission.REGISTRY_INSPECT),
    )
