"""List and summary pages at scale: every list page, summary page and API list, served by gunicorn.

For each database (SQLite, PostgreSQL) and each size (``--sizes``, default 1,000 and 20,000
servers), a fresh database is seeded with ``--users`` people (default 5,000) spread over the member
tenants of tenants.yaml (a few big tenants and a long tail; one in twenty a tenant admin), the
servers (70 % running, 18 % stopped, some errored, building or deleted) each with its request, its
quota reservation and a finished job of four steps, 2.5 audit events per server and a quota-increase
request per hundred servers (at least 140); the queues are the same at every size: 150 requests
waiting for approval, 40 open quota requests (tests/fixtures/scale.py). The portal is then served as ``make run``
serves it (gunicorn, 2 workers × 4 threads) and, signed in as a member, a tenant admin of the
biggest tenant, a platform admin and finance (and with an API token for each), every page below is
fetched 3 times to warm up and then 30 times in a row, in 5 rounds (``--rounds``); each answer must
be 200 and hold what the page is for (a row of the list, the items of the API page). p50/p95 per
page: over all its requests of all rounds (150 by default; a p95 of 30 requests is little more than
their second slowest, so one stall of the machine decided it); each round's own p95 and their
median are kept beside it, and the growth by that older measure is printed too. All sizes of a
database are served at once, and each page's requests go to the sizes in turn (1k, 20k, 20k, 1k,
...; still one request at a time), so a slow moment of the machine falls on every size alike
instead of deciding one size's figure.

    .venv/bin/python bench/pages.py                                 # both databases, 1,000 and 20,000
    .venv/bin/python bench/pages.py --database sqlite --sizes 1000 --users 500

PostgreSQL: ``CLOUD_PORTAL_BENCH_DATABASE_URL`` (default the local ``cloud_portal_bench``, made
ready by scripts/ensure-postgres.sh); each
size gets its own database, the name with ``_<size>`` added (created when missing, its schema
dropped and rebuilt; the test database is never used).
The last line of output is JSON: ``worst_p95_ms`` per database at the largest size, ``growth`` (the
worst ratio of a page's p95 at the largest size to its p95 at the smallest), and every figure.
"""
from __future__ import annotations

import argparse
import contextlib
import gc
import http.cookiejar
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:  # run as a script: bench/pages.py
    sys.path.insert(0, str(REPO_ROOT))

from bench.billing import bench_postgres_url, build_app, prepare_postgres  # noqa: E402
from tests.helpers import free_port, gunicorn_command, wait_for_healthz  # noqa: E402

