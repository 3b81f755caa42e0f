"""WTForms of the key-store pages (each carries Flask-WTF's CSRF token)."""

from __future__ import annotations

from flask_wtf import FlaskForm
from wtforms import (
    IntegerField,
    SelectField,
    SelectMultipleField,
    StringField,
    SubmitField,
)
from wtforms.fields.choices import SelectChoice
from wtforms.validators import DataRequired, InputRequired, Length, NumberRange, Optional

from kmc.web_forms import ValidText
from vending_keys.domain import DKGAS, EAS, KEY_TYPES
from vending_keys.models import APPROVAL_STATES, NAME_LENGTH, REASON_LENGTH


class SupplyGroupForm(FlaskForm):
    refusal_fields = {
        "invalid_sgc": "sgc",
        "duplicate_sgc": "sgc",
        "invalid_name": "name",
        "invalid_utility": "utility",
        "invalid_cluster": "cluster",
    }
    sgc = StringField(
        "SGC (6 digits)",
        validators=[DataRequired(), Length(min=6, max=6)],
        description="Supply group code: the six digits every meter of the group carries. "
        "It cannot be changed later.",
    )
    name = StringField(
        "Name",
        validators=[ValidText(name=True), DataRequired(), Length(max=NAME_LENGTH)],
        description="What people call the group, e.g. the area it supplies.",
    )
    utility = StringField(
        "Owning utility",
        validators=[ValidText(name=True), Optional(), Length(max=NAME_LENGTH)],
        description="The utility that owns the keys of this group (optional).",
    )
    cluster = StringField(
        "Cluster",
        validators=[ValidText(name=True), Optional(), Length(max=NAME_LENGTH)],
        description="A free label to group supply groups (optional).",
    )
    submit = SubmitField("Add supply group")


class EditSupplyGroupForm(FlaskForm):
    """The supply group's details; its SGC is fixed (keys and meters carry it)."""

    refusal_fields = SupplyGroupForm.refusal_fields

    name = SupplyGroupForm.name
    utility = SupplyGroupForm.utility
    cluster = SupplyGroupForm.cluster
    submit = SubmitField("Save changes")


class RevokeAuthorisationForm(FlaskForm):
    reason = StringField(
        "Reason for revoking",
        validators=[ValidText(), DataRequired(), Length(max=REASON_LENGTH)],
        description="Kept in the audit log with the authorisation's limits.",
    )
    submit = SubmitField("Revoke")


class GenerateKeyForm(FlaskForm):
    refusal_fields = {
        "invalid_sgc": "sgc",
        "unknown_sgc": "sgc",
        "invalid_krn": "krn",
        "duplicate_key": "krn",
        "invalid_kt": "kt",
        "invalid_key_type": "kt",
        "invalid_dkga": "dkga",
        "invalid_ea": "eas",
        "invalid_base_date": "base_date",
        "invalid_ken": "ken",
        "invalid_time:act": "act",
        "invalid_time:exp": "exp",
        "invalid_validity": "exp",
        "invalid_refresh": "refresh_days",
    }
    sgc = SelectField(
        "Supply group",
        validators=[DataRequired()],
        description="The group whose meters will use this key.",
    )
    # InputRequired, not DataRequired: DataRequired takes a 0 for missing (KEN 0 is valid).
    krn = IntegerField(
        "KRN",
        validators=[InputRequired(), NumberRange(1, 9)],
        description="Key revision number, 1 to 9: which revision of the group's key this is.",
    )
    kt = SelectField(
        "Key type",
        choices=[SelectChoice(str(k), f"{k} {n}") for k, n in KEY_TYPES.items()],
        description="1 VDDK default key, 2 VUDK unique per meter, 3 VCDK common key.",
    )
    dkga = SelectField(
        "DKGA",
        choices=list(DKGAS),
        default="04",
        description="Decoder key generation algorithm the meters use (02 or 04).",
    )
    eas = SelectMultipleField(
        "EAs",
        choices=list(EAS),
        default=["07"],
        description="Encryption algorithms the key may be used with (EA 11 needs DKGA 04).",
    )
    base_date = SelectField(
        "Base date",
        choices=["1993", "2014", "2035"],
        default="2014",
        description="The year token identifiers count from; it must match the meters'.",
    )
    ken = IntegerField(
        "KEN",
        validators=[InputRequired(), NumberRange(0, 255)],
        default=255,
        description="Key expiry number, 0 to 255, as carried in tokens.",
    )
    act = StringField(
        "ACT (ISO date/time, UTC; empty: now)",
        validators=[Optional()],
        description="When the key becomes active, e.g. 2027-01-01T00:00Z.",
    )
    exp = StringField(
        "EXP (ISO date/time; empty: ACT + 10 years)",
        validators=[Optional()],
        description="When the key expires; after it no SM may use it.",
    )
    refresh_days = IntegerField(
        "Refresh period (days)",
        validators=[Optional(), NumberRange(1, 3650)],
        description="How often SMs must fetch the key again (optional).",
    )
    submit = SubmitField("Generate key")


