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


class RequestForm(FlaskForm):
    kind = HiddenField()
    name = StringField(_l("Server name"), validators=[DataRequired(_l("Enter a name for the server.")),
                                                      Length(max=200)])
    catalog_key = SelectField(_l("Size"), validate_choice=False)
    image_key = SelectField(_l("Image"), validate_choice=False)
    data_hall = SelectField(_l("Data hall"), validate_choice=False)
    submit = SubmitField(_l("Submit request"))


class RejectForm(FlaskForm):
    reason = StringField(_l("Reason for the requester"), validators=[
        DataRequired(_l("Give the requester a reason.")), Length(min=3, max=500)])
    submit = SubmitField(_l("Reject"))


class ResizeForm(FlaskForm):
    size = SelectField(_l("New size"))
    submit = SubmitField(_l("Resize"))


class TokenForm(FlaskForm):
    name = StringField(_l("What is the token for?"), validators=[DataRequired(_l("Give the token a name.")),
                                                                 Length(max=80)])
    submit = SubmitField(_l("Make a token"))