PASSWORD = "bench horse battery staple"  # noqa: S105 - throwaway accounts in a throwaway database
SECRET = "bench-pages-secret-key-" + "p" * 32
REQUESTS = 30
WARMUP = 3
ROUNDS = 5  # --rounds
#: What each page must show (a regular expression), so a fast error page is not timed as a page.
SERVER_ROW = r'<a href="/servers/\d+">'
AUDIT_ROW = r"<td><code>"
PAGES: dict[str, list[tuple[str, str]]] = {
    "member": [
        ("/", r"Servers and desktops"),
        ("/servers", SERVER_ROW),
        ("/requests", r'href="/requests/\d+"'),
        ("/quotas/increases", r"vCPUs: \+"),
    ],
    "tenant_admin": [
        ("/", r"Servers and desktops"),
        ("/servers?scope=tenant", SERVER_ROW),
        ("/servers?scope=tenant&sort=name&dir=asc", SERVER_ROW),
        ("/servers?scope=tenant&sort=size&dir=desc", SERVER_ROW),
        ("/servers?scope=tenant&last=1", SERVER_ROW),
        ("/requests?scope=tenant", r'href="/requests/\d+"'),
        ("/requests?scope=tenant&last=1", r'href="/requests/\d+"'),
        ("/approvals", r'href="/requests/\d+"'),
        ("/admin/users", r"@scale\.example\.cymru"),
        ("/admin/users?last=1", r"@scale\.example\.cymru"),
        ("/admin/audit", AUDIT_ROW),
        ("/admin/audit?last=1", AUDIT_ROW),
    ],
    "platform_admin": [
        ("/", r"Servers and desktops|quota"),
        *[(f"/servers?scope=all&sort={sort}&dir={d}", SERVER_ROW)
          for sort in ("created", "name", "size", "status") for d in ("desc", "asc")],
        ("/servers?scope=all&last=1", SERVER_ROW),
        ("/servers?scope=all&sort=name&dir=asc&last=1", SERVER_ROW),
        ("/requests?scope=tenant", r"<table"),
        ("/approvals", r'href="/requests/\d+"'),
        ("/admin/users", r"@scale\.example\.cymru"),
        ("/admin/users?last=1", r"@scale\.example\.cymru"),
        ("/admin/audit", AUDIT_ROW),
        ("/admin/audit?last=1", AUDIT_ROW),
        ("/admin/quotas", r"<meter"),
        ("/admin/quotas/increases", r"needs more"),
    ],
    "finance": [
        ("/", r"Finance|finance"),
        ("/finance/", r"<table|tenant"),
    ],
}
API: dict[str, list[str]] = {
    "member": ["/api/v1/servers", "/api/v1/requests", "/api/v1/quota-increases"],
    "tenant_admin": ["/api/v1/servers?scope=tenant", "/api/v1/servers?scope=tenant&last=1",
                     "/api/v1/requests?scope=tenant", "/api/v1/requests?scope=approvals"],
    "platform_admin": ["/api/v1/servers?scope=all", "/api/v1/servers?scope=all&sort=name&dir=asc&last=1",
                       "/api/v1/quota-increases?scope=all"],
}
#: Pages whose rel="next" link (the second page) is timed as well.
FOLLOW_NEXT = {"/servers?scope=all&sort=name&dir=asc", "/servers?scope=tenant", "/admin/users", "/admin/audit"}


def log(message: str) -> None:
    print(message, flush=True)


