"""Signing in and out, and the language switch."""
from __future__ import annotations

from datetime import timedelta
from urllib.parse import urlsplit

from flask import (
    Blueprint,
    abort,
    current_app,
    flash,
    g,
    make_response,
    redirect,
    render_template,
    request,
    session,
    url_for,
)
from flask_babel import get_locale
from flask_babel import gettext as _
from flask_login import current_user, login_required, login_user, logout_user

from cloud_portal.accounts import service as accounts
from cloud_portal.accounts import sso, two_factor
from cloud_portal.accounts.models import User
from cloud_portal.config import languages
from cloud_portal.errors import OrganisationInactive, PortalError, SignInThrottled
from cloud_portal.extensions import db
from cloud_portal.timeutil import utcnow
from cloud_portal.web.forms import ConfirmForm, LanguageForm, SecondFactorForm, SignInForm

bp = Blueprint("auth", __name__)


def safe_next(target: str | None) -> str:
    """Only local paths are followed after sign-in (no open redirect)."""
    if target and target.startswith("/") and not target.startswith("//") and not urlsplit(target).netloc:
        return target
    return url_for("portal.home")


def _sso_sentence(reason: str, tenant_name: str) -> str:
    """What a person can do about a refused single sign-on, in their language."""
    sentences = {
        "unavailable": _("%(org)s's sign-in service is not answering. Try again in a few minutes; if it goes on, "
                         "tell your IT service desk.", org=tenant_name),
        "not_configured": _("Sign-in through %(org)s is not fully set up on the portal yet. Tell the shared IT "
                            "service desk.", org=tenant_name),
        "state": _("That sign-in could not be matched to one started here (it may have been opened twice, or "
                   "it took too long). Please sign in again."),
        "denied": _("%(org)s's sign-in service did not sign you in. Please try again.", org=tenant_name),
        "unverified_email": _("%(org)s has not confirmed your e-mail address, so the portal cannot let you in. "
                              "Ask your IT service desk to confirm it.", org=tenant_name),
        "other_tenant_domain": _("Your e-mail address belongs to another organisation of the portal. Sign in "
                                 "through your own organisation: enter your address on this page."),
        "unknown_domain": _("Your e-mail address is not one of %(org)s's domains, so the portal cannot tell which "
                            "organisation you belong to. Ask your IT service desk.", org=tenant_name),
        "other_tenant_account": _("Your account belongs to another organisation of the portal. Sign in through "
                                  "that organisation, or ask the shared IT service to move it."),
        "disabled": _("Your account on the portal is disabled. Ask your organisation's portal administrator."),
        "no_email": _("%(org)s's sign-in service did not say your e-mail address. Ask your IT service desk.",
                      org=tenant_name),
    }
    return sentences.get(reason, _("%(org)s's sign-in could not be checked, so the portal cannot let you in. "
                                   "Please sign in again; if it happens again, tell your IT service desk.",
                                   org=tenant_name))


def _sso_refused(problem: sso.SignInProblem):
    db.session.rollback()
    tenant_name = problem.tenant.display_name(str(get_locale() or "en")) if problem.tenant else _("Your organisation")
    flash(_sso_sentence(problem.reason, tenant_name), "error")
    status = 503 if problem.reason in ("unavailable", "not_configured") else 403
    return render_template("auth/sign_in.html", form=SignInForm()), status


def _signed_in(user, next_target: str | None, sso_tenant: str | None = None, id_token: str | None = None):
    lang = session.get("lang")
    session.clear()  # a fresh session on sign-in (no fixation); keep only the language
    login_user(user)
    session.permanent = True
    if lang:
        session["lang"] = lang
        # A language picked on the sign-in page is the person's choice as much as one picked later.
        accounts.set_language(user, lang)
        db.session.commit()
    if sso_tenant:
        # For RP-initiated logout: which provider to sign out of, and the hint it asks for.
        session["sso"] = {"tenant": sso_tenant, "id_token": id_token, "origin": sso.provider_origin(sso_tenant)}
    return redirect(safe_next(next_target))


