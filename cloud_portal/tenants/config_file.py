"""Reading and validating ``tenants.yaml``.

Every problem is reported as ``<file>: <path>: <what is wrong>``, where path is written
the way a person finds it in the file, e.g. ``tenants[3].quotas.vcpus``.  All problems
are collected, so one run of ``cloud-portal check`` lists everything to fix.
"""
from __future__ import annotations

import re
from datetime import date
from decimal import Decimal
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StrictInt,
    StrictStr,
    ValidationError,
    field_validator,
    model_validator,
)

from cloud_portal.errors import InvalidConfig
from cloud_portal.weekly import WEEKDAYS, ScheduleError, Weekly

SLUG_RE = re.compile(r"^[a-z][a-z0-9-]{1,38}[a-z0-9]$")
FLAVOR_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,79}$")
COST_CENTRE_RE = re.compile(r"^[A-Z0-9][A-Z0-9-]{1,38}$")
MAX_GBP = Decimal("100000")
#: Prices with no effective date apply from here (before any server existed).
SINCE_ALWAYS = date(2000, 1, 1)

PositiveInt = Annotated[StrictInt, Field(gt=0, le=10_000_000)]


def _check_slug(value: str) -> str:
    if not SLUG_RE.match(value):
        raise ValueError(f"{value!r} must be lowercase letters, digits and dashes (3-40 characters)")
    return value


#: Keys and slugs: lowercase letters, digits and dashes, 3-40 characters.
Slug = Annotated[StrictStr, AfterValidator(_check_slug)]
Name = Annotated[StrictStr, Field(min_length=2, max_length=200)]


def _money(value: Any) -> Decimal:
    """Amounts are written as strings or numbers like 30.00; floats are refused (money is exact)."""
    if isinstance(value, bool) or isinstance(value, float):
        raise ValueError(f"write the amount in quotes, e.g. \"{value}\", so it is read exactly")
    try:
        amount = Decimal(str(value).strip())
    except ArithmeticError:
        raise ValueError(f"{value!r} is not an amount in pounds, e.g. \"30.00\"") from None
    if not amount.is_finite() or amount < 0 or amount > MAX_GBP:
        raise ValueError(f"{value!r} must be an amount between 0 and {MAX_GBP} pounds")
    return amount


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class DataHall(Strict):
    key: Slug
    name_en: Name
    name_cy: Name



class Quotas(Strict):
    instances: PositiveInt
    vcpus: PositiveInt
    #: RAM in MiB
    ram_mib: PositiveInt
    #: Disk in GB
    disk_gb: PositiveInt
    desktops: Annotated[StrictInt, Field(ge=0, le=10_000_000)]


class PerUserQuotas(Strict):
    instances: PositiveInt | None = None
    vcpus: PositiveInt | None = None
    ram_mib: PositiveInt | None = None
    disk_gb: PositiveInt | None = None
    desktops: Annotated[StrictInt, Field(ge=0, le=10_000_000)] | None = None


class Approval(Strict):
    #: GBP a month; requests estimated above this wait for a tenant admin.
    monthly_cost_over: Decimal
    vcpus_over: Annotated[StrictInt, Field(ge=0, le=10_000)]

    _money = field_validator("monthly_cost_over", mode="before")(classmethod(lambda cls, v: _money(v)))


class Budget(Strict):
    """A monthly budget: tenant admins are e-mailed at 80 % and 100 % of the month-end forecast;
    ``require_approval`` also makes new orders wait for approval once the forecast is over it."""

    monthly: Decimal
    over_budget: Literal["warn", "require_approval"] = "warn"

    _money = field_validator("monthly", mode="before")(classmethod(lambda cls, v: _money(v)))


class OfficeHours(Strict):
    """The tenant's default schedule for new VMs: stop and start times (local, HH:MM) on days."""

    days: Annotated[list[StrictStr], Field(min_length=1)] = list(WEEKDAYS[:5])
    stop: StrictStr | None = None
    start: StrictStr | None = None
    timezone: StrictStr = "Europe/London"

    @model_validator(mode="after")
    def _keepable(self) -> OfficeHours:
        try:
            Weekly.parse(days=self.days, stop=self.stop, start=self.start, zone=self.timezone)
        except ScheduleError as exc:
            raise ValueError(str(exc)) from None
        return self


