"""Set up the demo identity provider for `make run`: Torfaen signs in through its "own" provider.

    python sandbox/idp/demo.py INSTANCE_DIR PORTAL_BASE IDP_PORT

Writes INSTANCE_DIR/idp/torfaen.json (the provider's configuration: one client, two people)
and INSTANCE_DIR/tenants.demo.yaml (tenants.yaml with an sso section for torfaen whose
client secret is in INSTANCE_DIR/idp/client-secret, made once). Prints the tenants file's path.
"""
from __future__ import annotations

import json
import secrets
import sys
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[2]
PEOPLE = {
    "new.member@torfaen.gov.uk": {"name": "Rhian Morgan", "groups": []},
    "ceri.admin@torfaen.gov.uk": {"name": "Ceri Evans", "groups": ["cwmwl-admins"]},
}


def main(instance: Path, base: str, port: int) -> None:
    folder = instance / "idp"
    folder.mkdir(parents=True, exist_ok=True)
    secret_file = folder / "client-secret"
    if not secret_file.exists():
        secret_file.write_text(secrets.token_urlsafe(32))
        secret_file.chmod(0o600)
    config = {"name": "Torfaen County Borough Council", "port": port, "keys_file": str(folder / "signing-key.json"),
              "clients": [{"client_id": "cloud-portal-torfaen", "client_secret": secret_file.read_text().strip(),
                           "redirect_uris": [f"{base}/sign-in/sso/torfaen/callback"],
                           "post_logout_redirect_uris": [f"{base}/sign-in"]}],
              "users": {email: {"email": email, **claims} for email, claims in PEOPLE.items()}}
    (folder / "torfaen.json").write_text(json.dumps(config, indent=2))
    doc = yaml.safe_load((REPO / "tenants.yaml").read_text())
    for tenant in doc["tenants"]:
        if tenant["slug"] == "torfaen":
            tenant["sso"] = {"issuer": f"http://127.0.0.1:{port}", "client_id": "cloud-portal-torfaen",
                             "client_secret_file": str(secret_file), "email_domains": ["torfaen.gov.uk"],
                             "roles": {"claim": "groups", "map": {"cwmwl-admins": "tenant_admin"},
                                       "default": "member"}}
    tenants = instance / "tenants.demo.yaml"
    tenants.write_text("# tenants.yaml plus the demo identity provider for Torfaen (made by `make run`)\n"
                       + yaml.safe_dump(doc, sort_keys=False, allow_unicode=True))
    print(tenants)


if __name__ == "__main__":
    main(Path(sys.argv[1]), sys.argv[2].rstrip("/"), int(sys.argv[3]))