class AuthoriseForm(FlaskForm):
    refusal_fields = {
        "invalid_smid": "smid",
        "unknown_smid": "smid",
        "sm_not_active": "smid",
        "sm_virtual": "smid",
        "duplicate_authorisation": "smid",
        "invalid_iut": "iut",
        "invalid_time:iut": "iut",
        "invalid_clm": "clm",
        "invalid_resource_limit": "resource_limit",
        "invalid_time:expires_at": "expires",
    }
    smid = StringField(
        "SMID",
        validators=[DataRequired(), Length(max=16)],
        description="The security module that may receive this key; it must be active.",
    )
    iut = StringField(
        "IUT (empty: the key's EXP)",
        validators=[Optional()],
        description="Issue-until time: the SM must not use the key after it (ISO date/time).",
    )
    clm = StringField(
        "Credit limit (CLM)",
        validators=[Optional(), Length(max=40)],
        description="The most credit the SM may issue with this key, a decimal amount.",
    )
    resource_limit = IntegerField(
        "Resource limit (units)",
        validators=[Optional(), NumberRange(min=0)],
        description="The most units (e.g. kWh) the SM may issue with this key.",
    )
    expires = StringField(
        "Authorisation expires (optional)",
        validators=[Optional()],
        description="When this authorisation itself ends (ISO date/time).",
    )
    submit = SubmitField("Authorise SM")


class BulkAuthoriseForm(FlaskForm):
    """The key's bulk authorisation: the listed SMs' checkboxes (`smid`), the single
    authorisation's limits, once for all of them, and one reason."""

    refusal_fields = {
        name: field for name, field in AuthoriseForm.refusal_fields.items() if field != "smid"
    } | {"bad_selection": "smid", "reason_required": "reason", "reason_too_long": "reason"}

    smid = SelectMultipleField("Selected SMs", validate_choice=False)  # the service checks each
    iut = AuthoriseForm.iut
    clm = AuthoriseForm.clm
    resource_limit = AuthoriseForm.resource_limit
    expires = AuthoriseForm.expires
    reason = StringField(
        "Reason",
        validators=[ValidText(), DataRequired(), Length(max=REASON_LENGTH)],
        description="One reason for every selected SM, kept in each authorisation's audit entry "
        "(in live mode, in each proposal's).",
    )
    submit = SubmitField("Authorise the selected SMs", id="bulk-authorise-submit")


class KeyStateForm(FlaskForm):
    reason = StringField(
        "Reason", validators=[ValidText(), DataRequired(), Length(max=REASON_LENGTH)]
    )
    confirm = StringField("To mark compromised, type the key identity", validators=[Optional()])
    submit = SubmitField("Apply")


class ApprovalFilterForm(FlaskForm):
    class Meta:
        csrf = False  # a GET search form: it changes nothing

    state = SelectField(
        "State",
        choices=[SelectChoice("", "any"), *(SelectChoice(s, s) for s in APPROVAL_STATES)],
        validators=[Optional()],
    )


class ApproveForm(FlaskForm):
    submit = SubmitField("Approve")


class RejectForm(FlaskForm):
    reason = StringField(
        "Reason", validators=[ValidText(), DataRequired(), Length(max=REASON_LENGTH)]
    )
    submit = SubmitField("Reject")