class Lease(Strict):
    """How long servers may be ordered for: the longest lease, and the sizes that must have one."""

    max_days: Annotated[StrictInt, Field(ge=1, le=3650)] | None = None
    #: Catalog keys (VM sizes or desktops) whose orders must carry an expiry date.
    required_for: list[StrictStr] = []


DOMAIN_RE = re.compile(r"^(?=.{3,253}$)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}$")
LOOPBACK_HOSTS = {"127.0.0.1", "localhost", "::1"}
#: The roles a member tenant's people can have (accounts.models.TENANT_ROLES; a test keeps them equal).
TENANT_ROLES = ("member", "tenant_admin")


class RoleMapping(Strict):
    """Which claim of the ID token carries groups, which group gives which role, and the default."""

    claim: Annotated[StrictStr, Field(min_length=1, max_length=80)] = "groups"
    map: dict[StrictStr, StrictStr] = {}
    default: StrictStr = "member"


class SingleSignOn(Strict):
    """A tenant's own OpenID Connect provider (e.g. Microsoft Entra ID, ADFS)."""

    issuer: StrictStr
    client_id: Annotated[StrictStr, Field(min_length=1, max_length=200)]
    #: Where the client secret is: the name of an environment variable, or a file (never the secret).
    client_secret_env: Annotated[StrictStr, Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]{0,127}$")] | None = None
    client_secret_file: Annotated[StrictStr, Field(min_length=1)] | None = None
    #: E-mail domains whose people sign in here (home-realm discovery), e.g. torfaen.gov.uk.
    email_domains: Annotated[list[StrictStr], Field(min_length=1)]
    roles: RoleMapping = RoleMapping()
    #: "provider": each sign-in sets the role from the claims; "portal": only the first one does.
    roles_managed_in: Literal["provider", "portal"] = "provider"

    @field_validator("issuer")
    @classmethod
    def _issuer(cls, v: str) -> str:
        from urllib.parse import urlsplit
        parts = urlsplit(v)
        if parts.scheme not in ("https", "http") or not parts.hostname or parts.query or parts.fragment:
            raise ValueError(f"{v!r} is not an issuer URL, e.g. https://login.example.org/tenant/v2.0")
        if parts.scheme != "https" and parts.hostname not in LOOPBACK_HOSTS:
            raise ValueError(f"{v!r} must use https (plain http is allowed only on this machine, 127.0.0.1)")
        return v.rstrip("/")

    @field_validator("email_domains")
    @classmethod
    def _domains(cls, v: list[str]) -> list[str]:
        for domain in v:
            if not DOMAIN_RE.match(domain):
                raise ValueError(f"{domain!r} is not an e-mail domain in lower case, e.g. torfaen.gov.uk")
        return v


class TenantEntry(Strict):
    slug: Slug
    name_en: Name
    name_cy: Name
    cost_centre: StrictStr
    data_halls: Annotated[list[StrictStr], Field(min_length=1)]
    quotas: Quotas
    per_user_quotas: PerUserQuotas = PerUserQuotas()
    approval: Approval
    budget: Budget | None = None
    sso: SingleSignOn | None = None
    #: False: the tenant's people sign in only through its provider (``sso``).
    password_sign_in: bool = True
    #: Default office hours for the tenant's new VMs (each VM's can be changed on its page).
    office_hours: OfficeHours | None = None
    lease: Lease | None = None


    @field_validator("cost_centre")
    @classmethod
    def _cost_centre(cls, v: str) -> str:
        if not COST_CENTRE_RE.match(v):
            raise ValueError(f"{v!r} must be capital letters, digits and dashes, e.g. TOR-IT-4410")
        return v


class Platform(Strict):
    name_en: Name
    name_cy: Name
    cost_centre: StrictStr


class FlavorSpec(Strict):
    key: Slug
    name_en: Name
    name_cy: Name
    flavor: StrictStr
    vcpus: Annotated[StrictInt, Field(gt=0, le=256)]
    ram_mib: Annotated[StrictInt, Field(ge=256, le=4_194_304)]
    disk_gb: Annotated[StrictInt, Field(gt=0, le=65_536)]


    @field_validator("flavor")
    @classmethod
    def _flavor(cls, v: str) -> str:
        if not FLAVOR_RE.match(v):
            raise ValueError(f"{v!r} is not a flavor name (letters, digits, '.', '_', '-')")
        return v