@bp.route("/sign-in", methods=["GET", "POST"])
def sign_in():
    if current_user.is_authenticated:
        return redirect(url_for("portal.home"))
    g.form_action_origins = sso.provider_origins()
    form = SignInForm()
    if request.method == "GET":
        form.next.data = request.args.get("next", "")
    status = 200
    if form.validate_on_submit():
        email = form.email.data or ""
        if not form.password.data:
            # Home-realm discovery: an organisation with its own sign-in takes it from here.
            tenant = sso.tenant_for_email(email)
            if tenant is not None:
                session["sso_next"] = safe_next(form.next.data)
                return redirect(url_for("auth.sso_start", slug=tenant.slug, login_hint=email))
            form.password.errors.append(_("Enter your password."))
            return render_template("auth/sign_in.html", form=form), 400
        if sso.passwords_refused_for(email):
            flash(_("Your organisation signs you in with its own account, not a portal password: leave the "
                    "password empty and choose Sign in."), "error")
            return render_template("auth/sign_in.html", form=form), 403
        try:
            user = accounts.authenticate(
                email, form.password.data or "", request.remote_addr or "unknown",
                max_failures=int(current_app.config["SIGNIN_MAX_FAILURES"]),
                window_seconds=int(current_app.config["SIGNIN_WINDOW_SECONDS"]))
        except OrganisationInactive:
            db.session.commit()  # the attempt is recorded
            flash(_("Your organisation is no longer a member of the Cwmwl Cymru portal, so its people cannot "
                    "sign in or order. Its servers are kept; ask the shared IT service."), "error")
            return render_template("auth/sign_in.html", form=form), 403
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
        elif two_factor.in_use(user) or two_factor.required_for(user, current_app.config):
            # The password was right; the second factor (or its set-up) comes next. Only the
            # account and its session token wait in the session, never a secret.
            session["second_factor"] = {"user": user.id, "token": user.session_token,
                                        "next": safe_next(form.next.data), "since": utcnow().timestamp()}
            return redirect(url_for("auth.second_factor"))
        else:
            return _signed_in(user, form.next.data)
    elif request.method == "POST":
        status = 400
    return render_template("auth/sign_in.html", form=form), status


SECOND_FACTOR_WAIT_S = 300


def _waiting_for_second_factor():
    """The account whose password was just accepted, if that was within five minutes."""
    pending = session.get("second_factor") or {}
    user = db.session.get(User, pending.get("user")) if pending.get("user") else None
    if (user is None or user.session_token != pending.get("token") or not user.active
            or utcnow().timestamp() - float(pending.get("since", 0)) > SECOND_FACTOR_WAIT_S):
        return None, pending
    return user, pending


@bp.route("/sign-in/second-factor", methods=["GET", "POST"])
def second_factor():
    """The code from the person's app (or a recovery code); or, for a role that requires it and
    has none yet, the set-up: a QR code, the first code, then the recovery codes shown once."""
    user, pending = _waiting_for_second_factor()
    if user is None:
        session.pop("second_factor", None)
        flash(_("Please sign in again."), "info")
        return redirect(url_for("auth.sign_in"))
    form = SecondFactorForm()
    enrolling = not two_factor.in_use(user)
    if enrolling and not user.totp_secret:
        two_factor.start_enrolment(user)
        db.session.commit()
    status = 200
    if form.validate_on_submit():
        since = utcnow() - timedelta(seconds=int(current_app.config["SIGNIN_WINDOW_SECONDS"]))
        if accounts.recent_failures_for(user.email, since) >= int(current_app.config["SIGNIN_MAX_FAILURES"]):
            flash(_("Too many wrong codes. Wait a while and sign in again."), "error")
            return render_template("auth/second_factor.html", form=form, enrolling=enrolling, user=user), 429
        if enrolling:
            try:
                codes = two_factor.confirm(user, user, form.code.data or "")
            except PortalError:
                accounts.note_failed_code(user.email, request.remote_addr or "unknown")
                db.session.commit()
                flash(_("That code is not right; enter the six digits your app shows now."), "error")
                status = 401
            else:
                db.session.commit()
                _signed_in(user, pending.get("next"))
                response = make_response(render_template("auth/recovery_codes.html", codes=codes,
                                                          next_url=pending.get("next") or url_for("portal.home")))
                response.headers["Cache-Control"] = "no-store"
                return response
        elif two_factor.verify(user, form.code.data or ""):
            db.session.commit()
            return _signed_in(user, pending.get("next"))
        else:
            accounts.note_failed_code(user.email, request.remote_addr or "unknown")
            db.session.commit()
            flash(_("That code is not right; enter the six digits your app shows now, or a recovery code."), "error")
            status = 401
    elif request.method == "POST":
        status = 400
    return render_template("auth/second_factor.html", form=form, enrolling=enrolling, user=user,
                           qr=two_factor.qr_svg(user) if enrolling else None), status


