"""The custodian page's forms (each carries Flask-WTF's CSRF token)."""

from __future__ import annotations

from flask_wtf import FlaskForm
from wtforms import SubmitField, TextAreaField
from wtforms.validators import DataRequired, Length


class ShareForm(FlaskForm):
    share = TextAreaField(
        "Your share (its words)",
        validators=[DataRequired(), Length(max=1000)],
        render_kw={"autocomplete": "off", "spellcheck": "false", "rows": 3},
    )
    submit = SubmitField("Enter share")


class SealForm(FlaskForm):
    submit = SubmitField("Seal the KMC")
