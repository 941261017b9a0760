"""The ``cloud-portal`` command line: init, check, tenants sync, users, demo data, worker."""
from __future__ import annotations

import secrets
import sys
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from typing import Any

import click
from flask import Flask

from cloud_portal.errors import PortalError

ROLE_CHOICE = click.Choice(["member", "tenant_admin", "platform_admin", "finance"])


def _app(**override: Any) -> Flask:
    import os

    from cloud_portal import create_app
    # Commands print their own results; the service log is for servers unless asked for.
    override.setdefault("LOG_LEVEL", os.environ.get("CLOUD_PORTAL_LOG_LEVEL", "WARNING"))
    try:
        return create_app(override or None)
    except PortalError as exc:
        raise click.ClickException(str(exc)) from None


def _run(fn: Callable[[], Any], **override: Any) -> Any:
    """Run ``fn`` in an app context; portal errors become a one-line message and exit code 1."""
    from cloud_portal.extensions import db
    app = _app(**override)
    with app.app_context():
        try:
            return fn()
        except PortalError as exc:
            db.session.rollback()
            raise click.ClickException(str(exc)) from None


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def main() -> None:
    """Cwmwl Cymru portal administration."""


@main.command()
def init() -> None:
    """Create the instance folder and bring the database schema to the newest version."""
    from cloud_portal import config, default_instance_path
    instance = default_instance_path()
    instance.mkdir(parents=True, exist_ok=True)
    cfg = instance / config.INSTANCE_CONFIG_NAME
    production = config.load_settings(instance)["ENV"] == "production"
    if not cfg.exists() and not production:
        # Production must be given its key (CLOUD_PORTAL_SECRET_KEY), never invent one.
        # A per-installation key, so sessions survive restarts and are shared by all workers.
        cfg.write_text(f"SECRET_KEY = {secrets.token_urlsafe(48)!r}\n")
        cfg.chmod(0o600)
        click.echo(f"wrote {cfg} with a new SECRET_KEY")

    def upgrade() -> None:
        from cloud_portal.db_schema import upgrade_to_head
        upgrade_to_head()
    _run(upgrade)
    click.echo("database schema is up to date")


@main.command()
@click.option("--tenants", "tenants_file", type=click.Path(dir_okay=False, path_type=Path),
              help="tenants.yaml to check (default: the configured TENANTS_FILE).")
def check(tenants_file: Path | None) -> None:
    """Validate tenants.yaml; exits non-zero and lists every problem if it is wrong."""
    from cloud_portal.tenants.config_file import load_tenants_file
    app = _app()
    path = tenants_file or Path(app.config["TENANTS_FILE"])
    try:
        doc = load_tenants_file(path)
    except PortalError as exc:
        click.echo(str(exc), err=True)
        sys.exit(1)
    click.echo(f"{path}: OK ({len(doc.tenants)} tenants, {len(doc.data_halls)} data halls, "
               f"{len(doc.catalog.vm_sizes)} VM sizes, {len(doc.catalog.desktops)} desktop templates)")


@main.group()
def tenants() -> None:
    """Tenants from tenants.yaml."""


@tenants.command("sync")
@click.option("--tenants", "tenants_file", type=click.Path(dir_okay=False, path_type=Path),
              help="tenants.yaml to apply (default: the configured TENANTS_FILE).")
@click.option("--no-cloud", is_flag=True, help="Only the database; leave OpenStack projects and quotas alone.")
def tenants_sync(tenants_file: Path | None, no_cloud: bool) -> None:
    """Apply tenants.yaml to the database and, through a playbook, to OpenStack (idempotent)."""
    from flask import current_app

    from cloud_portal.extensions import db
    from cloud_portal.tenants.config_file import load_tenants_file
    from cloud_portal.tenants.service import sync_tenants

    def sync() -> None:
        doc = load_tenants_file(tenants_file or current_app.config["TENANTS_FILE"])
        report = sync_tenants(doc)
        db.session.commit()
        for line in report.lines():
            click.echo(line)
        if no_cloud or not current_app.config["CLOUDS_YAML"]:
            click.echo("OpenStack not synced (no CLOUDS_YAML configured)" if not no_cloud else
                       "OpenStack not synced (--no-cloud)")
            return
        from cloud_portal.adapters.cloud import cloud
        from cloud_portal.tenants.cloud_sync import sync_tenants_to_cloud
        from cloud_portal.tenants.service import list_tenants
        ctx = cloud.required()
        tenants = list_tenants(include_platform=False)
        result = sync_tenants_to_cloud(ctx, tenants)
        db.session.commit()
        changed = sum(1 for e in result.events if e.status == "changed")
        click.echo(f"OpenStack: {len(tenants)} projects in step with tenants.yaml "
                   f"({changed} changes, {result.duration_s:.1f}s)")
    _run(sync)