def percentiles(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    p95 = statistics.quantiles(ordered, n=20)[-1] if len(ordered) >= 2 else ordered[0]
    return {"p50": round(statistics.median(ordered) * 1000, 2), "p95": round(p95 * 1000, 2)}


# Data -----------------------------------------------------------------------------------------

def populate(url: str, instance: Path, servers: int, users: int) -> dict[str, Any]:
    """Schema, tenants, the seeded rows, and the four signed-in people with their API tokens."""
    from sqlalchemy import func, select, text, update

    from cloud_portal.accounts.models import User
    from cloud_portal.accounts.service import add_user, create_api_token
    from cloud_portal.extensions import db
    from cloud_portal.provisioning import models as m
    from cloud_portal.quotas.models import QuotaIncreaseRequest, QuotaReservation
    from cloud_portal.quotas.service import recount_usage
    from cloud_portal.tenants.service import get_tenant_by_slug
    from tests.fixtures.scale import seed_lists

    app = build_app(url, instance)
    with app.app_context():
        started = time.perf_counter()
        # History grows with the servers; the queues (requests waiting for approval, open quota
        # requests) are the same length at every size, as on a platform whose admins keep up.
        seeded = seed_lists(users=users, servers=servers, audit_events=servers * 5 // 2,
                            increases=max(140, servers // 100), waiting_approval=150, open_increases=40,
                            seed=2026)
        # The biggest tenant's admin and one of its members; a platform admin and finance.
        biggest_id = db.session.scalar(select(m.Server.tenant_id).group_by(m.Server.tenant_id)
                                       .order_by(func.count().desc()).limit(1))
        slug = next(s for s, i in seeded.tenants.items() if i == biggest_id)
        tenant = get_tenant_by_slug(slug)
        platform = get_tenant_by_slug("platform")
        people = {}
        for role, home in (("member", tenant), ("tenant_admin", tenant), ("platform_admin", platform),
                           ("finance", platform)):
            person, _ = add_user(None, email=f"bench.{role.replace('_', '-')}@example.cymru",
                                 display_name=f"Bench {role}", role=role, tenant=home, password=PASSWORD)
            people[role] = person
        db.session.flush()
        member = people["member"]
        # The member owns 40 of the tenant's servers (their requests and quota holds with them).
        mine = list(db.session.scalars(select(m.Server.id).where(m.Server.tenant_id == tenant.id)
                                       .order_by(m.Server.id).limit(40)))
        db.session.execute(update(m.Server).where(m.Server.id.in_(mine)).values(owner_id=member.id))
        request_ids = select(m.Server.request_id).where(m.Server.id.in_(mine)).scalar_subquery()
        db.session.execute(update(m.ServerRequest).where(m.ServerRequest.id.in_(request_ids))
                           .values(requester_id=member.id, owner_id=member.id))
        purposes = [f"request:{r}" for r in db.session.scalars(select(m.Server.request_id)
                                                                .where(m.Server.id.in_(mine)))]
        db.session.execute(update(QuotaReservation).where(QuotaReservation.purpose.in_(purposes))
                           .values(user_id=member.id))
        recount_usage([tenant.id])
        asks = list(db.session.scalars(select(QuotaIncreaseRequest.id).where(
            QuotaIncreaseRequest.tenant_id == tenant.id).limit(5)))
        db.session.execute(update(QuotaIncreaseRequest).where(QuotaIncreaseRequest.id.in_(asks))
                           .values(requester_id=member.id))
        tokens = {role: create_api_token(None, person, "bench pages") for role, person in people.items()}
        emails = {role: person.email for role, person in people.items()}
        db.session.commit()
        if db.engine.dialect.name == "postgresql":
            with db.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
                conn.execute(text("VACUUM ANALYZE"))
        else:
            db.session.execute(text("ANALYZE"))
            db.session.commit()
        counts = {"servers": seeded.servers, "users": db.session.scalar(select(func.count(User.id))),
                  "audit_events": seeded.audit_events, "requests": seeded.requests,
                  "tenant": slug, "tenant_servers": db.session.scalar(
                      select(func.count(m.Server.id)).where(m.Server.tenant_id == tenant.id))}
        db.session.remove()
        db.engine.dispose()
    counts["seed_s"] = round(time.perf_counter() - started, 1)
    return {"emails": emails, "tokens": tokens, "counts": counts}


# Serving --------------------------------------------------------------------------------------

class Portal:
    """gunicorn as ``make run`` starts it (2 workers × 4 threads), on a free loopback port."""

    def __init__(self, url: str, instance: Path) -> None:
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        env = {**os.environ, "CLOUD_PORTAL_DATABASE_URL": url, "CLOUD_PORTAL_INSTANCE_PATH": str(instance),
               "CLOUD_PORTAL_SECRET_KEY": SECRET, "CLOUD_PORTAL_TENANTS_FILE": str(REPO_ROOT / "tenants.yaml"),
               "CLOUD_PORTAL_TWO_FACTOR_ROLES": "", "CLOUD_PORTAL_LOG_LEVEL": "WARNING"}
        self.log = (instance / "gunicorn.log").open("w")
        self.process = subprocess.Popen(
            gunicorn_command(self.port),
            cwd=REPO_ROOT, env=env, stdout=self.log, stderr=subprocess.STDOUT)
        wait_for_healthz(self.base, self.process)

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=30)
        self.log.close()


class Browser:
    """A signed-in person: cookies kept, one connection reused as far as urllib allows."""

    def __init__(self, base: str, email: str) -> None:
        self.base = base
        self.opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar()))
        form = self.get("/sign-in")[1]
        token = re.search(r'name="csrf_token" type="hidden" value="([^"]+)"', form) or \
            re.search(r'name="csrf_token" value="([^"]+)"', form)
        if not token:
            raise RuntimeError("no CSRF token on the sign-in page")
        body = urllib.parse.urlencode({"csrf_token": token.group(1), "email": email, "password": PASSWORD})
        status, page = self.get("/sign-in", data=body.encode())
        if "Sign out" not in page:
            raise RuntimeError(f"sign-in as {email} failed ({status})")

    def get(self, path: str, data: bytes | None = None, headers: dict[str, str] | None = None) -> tuple[int, str]:
        request = urllib.request.Request(self.base + path, data=data, headers=headers or {})
        try:
            with self.opener.open(request, timeout=60) as response:
                return response.status, response.read().decode()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read().decode()


