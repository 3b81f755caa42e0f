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
from vending_keys.models import NAME_LENGTH, REASON_LENGTH


class SupplyGroupForm(FlaskForm):
    sgc = StringField("SGC (6 digits)", validators=[DataRequired(), Length(min=6, max=6)])
    name = StringField(
        "Name", validators=[ValidText(name=True), DataRequired(), Length(max=NAME_LENGTH)]
    )
    utility = StringField(
        "Owning utility", validators=[ValidText(name=True), Optional(), Length(max=NAME_LENGTH)]
    )
    cluster = StringField(
        "Cluster", validators=[ValidText(name=True), Optional(), Length(max=NAME_LENGTH)]
    )
    submit = SubmitField("Add supply group")


class EditSupplyGroupForm(FlaskForm):
    """The supply group's details; its SGC is fixed (keys and meters carry it)."""

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
    sgc = SelectField("Supply group", validators=[DataRequired()])
    # InputRequired, not DataRequired: DataRequired takes a 0 for missing (KEN 0 is valid).
    krn = IntegerField("KRN", validators=[InputRequired(), NumberRange(1, 9)])
    kt = SelectField(
        "Key type", choices=[SelectChoice(str(k), f"{k} {n}") for k, n in KEY_TYPES.items()]
    )
    dkga = SelectField("DKGA", choices=list(DKGAS), default="04")
    eas = SelectMultipleField("EAs", choices=list(EAS), default=["07"])
    base_date = SelectField("Base date", choices=["1993", "2014", "2035"], default="2014")
    ken = IntegerField("KEN", validators=[InputRequired(), NumberRange(0, 255)], default=255)
    act = StringField("ACT (ISO date/time, UTC; empty: now)", validators=[Optional()])
    exp = StringField("EXP (ISO date/time; empty: ACT + 10 years)", validators=[Optional()])
    refresh_days = IntegerField(
        "Refresh period (days)", validators=[Optional(), NumberRange(1, 3650)]
    )
    submit = SubmitField("Generate key")


class AuthoriseForm(FlaskForm):
    smid = StringField("SMID", validators=[DataRequired(), Length(max=16)])
    iut = StringField("IUT (empty: the key's EXP)", validators=[Optional()])
    clm = StringField("Credit limit (CLM)", validators=[Optional(), Length(max=40)])
    resource_limit = IntegerField(
        "Resource limit (units)", validators=[Optional(), NumberRange(min=0)]
    )
    expires = StringField("Authorisation expires (optional)", validators=[Optional()])
    submit = SubmitField("Authorise SM")


class KeyStateForm(FlaskForm):
    reason = StringField(
        "Reason", validators=[ValidText(), DataRequired(), Length(max=REASON_LENGTH)]
    )
    confirm = StringField("To mark compromised, type the key identity", validators=[Optional()])
    submit = SubmitField("Apply")


class ApproveForm(FlaskForm):
    submit = SubmitField("Approve")


class RejectForm(FlaskForm):
    reason = StringField(
        "Reason", validators=[ValidText(), DataRequired(), Length(max=REASON_LENGTH)]
    )
    submit = SubmitField("Reject")
