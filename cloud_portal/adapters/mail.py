"""Sending e-mail over SMTP (smtplib). The only module that talks SMTP.

Settings (see :mod:`cloud_portal.config`): ``SMTP_HOST`` (empty = e-mail off; messages are
logged instead), ``SMTP_PORT``, ``SMTP_FROM``, ``SMTP_STARTTLS``, ``SMTP_USERNAME`` and
``SMTP_PASSWORD`` (both optional). Failures raise :class:`MailError`; callers decide whether a
lost e-mail matters (the portal's own record of a decision never depends on it).
"""
from __future__ import annotations

import logging
import smtplib
import ssl
from email.message import EmailMessage
from typing import Any

log = logging.getLogger(__name__)

#: Seconds to wait for the SMTP server before giving up.
SMTP_TIMEOUT_S = 10.0


class MailError(Exception):
    """The message could not be handed to the SMTP server."""


def send_mail(settings: dict[str, Any], to: str, subject: str, body: str) -> bool:
    """Send a plain-text message to ``to``. Returns False when e-mail is off (no SMTP_HOST).

    Raises MailError when the SMTP server refuses or cannot be reached.
    """
    host = (settings.get("SMTP_HOST") or "").strip()
    if not host:
        log.info("e-mail is off (no SMTP_HOST); not sending %r to %s", subject, to)
        return False
    message = EmailMessage()
    message["From"] = settings.get("SMTP_FROM") or "cloud-portal@localhost"
    message["To"] = to
    message["Subject"] = subject
    message.set_content(body)
    try:
        with smtplib.SMTP(host, int(settings.get("SMTP_PORT") or 25), timeout=SMTP_TIMEOUT_S) as smtp:
            if settings.get("SMTP_STARTTLS"):
                smtp.starttls(context=ssl.create_default_context())
            if settings.get("SMTP_USERNAME"):
                smtp.login(settings["SMTP_USERNAME"], settings.get("SMTP_PASSWORD") or "")
            smtp.send_message(message)
    except (OSError, smtplib.SMTPException) as exc:
        raise MailError(f"could not send e-mail to {to} via {host}: {exc}") from exc
    log.info("e-mail %r sent to %s", subject, to)
    return True
