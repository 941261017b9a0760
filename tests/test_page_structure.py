"""Every page a role can open has what assistive technology needs beyond axe's rules: a skip link
to the main content, and tables with a caption and header cells (WCAG 1.3.1). Walks the URL map,
so a page added later is checked too."""
from __future__ import annotations

import re
from typing import Any

import pytest

from cloud_portal.extensions import db
from tests.helpers import rule_paths, server_seen_active, signed_in_client, utc

TENANT_OF = {"member": "torfaen", "tenant_admin": "torfaen", "platform_admin": "platform", "finance": "platform"}
TABLE = re.compile(r"<table\b.*?</table>", re.S)


@pytest.mark.parametrize("role", sorted(TENANT_OF))
def test_every_page_has_a_skip_link_and_captioned_tables(app: Any, make_user: Any, role: str) -> None:
    owner = make_user("member", "torfaen")
    server = server_seen_active(owner, "structure-web", utc("2026-11-03T09:00:00"))
    user = owner if role == "member" else make_user(role, TENANT_OF[role])
    db.session.commit()
    client = signed_in_client(app, user.email)
    pages = tables = 0
    for rule in app.url_map.iter_rules():
        if "GET" not in (rule.methods or ()) or rule.rule.startswith(("/api/", "/static", "/sign-in/sso")):
            continue
        for path in rule_paths(rule, server_id=server.id, request_id=server.request_id, user_id=owner.id):
            response = client.get(path)
            if response.status_code != 200 or response.mimetype != "text/html":
                continue
            html = response.get_data(as_text=True)
            pages += 1
            assert 'class="skip-link" href="#main"' in html and '<main id="main"' in html, path
            for table in TABLE.findall(html):
                tables += 1
                assert "<caption" in table, (path, table[:200])
                assert "<th" in table, (path, table[:200])
    assert pages >= 8 and tables >= 5, (pages, tables)  # the walk really saw pages with tables
