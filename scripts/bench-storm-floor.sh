#!/usr/bin/env bash
# The floor of a storm: how fast the databases alone store new alerts with watchpost's
# schema (every index, an `alert_events` row per alert), in transactions of 2,000, with
# the rows generated inside the database (no client, no parsing, no network).
# Usage: bash scripts/bench-storm-floor.sh [postgres://…]   (SQLite always; PostgreSQL if a URL is given)
set -euo pipefail
cd "$(dirname "$0")/.."
work=$(mktemp -d); trap 'rm -rf "$work"' EXIT
batches=50; size=2000
gen() { # gen sqlite|postgres [events]
  for b in $(seq 0 $((batches-1))); do
    lo=$((b*size)); hi=$((lo+size-1))
    if [ "$1" = sqlite ]; then
      echo "BEGIN IMMEDIATE;"
      src="(WITH RECURSIVE c(x) AS (SELECT $lo UNION ALL SELECT x+1 FROM c WHERE x < $hi) SELECT x FROM c)"
      fp="printf('%016x', abs(random())) || x"
    else
      echo "BEGIN;"; src="generate_series($lo,$hi) x"; fp="md5(random()::text) || x"
    fi
    cat <<SQL
INSERT INTO alerts (fingerprint, source, alertname, message, severity, type, risk_score, state, labels, annotations, starts_at_ms, first_seen_ms, last_seen_ms, count)
 SELECT $fp, 'alertmanager', 'StormAlert', 'storm alert number ' || x || ' on host-' || (x % 500), 'warning', 'system', 43, 'firing',
   '{"alertname":"StormAlert","instance":"host-' || (x%500) || ':9100","job":"node","storm":"' || x || '","severity":"warning"}',
   '{"summary":"storm alert ' || x || '","description":"synthetic storm alert"}', 1700000000000+x, 1700000000000+x, 1700000000000+x, 1
 FROM $src;
SQL
    [ "${2:-}" = events ] && echo "INSERT INTO alert_events (alert_id, kind, at_ms, detail) SELECT id, 'created', last_seen_ms, '{}' FROM alerts WHERE id > $lo;"
    echo "COMMIT;"
  done
}
rate() { awk -v n=$((batches*size)) -v s="$1" 'BEGIN { printf "%.0f", n/s }'; }
timed() { local t0 t1; t0=$(date +%s.%N); "$@" >/dev/null; t1=$(date +%s.%N); awk -v a="$t0" -v b="$t1" 'BEGIN { print b-a }'; }
sqlite_schema() {
  printf 'PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL;\n'
  cat migrations/sqlite/0002_alerts.sql
  grep -h "ALTER TABLE alerts" migrations/sqlite/*.sql
}
for mode in events alerts-only; do
  db="$work/floor-$mode.db"
  sqlite_schema | sqlite3 "$db" >/dev/null
  gen sqlite "$([ $mode = events ] && echo events)" > "$work/load.sql"
  s=$(timed sqlite3 "$db" < "$work/load.sql")
  printf '%-12s %-12s %8s alerts/s (%s s)\n' sqlite "$mode" "$(rate "$s")" "$s"
done
if [ -n "${1:-}" ]; then
  url=$1
  psql "$url" -qc "DROP DATABASE IF EXISTS watchpost_floor" -c "CREATE DATABASE watchpost_floor" >/dev/null
  furl="${url%/*}/watchpost_floor"
  { cat migrations/postgres/0002_alerts.sql; grep -h "ALTER TABLE alerts" migrations/postgres/*.sql; } | psql "$furl" -q >/dev/null
  for mode in events alerts-only; do
    psql "$furl" -qc "TRUNCATE alerts, alert_events RESTART IDENTITY CASCADE" >/dev/null
    gen postgres "$([ $mode = events ] && echo events)" > "$work/load.sql"
    s=$(timed psql "$furl" -q -f "$work/load.sql")
    printf '%-12s %-12s %8s alerts/s (%s s; fsync=%s)\n' postgres "$mode" "$(rate "$s")" "$s" "$(psql "$furl" -Atc 'show fsync')"
  done
  psql "$url" -qc "DROP DATABASE watchpost_floor" >/dev/null
fi
