#!/usr/bin/env bash
# Make a PostgreSQL server answer on 127.0.0.1:5432 with a `cloud_portal` role and test database.
# Uses the one already running where it answers; otherwise installs Debian's package and starts it.
# Prints the database URL on its last line.
set -euo pipefail
PGHOST=127.0.0.1 PGPORT=${PGPORT:-5432}
DB=${CLOUD_PORTAL_TEST_DB_NAME:-cloud_portal_test}
ROLE=cloud_portal PASSWORD=cloud_portal

as_superuser() {  # run psql as a superuser, whichever way this machine allows
  if psql -h "$PGHOST" -p "$PGPORT" -U postgres -d postgres -tAc 'select 1' >/dev/null 2>&1; then
    psql -h "$PGHOST" -p "$PGPORT" -U postgres -d postgres -v ON_ERROR_STOP=1 -tA "$@"
  else
    runuser -u postgres -- psql -p "$PGPORT" -d postgres -v ON_ERROR_STOP=1 -tA "$@"
  fi
}

if ! pg_isready -h "$PGHOST" -p "$PGPORT" -t 2 >/dev/null 2>&1; then
  if ! command -v pg_ctlcluster >/dev/null 2>&1; then
    echo "PostgreSQL is not installed: installing Debian's postgresql package" >&2
    [ -n "$(ls -A /var/lib/apt/lists 2>/dev/null | grep -v lock || true)" ] || apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends postgresql >/dev/null
  fi
  version=$(ls /etc/postgresql | sort -V | tail -1)
  if [ -z "$version" ]; then
    version=$(ls /usr/lib/postgresql | sort -V | tail -1)
    pg_createcluster "$version" main >/dev/null
  fi
  echo "starting PostgreSQL $version" >&2
  pg_ctlcluster --skip-systemctl-redirect "$version" main start
  for _ in $(seq 1 30); do pg_isready -h "$PGHOST" -p "$PGPORT" -t 1 >/dev/null 2>&1 && break; sleep 1; done
  pg_isready -h "$PGHOST" -p "$PGPORT" -t 2 >/dev/null || { echo "PostgreSQL did not start; see /var/log/postgresql/" >&2; exit 1; }
fi

if [ "$(as_superuser -c "select 1 from pg_roles where rolname='$ROLE'")" != "1" ]; then
  as_superuser -c "create role $ROLE login password '$PASSWORD' createdb" >/dev/null
fi
if [ "$(as_superuser -c "select 1 from pg_database where datname='$DB'")" != "1" ]; then
  as_superuser -c "create database $DB owner $ROLE" >/dev/null
fi
echo "postgresql://$ROLE:$PASSWORD@$PGHOST:$PGPORT/$DB"
