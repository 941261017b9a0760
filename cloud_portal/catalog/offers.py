"""What a person may order: VM sizes (priced from the rate card) and desktop templates."""
from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from cloud_portal.catalog.service import current_desktop_prices, get_catalog, vm_monthly_estimate
from cloud_portal.errors import InvalidInput
from cloud_portal.i18n import _

KIND_VM = "vm"
KIND_DESKTOP = "desktop"
KINDS = (KIND_VM, KIND_DESKTOP)


@dataclass(frozen=True)
class Offer:
    """One orderable size or desktop template with its monthly price."""

    kind: str
    key: str
    name_en: str
    name_cy: str
    flavor: str
    vcpus: int
    ram_mib: int
    disk_gb: int
    monthly: Decimal
    image_key: str | None  # fixed image for desktops

    def display_name(self, locale: str) -> str:
        return self.name_cy if locale == "cy" else self.name_en


def offers(kind: str) -> list[Offer]:
    """The active offers of ``kind`` ("vm" or "desktop"), smallest (or cheapest) first."""
    catalog = get_catalog()
    if kind == KIND_DESKTOP:
        prices = current_desktop_prices()
        return [Offer(KIND_DESKTOP, d.key, d.name_en, d.name_cy, d.flavor, d.vcpus, d.ram_mib, d.disk_gb,
                      prices.get(d.key, d.monthly_price), d.image_key) for d in catalog.desktops]
    return [Offer(KIND_VM, s.key, s.name_en, s.name_cy, s.flavor, s.vcpus, s.ram_mib, s.disk_gb,
                  vm_monthly_estimate(s, catalog.rates), None) for s in catalog.vm_sizes]


def find_offer(kind: str, key: str) -> Offer:
    """The offer ``key`` of ``kind``; InvalidInput naming the problem when there is none."""
    if kind not in KINDS:
        raise InvalidInput(_("Choose a virtual machine or a desktop."))
    for offer in offers(kind):
        if offer.key == key:
            return offer
    raise InvalidInput(_("%(key)s is not in the catalog; choose one of the sizes offered.", key=repr(key)))
