#!/usr/bin/env bash
# The whole test suite on a fresh Debian machine: installs what the tests need when it is
# missing, starts a throwaway PostgreSQL cluster on a free loopback port, runs fmt, clippy
# and every test against SQLite and PostgreSQL, and stops the cluster again.
set -euo pipefail
cd "$(dirname "$0")/.."

log() { printf '\n==> %s\n' "$*" >&2; }
as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }

# --- packages -----------------------------------------------------------------------------
need=()
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || need+=(postgresql)
command -v promtool >/dev/null 2>&1 || need+=(prometheus)
command -v prometheus-alertmanager >/dev/null 2>&1 || need+=(prometheus-alertmanager)
command -v prometheus-postgres-exporter >/dev/null 2>&1 || need+=(prometheus-postgres-exporter)
command -v chromium >/dev/null 2>&1 || need+=(chromium)
command -v node >/dev/null 2>&1 || need+=(nodejs npm)
command -v python3 >/dev/null 2>&1 || need+=(python3)
# tests/notify_email.rs: a real SMTP server (Debian's build for /usr/bin/python3) and test certificates.
/usr/bin/python3 -c 'import aiosmtpd' >/dev/null 2>&1 || need+=(python3-aiosmtpd)
command -v openssl >/dev/null 2>&1 || need+=(openssl)
# The Kafka receiver's tests: librdkafka's mock cluster, started (and consumed) by kcat.
command -v kcat >/dev/null 2>&1 || need+=(kcat)
if [ "${#need[@]}" -gt 0 ]; then
  log "installing ${need[*]}"
  as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
fi
# Debian starts some of these as services on install; tests run their own on free ports.
for svc in postgresql prometheus prometheus-alertmanager prometheus-postgres-exporter; do
  as_root service "$svc" stop >/dev/null 2>&1 || true
done
if [ -d dashboard ]; then
  rustup target list --installed | grep -qx wasm32-unknown-unknown || rustup target add wasm32-unknown-unknown
fi
rustup component list --installed | grep -q '^clippy' || rustup component add clippy rustfmt

# --- throwaway PostgreSQL -----------------------------------------------------------------
PG_BIN=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n 1)
PG_DIR=$(mktemp -d /tmp/watchpost-pg.XXXXXX)
free_port() { # a random unused loopback port (no python needed)
  local p
  while :; do
    p=$(( 20000 + RANDOM % 40000 ))
    (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null || { echo "$p"; return; }
  done
}
PG_PORT=$(free_port)
run_pg() { if [ "$(id -u)" -eq 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }
[ "$(id -u)" -eq 0 ] && chown postgres "$PG_DIR"
cleanup() {
  run_pg "$PG_BIN/pg_ctl" -D "$PG_DIR/data" -m immediate stop >/dev/null 2>&1 || true
  rm -rf "$PG_DIR"
}
trap cleanup EXIT
log "starting PostgreSQL on 127.0.0.1:$PG_PORT"
run_pg "$PG_BIN/initdb" -D "$PG_DIR/data" -U postgres --auth=trust -E UTF8 >/dev/null
run_pg "$PG_BIN/pg_ctl" -D "$PG_DIR/data" -l "$PG_DIR/log" -w start \
  -o "-p $PG_PORT -k $PG_DIR -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=300" >/dev/null

export CI="${CI:-true}"
export WATCHPOST_TEST_DATABASE_URL="postgres://postgres@127.0.0.1:$PG_PORT/postgres"
export WATCHPOST_TEST_PG_BIN="$PG_BIN"

# --- checks and tests ---------------------------------------------------------------------
log "cargo fmt --check"
cargo fmt --all --check
log "cargo clippy"
cargo clippy --all-targets -- -D warnings
log "cargo test (SQLite and PostgreSQL)"
cargo test -- "$@"
if [ -f tests/e2e/package.json ]; then
  log "browser end-to-end tests"
  (cd tests/e2e && npm ci --no-audit --no-fund --silent && node run.mjs)
fi
log "all tests passed"
