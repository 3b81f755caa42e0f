"""The audit log's search form."""

from __future__ import annotations

from flask_wtf import FlaskForm
from wtforms import DateField, StringField, SubmitField
from wtforms.validators import Length, Optional


class AuditFilterForm(FlaskForm):
    class Meta:
        csrf = False  # a GET search form: it changes nothing

    actor = StringField("Actor", validators=[Optional(), Length(max=120)])
    action = StringField("Action", validators=[Optional(), Length(max=80)])
    object_type = StringField("Object type", validators=[Optional(), Length(max=40)])
    object_id = StringField("Object id", validators=[Optional(), Length(max=120)])
    since = DateField("From", validators=[Optional()])
    until = DateField("Until", validators=[Optional()])
    submit = SubmitField("Filter")
