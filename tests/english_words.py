"""Finding English left on a page meant to be in Welsh.

:func:`english_words_left` takes the text a person sees and returns the common English words in
it. The list holds words a Welsh page has no reason to contain; words that are also Welsh ("a",
"i", "all", "man", "pan", "at", "is", "un", "nod", "data"...) are left out, so Welsh text never
trips it. Proper names, units, product names, e-mail addresses and ids are allowed. Used by the
Flask test-client walk (tests/test_welsh_everywhere.py) and meant for the browser journeys too.
"""
from __future__ import annotations

import re
from collections.abc import Iterable

#: Common English words, and the portal's own English vocabulary, that are not also Welsh words.
ENGLISH_WORDS = frozenset("""
the and or of to in on for with from by this that these those there their they them then than
your you our we us it its be been being was were are has have had do does did not no yes can
cannot could would should will may might must shall which what who whom whose when where why how
about after before above below between into out over under again once only also just more most
less least some any each every other another such same own both few many much very too here now
new old first last next back up down off still even ever never always please choose give enter
try ask see show hide make made use used using need needs needed want left right set sets get
got go goes went come done keep kept let put say said tell told look find found know one two three
four five six seven eight nine ten none nothing something someone everyone anyone
server servers desktop desktops request requests requested requester approval approve approved
reject rejected decline declined cancel cancelled failed failure pending waiting running stopped
active start started starting stop stopping reboot resize delete deleted deleting order ordered
orders size sizes image images hall halls quota quotas limit limits usage tenant tenants
organisation organisations people member members administrator administrators admin
admins finance platform sign signed password passwords account accounts token tokens name names
address addresses email page pages home settings schedule office hours expiry expires expired
extend lease month months monthly charges charge budget budgets forecast statement statements
export exports total subtotal amount rate rates unit units quantity component centre
reason reasons decision decisions audit log event events action actions job jobs step steps
progress state status error errors warning problem problems help contact support service
services back next previous newer older search filter filters date time day days week weekly
daily every memory disk virtual machine machines network console owner owners transfer
transferred leaver leavers enabled disabled enable disable role roles two factor code codes
recovery secret save saved update updated change changed remove removed add added create
created open opened close closed closing reconcile reconciliation finding findings cross check
increase increases decide decided decides welcome overview details summary download downloads
local government education police
payment report reports catalog offered available unavailable yet already while
because but if so though although unless until since within without during per
""".split())

#: Proper names, units, products and codes that may stand on a Welsh page as they are.
ALLOWED = frozenset(word.lower() for word in """
Cwmwl Cymru OpenStack Ansible Nova Keystone Horizon Terraform Debian Rocky Ubuntu Windows Linux
Torfaen Monmouthshire Blaenau Gwent NHS Microsoft Google Prometheus
GB GiB MiB TB vCPU vCPUs UTC GMT BST CSV XLSX PDF API JSON REST OIDC SSO TOTP HH MM YYYY RFC
csv xlsx pdf journal read full
""".split())

#: Commands and other fixed phrases a Welsh sentence quotes as they are.
ALLOWED_PHRASES = ("tenants sync", "cloud-portal reconcile", "cloud-portal tenants sync", "Authorization: Bearer <token>")

_EMAIL = re.compile(r"\S+@\S+")
#: A value echoed back in quotes as it was given ('police', 'xlarge'): input, not the page's words.
_QUOTED_VALUE = re.compile(r"'[^'\s]+'")
#: Codes in capitals with hyphens (cost centres such as TOR-IT-4410, CC-PLATFORM).
_CAPITAL_CODE = re.compile(r"\b[A-Z0-9]+(?:-[A-Z0-9]+)+\b")
#: Ids, host names and codes with digits, dots or underscores (web-01, cc.small, cost_centre).
_CODE = re.compile(r"\S*(?:\d|_|\w[./:]\w)\S*")
_WORD = re.compile(r"[A-Za-zÀ-ÿŵŷŴŶ]+(?:['’][A-Za-zÀ-ÿŵŷŴŶ]+)*")


def english_words_left(visible_text: str, also_allowed: Iterable[str] = ()) -> list[str]:
    """The English words (whole words, as written) in ``visible_text``, in order of appearance.

    ``also_allowed``: phrases a caller knows to be names (taken out before looking).
    """
    text = visible_text
    for phrase in (*ALLOWED_PHRASES, *also_allowed):
        text = text.replace(phrase, " ")
    text = _EMAIL.sub(" ", text)
    text = _QUOTED_VALUE.sub(" ", text)
    text = _CAPITAL_CODE.sub(" ", text)
    text = _CODE.sub(" ", text)
    found = []
    for match in _WORD.finditer(text):
        word = match.group(0)
        lower = word.lower()
        if lower in ALLOWED:
            continue
        if lower in ENGLISH_WORDS or lower.removesuffix("'s").removesuffix("’s") in ENGLISH_WORDS:
            found.append(word)
    return found