@tenants.command("list")
def tenants_list() -> None:
    """List tenants."""
    from cloud_portal.tenants.service import list_tenants

    def show() -> None:
        for t in list_tenants():
            click.echo(f"{t.slug:20} {t.cost_centre:16} {','.join(t.allowed_halls) or '-':20} {t.name_en}")
    _run(show)


@main.group()
def users() -> None:
    """Accounts: add, change role, disable, enable, reset password, list."""


def _tenant(slug: str):
    from cloud_portal.errors import NotFound
    from cloud_portal.tenants.service import get_tenant_by_slug
    tenant = get_tenant_by_slug(slug)
    if tenant is None or not tenant.active:
        raise NotFound(f"No tenant {slug!r}; `cloud-portal tenants list` shows them "
                       "(run `cloud-portal tenants sync` first on a new database).")
    return tenant


@users.command("add")
@click.argument("email")
@click.option("--name", "display_name", required=True, help="Full name shown in the portal.")
@click.option("--role", required=True, type=ROLE_CHOICE)
@click.option("--tenant", "tenant_slug", required=True, help="Tenant slug, or 'platform'.")
@click.option("--password-stdin", is_flag=True, help="Read the password from standard input "
              "instead of generating one.")
def users_add(email: str, display_name: str, role: str, tenant_slug: str, password_stdin: bool) -> None:
    """Add an account; prints the generated password once."""
    from cloud_portal.accounts.service import add_user
    from cloud_portal.extensions import db
    password = sys.stdin.readline().rstrip("\n") if password_stdin else None

    def add() -> None:
        user, pw = add_user(None, email=email, display_name=display_name, role=role,
                            tenant=_tenant(tenant_slug), password=password)
        db.session.commit()
        click.echo(f"added {user.email} ({role}, {tenant_slug})")
        if not password_stdin:
            click.echo(f"password: {pw}")
    _run(add)


def _change(email: str, change: Callable[[Any], str]) -> None:
    """Apply ``change`` to the account ``email`` (one transaction) and print what it returns."""
    from cloud_portal.accounts.service import get_user_by_email
    from cloud_portal.extensions import db

    def apply() -> None:
        message = change(get_user_by_email(email))
        db.session.commit()
        click.echo(message)
    _run(apply)


@users.command("set-role")
@click.argument("email")
@click.argument("role", type=ROLE_CHOICE)
def users_set_role(email: str, role: str) -> None:
    """Change an account's role (ends its sessions)."""
    from cloud_portal.accounts.service import set_role

    def change(user: Any) -> str:
        set_role(None, user, role)
        return f"{user.email} is now {role}"
    _change(email, change)


def _switch_command(name: str, active: bool, doc: str, done: str) -> None:
    """Register ``users disable`` / ``users enable``: one command each, one implementation."""

    @users.command(name, help=doc)
    @click.argument("email")
    def command(email: str) -> None:
        from cloud_portal.accounts.service import set_active

        def change(user: Any) -> str:
            set_active(None, user, active)
            return f"{user.email} {done}"
        _change(email, change)


_switch_command("disable", False, "Disable an account and end its sessions.", "disabled")
_switch_command("enable", True, "Let a disabled account sign in again.", "enabled")


@users.command("reset-password")
@click.argument("email")
def users_reset_password(email: str) -> None:
    """Set a new generated password (printed once) and end the account's sessions."""
    from cloud_portal.accounts.service import reset_password
    _change(email, lambda user: f"new password for {user.email}: {reset_password(None, user)}")


