"""The usage ledger: every server-state change closes the open interval and opens the next.

Registered on :func:`provisioning.servers.on_transition`, so it runs inside the change's own
transaction with the time the change happened. Billing starts at a server's first ACTIVE and
ends at its deletion; a stopped or errored server keeps an interval (its disk is billed).
"""
from __future__ import annotations

import functools
from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, ColumnElement, Integer, Select, and_, bindparam, case, func, literal, select

from cloud_portal.billing import charges
from cloud_portal.billing.models import RUNNING, STOPPED, UsageInterval
from cloud_portal.catalog.service import rate_versions
from cloud_portal.extensions import db
from cloud_portal.provisioning import models as m
from cloud_portal.provisioning.servers import Change, on_transition
from cloud_portal.timeutil import epoch_micros

_FACTS = ("owner_id", "tenant_id", "kind", "catalog_key", "vcpus", "ram_mib", "disk_gb", "state")


def _facts(server: m.Server) -> dict[str, object] | None:
    """What is billed about the server now; None once it is deleted."""
    if server.status == m.SERVER_DELETED:
        return None
    catalog_key = server.request.catalog_key if server.kind == m.KIND_DESKTOP and server.request else server.flavor
    return {"owner_id": server.owner_id, "tenant_id": server.tenant_id, "kind": server.kind,
            "catalog_key": catalog_key, "vcpus": server.vcpus, "ram_mib": server.ram_mib,
            "disk_gb": server.disk_gb, "state": RUNNING if server.status == m.SERVER_ACTIVE else STOPPED}


def open_interval(server_id: int) -> UsageInterval | None:
    return db.session.scalar(select(UsageInterval).where(UsageInterval.server_id == server_id,
                                                         UsageInterval.ended_at.is_(None)))


def record_change(change: Change) -> None:
    """Close the server's open interval at ``change.at`` and open the next (unless deleted)."""
    server = change.server
    if server.id is None:
        db.session.flush()
    current = open_interval(server.id)
    facts = _facts(server)
    if current is not None:
        if facts is not None and all(getattr(current, k) == v for k, v in facts.items()):
            return  # e.g. a reboot: nothing billed changed
        # A change can't end an interval before it began (clocks of Nova and the portal differ).
        current.ended_at = max(change.at, current.started_at)
    elif facts is None or (facts["state"] != RUNNING and not _ever_billed(server.id)):
        return  # billing starts at the first ACTIVE
    if facts is not None:
        start = current.ended_at if current is not None and current.ended_at else change.at
        db.session.add(UsageInterval(server_id=server.id, started_at=start, cause=change.cause[:80], **facts))
        db.session.flush()  # the database's one-open-interval rule is checked here, in the change


def _ever_billed(server_id: int) -> bool:
    return db.session.scalar(select(UsageInterval.id).where(UsageInterval.server_id == server_id).limit(1)) is not None


on_transition(record_change)


def intervals_between(start: datetime, end: datetime, *, owner_id: int | None = None,
                      tenant_id: int | None = None, server_id: int | None = None) -> list[charges.Interval]:
    """Ledger intervals overlapping [start, end), optionally one person's, tenant's or server's
    (the rows behind :func:`usage_between`, for checking it)."""
    u = UsageInterval
    # Plain columns, not ORM objects: closing a month reads every interval of it.
    query = select(u.server_id, u.owner_id, u.tenant_id, u.kind, u.catalog_key, u.vcpus, u.ram_mib, u.disk_gb,
                   u.state, u.started_at, u.ended_at).where(u.started_at < end,
                                                            (u.ended_at.is_(None)) | (u.ended_at > start))
    if owner_id is not None:
        query = query.where(u.owner_id == owner_id)
    if tenant_id is not None:
        query = query.where(u.tenant_id == tenant_id)
    if server_id is not None:
        query = query.where(u.server_id == server_id)
    return [charges.Interval(r[0], r[1], r[2], r[3], r[4], r[5], r[6], r[7], r[8] == RUNNING, r[9], r[10])
            for r in db.session.execute(query)]