class VmSizeEntry(FlavorSpec):
    pass


class DesktopPriceChange(Strict):
    effective_from: date
    monthly_price: Decimal

    _money = field_validator("monthly_price", mode="before")(classmethod(lambda cls, v: _money(v)))


class DesktopEntry(FlavorSpec):
    image: StrictStr
    #: Flat price per user per month, GBP (from the start); ``price_changes`` lists later prices.
    monthly_price: Decimal
    price_changes: list[DesktopPriceChange] = []

    _money = field_validator("monthly_price", mode="before")(classmethod(lambda cls, v: _money(v)))


class ImageEntry(Strict):
    key: StrictStr
    name: Name
    #: The Welsh name, where it differs ("Bwrdd gwaith Windows 11"); the name otherwise.
    name_cy: Name | None = None
    os_image: StrictStr
    min_disk_gb: Annotated[StrictInt, Field(ge=0, le=65_536)]
    kind: Literal["vm", "desktop"]


class Catalog(Strict):
    vm_sizes: Annotated[list[VmSizeEntry], Field(min_length=1)]
    images: Annotated[list[ImageEntry], Field(min_length=1)]
    desktops: list[DesktopEntry] = []


class RateChange(Strict):
    """The rate card from a date on (all three prices)."""

    effective_from: date
    vcpu_hour: Decimal
    ram_gb_hour: Decimal
    disk_gb_month: Decimal

    _money = field_validator("vcpu_hour", "ram_gb_hour", "disk_gb_month", mode="before")(
        classmethod(lambda cls, v: _money(v)))


class RateCard(Strict):
    currency: Literal["GBP"]
    #: The first version's prices and (optional) date; ``changes`` lists later versions.
    effective_from: date = SINCE_ALWAYS
    vcpu_hour: Decimal
    ram_gb_hour: Decimal
    disk_gb_month: Decimal
    changes: list[RateChange] = []

    _money = field_validator("vcpu_hour", "ram_gb_hour", "disk_gb_month", mode="before")(
        classmethod(lambda cls, v: _money(v)))

    def versions(self) -> list[RateChange]:
        """Every version in date order, the first one included."""
        first = RateChange(effective_from=self.effective_from, vcpu_hour=self.vcpu_hour,
                           ram_gb_hour=self.ram_gb_hour, disk_gb_month=self.disk_gb_month)
        return [first, *self.changes]


class TenantsFile(Strict):
    version: Literal[1]
    platform: Platform
    data_halls: Annotated[list[DataHall], Field(min_length=1)]
    tenants: Annotated[list[TenantEntry], Field(min_length=1)]
    catalog: Catalog
    rate_card: RateCard


def _format_path(loc: tuple[int | str, ...]) -> str:
    path = ""
    for part in loc:
        if isinstance(part, int):
            path += f"[{part}]"
        else:
            path += ("." if path else "") + str(part)
    return path or "(top level)"


def _describe(error: dict[str, Any]) -> str:
    kind = error["type"]
    given = error.get("input")
    if kind == "missing":
        return "is required but missing"
    if kind == "extra_forbidden":
        return "is not a known key (check the spelling)"
    if kind in {"int_type", "int_parsing"}:
        return f"must be a whole number (got {given!r})"
    if kind in {"string_type"}:
        return f"must be text (got {given!r})"
    if kind in {"list_type"}:
        return f"must be a list (got {given!r})"
    if kind in {"model_type", "model_attributes_type", "dict_type"}:
        return f"must be a mapping of keys to values (got {given!r})"
    if kind == "greater_than":
        return f"must be greater than {error['ctx']['gt']} (got {given!r})"
    if kind == "greater_than_equal":
        return f"must be at least {error['ctx']['ge']} (got {given!r})"
    if kind in {"less_than_equal", "less_than"}:
        limit = error["ctx"].get("le", error["ctx"].get("lt"))
        return f"must be at most {limit} (got {given!r})"
    if kind == "too_short":
        return "must not be empty" if error["ctx"].get("min_length") == 1 and not isinstance(given, str) \
            else f"is too short (got {given!r})"
    if kind == "string_too_short":
        return f"must be at least {error['ctx']['min_length']} characters (got {given!r})"
    if kind == "string_too_long":
        return f"must be at most {error['ctx']['max_length']} characters"
    if kind == "literal_error":
        return f"must be {error['ctx']['expected']} (got {given!r})"
    if kind == "value_error":
        return str(error["msg"]).removeprefix("Value error, ")
    return f"{error['msg']} (got {given!r})"


