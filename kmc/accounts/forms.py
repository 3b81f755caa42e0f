"""WTForms for the account pages (each form carries Flask-WTF's CSRF token)."""

from __future__ import annotations

from flask_wtf import FlaskForm
from wtforms import PasswordField, SelectField, StringField, SubmitField
from wtforms.validators import DataRequired, EqualTo, Length, Optional

from kmc.accounts.service import MIN_PASSWORD_LENGTH
from kmc.permissions import ROLES
from kmc.web_forms import ValidText


class LoginForm(FlaskForm):
    username = StringField(
        "Username", validators=[ValidText(name=True), DataRequired(), Length(max=64)]
    )
    password = PasswordField("Password", validators=[DataRequired(), Length(max=256)])
    submit = SubmitField("Log in")


class ChangePasswordForm(FlaskForm):
    current = PasswordField("Current password", validators=[DataRequired()])
    new = PasswordField(
        "New password", validators=[DataRequired(), Length(min=MIN_PASSWORD_LENGTH, max=256)]
    )
    confirm = PasswordField(
        "Repeat new password", validators=[EqualTo("new", message="passwords differ")]
    )
    submit = SubmitField("Change password")


class CreateUserForm(FlaskForm):
    username = StringField(
        "Username", validators=[ValidText(name=True), DataRequired(), Length(max=64)]
    )
    role = SelectField("Role", choices=list(ROLES))
    id_man = StringField("ID_man (manufacturer accounts)", validators=[Optional(), Length(max=4)])
    password = PasswordField(
        "Initial password", validators=[DataRequired(), Length(min=MIN_PASSWORD_LENGTH)]
    )
    submit = SubmitField("Create user")


class ToggleUserForm(FlaskForm):
    submit = SubmitField()


class RoleForm(FlaskForm):
    """A user row's role change on the users page (its fields get per-row ids there)."""

    role = SelectField("Role", choices=list(ROLES))
    id_man = StringField("ID_man (manufacturer accounts)", validators=[Optional(), Length(max=4)])
    submit = SubmitField("Change role")


class CreateTokenForm(FlaskForm):
    username = StringField(
        "For user", validators=[ValidText(name=True), DataRequired(), Length(max=64)]
    )
    name = StringField(
        "Token name", validators=[ValidText(name=True), DataRequired(), Length(max=80)]
    )
    submit = SubmitField("Create token")


class RevokeTokenForm(FlaskForm):
    submit = SubmitField("Revoke")
