"""The VKLOADREQ upload form (with Flask-WTF's CSRF token)."""

from __future__ import annotations

from flask_wtf import FlaskForm
from flask_wtf.file import FileField, FileRequired
from wtforms import SubmitField


class UploadRequestForm(FlaskForm):
    request_file = FileField("VKLOADREQ file (DER)", validators=[FileRequired()])
    submit = SubmitField("Process request")
