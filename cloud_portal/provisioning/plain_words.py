"""Turning cloud and Ansible failure messages into words a member of staff can act on."""
from __future__ import annotations

import re

from cloud_portal.i18n import N_

#: OpenStack refusing a create because the project's own quota is used up.
QUOTA_REFUSAL = re.compile(r"quota exceeded|exceeds.*quota|over.?quota", re.I)

#: The cloud not answering (refused, timed out, 502/503/504): worth retrying later.
CLOUD_DID_NOT_ANSWER = re.compile(r"connection refused|did not answer|unable to establish connection|timed out|"
                                  r"service unavailable|\b50[234]\b|ConnectFailure|did not finish in time", re.I)

# (pattern in the technical message, what we tell the person). First match wins. The sentences are
# stored in English (job steps, request reasons, server problems) and translated where shown.
_RULES: list[tuple[re.Pattern[str], str]] = [
    (QUOTA_REFUSAL,
     N_("The cloud refused the server because your organisation's OpenStack quota is used up. "
        "The portal's own limits allowed it, so a platform administrator has been told; "
        "try again later or ask them.")),
    (re.compile(r"no valid host", re.I),
     N_("There is no room for this server in the chosen data hall right now. Try a smaller size, "
        "or ask the platform team to add capacity.")),
    (re.compile(r"flavor's disk is too small|disk is too small|min_disk|mindisk", re.I),
     N_("The chosen image needs a bigger disk than this size has. Choose a larger size.")),
    (re.compile(r"(could not find|no) (flavor|image)|flavor .* not found|image .* not found|"
                r"Unable to find flavor|Could not find image", re.I),
     N_("The size or image you chose is no longer offered by the cloud. Choose another; the "
        "platform team has been told the catalog is out of date.")),
    (re.compile(r"availability zone|invalid.*zone", re.I),
     N_("The chosen data hall is not available in the cloud right now. Ask the platform team.")),
    (re.compile(r"portbindingfailed|port.*binding|network .* not found|no network", re.I),
     N_("The server could not be connected to the network. The platform team has been told.")),
    (CLOUD_DID_NOT_ANSWER,
     N_("The cloud did not answer in time, so nothing was created. Please try again in a few minutes.")),
]
_GENERIC = N_("The cloud could not complete this. The platform team can see the details in the job log.")


def plain_words(technical: str | None) -> str:
    """The sentence to show a person for a technical failure message (English: store it, and show it
    through :func:`cloud_portal.i18n.shown`)."""
    text = technical or ""
    for pattern, words in _RULES:
        if pattern.search(text):
            return words
    return _GENERIC


def is_transient(technical: str | None) -> bool:
    """True when the failure is the cloud not answering, so a later attempt may succeed."""
    return bool(CLOUD_DID_NOT_ANSWER.search(technical or ""))


def is_quota_refusal(technical: str | None) -> bool:
    """True when the cloud refused because the OpenStack project's quota is used up."""
    return bool(QUOTA_REFUSAL.search(technical or ""))
