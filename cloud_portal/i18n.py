"""The portal's two languages in code: marking messages, translating stored ones where they are
shown, and writing to a person in their own language.

Services raise errors with :func:`_` (Flask-Babel's gettext): within a web request the message
comes out in the language the person chose; in the worker, the CLI and tests that call services
directly there is no request, so it is English (the default locale). Texts kept in the database
(plain-words failure sentences, job steps, reasons written by the portal) are stored in English,
marked with :func:`N_`, and translated by :func:`shown` when a page shows them.
"""
from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import date, datetime

from babel.dates import format_date
from flask_babel import force_locale, get_locale
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l

__all__ = ["_", "_l", "N_", "LANGUAGES", "current_language", "shown", "in_language", "for_recipient",
           "action_word", "status_word", "request_state_word", "long_date"]

#: The languages the portal speaks (the first is the default).
LANGUAGES = ("en", "cy")


def N_(message: str) -> str:  # noqa: N802  (the customary name of gettext's no-op marker)
    """Mark ``message`` for the catalogue without translating it: it is stored in English and
    translated where it is shown (see :func:`shown`)."""
    return message


def current_language() -> str:
    """The language of the current request ("en" outside a request)."""
    return str(get_locale() or LANGUAGES[0])


def shown(stored: str | None) -> str:
    """A text kept in English (a marked message) in the reader's language; other text as it is."""
    if not stored:
        return ""
    # Without variables gettext does no %-formatting, so a stored "%" is safe.
    return _(stored)


@contextmanager
def in_language(language: str) -> Iterator[None]:
    """Messages made inside the block are in ``language`` (needs an app context; English without)."""
    with force_locale(language):
        yield


def for_recipient(language: str | None, compose: Callable[[], tuple[str, str]]) -> tuple[str, str]:
    """The (subject, body) ``compose`` makes, in the recipient's language.

    Where the language is not known the message is bilingual, Welsh first, as the Welsh Language
    Standards expect of these bodies.
    """
    if language in LANGUAGES:
        with in_language(language):
            return compose()
    with in_language("cy"):
        subject_cy, body_cy = compose()
    with in_language("en"):
        subject_en, body_en = compose()
    if subject_cy == subject_en:  # no app context (English both times): no need to say it twice
        return subject_en, body_en
    return f"{subject_cy} / {subject_en}", f"{body_cy.rstrip()}\n\n----- English -----\n\n{body_en}"


# Words for the portal's own codes when a sentence names them (English as the codes read).
_ACTION_WORDS = {"start": N_("start"), "stop": N_("stop"), "reboot": N_("reboot"), "resize": N_("resize"),
                 "delete": N_("delete"), "retag": N_("retag")}
_STATUS_WORDS = {"active": N_("active"), "shutoff": N_("shutoff"), "error": N_("error"), "build": N_("build"),
                 "deleted": N_("deleted")}
_REQUEST_STATE_WORDS = {"pending_approval": N_("pending approval"), "approved": N_("approved"),
                        "provisioning": N_("provisioning"), "active": N_("active"), "rejected": N_("rejected"),
                        "cancelled": N_("cancelled"), "failed": N_("failed"),
                        "declined": N_("declined"), "open": N_("open")}


def action_word(action: str | None) -> str:
    """A server action ("stop") as a sentence names it, in the reader's language."""
    return _(_ACTION_WORDS[action]) if action in _ACTION_WORDS else str(action)


def status_word(status: str) -> str:
    """A server status ("SHUTOFF") as a sentence names it ("shutoff"), in the reader's language."""
    word = status.lower()
    return _(_STATUS_WORDS[word]) if word in _STATUS_WORDS else word


def request_state_word(state: str) -> str:
    """A request state ("pending_approval") as a sentence names it, in the reader's language."""
    return _(_REQUEST_STATE_WORDS[state]) if state in _REQUEST_STATE_WORDS else state.replace("_", " ")


def long_date(day: date | datetime) -> str:
    """A date as sentences write it ("05 December 2026"; in Welsh "05 Rhagfyr 2026")."""
    locale = get_locale()
    if locale is None or locale.language == "en":
        return f"{day:%d %B %Y}"
    return format_date(day, "dd MMMM yyyy", locale=locale)
