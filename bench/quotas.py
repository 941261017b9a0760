"""Quota decisions per second under concurrency, and overshoot (accepted beyond the limit).

Each configuration (database × concurrent clients) runs a fixed number of decisions several times.
A decision is one :func:`cloud_portal.quotas.service.reserve` call for 1 vCPU against a tenant
whose vCPU limit is half the decisions, so every run both accepts and refuses; overshoot is what
the database holds beyond the limit after the run (it must be 0). Clients are threads, each with
its own app context and session, as in a threaded web server or a worker pool.

    .venv/bin/python -m bench.quotas                       # SQLite and PostgreSQL, 1/8/32 clients
    .venv/bin/python -m bench.quotas --databases sqlite --decisions 200 --repeats 2

PostgreSQL: the URL printed by ``scripts/ensure-postgres.sh`` for the database
``cloud_portal_bench`` (its schema is dropped and rebuilt; the test database is not touched),
or ``--postgres-url``. The last line of output is JSON for tooling.
"""
from __future__ import annotations

import argparse
import json
import logging
import secrets
import statistics
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, delete, select, text

REPO_ROOT = Path(__file__).resolve().parent.parent
TENANT_SLUG = "torfaen"


@dataclass
class Run:
    database: str
    clients: int
    repeat: int
    decisions: int
    accepted: int
    refused: int
    errors: int
    seconds: float
    decisions_per_s: float
    #: vCPUs held beyond the limit after the run (must be 0).
    overshoot: int
    p95_ms: float
    #: CPU time of this (client) process as a share of wall time; near 100 = Python-bound (GIL).
    client_cpu_pct: int


def postgres_url(explicit: str | None) -> str:
    from bench.billing import local_bench_postgres_url
    return explicit or local_bench_postgres_url()


def build_app(url: str, instance: Path) -> Any:
    """A portal app on a freshly migrated database with tenants.yaml applied and bench users."""
    from cloud_portal import create_app
    from cloud_portal import database_url as normalise
    from cloud_portal.accounts.service import add_user
    from cloud_portal.db_schema import upgrade_to_head
    from cloud_portal.extensions import db
    from cloud_portal.tenants.config_file import load_tenants_file
    from cloud_portal.tenants.service import get_tenant_by_slug, sync_tenants

    url = normalise({"DATABASE_URL": url}, instance)
    if url.startswith("postgresql"):
        engine = create_engine(url)
        with engine.begin() as conn:
            conn.execute(text("DROP SCHEMA IF EXISTS public CASCADE"))
            conn.execute(text("CREATE SCHEMA public"))
        engine.dispose()
    app = create_app({"ENV": "testing", "DATABASE_URL": url, "INSTANCE_PATH": str(instance),
                      "QUEUE_IMMEDIATE": True, "LOG_LEVEL": "WARNING",
                      "TENANTS_FILE": str(REPO_ROOT / "tenants.yaml")})
    logging.getLogger("alembic").setLevel(logging.WARNING)
    with app.app_context():
        upgrade_to_head()
        sync_tenants(load_tenants_file(REPO_ROOT / "tenants.yaml"))
        db.session.commit()
        tenant = get_tenant_by_slug(TENANT_SLUG)
        for i in range(32):
            add_user(None, email=f"bench{i}.{TENANT_SLUG}@example.cymru", display_name=f"Bench {i}",
                     role="member", tenant=tenant, password=secrets.token_urlsafe(16))  # never signs in
        db.session.commit()
    return app


