"""Flask-WTF forms (every form carries a CSRF token)."""
from __future__ import annotations

from flask_babel import lazy_gettext as _l
from flask_wtf import FlaskForm
from wtforms import EmailField, HiddenField, PasswordField, SelectField, StringField, SubmitField
from wtforms.validators import DataRequired, Email, Length


class SignInForm(FlaskForm):
    email = EmailField(_l("E-mail address"), validators=[DataRequired(_l("Enter your e-mail address.")),
                                                         Length(max=254)])
    password = PasswordField(_l("Password"), validators=[DataRequired(_l("Enter your password.")),
                                                         Length(max=200)])
    next = HiddenField()
    submit = SubmitField(_l("Sign in"))


class LanguageForm(FlaskForm):
    lang = HiddenField(validators=[DataRequired()])
    next = HiddenField()


class AddUserForm(FlaskForm):
    email = EmailField(_l("E-mail address"), validators=[
        DataRequired(_l("Enter an e-mail address.")), Email(_l("Enter a valid e-mail address.")),
        Length(max=254)])
    display_name = StringField(_l("Full name"), validators=[DataRequired(_l("Enter the person's name.")),
                                                            Length(max=120)])
    tenant = SelectField(_l("Organisation"), coerce=int)
    role = SelectField(_l("Role"))
    submit = SubmitField(_l("Add person"))


class SetRoleForm(FlaskForm):
    role = SelectField(_l("Role"))
    submit = SubmitField(_l("Change role"))


class ConfirmForm(FlaskForm):
    """A button that changes something: only the CSRF token is needed."""

    submit = SubmitField()