def _cross_check(doc: TenantsFile) -> list[tuple[str, str]]:
    """Rules that involve more than one entry; returns (path, message) pairs."""
    problems: list[tuple[str, str]] = []

    def unique(items: list[Any], attr: str, where: str) -> None:
        seen: dict[str, int] = {}
        for i, item in enumerate(items):
            value = getattr(item, attr)
            if value in seen:
                problems.append((f"{where}[{i}].{attr}",
                                 f"{value!r} is used twice (also at {where}[{seen[value]}])"))
            seen.setdefault(value, i)

    unique(doc.data_halls, "key", "data_halls")
    unique(doc.tenants, "slug", "tenants")
    unique(doc.catalog.vm_sizes, "key", "catalog.vm_sizes")
    unique(doc.catalog.images, "key", "catalog.images")
    unique(doc.catalog.desktops, "key", "catalog.desktops")
    halls = {h.key for h in doc.data_halls}
    for i, tenant in enumerate(doc.tenants):
        if tenant.slug == "platform":
            problems.append((f"tenants[{i}].slug", "'platform' is reserved for the shared IT service"))
        for j, hall in enumerate(tenant.data_halls):
            if hall not in halls:
                problems.append((f"tenants[{i}].data_halls[{j}]",
                                 f"{hall!r} is not a data hall (known: {', '.join(sorted(halls))})"))
        if len(set(tenant.data_halls)) != len(tenant.data_halls):
            problems.append((f"tenants[{i}].data_halls", "lists a data hall twice"))
        if tenant.quotas.desktops > tenant.quotas.instances:
            problems.append((f"tenants[{i}].quotas.desktops",
                             f"{tenant.quotas.desktops} desktops exceeds the tenant's "
                             f"{tenant.quotas.instances} instances (desktops count as instances)"))
        sizes = {v.key for v in doc.catalog.vm_sizes} | {d.key for d in doc.catalog.desktops}
        for j, key in enumerate(tenant.lease.required_for if tenant.lease else []):
            if key not in sizes:
                problems.append((f"tenants[{i}].lease.required_for[{j}]", f"{key!r} is not a size or desktop "
                                 f"in the catalog (known: {', '.join(sorted(sizes))})"))
        for resource, per_user in tenant.per_user_quotas.model_dump().items():
            if per_user is not None and per_user > getattr(tenant.quotas, resource):
                problems.append((f"tenants[{i}].per_user_quotas.{resource}",
                                 f"per-user limit {per_user} is above the tenant limit "
                                 f"{getattr(tenant.quotas, resource)}"))
    flavors: dict[str, tuple[str, tuple[int, int, int]]] = {}
    specs: list[tuple[str, FlavorSpec]] = [(f"catalog.vm_sizes[{i}]", s) for i, s in enumerate(doc.catalog.vm_sizes)]
    specs += [(f"catalog.desktops[{i}]", d) for i, d in enumerate(doc.catalog.desktops)]
    for where, spec in specs:
        shape = (spec.vcpus, spec.ram_mib, spec.disk_gb)
        if spec.flavor in flavors and flavors[spec.flavor][1] != shape:
            problems.append((f"{where}.flavor", f"flavor {spec.flavor!r} is defined with other "
                             f"vCPUs/RAM/disk at {flavors[spec.flavor][0]}"))
        flavors.setdefault(spec.flavor, (where, shape))
    images = {img.key: img for img in doc.catalog.images}
    for i, desktop in enumerate(doc.catalog.desktops):
        image = images.get(desktop.image)
        if image is None:
            problems.append((f"catalog.desktops[{i}].image",
                             f"{desktop.image!r} is not an image key in catalog.images"))
        elif image.kind != "desktop":
            problems.append((f"catalog.desktops[{i}].image",
                             f"{desktop.image!r} is a VM image; desktops need an image of kind 'desktop'"))
        elif image.min_disk_gb > desktop.disk_gb:
            problems.append((f"catalog.desktops[{i}].disk_gb",
                             f"{desktop.disk_gb} GB is smaller than image {image.key!r} needs "
                             f"({image.min_disk_gb} GB)"))
        if desktop.monthly_price <= 0:
            problems.append((f"catalog.desktops[{i}].monthly_price", "must be more than 0"))
        problems += _dates_in_order(f"catalog.desktops[{i}].price_changes",
                                    [SINCE_ALWAYS] + [c.effective_from for c in desktop.price_changes])
    problems += _check_single_sign_on(doc)
    problems += _dates_in_order("rate_card.changes", [doc.rate_card.effective_from] +
                                [c.effective_from for c in doc.rate_card.changes])
    return problems


