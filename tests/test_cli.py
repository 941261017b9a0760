"""The cloud-portal command line, run as a person would, with right and wrong arguments."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import TENANTS_FILE


@pytest.fixture
def cli(tmp_path: Path, database_url: str) -> Any:
    env = {**os.environ, "CLOUD_PORTAL_INSTANCE_PATH": str(tmp_path / "instance"),
           "CLOUD_PORTAL_DATABASE_URL": database_url, "CLOUD_PORTAL_TENANTS_FILE": str(TENANTS_FILE)}

    def run(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "cloud_portal.cli", *args], env=env, input=stdin,
                              capture_output=True, text=True, timeout=120)
    return run


@pytest.mark.parametrize("args,message", [
    (["frobnicate"], "No such command 'frobnicate'"),
    (["users", "add", "a@b.cymru"], "Missing option '--name'"),
    (["users", "add", "a@b.cymru", "--name", "A", "--tenant", "torfaen", "--role", "king"],
     "'king' is not one of 'member', 'tenant_admin', 'platform_admin', 'finance'"),
    (["users", "set-role", "a@b.cymru"], "Missing argument"),
    (["worker", "--threads", "0"], "0 is not in the range 1<=x<=64"),
    (["check", "--tenants"], "Option '--tenants' requires an argument"),
])
def test_wrong_arguments_exit_2_with_usage(cli: Any, args: list[str], message: str) -> None:
    result = cli(*args)
    assert result.returncode == 2
    assert message in result.stderr and result.stderr.startswith(("Usage:", "Error:"))


def test_users_lifecycle(cli: Any, make_app: Any) -> None:
    make_app()  # its teardown wipes what the commands wrote
    assert cli("tenants", "sync").returncode == 0
    second = cli("tenants", "sync")
    assert "nothing to change" in second.stdout
    added = cli("users", "add", "Ceri@Torfaen.gov.uk", "--name", "Ceri Jones", "--role", "member",
                "--tenant", "torfaen")
    assert added.returncode == 0, added.stderr
    assert "added ceri@torfaen.gov.uk (member, torfaen)" in added.stdout
    assert "password: " in added.stdout
    again = cli("users", "add", "ceri@torfaen.gov.uk", "--name", "C", "--role", "member", "--tenant", "torfaen")
    assert again.returncode == 1 and "already exists" in again.stderr
    wrong_tenant = cli("users", "add", "x@y.cymru", "--name", "X", "--role", "member", "--tenant", "mordor")
    assert wrong_tenant.returncode == 1 and "No tenant 'mordor'" in wrong_tenant.stderr
    wrong_role = cli("users", "add", "f@y.cymru", "--name", "F", "--role", "finance", "--tenant", "torfaen")
    assert wrong_role.returncode == 1 and "cannot be held in Torfaen" in wrong_role.stderr
    short = cli("users", "add", "s@y.cymru", "--name", "S", "--role", "member", "--tenant", "torfaen",
                "--password-stdin", stdin="short\n")
    assert short.returncode == 1 and "at least 12 characters" in short.stderr
    bad_email = cli("users", "add", "not-an-email", "--name", "N", "--role", "member", "--tenant", "torfaen")
    assert bad_email.returncode == 1 and "not a valid e-mail address" in bad_email.stderr
    assert "is now tenant_admin" in cli("users", "set-role", "ceri@torfaen.gov.uk", "tenant_admin").stdout
    assert "disabled" in cli("users", "disable", "ceri@torfaen.gov.uk").stdout
    listing = cli("users", "list", "--tenant", "torfaen").stdout
    assert "ceri@torfaen.gov.uk" in listing and "tenant_admin" in listing and "disabled" in listing
    missing = cli("users", "disable", "nobody@torfaen.gov.uk")
    assert missing.returncode == 1 and "No account with e-mail 'nobody@torfaen.gov.uk'" in missing.stderr


def test_demo_accounts_one_per_role_per_tenant(cli: Any, make_app: Any) -> None:
    make_app()
    cli("tenants", "sync")
    first = cli("demo-accounts")
    assert first.returncode == 0
    lines = [line for line in first.stdout.splitlines() if "@demo.cwmwl.cymru" in line]
    assert len(lines) == 2 + 6 * 2  # platform_admin and finance, then member + tenant_admin per tenant
    assert "already exist" in cli("demo-accounts").stdout


def test_init_creates_instance_and_schema(tmp_path: Path) -> None:
    env = {**os.environ, "CLOUD_PORTAL_INSTANCE_PATH": str(tmp_path / "inst")}
    env.pop("CLOUD_PORTAL_DATABASE_URL", None)
    result = subprocess.run([sys.executable, "-m", "cloud_portal.cli", "init"], env=env,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "inst" / "portal.db").exists()
    config = (tmp_path / "inst" / "portal.cfg")
    assert "SECRET_KEY" in config.read_text() and oct(config.stat().st_mode)[-3:] == "600"


def test_bad_configuration_is_reported_not_a_traceback(tmp_path: Path) -> None:
    env = {**os.environ, "CLOUD_PORTAL_INSTANCE_PATH": str(tmp_path), "CLOUD_PORTAL_ENV": "production"}
    env.pop("CLOUD_PORTAL_SECRET_KEY", None)
    result = subprocess.run([sys.executable, "-m", "cloud_portal.cli", "tenants", "list"], env=env,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 1
    assert "Refusing to start in production without a real SECRET_KEY" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("args,message", [
    (["billing", "close", "november"], "'november' is not a month; write it as YYYY-MM"),
    (["billing", "close", "2999-01"], "2999-01 has not ended yet"),
    (["billing", "statement", "nobody@example.cymru", "--month", "2026-11"], "No account with e-mail"),
    (["billing", "cross-check", "2026-13"], "'2026-13' is not a month"),
])
def test_billing_commands_refuse_with_a_reason(cli: Any, args: list[str], message: str) -> None:
    assert cli("init").returncode == 0
    result = cli(*args)
    assert result.returncode == 1 and message in result.stderr, result.stderr
