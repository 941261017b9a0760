#!/usr/bin/env bash
# `make run`: sandbox cloud, database at head, tenants and demo accounts, then the portal on
# 127.0.0.1:8000 with a queue worker beside it. Ctrl-C stops the portal and the worker
# (the sandbox keeps running; `make sandbox-stop` stops it).
set -euo pipefail
cd "$(dirname "$0")/.."
export CLOUD_PORTAL_INSTANCE_PATH=${CLOUD_PORTAL_INSTANCE_PATH:-$PWD/instance}
BIND=${CLOUD_PORTAL_BIND:-127.0.0.1:8000}
bash scripts/ensure-pango.sh  # WeasyPrint (PDF statements) needs Debian's Pango

echo "== starting the sandbox cloud (first time: installs OpenStack, several minutes)"
sandbox_out=$(sandbox/sandboxctl start | tee /dev/stderr)
clouds=$(printf '%s\n' "$sandbox_out" | sed -n 's/^CLOUDS_YAML=//p' | tail -1)
[ -n "$clouds" ] || { echo "the sandbox did not say where its clouds.yaml is" >&2; exit 1; }
export CLOUD_PORTAL_CLOUDS_YAML=${CLOUD_PORTAL_CLOUDS_YAML:-$clouds}

echo "== demo identity provider for Torfaen (npm's oidc-provider on 127.0.0.1:${CLOUD_PORTAL_DEMO_IDP_PORT:-5556})"
idp_home=$(bash scripts/ensure-idp.sh | tail -1)
mkdir -p "$CLOUD_PORTAL_INSTANCE_PATH"
demo_tenants=$(.venv/bin/python sandbox/idp/demo.py "$CLOUD_PORTAL_INSTANCE_PATH" "http://$BIND" \
  "${CLOUD_PORTAL_DEMO_IDP_PORT:-5556}" | tail -1)
export CLOUD_PORTAL_TENANTS_FILE=${CLOUD_PORTAL_TENANTS_FILE:-$demo_tenants}
OIDC_PROVIDER_HOME=$idp_home node sandbox/idp/provider.mjs "$CLOUD_PORTAL_INSTANCE_PATH/idp/torfaen.json" &
idp=$!
trap 'kill $idp 2>/dev/null' EXIT INT TERM

echo "== database and tenants"
.venv/bin/cloud-portal init
.venv/bin/cloud-portal check
.venv/bin/cloud-portal tenants sync
echo "== demo accounts (passwords are shown once, when the account is made)"
.venv/bin/cloud-portal demo-accounts

.venv/bin/cloud-portal worker &
worker=$!
trap 'kill $worker $idp 2>/dev/null; wait $worker $idp 2>/dev/null' EXIT INT TERM
echo "== portal on http://$BIND/ (Ctrl-C to stop)"
.venv/bin/gunicorn -c python:cloud_portal.serving --bind "$BIND" --workers 2 --threads 4 \
  --no-control-socket --access-logfile - "cloud_portal:create_app()"