def reset(app: Any, vcpu_limit: int) -> tuple[int, list[int]]:
    """Empty the tenant's reservations; set its vCPU limit, others large, no per-user limits."""
    from cloud_portal.accounts.models import User
    from cloud_portal.extensions import db
    from cloud_portal.quotas.models import SCOPE_PER_USER, SCOPE_TENANT, QuotaLimit, QuotaReservation, QuotaUsage
    from cloud_portal.tenants.service import get_tenant_by_slug

    with app.app_context():
        tenant = get_tenant_by_slug(TENANT_SLUG)
        assert tenant is not None
        db.session.execute(delete(QuotaReservation).where(QuotaReservation.tenant_id == tenant.id))
        db.session.execute(delete(QuotaUsage).where(QuotaUsage.tenant_id == tenant.id))
        db.session.execute(delete(QuotaLimit).where(QuotaLimit.tenant_id == tenant.id))
        for resource in ("instances", "vcpus", "ram_mib", "disk_gb", "desktops"):
            db.session.add(QuotaLimit(tenant_id=tenant.id, scope=SCOPE_TENANT, resource=resource,
                                      limit=vcpu_limit if resource == "vcpus" else 10_000_000))
        db.session.execute(delete(QuotaLimit).where(QuotaLimit.tenant_id == tenant.id,
                                                    QuotaLimit.scope == SCOPE_PER_USER))
        user_ids = list(db.session.scalars(select(User.id).where(User.tenant_id == tenant.id)
                                           .order_by(User.id)))
        db.session.commit()
        return tenant.id, user_ids


def held_vcpus(app: Any, tenant_id: int) -> int:
    from cloud_portal.quotas.service import usage_for_tenant
    with app.app_context():
        return usage_for_tenant(tenant_id)["vcpus"]


