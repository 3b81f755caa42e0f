"""Key-store pages: supply groups and keys, one key with its authorisations, approvals, expiry."""

from __future__ import annotations

from flask import Blueprint, flash, redirect, render_template, request, url_for
from werkzeug.wrappers import Response
from wtforms.fields.choices import SelectChoice

from kmc import clock
from kmc.access import allow, current_caller
from kmc.listing import ListRequest
from kmc.permissions import Caller, Permission
from kmc.web import HomeItem, HomePanel, attempt, flash_check_fields, list_at
from sm_registry import service as registry
from vending_keys import service
from vending_keys.domain import (
    KEY_TYPES,
    AuthorisationLimits,
    AuthorisationSpec,
    KeySpec,
    key_identity,
)
from vending_keys.forms import (
    ApprovalFilterForm,
    ApproveForm,
    AuthoriseForm,
    BulkAuthoriseForm,
    EditSupplyGroupForm,
    GenerateKeyForm,
    KeyStateForm,
    RejectForm,
    RevokeAuthorisationForm,
    SupplyGroupForm,
)

bp = Blueprint("keys", __name__, url_prefix="/keys")


EXPIRY_WINDOW_DAYS = 90


def approvals_waiting(caller: Caller) -> int:
    """The menu badge: proposals waiting for this caller as the second person."""
    return len(service.waiting_for(caller))


def home_panel(caller: Caller) -> HomePanel | None:
    if not caller.may(Permission.KEYS_READ):
        return None
    waiting = approvals_waiting(caller)
    soon = len(service.expiring(EXPIRY_WINDOW_DAYS))
    return HomePanel(
        "Vending keys",
        (
            HomeItem(
                "Approvals waiting for you",
                waiting,
                url_for("keys.approvals"),
                "warning" if waiting else "secondary",
            ),
            HomeItem(
                f"Keys and authorisations reaching a limit within {EXPIRY_WINDOW_DAYS} days",
                soon,
                url_for("keys.expiring", within=EXPIRY_WINDOW_DAYS),
                "warning" if soon else "secondary",
            ),
        ),
    )


def _flash_outcome(outcome: service.Outcome) -> None:
    if outcome.approval is not None and outcome.approval.state == "pending":
        flash(
            f"Proposal {outcome.approval.id} ({outcome.approval.subject}) recorded; "
            "another user must approve it.",
            "info",
        )
    elif outcome.key is not None:
        flash(f"Generated {service.identity_of(outcome.key)}; KCV {outcome.key.kcv}.", "success")
    elif outcome.authorisation is not None:
        flash(f"SM {outcome.authorisation.smid} authorised.", "success")


def _generate_form() -> GenerateKeyForm:
    form = GenerateKeyForm(prefix="key")
    form.sgc.choices = [
        SelectChoice(g.sgc, f"{g.sgc} {g.name}") for g in service.list_supply_groups()
    ]
    return form


def _keys_page(generate_form: GenerateKeyForm | None = None) -> str:
    """The key list with the generation form (re-rendered with its fields marked on an error)."""
    list_at("keys.index")
    return render_template(
        "keys/index.html",
        page=service.keys_page(current_caller(), ListRequest.from_args(request.args)),
        key_types=KEY_TYPES,
        generate_form=generate_form or _generate_form(),
    )


@bp.route("/")
@allow(Permission.KEYS_READ)
def index() -> str:
    return _keys_page()


def _groups_page(group_form: SupplyGroupForm | None = None) -> str:
    list_at("keys.supply_groups")
    return render_template(
        "keys/supply_groups.html",
        page=service.supply_groups_page(current_caller(), ListRequest.from_args(request.args)),
        group_form=group_form or SupplyGroupForm(prefix="group"),
    )


@bp.route("/supply-groups")
@allow(Permission.KEYS_READ)
def supply_groups() -> str:
    return _groups_page()


@bp.route("/supply-groups/<sgc>", methods=["GET", "POST"])
@allow(Permission.KEYS_READ)
def supply_group(sgc: str) -> str | Response:
    """One supply group with its keys; key managers edit its name, utility and cluster."""
    caller = current_caller()
    group = service.find_supply_group(sgc)
    # The service decides who may edit; the form is shown to those who may.
    form = EditSupplyGroupForm(obj=group if request.method == "GET" else None)
    if form.validate_on_submit():
        changed = attempt(
            lambda: service.update_supply_group(
                caller, sgc, form.name.data or "", form.utility.data or "", form.cluster.data or ""
            )
        )
        if changed is not None:
            flash(f"Supply group {changed.sgc} updated.", "success")
            return redirect(url_for("keys.supply_group", sgc=sgc))
    return render_template(
        "keys/supply_group.html",
        group=group,
        form=form if caller.may(Permission.KEYS_MANAGE) else None,
        key_types=KEY_TYPES,
    )