def time_page_once(sizes: list[tuple[Browser, dict[str, str] | None]], path: str | list[str],
                   check: Any) -> list[dict[str, Any]]:
    """One round of a page on every size: WARMUP GETs each, then REQUESTS sequential GETs each,
    taken in turn (1k, 20k, 20k, 1k, ...) so that a slow moment of the machine falls on every size
    alike; every answer checked. ``path`` is one path for all sizes or one per size (a next-page
    link differs by size). Returns each size's p50/p95, in the order of ``sizes``."""
    paths = path if isinstance(path, list) else [path] * len(sizes)
    for (browser, headers), one in zip(sizes, paths, strict=True):
        for _ in range(WARMUP):
            browser.get(one, headers=headers)
    samples: list[list[float]] = [[] for _ in sizes]
    bodies = [""] * len(sizes)
    order = list(range(len(sizes)))
    # This process holds the whole app's modules and the seeding's leftovers: its own garbage
    # collection would be timed as the server's (as timeit does, collect between, not during).
    gc.collect()
    gc.disable()
    try:
        for number in range(REQUESTS):
            for index in (order if number % 2 == 0 else order[::-1]):
                browser, headers = sizes[index]
                started = time.perf_counter()
                status, body = browser.get(paths[index], headers=headers)
                samples[index].append(time.perf_counter() - started)
                if status != 200 or not check(body):
                    raise RuntimeError(f"GET {paths[index]} answered {status} without what the page is for:\n"
                                       f"{body[:600]}")
                bodies[index] = body
    finally:
        gc.enable()
    return [{**percentiles(timings), "bytes": len(body), "samples": timings}
            for timings, body in zip(samples, bodies, strict=True)]


def time_all_once(served: list[tuple[int, dict[str, Any], Any, dict[str, Browser]]]) -> dict[int, dict[str, Any]]:
    """One round of every page and API list of every role, every size in turn for each page:
    size → label → that round's figures."""
    results: dict[int, dict[str, Any]] = {size: {} for size, *_ in served}

    def record(label: str, figures: list[dict[str, Any]]) -> None:
        for (size, *_), one in zip(served, figures, strict=True):
            results[size][label] = one

    for role, pages in PAGES.items():
        browsers = [known.setdefault(role, Browser(portal.base, info["emails"][role]))
                    for _, info, portal, known in served]
        signed_in = [(browser, None) for browser in browsers]
        for path, pattern in pages:
            record(f"{role} {path}", time_page_once(signed_in, path, lambda body, p=pattern: re.search(p, body)))
            if path in FOLLOW_NEXT:
                links = [re.search(r'<a href="([^"]+)" rel="next">', browser.get(path)[1]) for browser in browsers]
                if all(links):
                    record(f"{role} {path} (next page)", time_page_once(
                        signed_in, [link.group(1).replace("&amp;", "&") for link in links if link],
                        lambda body: re.search(SERVER_ROW + "|@scale|<td><code>", body)))
        with_token = [(browser, {"Authorization": f"Bearer {info['tokens'].get(role, '')}"})
                      for browser, (_, info, _, _) in zip(browsers, served, strict=True)]
        for path in API.get(role, []):
            record(f"{role} API {path}", time_page_once(with_token, path, lambda body: json.loads(body)["items"]))
    return results


def over_the_rounds(rounds: list[dict[str, dict[str, Any]]]) -> dict[str, dict[str, Any]]:
    """label → p50 and p95 over every timed request of every round, with each round's own p95
    and the median of those kept beside them."""
    return {label: {**percentiles([sample for r in rounds for sample in r[label]["samples"]]),
                    "p95_median_of_rounds": statistics.median(r[label]["p95"] for r in rounds),
                    "p95_rounds": [r[label]["p95"] for r in rounds], "bytes": rounds[-1][label]["bytes"]}
            for label in rounds[0]}


# Main -----------------------------------------------------------------------------------------

