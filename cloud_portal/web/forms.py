"""Flask-WTF forms (every form carries a CSRF token)."""
from __future__ import annotations

from flask_babel import lazy_gettext as _l
from flask_wtf import FlaskForm
from wtforms import (
    BooleanField,
    DateField,
    EmailField,
    HiddenField,
    IntegerField,
    PasswordField,
    SelectChoice,
    SelectField,
    SelectMultipleField,
    StringField,
    SubmitField,
    TextAreaField,
)
from wtforms.validators import DataRequired, Email, InputRequired, Length, NumberRange, Optional
from wtforms.widgets import CheckboxInput, ListWidget


class SignInForm(FlaskForm):
    email = EmailField(_l("E-mail address"), validators=[DataRequired(_l("Enter your e-mail address.")),
                                                         Length(max=254)])
    #: Optional: left empty, an e-mail domain whose organisation has its own sign-in goes there.
    password = PasswordField(_l("Password"), validators=[Length(max=200)])
    next = HiddenField()
    submit = SubmitField(_l("Sign in"))


class SecondFactorForm(FlaskForm):
    code = StringField(_l("Code"), validators=[DataRequired(_l("Enter the code.")), Length(max=20)])
    submit = SubmitField(_l("Continue"))


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
    #: Tenant admins only: the e-mail address of the person it is for (blank: themselves).
    for_email = StringField(_l("For"), validators=[Length(max=254)])
    #: The last day it is needed (optional unless the tenant requires one for the size).
    expires_on = DateField(_l("Needed until"), validators=[Optional()])
    submit = SubmitField(_l("Submit request"))


class TransferForm(FlaskForm):
    to_email = StringField(_l("Give it to (e-mail address)"), validators=[
        DataRequired(_l("Enter the e-mail address of the person to give it to.")), Length(max=254)])
    submit = SubmitField(_l("Give it to them"))


class ScheduleForm(FlaskForm):
    """Office hours: days of the week, a stop time and a start time (either may be left empty)."""

    days = SelectMultipleField(_l("Days"), widget=ListWidget(prefix_label=False), option_widget=CheckboxInput(),
                               validate_choice=False)
    stop = StringField(_l("Stop at (HH:MM)"), validators=[
        Length(max=5, message=_l("Write each time as HH:MM, e.g. 07:30."))])
    start = StringField(_l("Start at (HH:MM)"), validators=[
        Length(max=5, message=_l("Write each time as HH:MM, e.g. 07:30."))])
    timezone = StringField(_l("Time zone"), default="Europe/London", validators=[
        Length(max=64, message=_l("Write a time zone such as Europe/London."))])
    submit = SubmitField(_l("Save office hours"))


class ExtendForm(FlaskForm):
    until = DateField(_l("Keep it until"), validators=[DataRequired(_l("Choose the last day it is needed."))])
    submit = SubmitField(_l("Extend"))


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
    scope = SelectField(_l("What may it do?"), choices=[SelectChoice("read", _l("Only read")),
                                                        SelectChoice("full", _l("Everything you may do"))],
                        default="full")
    days = IntegerField(_l("Days until it expires"), default=90,
                        validators=[DataRequired(_l("Say how many days the token should last.")),
                                    NumberRange(1, 365, _l("A token lasts 1 to 365 days."))])
    submit = SubmitField(_l("Make a token"))


#: Quota form fields: resource → label (with the unit the number is in).
QUOTA_FIELD_LABELS = {
    "instances": _l("Servers and desktops"),
    "vcpus": _l("vCPUs"),
    "ram_mib": _l("Memory (MiB)"),
    "disk_gb": _l("Disk (GB)"),
    "desktops": _l("Virtual desktops"),
}


def _whole(required: bool) -> list:
    first = InputRequired(_l("Enter a whole number.")) if required else Optional()
    return [first, NumberRange(min=0, max=10_000_000, message=_l("Enter a whole number from 0 to 10,000,000."))]


class LimitsForm(FlaskForm):
    """A tenant's limits: all five for the tenant, per-person ones optional (blank = no limit)."""

    tenant_instances = IntegerField(QUOTA_FIELD_LABELS["instances"], validators=_whole(True))
    tenant_vcpus = IntegerField(QUOTA_FIELD_LABELS["vcpus"], validators=_whole(True))
    tenant_ram_mib = IntegerField(QUOTA_FIELD_LABELS["ram_mib"], validators=_whole(True))
    tenant_disk_gb = IntegerField(QUOTA_FIELD_LABELS["disk_gb"], validators=_whole(True))
    tenant_desktops = IntegerField(QUOTA_FIELD_LABELS["desktops"], validators=_whole(True))
    user_instances = IntegerField(QUOTA_FIELD_LABELS["instances"], validators=_whole(False))
    user_vcpus = IntegerField(QUOTA_FIELD_LABELS["vcpus"], validators=_whole(False))
    user_ram_mib = IntegerField(QUOTA_FIELD_LABELS["ram_mib"], validators=_whole(False))
    user_disk_gb = IntegerField(QUOTA_FIELD_LABELS["disk_gb"], validators=_whole(False))
    user_desktops = IntegerField(QUOTA_FIELD_LABELS["desktops"], validators=_whole(False))
    confirm_below_usage = BooleanField(_l("Yes, set limits below what is in use now"))
    submit = SubmitField(_l("Save limits"))


class IncreaseForm(FlaskForm):
    """How much more of each resource a person asks for (blank = nothing more)."""

    instances = IntegerField(QUOTA_FIELD_LABELS["instances"], validators=_whole(False))
    vcpus = IntegerField(QUOTA_FIELD_LABELS["vcpus"], validators=_whole(False))
    ram_mib = IntegerField(QUOTA_FIELD_LABELS["ram_mib"], validators=_whole(False))
    disk_gb = IntegerField(QUOTA_FIELD_LABELS["disk_gb"], validators=_whole(False))
    desktops = IntegerField(QUOTA_FIELD_LABELS["desktops"], validators=_whole(False))
    reason = TextAreaField(_l("Why do you need more?"), validators=[
        DataRequired(_l("Say why you need more.")), Length(min=3, max=1000)])
    submit = SubmitField(_l("Ask for more"))


class DecideIncreaseForm(FlaskForm):
    reason = StringField(_l("Reason for the requester"), validators=[Length(max=500)])
    submit = SubmitField(_l("Decide"))
