"""Billing's codes as people read them: components and units of statement lines, export headings.

Lines and files keep the codes ("vcpu", "GB-months"); pages, PDF statements and the headings of
exports name them in the reader's language. In English the codes are the words.
"""
from __future__ import annotations

from flask_babel import pgettext

from cloud_portal.i18n import N_, _

COMPONENTS = {"vcpu": N_("vcpu"), "ram": N_("ram"), "disk": N_("disk"), "desktop": N_("desktop")}
UNITS = {"vCPU-hours": N_("vCPU-hours"), "GB-hours": N_("GB-hours"), "GB-months": N_("GB-months"),
         "desktop-months": N_("desktop-months")}


def component_label(component: str) -> str:
    """A statement line's component ("ram") in the reader's language."""
    return _(COMPONENTS[component]) if component in COMPONENTS else component


def unit_label(unit: str) -> str:
    """A statement line's unit ("GB-months") in the reader's language."""
    return _(UNITS[unit]) if unit in UNITS else unit


def column_headings(columns: tuple[str, ...]) -> list[str]:
    """The heading row of an export in the reader's language; in English the column names
    themselves, which scripts reading the files match on."""
    headings = {
        "month": pgettext("export column", "month"), "tenant": pgettext("export column", "tenant"),
        "cost_centre": pgettext("export column", "cost_centre"), "email": pgettext("export column", "email"),
        "name": pgettext("export column", "name"), "server_id": pgettext("export column", "server_id"),
        "server_name": pgettext("export column", "server_name"),
        "component": pgettext("export column", "component"), "rate_from": pgettext("export column", "rate_from"),
        "quantity": pgettext("export column", "quantity"), "unit": pgettext("export column", "unit"),
        "rate_gbp": pgettext("export column", "rate_gbp"), "amount_gbp": pgettext("export column", "amount_gbp"),
        "adjusts_month": pgettext("export column", "adjusts_month"), "period": pgettext("export column", "period"),
        "description": pgettext("export column", "description"),
    }
    return [headings.get(column, column) for column in columns]