def run_once(app: Any, database: str, clients: int, decisions: int, repeat: int) -> Run:
    from cloud_portal.accounts.models import User
    from cloud_portal.errors import QuotaExceeded
    from cloud_portal.extensions import db
    from cloud_portal.quotas.service import reserve
    from cloud_portal.tenants.models import Tenant

    limit = decisions // 2
    tenant_id, user_ids = reset(app, limit)
    remaining = [decisions]
    counts = {"accepted": 0, "refused": 0, "errors": 0}
    latencies: list[float] = []
    lock = threading.Lock()
    start = threading.Barrier(clients + 1)

    def take() -> int | None:
        with lock:
            if remaining[0] <= 0:
                return None
            remaining[0] -= 1
            return remaining[0]

    def client(n: int) -> None:
        with app.app_context():
            mine: list[float] = []
            tally = {"accepted": 0, "refused": 0, "errors": 0}
            # The client's tenant and person are loaded once and detached (as a web request has
            # its signed-in user already), so the figures are quota decisions, not user loading.
            tenant = db.session.get(Tenant, tenant_id)
            user = db.session.get(User, user_ids[n % len(user_ids)])
            db.session.expunge_all()
            db.session.commit()
            start.wait()
            try:
                while (ticket := take()) is not None:
                    t0 = time.perf_counter()
                    try:
                        reserve(tenant, user, vcpus=1, ram_mib=1024, disk_gb=10, instances=1,
                                purpose=f"bench:{repeat}:{ticket}")
                        tally["accepted"] += 1
                    except QuotaExceeded:
                        tally["refused"] += 1
                    except Exception as exc:  # noqa: BLE001  (counted and shown; a bench keeps going)
                        tally["errors"] += 1
                        print(f"  error in client {n}: {exc!r}", file=sys.stderr)
                        db.session.rollback()
                    mine.append(time.perf_counter() - t0)
            finally:
                db.session.remove()
                with lock:
                    latencies.extend(mine)
                    for key, value in tally.items():
                        counts[key] += value

    threads = [threading.Thread(target=client, args=(n,)) for n in range(clients)]
    for thread in threads:
        thread.start()
    start.wait()
    t0, cpu0 = time.perf_counter(), time.process_time()
    for thread in threads:
        thread.join()
    seconds = time.perf_counter() - t0
    cpu = time.process_time() - cpu0
    held = held_vcpus(app, tenant_id)
    p95 = statistics.quantiles(latencies, n=20)[-1] * 1000 if len(latencies) >= 2 else 0.0
    return Run(database=database, clients=clients, repeat=repeat, decisions=decisions,
               accepted=counts["accepted"], refused=counts["refused"], errors=counts["errors"],
               seconds=round(seconds, 3), decisions_per_s=round(decisions / seconds, 1),
               overshoot=max(0, held - limit), p95_ms=round(p95, 1),
               client_cpu_pct=round(100 * cpu / seconds))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--databases", default="sqlite,postgresql")
    parser.add_argument("--clients", default="1,8,32")
    parser.add_argument("--decisions", type=int, default=400, help="decisions per run")
    parser.add_argument("--repeats", type=int, default=3, help="runs per configuration")
    parser.add_argument("--postgres-url", default=None)
    parser.add_argument("--switch-interval-ms", type=float, default=None,
                        help="Python's thread switch interval (default 5 ms); the thread holding a "
                             "tenant's quota lock waits up to this long for the GIL after each "
                             "round trip, so lowering it raises throughput at high concurrency")
    args = parser.parse_args(argv)
    if args.switch_interval_ms is not None:
        sys.setswitchinterval(args.switch_interval_ms / 1000)
    client_counts = [int(c) for c in args.clients.split(",")]

    runs: list[Run] = []
    header = (f"{'database':<11}{'clients':>8}{'run':>5}{'decisions':>10}{'accepted':>9}{'refused':>8}"
              f"{'errors':>7}{'seconds':>9}{'dec/s':>9}{'p95 ms':>8}{'cpu%':>6}{'overshoot':>10}")
    print(header)
    for database in args.databases.split(","):
        with tempfile.TemporaryDirectory(prefix="bench-quotas-") as tmp:
            url = (f"sqlite:///{Path(tmp) / 'bench.db'}" if database == "sqlite"
                   else postgres_url(args.postgres_url))
            app = build_app(url, Path(tmp))
            for clients in client_counts:
                for repeat in range(1, args.repeats + 1):
                    run = run_once(app, database, clients, args.decisions, repeat)
                    runs.append(run)
                    print(f"{run.database:<11}{run.clients:>8}{run.repeat:>5}{run.decisions:>10}"
                          f"{run.accepted:>9}{run.refused:>8}{run.errors:>7}{run.seconds:>9.3f}"
                          f"{run.decisions_per_s:>9.1f}{run.p95_ms:>8.1f}{run.client_cpu_pct:>6}{run.overshoot:>10}",
                          flush=True)
            from cloud_portal.extensions import db
            with app.app_context():
                db.engine.dispose()

    configs = []
    for database in args.databases.split(","):
        for clients in client_counts:
            mine = [r for r in runs if r.database == database and r.clients == clients]
            rates = [r.decisions_per_s for r in mine]
            configs.append({"database": database, "clients": clients,
                            "min_decisions_per_s": min(rates),
                            "median_decisions_per_s": statistics.median(rates),
                            "overshoot": sum(r.overshoot for r in mine),
                            "errors": sum(r.errors for r in mine)})
    print()
    for c in configs:
        print(f"{c['database']:<11} {c['clients']:>3} clients: median {c['median_decisions_per_s']:>7.1f} "
              f"decisions/s (worst run {c['min_decisions_per_s']:.1f}), overshoot {c['overshoot']}, "
              f"errors {c['errors']}")
    summary = {
        "min_decisions_per_s": min(r.decisions_per_s for r in runs),
        "overshoot_total": sum(r.overshoot for r in runs),
        "errors_total": sum(r.errors for r in runs),
        "decisions_per_run": args.decisions, "repeats": args.repeats,
        "switch_interval_ms": sys.getswitchinterval() * 1000,
        "configs": configs, "runs": [asdict(r) for r in runs],
    }
    print(json.dumps(summary))
    return 0 if summary["overshoot_total"] == 0 and summary["errors_total"] == 0 else 1


if __name__ == "__main__":
    raise SystemExit(main())