@users.command("list")
@click.option("--tenant", "tenant_slug", help="Only this tenant's accounts.")
def users_list(tenant_slug: str | None) -> None:
    """List accounts."""
    from sqlalchemy import select

    from cloud_portal.accounts.models import User
    from cloud_portal.extensions import db

    def show() -> None:
        query = select(User).order_by(User.email)
        if tenant_slug:
            query = query.where(User.tenant_id == _tenant(tenant_slug).id)
        for u in db.session.scalars(query):
            click.echo(f"{u.email:50} {u.role:15} {u.tenant.slug:20} {'active' if u.active else 'disabled'}")
    _run(show)


@users.command("token")
@click.argument("email")
@click.option("--name", required=True, help="What the token is for, e.g. 'terraform'.")
@click.option("--scope", type=click.Choice(["read", "full"]), default="full", show_default=True,
              help="read: GET calls only.")
@click.option("--days", type=click.IntRange(1, 365), default=90, show_default=True, help="Days until it expires.")
def users_token(email: str, name: str, scope: str, days: int) -> None:
    """Make a personal API token (printed once)."""
    from cloud_portal.accounts.service import create_api_token
    _change(email, lambda user: create_api_token(None, user, name, scope=scope, days=days))


@main.command()
def reconcile() -> None:
    """Compare the portal with OpenStack once and put the portal right (also runs periodically)."""
    from cloud_portal.jobs.provisioning import reconcile_now

    def run() -> None:
        report = reconcile_now()
        if report.skipped_because:
            click.echo(f"skipped: {report.skipped_because}")
            return
        for line in report.updated + report.findings:
            click.echo(line)
        click.echo(f"{len(report.updated)} updated, {len(report.findings)} new findings, "
                   f"{len(report.resumed_jobs)} jobs resumed, {len(report.failed_jobs)} jobs failed")
    _run(run)


@main.group()
def quotas() -> None:
    """Quota bookkeeping."""


@quotas.command("recount")
@click.option("--tenant", "tenant_slug", default=None, help="Only this tenant (its short name).")
def quotas_recount(tenant_slug: str | None) -> None:
    """Count each person's quota usage again from their reservations and put right any total that
    is wrong (after rows were changed by hand or imported around the portal)."""
    from cloud_portal.extensions import db
    from cloud_portal.quotas.service import recount_usage

    def recount() -> None:
        tenant_ids = [_tenant(tenant_slug).id] if tenant_slug else None
        corrections = recount_usage(tenant_ids)
        db.session.commit()
        for line in corrections:
            click.echo(line)
        click.echo(f"{len(corrections)} usage totals corrected" if corrections else "every usage total was right")
    _run(recount)


@main.group()
def billing() -> None:
    """Monthly charges: close a month, a person's statement, exports."""


@billing.command("close")
@click.argument("month")
def billing_close(month: str) -> None:
    """Close MONTH (YYYY-MM): write its final statement lines. Refused, saying why, until it can be."""
    from cloud_portal.billing.months import close_month

    def close() -> None:
        result = close_month(month, "cli")
        state = "was already closed" if result.already_closed else "closed"
        click.echo(f"{month} {state}: {result.line_count} lines, £{result.total:,.2f}"
                   + (f" ({result.adjustments} adjustments to earlier months)" if result.adjustments else ""))
    _run(close)


@billing.command("statement")
@click.argument("email")
@click.option("--month", required=True, help="YYYY-MM")
def billing_statement(email: str, month: str) -> None:
    """A person's charges for a month (month to date while it is open)."""
    from cloud_portal.accounts.service import get_user_by_email
    from cloud_portal.billing.months import statement

    def show() -> None:
        user = get_user_by_email(email)
        closed, lines = statement(month, owner_id=user.id)
        click.echo(f"{user.email}, {month} ({'closed' if closed else 'open: month to date'})")
        total = Decimal("0.00")
        for line in lines:
            click.echo(f"  server {line.server_id:<6} {line.component:8} {line.quantity:>14.4f} {line.unit:15} "
                       f"£{line.amount:>9,.2f}")
            total += line.amount
        click.echo(f"  total £{total:,.2f}")
    _run(show)


@billing.command("export")
@click.option("--month", required=True, help="YYYY-MM")
@click.option("--format", "fmt", required=True, type=click.Choice(["csv", "xlsx", "pdf", "journal"]),
              help="csv and xlsx: statement lines; pdf: a tenant's statement; journal: the recharge journal.")
