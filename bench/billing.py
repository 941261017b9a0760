"""Billing at scale: closing a month, the raw SQL floor, and one person's statement.

A ledger of ``--intervals`` usage intervals (default 1,000,000) over twelve months (December 2025
to November 2026) for ``--users`` people (default 10,000, spread over the member tenants of
tenants.yaml) and their servers: VMs of the catalog sizes and some desktops, running and stopped,
resized and given to a colleague now and then; each server's intervals contiguous, at most one
open. Rows go in with Core ``insert()`` in chunks (the ORM's server-transition guard is not
involved: these are facts, not changes). Then, on each database:

- close:     ``months.close_month("2026-11")`` with the clock just after the month end and a
             reconciliation recorded (the month's lines and row are deleted between runs);
- raw scan:  one SQL aggregate of the same intervals, clipped to the month, × vCPUs, RAM, disk,
             grouped by person and server: the floor that close is compared with (``ratio``);
- statement: a person's pages (the home page's month to date, and any statement page the app
             has: found in its URL map at run time) through the test client, p50/p95 of 30 GETs
             after warm-up, and ``months.statement("2026-11", owner_id=...)`` called directly.

    .venv/bin/python bench/billing.py                                  # both databases, full size
    .venv/bin/python bench/billing.py --database sqlite --intervals 20000 --users 500 --runs 2
    .venv/bin/python bench/billing.py --database sqlite --intervals 200000 --profile 30

PostgreSQL: ``CLOUD_PORTAL_BENCH_DATABASE_URL`` (default the local ``cloud_portal_bench``,
created when missing; its schema is dropped and rebuilt; the test database is never used).
The last line of output is JSON: intervals, close_s and statement_ms (worst database),
raw_scan_s, ratio (worst close/raw), and each database's figures.
"""
from __future__ import annotations

import argparse
import cProfile
import io
import json
import logging
import os
import pstats
import random
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

from sqlalchemy import bindparam, create_engine, delete, func, insert, select, text
from sqlalchemy.engine import make_url

REPO_ROOT = Path(__file__).resolve().parent.parent
if str(REPO_ROOT) not in sys.path:  # run as a script: bench/billing.py
    sys.path.insert(0, str(REPO_ROOT))

DEFAULT_PG_URL = "postgresql://cloud_portal:cloud_portal@127.0.0.1:5432/cloud_portal_bench"
FORBIDDEN_DATABASES = {"cloud_portal_test"}  # CI's; never touched
MONTH = "2026-11"
WINDOW_START = datetime(2025, 12, 1, tzinfo=UTC)
WINDOW_END = datetime(2026, 12, 1, tzinfo=UTC)
#: Close (and the closed month's pages) just after the month end, after a reconciliation.
CLOSE_AT = datetime(2026, 12, 1, 1, 0, tzinfo=UTC)
RECONCILED_AT = datetime(2026, 12, 1, 0, 30, tzinfo=UTC)
#: The home page's month to date: near the end of November, so it covers most of the month.
HOME_AT = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)
PASSWORD = "bench horse battery staple"  # noqa: S105 - a throwaway account in a throwaway database
CHUNK = 50_000
#: Intervals per server on average (1 to 2×this-1, uniform): ~4 changes a month over a life of months.
AVG_INTERVALS_PER_SERVER = 25
DESKTOP_SHARE = 0.10
DELETED_SHARE = 0.25
VM_SIZE_WEIGHTS = {"small": 40, "medium": 35, "large": 18, "xlarge": 7}
VM_IMAGES = ("debian-12", "ubuntu-24-04", "rocky-9")
REQUESTS = 30
WARMUP = 3


def log(message: str) -> None:
    print(message, flush=True)