def run(database: str, sizes: list[int], users: int) -> list[dict[str, Any]]:
    """Seed and serve every size of ``database`` at once, then time each page on every size in
    turn, request by request: a slow spell of the machine lands on both sizes alike instead of on
    whichever was being timed then, so the growth compares the data, not the moment."""
    with contextlib.ExitStack() as stack:
        served = []
        for size in sizes:
            instance = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix=f"bench-pages-{size}-")))
            if database == "sqlite":
                url = f"sqlite:///{instance / 'bench.db'}"
            else:
                from sqlalchemy.engine import make_url
                base_url = make_url(bench_postgres_url())
                url = prepare_postgres(base_url.set(database=f"{base_url.database}_{size}")
                                       .render_as_string(hide_password=False))
            log(f"== {database}: {size:,} servers, {users:,} users")
            info = populate(url, instance, size, users)
            log(f"  seeded in {info['counts']['seed_s']} s: {info['counts']}")
            portal = Portal(url, instance)
            stack.callback(portal.stop)
            served.append((size, info, portal, {}))
        rounds: dict[int, list[dict[str, dict[str, Any]]]] = {size: [] for size in sizes}
        for number in range(ROUNDS):
            log(f"  round {number + 1}/{ROUNDS}: {database}, every size in turn")
            for size, figures in time_all_once(served).items():
                rounds[size].append(figures)
    results = []
    for size, info, _, _ in served:
        pages = over_the_rounds(rounds[size])
        for label, figures in pages.items():
            log(f"    {database} {size:>6} {label:<66} p50 {figures['p50']:>7.2f} ms  p95 {figures['p95']:>7.2f} ms"
                f"  (median of the rounds' p95s {figures['p95_median_of_rounds']:>7.2f} ms)")
        worst = max(pages.items(), key=lambda item: item[1]["p95"])
        log(f"  worst p95 at {size:,}: {worst[1]['p95']} ms ({worst[0]})")
        results.append({"database": database, "servers": size, "counts": info["counts"], "pages": pages,
                        "worst_p95_ms": worst[1]["p95"], "worst_page": worst[0]})
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--database", choices=("sqlite", "postgresql", "both"), default="both")
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 20000], help="servers, smallest first")
    parser.add_argument("--users", type=int, default=5000)
    parser.add_argument("--rounds", type=int, default=5, help="rounds of 30 requests a page (median)")
    args = parser.parse_args(argv)
    global ROUNDS
    ROUNDS = max(1, args.rounds)
    if min(args.sizes) < 100 or args.users < 100:
        parser.error("need at least 100 servers and 100 users")
    databases = ["sqlite", "postgresql"] if args.database == "both" else [args.database]
    sizes = sorted(args.sizes)
    runs = [result for database in databases for result in run(database, sizes, args.users)]

    small, large = sizes[0], sizes[-1]
    growth: dict[str, float] = {}
    growth_by_round_medians: dict[str, float] = {}
    log("")
    log(f"{'page':<72} " + "  ".join(f"{d[:6]} {s:>6}" for d in databases for s in sizes) + "   (p95 ms)")
    labels = list(runs[0]["pages"])
    by = {(r["database"], r["servers"]): r["pages"] for r in runs}
    for label in labels:
        cells = [by[(d, s)][label]["p95"] for d in databases for s in sizes]
        log(f"{label:<72} " + "  ".join(f"{c:>13.2f}" for c in cells))
        if small != large:
            for d in databases:
                growth[f"{d} {label}"] = round(by[(d, large)][label]["p95"] / by[(d, small)][label]["p95"], 2)
                growth_by_round_medians[f"{d} {label}"] = round(
                    by[(d, large)][label]["p95_median_of_rounds"] / by[(d, small)][label]["p95_median_of_rounds"], 2)
    worst_growth = max(growth.items(), key=lambda item: item[1]) if growth else ("", None)
    worst_by_round_medians = max(growth_by_round_medians.items(), key=lambda item: item[1]) \
        if growth_by_round_medians else ("", None)
    log(f"growth (p95 over all requests): {worst_growth[1]} ({worst_growth[0]}); by the median of the rounds' "
        f"p95s: {worst_by_round_medians[1]} ({worst_by_round_medians[0]})")
    summary = {
        "worst_p95_ms": {d: max(r["worst_p95_ms"] for r in runs if r["database"] == d and r["servers"] == large)
                         for d in databases},
        "growth": worst_growth[1], "growth_page": worst_growth[0],
        "growth_median_of_rounds": worst_by_round_medians[1], "growth_median_of_rounds_page": worst_by_round_medians[0],
        "sizes": sizes, "users": args.users, "targets": {"worst_p95_ms": 50, "growth": 1.5},
        "runs": runs,
    }
    print(json.dumps(summary, default=str))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