@bp.route("/account/two-factor", methods=["GET", "POST"])
@login_required
def account_two_factor():
    """Turn two-factor sign-in on (QR code, first code, recovery codes) or off (where the role allows)."""
    form = SecondFactorForm()
    confirm_form = ConfirmForm()
    user = current_user._get_current_object()
    required = two_factor.required_for(user, current_app.config)
    action = request.form.get("action") if request.method == "POST" else None
    status = 200
    if action and not confirm_form.validate():
        abort(400)
    if action == "start" and not two_factor.in_use(user):
        two_factor.start_enrolment(user)
        db.session.commit()
    elif action == "confirm":
        try:
            codes = two_factor.confirm(user, user, request.form.get("code", ""))
        except PortalError:
            db.session.rollback()
            flash(_("That code is not right; enter the six digits your app shows now."), "error")
            status = 400
        else:
            db.session.commit()
            response = make_response(render_template("auth/recovery_codes.html", codes=codes,
                                                      next_url=url_for("auth.account_two_factor")))
            response.headers["Cache-Control"] = "no-store"
            return response
    elif action == "off":
        try:
            two_factor.turn_off(user, user, current_app.config)
        except PortalError:
            flash(_("Your role must sign in with two factors; it cannot be turned off."), "error")
            status = 400
        else:
            db.session.commit()
            flash(_("Two-factor sign-in is off."), "success")
    enrolling = not two_factor.in_use(user) and bool(user.totp_secret)
    return render_template("auth/account_two_factor.html", form=form, confirm=confirm_form, required=required,
                           in_use=two_factor.in_use(user), enrolling=enrolling,
                           qr=two_factor.qr_svg(user) if enrolling else None), status


@bp.route("/sign-in/sso/<slug>")
def sso_start(slug: str):
    """Send the person to their organisation's provider (state, nonce and PKCE in the session)."""
    try:
        tenant = sso.active_sso_tenant(slug)
        login_hint = (request.args.get("login_hint") or "")[:254] or None
        return redirect(sso.start(tenant, url_for("auth.sso_callback", slug=slug, _external=True), login_hint))
    except sso.SignInProblem as problem:
        return _sso_refused(problem)


@bp.route("/sign-in/sso/<slug>/callback")
def sso_callback(slug: str):
    """The provider sends the person back here with a code; on success they are signed in."""
    next_target = session.pop("sso_next", None)
    try:
        tenant = sso.active_sso_tenant(slug)
        user, id_token = sso.finish(tenant)
    except sso.SignInProblem as problem:
        return _sso_refused(problem)
    db.session.commit()
    return _signed_in(user, next_target, sso_tenant=slug, id_token=id_token)


@bp.route("/sign-out", methods=["POST"])
@login_required
def sign_out():
    """Sign out, on the server too: the account's session token is rotated, so this cookie (and
    any copy of it, on any device) stops working at once."""
    lang = session.get("lang")
    signed_in_with = session.get("sso") or {}
    accounts.end_all_sessions(current_user)
    db.session.commit()
    logout_user()
    session.clear()
    if lang:
        session["lang"] = lang
    flash(_("You have signed out."), "info")
    if signed_in_with.get("tenant"):
        # Also end the session at the organisation's provider, which sends the person back here.
        provider_logout = sso.logout_url(signed_in_with["tenant"], signed_in_with.get("id_token"),
                                         url_for("auth.sign_in", _external=True))
        if provider_logout:
            return redirect(provider_logout)
    return redirect(url_for("auth.sign_in"))


@bp.route("/language", methods=["POST"])
def set_language():
    form = LanguageForm()
    if form.validate_on_submit() and form.lang.data in languages():
        session["lang"] = form.lang.data
        if current_user.is_authenticated:
            # Remembered on the account too, so e-mails the portal sends later are in this language.
            accounts.set_language(current_user, form.lang.data)
            db.session.commit()
    return redirect(safe_next(form.next.data))