def percentile_ms(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    p95 = statistics.quantiles(ordered, n=20)[-1] if len(ordered) >= 2 else ordered[0]
    return {"p50": round(statistics.median(ordered) * 1000, 2), "p95": round(p95 * 1000, 2),
            "max": round(ordered[-1] * 1000, 2)}


# Databases ------------------------------------------------------------------------------------

def bench_postgres_url() -> str:
    """``CLOUD_PORTAL_BENCH_DATABASE_URL`` where set; otherwise :func:`local_bench_postgres_url`."""
    return os.environ.get("CLOUD_PORTAL_BENCH_DATABASE_URL") or local_bench_postgres_url()


def local_bench_postgres_url() -> str:
    """The local PostgreSQL's bench database, with the server, role and database made ready by
    scripts/ensure-postgres.sh (a fresh machine has no ``cloud_portal`` role yet)."""
    out = subprocess.run(["bash", str(REPO_ROOT / "scripts" / "ensure-postgres.sh")], check=True,
                         capture_output=True, text=True,
                         env={**os.environ, "CLOUD_PORTAL_TEST_DB_NAME": make_url(DEFAULT_PG_URL).database or ""})
    return out.stdout.strip().splitlines()[-1]


def prepare_postgres(url: str) -> str:
    """The bench database: created when missing, its schema dropped and recreated. Returns the URL."""
    from cloud_portal import database_url as normalise
    url = normalise({"DATABASE_URL": url}, Path("."))
    parsed = make_url(url)
    if parsed.database in FORBIDDEN_DATABASES or not parsed.database:
        raise SystemExit(f"refusing to use database {parsed.database!r}: it is not a bench database")
    admin = create_engine(parsed.set(database="postgres"), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        exists = conn.scalar(text("SELECT 1 FROM pg_database WHERE datname = :name"), {"name": parsed.database})
        if not exists:
            log(f"creating database {parsed.database}")
            conn.execute(text(f'CREATE DATABASE "{parsed.database}"'))
    admin.dispose()
    engine = create_engine(url)
    with engine.begin() as conn:
        conn.execute(text("DROP SCHEMA IF EXISTS public CASCADE"))
        conn.execute(text("CREATE SCHEMA public"))
    engine.dispose()
    return url


def build_app(url: str, instance: Path) -> Any:
    from cloud_portal import create_app
    from cloud_portal.db_schema import upgrade_to_head
    from cloud_portal.extensions import db
    from cloud_portal.tenants.config_file import load_tenants_file
    from cloud_portal.tenants.service import sync_tenants

    app = create_app({"ENV": "testing", "DATABASE_URL": url, "INSTANCE_PATH": str(instance),
                      "QUEUE_IMMEDIATE": True, "LOG_LEVEL": "WARNING", "WTF_CSRF_ENABLED": False,
                      "SECRET_KEY": "bench-secret-key-" + "b" * 32, "TWO_FACTOR_ROLES": "",  # pages, not sign-in
                      "TENANTS_FILE": str(REPO_ROOT / "tenants.yaml")})
    with app.app_context():
        logging.disable(logging.INFO)  # alembic's env.py sets its own logging up: keep it quiet
        try:
            upgrade_to_head()
        finally:
            logging.disable(logging.NOTSET)
        sync_tenants(load_tenants_file(REPO_ROOT / "tenants.yaml"))
        db.session.commit()
    return app


# The ledger -----------------------------------------------------------------------------------

def _epoch(moment: datetime) -> int:
    return int(moment.timestamp())


def _at(seconds: int) -> datetime:
    return datetime.fromtimestamp(seconds, UTC)


class Catalog:
    def __init__(self) -> None:
        from cloud_portal.catalog.service import get_catalog
        catalog = get_catalog()
        self.sizes = {s.key: s for s in catalog.vm_sizes}
        self.size_keys = [k for k in VM_SIZE_WEIGHTS if k in self.sizes] or list(self.sizes)
        self.size_weights = [VM_SIZE_WEIGHTS.get(k, 1) for k in self.size_keys]
        self.desktops = list(catalog.desktops)


def make_people(count: int, rng: random.Random) -> dict[str, Any]:
    """The signed-in member (add_user, with a password), a finance officer, and ``count - 1`` more
    members in bulk (one shared password hash: nobody else signs in). Returns ids and tenants."""
    from werkzeug.security import generate_password_hash

    from cloud_portal.accounts.models import User
    from cloud_portal.accounts.service import add_user
    from cloud_portal.extensions import db
    from cloud_portal.tenants.models import Tenant
    from cloud_portal.tenants.service import get_tenant_by_slug, list_tenants

    members = list_tenants(include_platform=False)
    first = members[0]
    person, _ = add_user(None, email=f"person.{first.slug}@example.cymru", display_name="Bench Person",
                         role="member", tenant=first, password=PASSWORD)
    platform = db.session.scalar(select(Tenant).where(Tenant.is_platform.is_(True))) or get_tenant_by_slug("platform")
    finance, _ = add_user(None, email="finance.bench@example.cymru", display_name="Bench Finance",
                          role="finance", tenant=platform, password=PASSWORD)
    db.session.commit()
    shared_hash = generate_password_hash(secrets.token_urlsafe(16))
    now = WINDOW_START
    rows = []
    for i in range(1, count):
        tenant = members[i % len(members)]
        rows.append({"email": f"user{i:06d}.{tenant.slug}@example.cymru", "display_name": f"Bench user {i}",
                     "password_hash": shared_hash, "role": "member", "tenant_id": tenant.id, "active": True,
                     "session_token": secrets.token_urlsafe(24), "created_at": now})
    for start in range(0, len(rows), CHUNK):
        db.session.execute(insert(User.__table__), rows[start:start + CHUNK])
    db.session.commit()
    people = [(person.id, first.id)] + [
        tuple(r) for r in db.session.execute(select(User.id, User.tenant_id).where(User.email.like("user%"))
                                             .order_by(User.id))]
    by_tenant: dict[int, list[int]] = {}
    for user_id, tenant_id in people:
        by_tenant.setdefault(tenant_id, []).append(user_id)
    halls = {t.id: (t.allowed_halls or ["education"])[0] for t in members}
    others = people[1:]
    rng.shuffle(others)
    people[1:] = others
    return {"person_id": person.id, "person_email": person.email, "finance_email": finance.email,
            "people": people, "by_tenant": by_tenant, "halls": halls}


def generate_ledger(count: int, people: dict[str, Any], catalog: Catalog,
                    rng: random.Random) -> Iterator[tuple[list[dict[str, Any]], list[dict[str, Any]]]]:
    """(servers, intervals) in chunks of about CHUNK intervals, servers first (intervals refer to them)."""
    lo, hi = _epoch(WINDOW_START), _epoch(WINDOW_END)
    users, by_tenant, halls = people["people"], people["by_tenant"], people["halls"]
    server_rows: list[dict[str, Any]] = []
    interval_rows: list[dict[str, Any]] = []
    made, server_id = 0, 0
    while made < count:
        server_id += 1
        k = min(rng.randint(1, 2 * AVG_INTERVALS_PER_SERVER - 1), count - made)
        made += k
        # Everyone has a server before anyone has a second (so the signed-in person has one).
        owner_id, tenant_id = users[server_id - 1] if server_id <= len(users) else rng.choice(users)
        desktop = rng.random() < DESKTOP_SHARE
        if desktop:
            template = rng.choice(catalog.desktops)
            kind, catalog_key, flavor, image = "desktop", template.key, template.flavor, template.image_key
            vcpus, ram, disk = template.vcpus, template.ram_mib, template.disk_gb
        else:
            size = catalog.sizes[rng.choices(catalog.size_keys, catalog.size_weights)[0]]
            kind, catalog_key, flavor, image = "vm", size.flavor, size.flavor, rng.choice(VM_IMAGES)
            vcpus, ram, disk = size.vcpus, size.ram_mib, size.disk_gb
        start = rng.randint(lo, hi - 86_400)
        # The signed-in person's servers live to the end (their statement has lines).
        deleted = rng.random() < DELETED_SHARE and owner_id != people["person_id"]
        end = rng.randint(start + 60 * k, hi - 1) if deleted else None
        changes = sorted(rng.sample(range(start + 1, end or hi), k - 1)) if k > 1 else []
        bounds = [start, *changes]
        state, cause = "running", "created"
        for i, began in enumerate(bounds):
            ended = bounds[i + 1] if i + 1 < len(bounds) else end
            interval_rows.append({"server_id": server_id, "owner_id": owner_id, "tenant_id": tenant_id,
                                  "kind": kind, "catalog_key": catalog_key, "vcpus": vcpus, "ram_mib": ram,
                                  "disk_gb": disk, "state": state, "started_at": _at(began),
                                  "ended_at": None if ended is None else _at(ended), "cause": cause,
                                  # the ORM keeps these in step; a Core insert gives them itself
                                  "started_us": began * 1_000_000,
                                  "ended_us": None if ended is None else ended * 1_000_000})
            if ended is None or i + 1 == len(bounds):
                break
            roll = rng.random()
            if kind == "vm" and roll < 0.12:  # resized to another size, same state
                size = catalog.sizes[rng.choice([s for s in catalog.size_keys if catalog.sizes[s].flavor != flavor])]
                catalog_key = flavor = size.flavor
                vcpus, ram, disk, cause = size.vcpus, size.ram_mib, size.disk_gb, "resize"
            elif 0.12 <= roll < 0.125 and len(by_tenant[tenant_id]) > 1 and owner_id != people["person_id"]:
                # given to a colleague
                owner_id, cause = rng.choice(by_tenant[tenant_id]), "transfer"
            else:
                state = "stopped" if state == "running" else "running"
                cause = "stop" if state == "stopped" else "start"
        server_rows.append({
            "id": server_id, "tenant_id": tenant_id, "owner_id": owner_id, "request_id": None,
            "openstack_id": f"bench-{server_id:010d}", "kind": kind, "name": f"{kind}-{server_id}",
            "status": "DELETED" if end is not None else ("ACTIVE" if state == "running" else "SHUTOFF"),
            "task": None, "flavor": flavor, "vcpus": vcpus, "ram_mib": ram, "disk_gb": disk, "image_key": image,
            "data_hall": halls[tenant_id], "fixed_ip": None, "problem": None, "reservation_id": None,
            "created_at": _at(start), "updated_at": _at(bounds[-1]),
            "deleted_at": None if end is None else _at(end), "last_seen_at": None})
        if len(interval_rows) >= CHUNK or made >= count:
            yield server_rows, interval_rows
            server_rows, interval_rows = [], []


def populate(app: Any, database: str, users: int, intervals: int, seed: int) -> dict[str, Any]:
    from cloud_portal.billing.models import UsageInterval
    from cloud_portal.extensions import db
    from cloud_portal.provisioning import models as m

    rng = random.Random(seed)
    with app.app_context():
        t0 = time.perf_counter()
        people = make_people(users, rng)
        people_s = time.perf_counter() - t0
        catalog = Catalog()
        servers = made = 0
        for server_rows, interval_rows in generate_ledger(intervals, people, catalog, rng):
            db.session.execute(insert(m.Server.__table__), server_rows)
            db.session.execute(insert(UsageInterval.__table__), interval_rows)
            db.session.commit()
            servers += len(server_rows)
            made += len(interval_rows)
            if sys.stdout.isatty():
                print(f"\r  {database}: {made:,} intervals, {servers:,} servers "
                      f"({time.perf_counter() - t0:.0f} s)", end="", flush=True)
        if sys.stdout.isatty():
            print()
        if db.engine.dialect.name == "postgresql":  # explicit ids: move the sequence past them
            db.session.execute(text("SELECT setval(pg_get_serial_sequence('servers', 'id'), "
                                    "(SELECT max(id) FROM servers))"))
        db.session.add(m.ReconcileRun(finished_at=RECONCILED_AT))
        db.session.commit()
        load_s = time.perf_counter() - t0
        analyse_s = 0.0
        if db.engine.dialect.name == "postgresql":  # as autovacuum would soon after a load like this
            t1 = time.perf_counter()
            db.session.execute(text("ANALYZE"))
            db.session.commit()
            analyse_s = time.perf_counter() - t1
        open_count = db.session.scalar(select(func.count()).select_from(UsageInterval)
                                       .where(UsageInterval.ended_at.is_(None)))
        person_intervals = db.session.scalar(select(func.count()).select_from(UsageInterval)
                                             .where(UsageInterval.owner_id == people["person_id"]))
        db.session.remove()
    return {"person_id": people["person_id"], "person_email": people["person_email"],
            "finance_email": people["finance_email"], "users": len(people["people"]), "servers": servers,
            "intervals": made, "open_intervals": open_count, "person_intervals": person_intervals,
            "people_s": round(people_s, 2), "generation_s": round(load_s, 2), "analyse_s": round(analyse_s, 2)}


# Close ----------------------------------------------------------------------------------------

def reopen(app: Any) -> None:
    """Undo a close: its lines and its month row (DELETE is allowed; UPDATE of lines is not).

    On PostgreSQL the deleted lines are vacuumed away too: a real close never meets a hundred
    thousand dead lines of its own month in the table and its indexes, and each run would
    otherwise be slower than the one before."""
    from cloud_portal.billing.models import BillingMonth, StatementLine
    from cloud_portal.extensions import db
    with app.app_context():
        db.session.execute(delete(StatementLine).where(StatementLine.month == MONTH))
        db.session.execute(delete(BillingMonth).where(BillingMonth.month == MONTH))
        db.session.commit()
        if db.engine.dialect.name == "postgresql":
            with db.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
                conn.execute(text("VACUUM ANALYZE statement_lines"))
        db.session.remove()


def close_once(app: Any, profile: int = 0) -> tuple[float, dict[str, Any]]:
    from cloud_portal.billing import months
    from cloud_portal.extensions import db
    from cloud_portal.timeutil import frozen_at
    with app.app_context(), frozen_at(CLOSE_AT):
        profiler = cProfile.Profile() if profile else None
        t0 = time.perf_counter()
        if profiler:
            profiler.enable()
        result = months.close_month(MONTH, "bench")
        if profiler:
            profiler.disable()
        seconds = time.perf_counter() - t0
        assert not result.already_closed
        vcpu_hours = sum((line.quantity for line in result.lines if line.component == "vcpu"), Decimal(0))
        facts = {"lines": len(result.lines), "total_gbp": str(result.total), "vcpu_hours": vcpu_hours}
        db.session.remove()
    if profiler:
        for order in ("cumulative", "tottime"):
            out = io.StringIO()
            pstats.Stats(profiler, stream=out).strip_dirs().sort_stats(order).print_stats(profile)
            log(f"--- close_month profile, top {profile} by {order} ---")
            log("\n".join(line for line in out.getvalue().splitlines() if line.strip())[:12000])
    return seconds, facts


# The raw floor --------------------------------------------------------------------------------

def raw_sql(dialect: str) -> str:
    """One statement: intervals overlapping [:start, :end), clipped to it, seconds × size, per person and server."""
    if dialect == "postgresql":
        clip_start, clip_end = "GREATEST(started_at, :start)", "LEAST(COALESCE(ended_at, :end), :end)"
        seconds = f"EXTRACT(EPOCH FROM ({clip_end} - {clip_start}))"
    else:
        clip_start, clip_end = "MAX(started_at, :start)", "MIN(COALESCE(ended_at, :end), :end)"
        seconds = f"(julianday({clip_end}) - julianday({clip_start})) * 86400.0"
    return f"""
        SELECT owner_id, server_id,
               SUM(CASE WHEN kind = 'vm' AND state = 'running' THEN s * vcpus ELSE 0 END) AS vcpu_s,
               SUM(CASE WHEN kind = 'vm' AND state = 'running' THEN s * ram_mib ELSE 0 END) AS ram_mib_s,
               SUM(CASE WHEN kind = 'vm' THEN s * disk_gb ELSE 0 END) AS disk_gb_s,
               SUM(CASE WHEN kind = 'desktop' THEN s ELSE 0 END) AS desktop_s
        FROM (SELECT owner_id, server_id, kind, state, vcpus, ram_mib, disk_gb, {seconds} AS s
              FROM usage_intervals
              WHERE started_at < :end AND (ended_at IS NULL OR ended_at > :start)) AS clipped
        GROUP BY owner_id, server_id"""  # noqa: S608 - built from constants; values are bound parameters


def raw_once(app: Any) -> tuple[float, dict[str, Any]]:
    from cloud_portal.billing import charges, months
    from cloud_portal.extensions import db
    from cloud_portal.timeutil import UTCDateTime
    with app.app_context():
        start, end = charges.month_bounds(MONTH, months.billing_zone())
        statement = text(raw_sql(db.engine.dialect.name)).bindparams(
            bindparam("start", type_=UTCDateTime()), bindparam("end", type_=UTCDateTime()))
        t0 = time.perf_counter()
        rows = db.session.execute(statement, {"start": start, "end": end}).all()
        seconds = time.perf_counter() - t0
        db.session.remove()
    vcpu_hours = sum(float(r.vcpu_s or 0) for r in rows) / 3600
    return seconds, {"groups": len(rows), "vcpu_hours": vcpu_hours}


# A person's statement -------------------------------------------------------------------------

def timed(fn: Callable[[], Any], count: int = REQUESTS) -> tuple[dict[str, float], Any]:
    for _ in range(WARMUP):
        last = fn()
    samples = []
    for _ in range(count):
        t0 = time.perf_counter()
        last = fn()
        samples.append(time.perf_counter() - t0)
    return percentile_ms(samples), last


STATEMENT_WORDS = ("statement", "charges", "spend")


def statement_rules(app: Any) -> list[Any]:
    """Rules that may show a person's statement: found in the URL map now (pages are being added)."""
    found = []
    for rule in app.url_map.iter_rules():
        text_ = rule.rule
        if "GET" not in (rule.methods or ()) or rule.endpoint == "static":
            continue
        if not set(rule.arguments) <= {"month", "user_id"} or any(w in text_ for w in ("export", "close", ".json")):
            continue
        if rule.endpoint == "finance.person" or any(w in text_ for w in STATEMENT_WORDS):
            found.append(rule)
    return sorted(found, key=lambda r: r.rule)


def time_statement(app: Any, info: dict[str, Any]) -> dict[str, Any]:
    from cloud_portal.accounts.models import User
    from cloud_portal.accounts.service import create_api_token
    from cloud_portal.billing import months
    from cloud_portal.extensions import db
    from cloud_portal.timeutil import frozen_at

    person_id = info["person_id"]
    out: dict[str, Any] = {"pages": {}}
    with app.app_context():
        token = create_api_token(None, db.session.get(User, person_id), "bench")
        db.session.commit()
        db.session.remove()

    def signed_in(email: str) -> Any:
        client = app.test_client()
        response = client.post("/sign-in", data={"email": email, "password": PASSWORD})
        if response.status_code != 302:
            raise RuntimeError(f"sign-in as {email} answered {response.status_code}")
        return client

    def page(label: str, client: Any, url: str, headers: dict[str, str] | None = None) -> None:
        responses: list[int] = []

        def get() -> int:
            status = client.get(url, headers=headers or {}).status_code
            responses.append(status)
            return status
        figures, status = timed(get)
        figures["status"] = status
        out["pages"][label] = figures
        bad = sorted({s for s in responses if s != 200})
        log(f"  GET {url:<48} as {label.split(' ')[0]:<8} p50 {figures['p50']:>8.2f} ms  "
            f"p95 {figures['p95']:>8.2f} ms  status {status}{'  (not 200: ' + str(bad) + ')' if bad else ''}")

    # The home page: the person's month to date (and forecast), near the end of November.
    with frozen_at(HOME_AT):
        page("member /", signed_in(info["person_email"]), "/")
    # Any page of the URL map that shows a person's statement, for the closed month.
    with frozen_at(CLOSE_AT):
        member, finance = signed_in(info["person_email"]), signed_in(info["finance_email"])
        for rule in statement_rules(app):
            url = rule.rule.replace("<month>", MONTH).replace("<int:user_id>", str(person_id))
            url = url.replace("<user_id>", str(person_id))
            if "<month>" not in rule.rule:
                url += f"?month={MONTH}"
            if url.startswith("/api/"):
                page(f"member(api) {rule.rule}", app.test_client(), url, {"Authorization": f"Bearer {token}"})
            elif rule.rule.startswith("/finance/"):
                page(f"finance {rule.rule}", finance, url)
            else:
                page(f"member {rule.rule}", member, url)
        with app.app_context():
            figures, (_, rows) = timed(lambda: months.statement(MONTH, owner_id=person_id))
            db.session.remove()
    figures["lines"] = len(rows)
    out["statement_direct_closed_ms"] = figures
    log(f"  months.statement({MONTH!r}, owner_id={person_id}) closed: p50 {figures['p50']:.2f} ms  "
        f"p95 {figures['p95']:.2f} ms  ({len(rows)} lines)")
    ok = [p["p95"] for p in out["pages"].values() if p["status"] == 200]
    out["statement_ms"] = max(ok) if ok else None
    return out


def time_statement_open(app: Any, person_id: int) -> dict[str, Any]:
    """months.statement for the month while still open: worked out from the ledger."""
    from cloud_portal.billing import months
    from cloud_portal.extensions import db
    from cloud_portal.timeutil import frozen_at
    with app.app_context(), frozen_at(CLOSE_AT):
        figures, (closed, rows) = timed(lambda: months.statement(MONTH, owner_id=person_id))
        assert not closed
        db.session.remove()
    figures["lines"] = len(rows)
    log(f"  months.statement({MONTH!r}, owner_id={person_id}) open:   p50 {figures['p50']:.2f} ms  "
        f"p95 {figures['p95']:.2f} ms  ({len(rows)} lines)")
    return figures


# Main -----------------------------------------------------------------------------------------

def run_database(database: str, args: argparse.Namespace) -> dict[str, Any]:
    from cloud_portal.extensions import db
    with tempfile.TemporaryDirectory(prefix="bench-billing-") as tmp:
        if database == "sqlite":
            url = f"sqlite:///{Path(tmp) / 'bench.db'}"
        else:
            url = prepare_postgres(bench_postgres_url())
        log(f"== {database}: {args.users:,} users, {args.intervals:,} intervals")
        app = build_app(url, Path(tmp))
        info = populate(app, database, args.users, args.intervals, args.seed)
        log(f"  generation: {info['generation_s']:.1f} s ({info['intervals']:,} intervals, {info['servers']:,} "
            f"servers, {info['users']:,} users, {info['open_intervals']:,} open; people {info['people_s']:.1f} s"
            + (f"; ANALYZE {info['analyse_s']:.1f} s" if info["analyse_s"] else "") + ")")
        with app.app_context():
            from cloud_portal.billing import charges, months
            from cloud_portal.billing.models import UsageInterval
            start, end = charges.month_bounds(MONTH, months.billing_zone())
            in_month = db.session.scalar(select(func.count()).select_from(UsageInterval).where(
                UsageInterval.started_at < end, (UsageInterval.ended_at.is_(None)) | (UsageInterval.ended_at > start)))
            db.session.remove()
        log(f"  intervals overlapping {MONTH}: {in_month:,}; the signed-in person has {info['person_intervals']} "
            "intervals in all")
        statement_open = time_statement_open(app, info["person_id"])

        close_runs, close_facts = [], {}
        for run in range(args.runs):
            if run:
                reopen(app)
            seconds, close_facts = close_once(app, args.profile if run == 0 else 0)
            close_runs.append(seconds)
            log(f"  close {MONTH} run {run + 1}: {seconds:.3f} s ({close_facts['lines']:,} lines, "
                f"£{Decimal(close_facts['total_gbp']):,.2f})")
        raw_runs, raw_facts = [], {}
        for run in range(args.runs):
            seconds, raw_facts = raw_once(app)
            raw_runs.append(seconds)
            log(f"  raw scan run {run + 1}: {seconds:.3f} s ({raw_facts['groups']:,} person × server groups)")
        close_vcpu_h = float(close_facts["vcpu_hours"])
        agree = abs(close_vcpu_h - raw_facts["vcpu_hours"]) <= max(1e-6 * close_vcpu_h, 0.01)
        log(f"  check: vCPU-hours close {close_vcpu_h:,.3f} vs raw {raw_facts['vcpu_hours']:,.3f} "
            f"({'agree' if agree else 'DISAGREE'})")
        statement = time_statement(app, info)  # the month stays closed from the last run
        with app.app_context():
            db.session.remove()
            db.engine.dispose()
    close_s, raw_s = statistics.median(close_runs), statistics.median(raw_runs)
    return {"database": database, **info, "intervals_in_month": in_month,
            "close_s": round(close_s, 3), "close_runs_s": [round(s, 3) for s in close_runs],
            "lines": close_facts["lines"], "total_gbp": close_facts["total_gbp"],
            "raw_scan_s": round(raw_s, 3), "raw_runs_s": [round(s, 3) for s in raw_runs],
            "raw_groups": raw_facts["groups"], "ratio": round(close_s / raw_s, 1) if raw_s else None,
            "vcpu_hours_agree": agree, "statement_direct_open_ms": statement_open, **statement}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--database", choices=("sqlite", "postgresql", "both"), default="both")
    parser.add_argument("--intervals", type=int, default=1_000_000)
    parser.add_argument("--users", type=int, default=10_000)
    parser.add_argument("--runs", type=int, default=3, help="runs of close and of the raw scan (median)")
    parser.add_argument("--seed", type=int, default=2026)
    parser.add_argument("--profile", type=int, default=0, metavar="N",
                        help="profile the first close with cProfile and print the top N functions")
    args = parser.parse_args(argv)
    if args.users < 2 or args.intervals < 1 or args.runs < 1:
        parser.error("need at least 2 users, 1 interval and 1 run")
    databases = ["sqlite", "postgresql"] if args.database == "both" else [args.database]
    results = [run_database(database, args) for database in databases]

    log("")
    for r in results:
        log(f"{r['database']:<11} close {r['close_s']:.3f} s  raw {r['raw_scan_s']:.3f} s  ratio {r['ratio']}  "
            f"statement p95 {r['statement_ms']} ms  generation {r['generation_s']:.1f} s")
    ratios = [r["ratio"] for r in results if r["ratio"] is not None]
    pages = [r["statement_ms"] for r in results if r["statement_ms"] is not None]
    summary = {
        "intervals": results[0]["intervals"], "users": results[0]["users"],
        "close_s": max(r["close_s"] for r in results),
        "raw_scan_s": max(r["raw_scan_s"] for r in results),
        "ratio": max(ratios) if ratios else None,
        "statement_ms": max(pages) if pages else None,
        "targets": {"ratio": 3, "statement_ms": 50}, "runs": args.runs,
        "databases": {r["database"]: r for r in results},
    }
    print(json.dumps(summary, default=str))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
