"""Who may see and do what in billing: finance and platform admins everything, tenant admins
their tenant, members their own charges."""
from __future__ import annotations

from typing import TYPE_CHECKING

from cloud_portal.errors import NotFound, NotPermitted
from cloud_portal.i18n import _

if TYPE_CHECKING:
    from cloud_portal.accounts.models import User


def sees_everything(user: User) -> bool:
    return user.active and (user.is_finance or user.is_platform_admin)


def check_can_close(user: User) -> None:
    """Only finance and platform admins close months."""
    if not sees_everything(user):
        raise NotPermitted(_("Only finance and platform administrators can close a billing month."))


def check_tenant_visible(user: User, tenant_id: int) -> None:
    """A tenant's charges: finance, platform admins, and that tenant's admins."""
    if sees_everything(user) or (user.active and user.is_tenant_admin and user.tenant_id == tenant_id):
        return
    raise NotPermitted(_("Only finance, platform administrators and the tenant's administrators can see its "
                           "charges."))


def check_person_visible(user: User, person: User | None) -> User:
    """A person's statement: themselves, their tenant's admins, finance and platform admins."""
    if person is None:
        raise NotFound(_("There is no such person."))
    if user.id == person.id or sees_everything(user) or (
            user.active and user.is_tenant_admin and user.tenant_id == person.tenant_id):
        return person
    raise NotFound(_("There is no such person."))  # not 403: don't confirm who has an account elsewhere
