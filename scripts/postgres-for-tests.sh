#!/usr/bin/env bash
# Start a local PostgreSQL server for the store's PostgreSQL tests (Debian, as root) and print
# the URL to export as MLWARDEN_TEST_POSTGRES_URL. Idempotent: safe to run again.
set -euo pipefail
if ! command -v pg_ctlcluster >/dev/null 2>&1; then
    apt-get update -qq >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null
fi
version=$(ls /usr/lib/postgresql | sort -n | tail -1)
if ! pg_lsclusters -h | grep -q "^$version main"; then
    pg_createcluster "$version" main >/dev/null
fi
pg_ctlcluster "$version" main start >/dev/null 2>&1 || true
pg_lsclusters -h | grep -q "^$version main .* online" || {
    echo "PostgreSQL $version did not start" >&2
    exit 1
}
su postgres -c "psql -tAc \"SELECT 1 FROM pg_roles WHERE rolname = 'mlwarden'\"" | grep -q 1 ||
    su postgres -c "psql -qc \"CREATE USER mlwarden WITH PASSWORD 'mlwarden' CREATEDB\""
su postgres -c "psql -tAc \"SELECT 1 FROM pg_database WHERE datname = 'mlwarden_test'\"" |
    grep -q 1 || su postgres -c "createdb -O mlwarden mlwarden_test"
echo "postgresql+psycopg://mlwarden:mlwarden@127.0.0.1:5432/mlwarden_test"