def price_versions() -> dict[str, list[charges.PriceVersion]]:
    return {key: [charges.PriceVersion(key, since, price) for since, price in versions]
            for key, versions in rate_versions().items()}


def usage_query(begin: datetime, end: datetime, *, owner_id: int | None = None, tenant_id: int | None = None,
                server_id: int | None = None, segment: int | None = None) -> tuple[Select[Any], dict[str, int]]:
    """The statement behind :func:`usage_between` (one row per line group, the columns of
    :class:`charges.Usage` in order) and its parameters; with ``segment``, a first column
    carrying that number and parameters named for it, so several stretches of a month can be
    summed by one UNION ALL."""
    filters = {"owner_id": owner_id, "tenant_id": tenant_id, "server_id": server_id}
    given = tuple(name for name, value in filters.items() if value is not None)
    params = {_bound_name("begin_us", segment): epoch_micros(begin), _bound_name("end_us", segment): epoch_micros(end)}
    params.update({_bound_name(name, segment): filters[name] for name in given})  # type: ignore[misc]
    return _usage_statement(db.session.get_bind().dialect.name, given, segment), params


def _bound_name(name: str, segment: int | None) -> str:
    """A bound parameter's name; per segment, so a UNION ALL of segments keeps them apart."""
    return name if segment is None else f"{name}_{segment}"


@functools.lru_cache(maxsize=128)
def _usage_statement(dialect: str, filters: tuple[str, ...], segment: int | None) -> Select[Any]:
    """Built once per shape: building this statement cost more than the database took to run it
    for one person's month (the home page runs it on every view)."""
    u = UsageInterval.__table__.c
    greatest, least = (func.greatest, func.least) if dialect == "postgresql" else (func.max, func.min)
    begin_us = bindparam(_bound_name("begin_us", segment), type_=BigInteger())
    end_us = bindparam(_bound_name("end_us", segment), type_=BigInteger())
    used = (least(func.coalesce(u.ended_us, end_us), end_us) - greatest(u.started_us, begin_us)).label("us")
    conditions = [u.started_us < end_us, (u.ended_us.is_(None)) | (u.ended_us > begin_us)]
    conditions += [u[name] == bindparam(_bound_name(name, segment), type_=Integer()) for name in filters]
    desktop_key = case((u.kind == m.KIND_DESKTOP, u.catalog_key), else_=literal("")).label("price_key")
    running = (u.state == RUNNING).label("running")
    inner = select(u.owner_id, u.server_id, u.tenant_id, u.kind, desktop_key, running, u.vcpus, u.ram_mib,
                   u.disk_gb, used).where(and_(*conditions)).subquery()
    c = inner.c

    def while_running(value: ColumnElement[int]) -> ColumnElement[int]:
        return func.sum(case((c.running, value), else_=literal(0)))

    sums = [c.owner_id, c.server_id, c.tenant_id, c.kind, c.price_key, func.sum(c.us).label("micros"),
            while_running(c.us).label("running_micros"), while_running(c.us * c.vcpus).label("vcpu_micros"),
            while_running(c.us * c.ram_mib).label("ram_mib_micros"), func.sum(c.us * c.disk_gb).label("disk_gb_micros")]
    if segment is not None:
        sums.insert(0, literal(segment, Integer()).label("segment"))
    return (select(*sums)
            .group_by(c.owner_id, c.server_id, c.tenant_id, c.kind, c.price_key)
            .having(func.sum(c.us) > 0))  # a zero-length interval alone bills nothing, as in the arithmetic


def usage_between(begin: datetime, end: datetime, *, owner_id: int | None = None, tenant_id: int | None = None,
                  server_id: int | None = None) -> list[charges.Usage]:
    """The ledger clipped to [begin, end) and summed by the database per line group (open
    intervals run to ``end``): one query, whatever the number of intervals; the same sums as
    :func:`charges.usage_of` over :func:`intervals_between`. Integer microseconds throughout,
    so both databases sum exactly."""
    query, params = usage_query(begin, end, owner_id=owner_id, tenant_id=tenant_id, server_id=server_id)
    return [charges.Usage(r[0], r[1], r[2], r[3], r[4], *(int(v) for v in r[5:]))
            for r in db.session.execute(query, params)]
