"""The quotas domain's public face: limits, usage and headroom, reservations, limit changes and
increase requests, each in its own module (usage, reservations, limits, increases) and
re-exported here so callers need one import.
"""
from __future__ import annotations

from cloud_portal.quotas.increases import (
    IncreaseDecision,
    approve_increase,
    count_open_increases,
    create_increase,
    decide_increase,
    decline_increase,
    increases_listing,
    load_increase,
    notify_increase_decision,
)
from cloud_portal.quotas.limits import LimitsBelowUsage, apply_file_limits, change_limits, set_limits
from cloud_portal.quotas.reservations import consume, move_hold, release, release_by_purpose, reserve, resize_held
from cloud_portal.quotas.usage import (
    COUNTED_STATES,
    RESOURCE_WORDS,
    ResourceHeadroom,
    TenantLimits,
    headroom,
    limits_for_tenant,
    limits_for_tenants,
    recount_usage,
    serialised_for_tenant,
    usage_for_tenant,
    usage_for_tenants,
    usage_for_user,
)

__all__ = [
    "COUNTED_STATES", "RESOURCE_WORDS", "LimitsBelowUsage", "ResourceHeadroom", "TenantLimits",
    "apply_file_limits", "approve_increase", "change_limits", "consume", "count_open_increases",
    "create_increase", "decide_increase", "IncreaseDecision", "decline_increase", "headroom", "increases_listing",
    "limits_for_tenant", "limits_for_tenants", "load_increase", "move_hold", "notify_increase_decision",
    "recount_usage", "release",
    "release_by_purpose", "reserve", "resize_held", "serialised_for_tenant", "set_limits", "usage_for_tenant",
    "usage_for_tenants", "usage_for_user",
]
