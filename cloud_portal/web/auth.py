"""Signing in and out, and the language switch."""
from __future__ import annotations

from urllib.parse import urlsplit

from flask import Blueprint, current_app, flash, redirect, render_template, request, session, url_for
from flask_babel import gettext as _
from flask_login import current_user, login_required, login_user, logout_user

from cloud_portal.accounts import service as accounts
from cloud_portal.config import languages
from cloud_portal.errors import SignInThrottled
from cloud_portal.extensions import db
from cloud_portal.web.forms import LanguageForm, SignInForm

bp = Blueprint("auth", __name__)


def safe_next(target: str | None) -> str:
    """Only local paths are followed after sign-in (no open redirect)."""
    if target and target.startswith("/") and not target.startswith("//") and not urlsplit(target).netloc:
        return target
    return url_for("portal.home")


@bp.route("/sign-in", methods=["GET", "POST"])
def sign_in():
    if current_user.is_authenticated:
        return redirect(url_for("portal.home"))
    form = SignInForm()
    if request.method == "GET":
        form.next.data = request.args.get("next", "")
    status = 200
    if form.validate_on_submit():
        try:
            user = accounts.authenticate(
                form.email.data or "", form.password.data or "", request.remote_addr or "unknown",
                max_failures=int(current_app.config["SIGNIN_MAX_FAILURES"]),
                window_seconds=int(current_app.config["SIGNIN_WINDOW_SECONDS"]))
        except SignInThrottled as exc:
            db.session.rollback()
            flash(_("Too many failed sign-in attempts. Wait %(minutes)s minutes and try again, or ask "
                    "your administrator to reset your password.",
                    minutes=max(1, exc.retry_after_seconds // 60)), "error")
            return render_template("auth/sign_in.html", form=form), 429
        db.session.commit()
        if user is None:
            flash(_("The e-mail address or password is not right, or the account is disabled."), "error")
            status = 401
        else:
            lang = session.get("lang")
            session.clear()  # a fresh session on sign-in (no fixation); keep only the language
            login_user(user)
            session.permanent = True
            if lang:
                session["lang"] = lang
            return redirect(safe_next(form.next.data))
    elif request.method == "POST":
        status = 400
    return render_template("auth/sign_in.html", form=form), status


@bp.route("/sign-out", methods=["POST"])
@login_required
def sign_out():
    lang = session.get("lang")
    logout_user()
    session.clear()
    if lang:
        session["lang"] = lang
    flash(_("You have signed out."), "info")
    return redirect(url_for("auth.sign_in"))


@bp.route("/language", methods=["POST"])
def set_language():
    form = LanguageForm()
    if form.validate_on_submit() and form.lang.data in languages():
        session["lang"] = form.lang.data
    return redirect(safe_next(form.next.data))
