"""Checks on what a person typed, before anything else happens with it."""
from __future__ import annotations

import re

from cloud_portal.errors import InvalidInput
from cloud_portal.i18n import _

# RFC 1123 label: ASCII letters, digits and hyphens, 1-63 characters, no hyphen at either end.
# ASCII-only on purpose: look-alike letters (Cyrillic 'а', fullwidth digits) are refused.
_LABEL = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?")


def validate_hostname(name: str | None) -> str:
    """Return the host name lower-cased, or raise InvalidInput saying what is wrong with it."""
    if name is None or name == "":
        raise InvalidInput(_("Enter a name for the server."))
    bad = sorted({ch for ch in name if not (ch.isascii() and (ch.isalnum() or ch == "-"))})
    if bad:
        shown = ", ".join(repr(ch) if ch.isprintable() else f"U+{ord(ch):04X}" for ch in bad[:5])
        raise InvalidInput(_("The name may contain only the letters a-z, the digits 0-9 and hyphens "
                             "(not %(characters)s).", characters=shown))
    if len(name) > 63:
        raise InvalidInput(_("The name is %(length)s characters long; the most is 63.", length=len(name)))
    if name.startswith("-") or name.endswith("-"):
        raise InvalidInput(_("The name may not start or end with a hyphen."))
    if not _LABEL.fullmatch(name):
        raise InvalidInput(_("The name is not a valid host name (RFC 1123)."))
    return name.lower()