@bp.route("/authorisations")
@allow(Permission.KEYS_READ)
def authorisations() -> str:
    return render_template(
        "keys/authorisations.html",
        page=service.authorisations_page(current_caller(), ListRequest.from_args(request.args)),
    )


@bp.route("/supply-groups", methods=["POST"])
@allow(Permission.KEYS_MANAGE)
def add_supply_group() -> str | Response:
    form = SupplyGroupForm(prefix="group")
    if not form.validate_on_submit():
        flash_check_fields(form)
        return _groups_page(form)
    group = attempt(
        lambda: service.add_supply_group(
            current_caller(),
            form.sgc.data or "",
            form.name.data or "",
            form.utility.data or "",
            form.cluster.data or "",
        ),
        form,
    )
    if group is None:
        return _groups_page(form)
    flash(f"Supply group {group.sgc} added.", "success")
    return redirect(url_for("keys.supply_groups"))


@bp.route("/generate", methods=["POST"])
@allow(Permission.KEYS_MANAGE)
def generate() -> str | Response:
    form = _generate_form()
    if not form.validate_on_submit():
        flash_check_fields(form)
        return _keys_page(form)
    outcome = attempt(
        lambda: service.propose_key(
            current_caller(),
            KeySpec.from_input(
                sgc=form.sgc.data or "",
                krn=form.krn.data or 0,
                kt=int(form.kt.data or 0),
                dkga=form.dkga.data or "",
                eas=form.eas.data or (),
                base_date=int(form.base_date.data or 0),
                ken=form.ken.data if form.ken.data is not None else -1,
                act=form.act.data,
                exp=form.exp.data,
                refresh_days=form.refresh_days.data,
                now=clock.now(),
            ),
        ),
        form,
    )
    if outcome is None:
        return _keys_page(form)
    _flash_outcome(outcome)
    return redirect(url_for("keys.index"))


@bp.route("/<sgc>/<int:krn>/<int:kt>")
@allow(Permission.KEYS_READ)
def detail(sgc: str, krn: int, kt: int) -> str:
    return _detail_page(sgc, krn, kt)


def _detail_page(sgc: str, krn: int, kt: int, authorise_form: AuthoriseForm | None = None) -> str:
    """One key with its authorisations (the authorisation form re-rendered marked on an error)."""
    key = service.find_key(key_identity(sgc, krn, kt))
    return render_template(
        "keys/detail.html",
        key=key,
        identity=service.identity_of(key),
        info=service.describe_key(key),
        authorisations=[service.describe_authorisation(a) for a in key.authorisations],
        recipients=service.recipients_of(key),
        authorise_form=authorise_form or AuthoriseForm(),
        state_form=KeyStateForm(),
        revoke_form=RevokeAuthorisationForm(),
    )


@bp.route("/<sgc>/<int:krn>/<int:kt>/authorise", methods=["POST"])
@allow(Permission.KEYS_MANAGE)
def authorise(sgc: str, krn: int, kt: int) -> str | Response:
    form = AuthoriseForm()
    if not form.validate_on_submit():
        flash_check_fields(form)
        return _detail_page(sgc, krn, kt, form)
    outcome = attempt(
        lambda: service.propose_authorisation(
            current_caller(),
            AuthorisationSpec.from_input(
                sgc=sgc,
                krn=krn,
                kt=kt,
                smid=form.smid.data or "",
                iut=form.iut.data,
                clm=form.clm.data,
                resource_limit=form.resource_limit.data,
                expires=form.expires.data,
            ),
        ),
        form,
    )
    if outcome is None:
        return _detail_page(sgc, krn, kt, form)
    _flash_outcome(outcome)
    return redirect(url_for("keys.detail", sgc=sgc, krn=krn, kt=kt))


def _bulk_page(sgc: str, krn: int, kt: int, form: BulkAuthoriseForm | None = None) -> str:
    """The active SMs to choose from, a page at a time, with the limits form (re-rendered with
    its fields marked and its choices kept when the request was refused as a whole)."""
    key = service.find_key(key_identity(sgc, krn, kt))
    list_at("keys.authorise_many", sgc=sgc, krn=krn, kt=kt)
    return render_template(
        "keys/authorise_many.html",
        key=key,
        identity=service.identity_of(key),
        page=registry.sms_page(
            current_caller(),
            registry.SmFilter(state="active"),
            ListRequest.from_args(request.args),
        ),
        authorised={a.smid for a in key.authorisations},
        form=form or BulkAuthoriseForm(),
    )


@bp.route("/<sgc>/<int:krn>/<int:kt>/authorise-many")
@allow(Permission.KEYS_MANAGE)
def authorise_many(sgc: str, krn: int, kt: int) -> str:
    return _bulk_page(sgc, krn, kt)