def _check_single_sign_on(doc: TenantsFile) -> list[tuple[str, str]]:
    problems: list[tuple[str, str]] = []
    owners: dict[str, str] = {}
    for i, tenant in enumerate(doc.tenants):
        where = f"tenants[{i}]"
        if tenant.sso is None:
            if not tenant.password_sign_in:
                problems.append((f"{where}.password_sign_in",
                                 "false needs an sso provider: otherwise nobody of the tenant could sign in"))
            continue
        sso = tenant.sso
        if (sso.client_secret_env is None) == (sso.client_secret_file is None):
            problems.append((f"{where}.sso", "give exactly one of client_secret_env (an environment variable's "
                             "name) or client_secret_file (a file's path); never the secret itself"))
        roles = [("roles.default", sso.roles.default)]
        roles += [(f"roles.map.{group}", role) for group, role in sso.roles.map.items()]
        for path, role in roles:
            if role not in TENANT_ROLES:
                problems.append((f"{where}.sso.{path}",
                                 f"{role!r} is not a role of a member tenant (known: {', '.join(TENANT_ROLES)})"))
        for j, domain in enumerate(sso.email_domains):
            if domain in owners and owners[domain] != tenant.slug:
                problems.append((f"{where}.sso.email_domains[{j}]",
                                 f"{domain!r} already belongs to tenant {owners[domain]!r}"))
            owners.setdefault(domain, tenant.slug)
    return problems


def _dates_in_order(where: str, dates: list[date]) -> list[tuple[str, str]]:
    """Versions must follow each other: each effective_from after the one before (no two on a day)."""
    return [(f"{where}[{i - 1}].effective_from",
             f"{dates[i]} must be after {dates[i - 1]} (versions are listed in date order, one a day at most)")
            for i in range(1, len(dates)) if dates[i] <= dates[i - 1]]


def parse_tenants_text(text: str, source: str) -> TenantsFile:
    """Parse and validate tenants.yaml content; raise InvalidConfig listing every problem."""
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else "(unknown place)"
        reason = getattr(exc, "problem", None) or str(exc)
        raise InvalidConfig(f"{source}: {where}: not valid YAML: {reason}") from None
    if not isinstance(raw, dict):
        raise InvalidConfig(f"{source}: (top level): must be a mapping with keys version, platform, "
                            "data_halls, tenants, catalog, rate_card")
    try:
        doc = TenantsFile.model_validate(raw)
    except ValidationError as exc:
        lines = [f"{source}: {_format_path(e['loc'])}: {_describe(e)}" for e in exc.errors()]  # type: ignore[arg-type]
        raise InvalidConfig("\n".join(lines)) from None
    problems = _cross_check(doc)
    if problems:
        raise InvalidConfig("\n".join(f"{source}: {path}: {msg}" for path, msg in problems))
    return doc


def load_tenants_file(path: str | Path) -> TenantsFile:
    """Read and validate a tenants.yaml file; raise InvalidConfig naming the file on any problem."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InvalidConfig(f"{path}: file not found (set CLOUD_PORTAL_TENANTS_FILE or pass --tenants)") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise InvalidConfig(f"{path}: cannot be read: {exc}") from None
    return parse_tenants_text(text, str(path))
