#!/usr/bin/env bash
# `make test`: the whole suite. Installs what it needs (Debian chromium, PostgreSQL, Redis where
# they don't answer; the sandbox cloud and podman are set up by their session fixtures), then:
#   1. ruff, mypy and the import contracts
#   2. every test on SQLite, including the sandbox-cloud, browser and container tests
#   3. the database-facing tests again on PostgreSQL
set -euo pipefail
cd "$(dirname "$0")/.."
export PYTHONDONTWRITEBYTECODE=1
mkdir -p test-artifacts

bash scripts/ensure-chromium.sh >/dev/null
bash scripts/ensure-pango.sh
bash scripts/ensure-idp.sh >/dev/null  # npm's oidc-provider, the single sign-on tests' identity provider
CLOUD_PORTAL_AXE_JS=${CLOUD_PORTAL_AXE_JS:-$(bash scripts/ensure-axe.sh | tail -1)}  # npm's axe-core, for tests/e2e
export CLOUD_PORTAL_AXE_JS
pg_url=$(bash scripts/ensure-postgres.sh | tail -1)
redis_url=$(bash scripts/ensure-redis.sh | tail -1)
export CLOUD_PORTAL_TEST_REDIS_URL=${CLOUD_PORTAL_TEST_REDIS_URL:-$redis_url}

echo "== ruff"
.venv/bin/ruff check cloud_portal tests bench sandbox

echo "== mypy"
.venv/bin/mypy cloud_portal

echo "== import contracts (web → domain → adapters; see [importlinter] in setup.cfg)"
.venv/bin/lint-imports setup.cfg

echo "== tests on SQLite (everything)"
.venv/bin/python -m pytest -p no:cacheprovider "$@"

echo "== tests on PostgreSQL ($pg_url)"
CLOUD_PORTAL_TEST_DATABASE_URL=${CLOUD_PORTAL_TEST_DATABASE_URL:-$pg_url} \
  .venv/bin/python -m pytest -p no:cacheprovider -m "not container and not browser and not integration" "$@"