@bp.route("/<sgc>/<int:krn>/<int:kt>/authorise-many", methods=["POST"])
@allow(Permission.KEYS_MANAGE)
def authorise_many_post(sgc: str, krn: int, kt: int) -> str:
    """Each selected SM's verdict on a page of its own, or the choice again with why nothing
    was authorised."""
    form = BulkAuthoriseForm()
    if not form.validate_on_submit():
        flash_check_fields(form)
        return _bulk_page(sgc, krn, kt, form)
    identity = key_identity(sgc, krn, kt)
    verdicts = attempt(
        lambda: service.authorise_many(
            current_caller(),
            identity,
            form.smid.data or [],
            AuthorisationLimits.from_input(
                iut=form.iut.data,
                clm=form.clm.data,
                resource_limit=form.resource_limit.data,
                expires=form.expires.data,
            ),
            form.reason.data or "",
        ),
        form,
    )
    if verdicts is None:
        return _bulk_page(sgc, krn, kt, form)
    counts = service.bulk_counts(verdicts)
    flash(
        ", ".join(f"{count} {result}" for result, count in counts.items()) + ".",
        "warning" if counts["refused"] else "success",
    )
    return render_template(
        "keys/authorised_many.html", identity=identity, verdicts=verdicts, counts=counts
    )


@bp.route("/<sgc>/<int:krn>/<int:kt>/authorisations/<smid>/revoke", methods=["POST"])
@allow(Permission.KEYS_MANAGE)
def revoke_authorisation(sgc: str, krn: int, kt: int, smid: str) -> Response:
    form = RevokeAuthorisationForm()
    if form.validate_on_submit():
        revoked = attempt(
            lambda: service.revoke_authorisation(
                current_caller(), key_identity(sgc, krn, kt), smid, form.reason.data or ""
            )
        )
        if revoked is not None:
            flash(
                f"SM {smid} is no longer authorised for {key_identity(sgc, krn, kt)}; "
                "no further EKLF carries the key to it.",
                "warning",
            )
    else:
        flash("Give a reason for revoking the authorisation.", "danger")
    return redirect(url_for("keys.detail", sgc=sgc, krn=krn, kt=kt))


@bp.route("/<sgc>/<int:krn>/<int:kt>/<any(deactivate, compromise):change>", methods=["POST"])
@allow(Permission.KEYS_MANAGE)
def change_state(sgc: str, krn: int, kt: int, change: str) -> Response:
    form = KeyStateForm()
    identity = key_identity(sgc, krn, kt)
    if (
        form.validate_on_submit()
        and change == "compromise"
        and (form.confirm.data or "").strip() != str(identity)
    ):
        flash(
            f"Marking {identity} compromised is irreversible (it is never loaded again and "
            f"every SM holding it is listed for re-keying): type {identity} to confirm.",
            "danger",
        )
    elif form.validate_on_submit():
        changed = attempt(
            lambda: service.change_key_state(
                current_caller(), key_identity(sgc, krn, kt), change, form.reason.data or ""
            )
        )
        if changed is not None:
            flash(f"{service.identity_of(changed.key)} is now {changed.key.state}.", "warning")
    else:
        flash("Give a reason.", "danger")
    return redirect(url_for("keys.detail", sgc=sgc, krn=krn, kt=kt))


@bp.route("/approvals")
@allow(Permission.KEYS_READ)
def approvals() -> str:
    where = ApprovalFilterForm(request.args)
    state = where.state.data if where.validate() else None  # an unknown state shows them all
    listed = service.approvals_page(current_caller(), state, ListRequest.from_args(request.args))
    return render_template(
        "keys/approvals.html",
        page=listed,
        approvals=[service.describe_approval(a) for a in listed.items],
        where=where,
        form=RejectForm(),
    )


@bp.route("/approvals/<int:approval_id>/<any(approve, reject):decision>", methods=["POST"])
@allow(Permission.KEYS_MANAGE)
def decide(approval_id: int, decision: str) -> Response:
    if decision == "reject":
        return _reject(approval_id)
    if ApproveForm().validate_on_submit():
        outcome = attempt(lambda: service.approve(current_caller(), approval_id))
        if outcome is not None:
            _flash_outcome(outcome)
    return redirect(url_for("keys.approvals"))


def _reject(approval_id: int) -> Response:
    form = RejectForm()
    if form.validate_on_submit():
        if attempt(lambda: service.reject(current_caller(), approval_id, form.reason.data or "")):
            flash(f"Proposal {approval_id} rejected.", "info")
    else:
        flash("Give a reason for the rejection (at most 500 characters).", "danger")
    return redirect(url_for("keys.approvals"))


@bp.route("/expiring")
@allow(Permission.KEYS_READ)
def expiring() -> str:
    within = request.args.get("within", default=90, type=int)
    within = max(0, min(within, service.MAX_WINDOW_DAYS))
    return render_template(
        "keys/expiring.html",
        within=within,
        warnings=service.expiring(within),
    )
