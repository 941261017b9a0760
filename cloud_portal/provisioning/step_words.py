"""Job progress in the reader's language.

Steps are stored as they happen, in English: the task names of the playbooks (playbooks/*.yml)
and of the portal's own steps, a status code and a message. Pages translate them when they show
them, through the one table below; a task name missing from it is shown as written (the
operations team may add tasks to a playbook without a release of the portal).
"""
from __future__ import annotations

import re

from cloud_portal.i18n import N_, _, action_word, shown
from cloud_portal.provisioning.plain_words import plain_words
from cloud_portal.provisioning.requests import CLEANED_UP_SUFFIX

#: Every task name a step can carry: the playbooks' task names and the portal's own steps.
STEP_NAMES: frozenset[str] = frozenset((
    # playbooks/create_server.yml, create_desktop.yml
    N_("Boot server"), N_("Boot desktop"),
    # playbooks/server_action.yml
    N_("Look up server"), N_("Start server"), N_("Stop server"), N_("Reboot server"),
    N_("Get a token for the compute API"), N_("Resize server"), N_("Wait until the resize can be confirmed"),
    N_("Confirm resize"), N_("Record the new owner on the server"), N_("Delete server"),
    # playbooks/sync_tenant.yml
    N_("Project"), N_("Portal account may act in the project"), N_("Compute quotas"),
    # the portal's own steps (provisioning/provision.py, actions.py, leases.py)
    N_("Check for a server made by an earlier attempt"), N_("Wait for the server to be running"),
    N_("Wait for the server to be gone"), N_("Wait for the server to be ACTIVE"),
    N_("Wait for the server to be SHUTOFF"), N_("Wait for the server to be ACTIVE/SHUTOFF"),
    N_("Provisioning failed"), N_("Start failed"), N_("Stop failed"), N_("Reboot failed"), N_("Resize failed"),
    N_("Delete failed"), N_("Retag failed"), N_("Cloud did not answer; will try again"),
))

#: Step statuses (adapters.ansible's event statuses and the portal's own).
STEP_STATUSES: dict[str, str] = {
    "started": N_("started"), "ok": N_("done"), "changed": N_("changed"), "failed": N_("failed"),
    "skipped": N_("skipped"), "unreachable": N_("unreachable"),
}

#: Job states and kinds, as the server page names its last action.
JOB_STATES: dict[str, str] = {
    "queued": N_("queued"), "running": N_("running"), "succeeded": N_("succeeded"), "failed": N_("failed"),
}

# Messages the portal writes with a value in them: (pattern of the stored English, message).
_MESSAGES: list[tuple[re.Pattern[str], str]] = [
    (re.compile(r"none found"), N_("none found")),
    (re.compile(r"found (?P<server>\S+): resuming"), N_("found %(server)s: resuming")),
    (re.compile(r"ACTIVE, address (?P<address>\S+)"), N_("running, address %(address)s")),
]
_STATUS_MESSAGES = {"ACTIVE": N_("running"), "SHUTOFF": N_("stopped")}


def step_name(task: str) -> str:
    """A step's task name in the reader's language."""
    return _(task) if task in STEP_NAMES else task


def step_status(status: str) -> str:
    """A step's status ("ok") as a reader sees it ("done"), in their language."""
    return _(STEP_STATUSES[status]) if status in STEP_STATUSES else status


def job_state(state: str) -> str:
    """A job's state in the reader's language."""
    return _(JOB_STATES[state]) if state in JOB_STATES else state


def step_message(task: str, status: str, message: str | None) -> str:
    """A step's message in the reader's language.

    A failure reported by the cloud or Ansible is technical: the reader sees it in plain words
    (the platform team has the original in the job's record). The portal's own messages are
    translated; anything else is shown as written.
    """
    if not message:
        return ""
    if status in ("failed", "unreachable") and task in STEP_NAMES and task.endswith("failed"):
        return shown(message)  # the portal's failure step already holds the plain words
    if status in ("failed", "unreachable"):
        return _(plain_words(message))
    if message in _STATUS_MESSAGES:
        return _(_STATUS_MESSAGES[message])
    for pattern, words in _MESSAGES:
        match = pattern.fullmatch(message)
        if match:
            values = match.groupdict()
            if values.get("address") == "none":
                values["address"] = _("none")
            return _(words, **values)
    return shown(message)


def reason_shown(stored: str | None) -> str:
    """A request's reason in the reader's language: the portal's own sentences (plain words, a
    given-up job, the clean-up note) translated; a reason an administrator typed as written."""
    text = stored or ""
    if text.endswith(CLEANED_UP_SUFFIX):
        return f"{shown(text[:-len(CLEANED_UP_SUFFIX)])} {_(CLEANED_UP_SUFFIX.strip())}".strip()
    return shown(text)


#: Server statuses as Nova names them (kept as codes; English pages show the codes).
_SERVER_STATUSES = {"ACTIVE": N_("ACTIVE"), "SHUTOFF": N_("SHUTOFF"), "BUILD": N_("BUILD"), "ERROR": N_("ERROR"),
                    "DELETED": N_("DELETED")}
_KINDS = {"vm": N_("vm"), "desktop": N_("desktop")}
#: Why a ledger interval began (provisioning.servers.transition's causes).
_CAUSES = {"created": N_("created"), "transfer": N_("transfer"), "resize": N_("resize"), "start": N_("start"),
           "stop": N_("stop"), "reboot": N_("reboot"), "delete": N_("delete"),
           "schedule:stop": N_("schedule:stop"), "schedule:start": N_("schedule:start"),
           "expiry:stop": N_("expiry:stop"), "expiry:delete": N_("expiry:delete"),
           "found by reconciliation": N_("found by reconciliation"),
           "deleted at the end of its lease": N_("deleted at the end of its lease"),
           "deleted by its owner": N_("deleted by its owner"),
           "deleted outside the portal": N_("deleted outside the portal")}


def server_status(status: str, task: str | None = None) -> str:
    """A server's status ("ACTIVE"), with what it is busy with, in the reader's language."""
    shown_status = _(_SERVER_STATUSES[status]) if status in _SERVER_STATUSES else status
    return f"{shown_status} ({action_word(task)}…)" if task else shown_status


def kind_label(kind: str) -> str:
    """A server's kind ("vm", "desktop") in the reader's language."""
    return _(_KINDS[kind]) if kind in _KINDS else kind


def cause_label(cause: str) -> str:
    """Why a usage interval began, in the reader's language."""
    return _(_CAUSES[cause]) if cause in _CAUSES else cause
