"""WTForms of the registry pages (each POST form carries Flask-WTF's CSRF token)."""

from __future__ import annotations

from flask_wtf import FlaskForm
from wtforms import (
    DateField,
    MultipleFileField,
    SelectField,
    SelectMultipleField,
    StringField,
    SubmitField,
)
from wtforms.fields.choices import SelectChoice
from wtforms.validators import DataRequired, Length, Optional

from kmc.web_forms import ValidText
from sm_registry.identifiers import KINDS
from sm_registry.models import SM_STATES
from sm_registry.service import BULK_ACTIONS, MAX_REASON, TRANSITIONS


class SmFilterForm(FlaskForm):
    class Meta:
        csrf = False  # a GET search form: it changes nothing

    id_man = StringField("ID_man", validators=[Optional(), Length(max=4)])
    smid = StringField("SMID", validators=[Optional(), Length(max=16)])
    state = SelectField(
        "State",
        choices=[SelectChoice("", "any"), *(SelectChoice(s, s) for s in SM_STATES)],
        validate_choice=False,  # SmFilter checks the state and names the allowed ones
    )
    since = DateField("Registered from", validators=[Optional()])
    until = DateField("Registered until", validators=[Optional()])
    submit = SubmitField("Filter")


class RegisterForm(FlaskForm):
    csrs = MultipleFileField(
        "CSR files (PEM or DER; one per SM)",
        description="One PKCS#10 request per SM: P-384 key, subject serialNumber = the SMID "
        "(OU, if present, = the ID_man).",
    )
    kind = SelectField(
        "Kind",
        choices=list(KINDS),
        description="Certified: an SM with a certification; virtual: a software SM, test KMCs only.",
    )
    model = StringField(
        "Certified model",
        validators=[ValidText(name=True), Optional(), Length(max=120)],
        description="Certified SMs: the model named on the certificate.",
    )
    firmware = StringField(
        "Firmware identifier",
        validators=[ValidText(name=True), Optional(), Length(max=120)],
    )
    version = StringField(
        "Firmware version", validators=[ValidText(name=True), Optional(), Length(max=60)]
    )
    number = StringField(
        "Certificate number",
        validators=[ValidText(name=True), Optional(), Length(max=120)],
        description="The certification body's reference for this model and firmware.",
    )
    id_man = StringField("Manufacturer ID_man (admins)", validators=[Optional(), Length(max=4)])
    submit = SubmitField("Register")


class StateChangeForm(FlaskForm):
    action = SelectField(
        "Action",
        choices=list(TRANSITIONS),
        description="Approve issues the SM its certificate; suspend and resume are reversible.",
    )
    reason = StringField(
        "Reason",
        validators=[ValidText(), DataRequired(), Length(max=MAX_REASON)],
        description="Kept in the SM's history and the audit log.",
    )
    confirm = StringField(
        "To revoke, type the SMID",
        validators=[Optional(), Length(max=40)],
        description="Revoking is irreversible: the SM gets no further key loads. "
        "Only needed for revoke.",
    )
    submit = SubmitField("Apply")


class BulkStateForm(FlaskForm):
    """The SM list's bulk action: the rows' checkboxes (`smid`), one action and one reason.
    Its own element ids, beside the list's filter form."""

    smid = SelectMultipleField("Selected SMs", validate_choice=False)  # the service checks each
    action = SelectField(
        "With the selected SMs",
        choices=list(BULK_ACTIONS),
        validate_choice=False,  # the service names the bulk actions
        id="bulk-action",
        description="Approve issues each pending SM its certificate; suspend stops key loads "
        "to each active SM until it is resumed.",
    )
    reason = StringField(
        "Reason",
        validators=[ValidText(), Length(max=MAX_REASON)],
        id="bulk-reason",
        description="One reason for every selected SM, kept in each SM's history and audit entry.",
    )
    submit = SubmitField("Apply to selected", id="bulk-submit")


class OnlineKeyloadForm(FlaskForm):
    """On the SM page beside the state form: its own element ids, so neither form's are doubled."""

    enabled = SelectField("Online key loading", choices=["on", "off"], id="online-enabled")
    reason = StringField(
        "Reason",
        validators=[ValidText(), DataRequired(), Length(max=MAX_REASON)],
        id="online-reason",
    )
    submit = SubmitField("Set", id="online-submit")


class ManufacturerForm(FlaskForm):
    refusal_fields = {
        "invalid_id_man": "id_man",
        "duplicate_id_man": "id_man",
        "bad_name": "name",
        "bad_contact": "contact",
    }
    id_man = StringField(
        "ID_man (4 hex digits)",
        validators=[DataRequired(), Length(max=4)],
        description="The manufacturer identifier its SMs are registered under; "
        "it cannot be changed later.",
    )
    name = StringField(
        "Name",
        validators=[ValidText(name=True), DataRequired(), Length(max=120)],
        description="The company name.",
    )
    contact = StringField(
        "Contact",
        validators=[ValidText(name=True), Optional(), Length(max=200)],
        description="Who to reach about its SMs (optional).",
    )
    submit = SubmitField("Create manufacturer")


class EditManufacturerForm(FlaskForm):
    """A manufacturer's name and contact; its ID_man is fixed (its SMIDs carry it)."""

    refusal_fields = ManufacturerForm.refusal_fields

    name = ManufacturerForm.name
    contact = ManufacturerForm.contact
    submit = SubmitField("Save changes")
