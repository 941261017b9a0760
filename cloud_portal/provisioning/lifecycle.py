"""A request's lifecycle, as one table: which event moves it from which states to which, and who
may cause it. Pages, the API and jobs all move requests through :func:`advance`.

    pending_approval --approve--> approved --start--> provisioning --complete--> active
          |  \\--reject--> rejected     |                  |
          \\--cancel--> cancelled <------/ (cancel)        \\--fail--> failed --clean_up--> cancelled
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from cloud_portal.errors import InvalidInput, NotPermitted
from cloud_portal.i18n import N_, _, request_state_word
from cloud_portal.provisioning import models as m

if TYPE_CHECKING:
    from cloud_portal.accounts.models import User


@dataclass(frozen=True)
class Transition:
    sources: tuple[str, ...]
    target: str
    #: Who may cause it (None: the system, i.e. jobs).
    allowed: Callable[[m.ServerRequest, User], bool] | None
    not_permitted: str
    wrong_state: str


APPROVE, REJECT, CANCEL, CLEAN_UP = "approve", "reject", "cancel", "clean_up"
START, COMPLETE, FAIL = "start", "complete", "fail"

TRANSITIONS: dict[str, Transition] = {
    APPROVE: Transition((m.PENDING_APPROVAL,), m.APPROVED, m.ServerRequest.can_decide,
                        N_("Only an administrator of the tenant can approve this request."),
                        N_("This request is %(state)s; only waiting requests can be approved.")),
    REJECT: Transition((m.PENDING_APPROVAL,), m.REJECTED, m.ServerRequest.can_decide,
                       N_("Only an administrator of the tenant can reject this request."),
                       N_("Only waiting requests can be rejected.")),
    CANCEL: Transition((m.PENDING_APPROVAL, m.APPROVED), m.CANCELLED, m.ServerRequest.can_cancel,
                       N_("Only the requester can cancel this request."),
                       N_("Only requests that have not started provisioning can be cancelled.")),
    CLEAN_UP: Transition((m.FAILED,), m.CANCELLED, m.ServerRequest.can_view,
                         N_("Only the requester can clean up this request."),
                         N_("Only failed requests can be cleaned up.")),
    # A resumed or retried provision job starts again from provisioning.
    START: Transition((m.APPROVED, m.PROVISIONING), m.PROVISIONING, None, "", N_("This request is %(state)s.")),
    COMPLETE: Transition((m.PROVISIONING,), m.ACTIVE, None, "", N_("This request is %(state)s.")),
    FAIL: Transition((m.APPROVED, m.PROVISIONING), m.FAILED, None, "", N_("This request is %(state)s.")),
}


def authorise(request: m.ServerRequest, event: str, actor: User) -> None:
    """NotPermitted unless ``actor`` may cause ``event`` on ``request``."""
    rule = TRANSITIONS[event]
    if rule.allowed is None or not rule.allowed(request, actor):
        raise NotPermitted(_(rule.not_permitted) if rule.not_permitted else _("Only the portal itself can do this."))


def can(request: m.ServerRequest, event: str) -> bool:
    """Whether ``event`` applies to the request in its current state."""
    return request.state in TRANSITIONS[event].sources


def advance(request: m.ServerRequest, event: str, actor: User | None = None) -> str:
    """Move ``request`` by ``event``; returns the state it left. ``actor`` None = the system.

    Raises NotPermitted (wrong person) or InvalidInput (wrong state), changing nothing.
    """
    rule = TRANSITIONS[event]
    if actor is not None:
        authorise(request, event, actor)
    if request.state not in rule.sources:
        raise InvalidInput(_(rule.wrong_state, state=request_state_word(request.state)))
    before, request.state = request.state, rule.target
    return before
