"""One exception family for the portal; web and CLI turn these into messages a person can act on."""
from __future__ import annotations

from cloud_portal.i18n import _


class PortalError(Exception):
    """Base of every error the portal raises on purpose. ``str(exc)`` is safe to show to users."""


class NotPermitted(PortalError):
    """The acting user may not do this."""


class NotFound(PortalError):
    """The thing asked for does not exist (or is not visible to the acting user)."""


class InvalidInput(PortalError):
    """A value supplied by a person or a client failed validation."""


class InvalidConfig(PortalError):
    """A configuration file or setting is wrong; the message names the file, path and fix."""


class QuotaExceeded(PortalError):
    """Accepting the request would take a tenant or user over a limit."""


class ProvisioningFailed(PortalError):
    """The cloud could not carry out a change; the message is in plain words."""


class JobDeferred(PortalError):
    """A queue job cannot run now and should be tried again later; the jobs layer decides when."""


class TransientJobError(JobDeferred):
    """The cloud did not answer; worth retrying later (with backoff)."""


class TenantBusy(JobDeferred):
    """The tenant already has its maximum of jobs running; try again shortly."""


class SignInThrottled(PortalError):
    """Too many failed sign-ins; carries how long to wait."""

    def __init__(self, message: str, retry_after_seconds: int) -> None:
        super().__init__(message)
        self.retry_after_seconds = retry_after_seconds


class OrganisationInactive(NotPermitted):
    """The person's tenant has left the portal (removed from tenants.yaml): no sign-in, no orders."""

    def __init__(self) -> None:
        super().__init__(_("Your organisation is no longer a member of the Cwmwl Cymru portal, so its people "
                           "cannot sign in, use the API or order. Its servers are kept; ask the shared IT service."))