@click.option("--tenant", "tenant_slug", help="Only this tenant (required for pdf).")
@click.option("--user", "email", help="Only this person's charges (their e-mail).")
@click.option("--out", type=click.Path(dir_okay=False, writable=True, path_type=Path),
              help="Write here (default: standard output, for csv and journal only).")
def billing_export(month: str, fmt: str, tenant_slug: str | None, email: str | None, out: Path | None) -> None:
    """Export MONTH's charges (final when closed, else month to date) as csv, xlsx, pdf or journal."""
    from cloud_portal.accounts.service import get_user_by_email
    from cloud_portal.billing import exports
    from cloud_portal.errors import InvalidInput, NotFound
    from cloud_portal.tenants.service import get_tenant_by_slug

    def export() -> None:
        if out is None and fmt in ("xlsx", "pdf"):
            raise InvalidInput(f"A {fmt} export is binary; say where to write it with --out FILE.")
        tenant = get_tenant_by_slug(tenant_slug) if tenant_slug else None
        if tenant_slug and tenant is None:
            raise NotFound(f"No tenant {tenant_slug!r}; `cloud-portal tenants list` shows them.")
        user = get_user_by_email(email) if email else None
        # A removed tenant keeps its charges, so any tenant in the database can be exported.
        _, _, data = exports.render(month, fmt, tenant_id=tenant.id if tenant else None,
                                    owner_id=user.id if user else None)
        if out is None:
            click.echo(data, nl=False)  # the exact bytes (UTF-8, CRLF), whatever the terminal's encoding
            return
        try:
            out.write_bytes(data)
        except OSError as exc:
            raise click.ClickException(f"Cannot write {out}: {exc.strerror or exc}.") from None
        click.echo(f"wrote {out} ({len(data):,} bytes)")
    _run(export)


@billing.command("cross-check")
@click.argument("month")
def billing_cross_check(month: str) -> None:
    """Compare MONTH's server-hours in the ledger with Nova's usage report; list differences."""
    from cloud_portal.adapters.cloud import cloud
    from cloud_portal.billing.charges import parse_month
    from cloud_portal.billing.crosscheck import cross_check

    def check() -> None:
        parse_month(month)
        differences = cross_check(cloud.required(), month)
        for d in differences:
            click.echo(f"{d.tenant_slug:20} {d.server_name:30} ledger {d.ledger_hours:>9} h  Nova {d.nova_hours:>9} h")
        click.echo(f"{month}: {len(differences)} servers differ by more than 0.1 hour")
    _run(check)


@main.command("demo-accounts")
def demo_accounts() -> None:
    """Create one demo account per role per tenant; prints new passwords once."""
    from cloud_portal.accounts.service import create_demo_accounts
    from cloud_portal.extensions import db

    def create() -> None:
        created = create_demo_accounts()
        db.session.commit()
        if not created:
            click.echo("demo accounts already exist (use `cloud-portal users reset-password EMAIL` "
                       "for a new password)")
        for email, role, password, secret in created:
            click.echo(f"  {email:55} {role:15} {password}" + (f"  TOTP secret: {secret}" if secret else ""))
    _run(create)


@main.command()
@click.option("--threads", type=click.IntRange(1, 64), help="Worker threads (default: WORKER_THREADS).")
def worker(threads: int | None) -> None:
    """Run the queue consumer (jobs and periodic tasks)."""
    import os

    from cloud_portal.adapters.queue import huey, set_worker_app
    app = _app(LOG_LEVEL=os.environ.get("CLOUD_PORTAL_LOG_LEVEL", "INFO"))
    if app.config["QUEUE_IMMEDIATE"]:
        raise click.ClickException("QUEUE_IMMEDIATE is set: jobs run inline, there is nothing to consume")
    set_worker_app(app)
    # Poll an idle SQLite queue every 50-500 ms (Huey's default backs off to 10 s, which a
    # person waiting for their server would feel); Redis storage blocks on the list instead.
    consumer = huey.create_consumer(workers=threads or int(app.config["WORKER_THREADS"]),
                                    worker_type="thread", periodic=True, check_worker_health=True,
                                    initial_delay=0.05, backoff=1.5, max_delay=0.5)
    click.echo(f"worker consuming from {type(huey.storage).__name__} with "
               f"{threads or app.config['WORKER_THREADS']} threads")
    consumer.run()


if __name__ == "__main__":  # pragma: no cover
    main()
