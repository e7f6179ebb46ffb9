#!/usr/bin/env bash
# PostgreSQL monitoring cost, side by side in one run: watchpost's built-in collector vs
# Debian's prometheus-postgres-exporter, on the same throwaway cluster, one collection
# per second for SECONDS_RUN seconds each, one after the other:
#   exporter   the exporter alone, scraped once a second (as Prometheus would);
#   watchpost  watchpost with one [[postgres]] target, interval 1s;
#   baseline   watchpost without the target (its own idle cost, subtracted).
# Prints CPU milliseconds per collection on the collector's side and on the PostgreSQL
# server's side (the postmaster and all its backends, exited ones included), and the
# series each exports for the cluster.
#
#   scripts/bench-postgres.sh                  # 60 s per phase, 8 databases
#   SECONDS_RUN=30 DATABASES=20 scripts/bench-postgres.sh
#   BIN=target/release/watchpost scripts/bench-postgres.sh
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/bench-lib.sh

SECONDS_RUN=${SECONDS_RUN:-60}
DATABASES=${DATABASES:-8}
BIN=${BIN:-target/release/watchpost}
EXPORTER=${EXPORTER:-/usr/bin/prometheus-postgres-exporter}
PG_BIN=${PG_BIN:-$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n 1)}

[ -x "$BIN" ] || cargo build --release --bin watchpost
[ -x "$EXPORTER" ] || { echo "install prometheus-postgres-exporter" >&2; exit 1; }

WORK=$(mktemp -d /tmp/wp-bench-pg.XXXXXX)
run_pg() { if [ "$(id -u)" -eq 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }
[ "$(id -u)" -eq 0 ] && chown postgres "$WORK"
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  run_pg "$PG_BIN/pg_ctl" -D "$WORK/data" -m immediate stop >/dev/null 2>&1 || true
  rm -rf "$WORK"
}
trap cleanup EXIT

PG_PORT=$(free_port)
run_pg "$PG_BIN/initdb" -D "$WORK/data" -U postgres --auth=trust -E UTF8 >/dev/null
run_pg "$PG_BIN/pg_ctl" -D "$WORK/data" -l "$WORK/pg.log" -w \
  -o "-p $PG_PORT -k $WORK -c listen_addresses=127.0.0.1" start >/dev/null
URL="postgres://postgres@127.0.0.1:$PG_PORT/postgres"
for i in $(seq "$DATABASES"); do
  run_pg "$PG_BIN/psql" -q -h 127.0.0.1 -p "$PG_PORT" -U postgres -c "CREATE DATABASE bench$i" >/dev/null
done
POSTMASTER=$(head -1 "$WORK/data/postmaster.pid")

# CPU seconds of the cluster: the postmaster, its reaped children and the live ones.
pg_cpu() {
  local hz total c
  hz=$(getconf CLK_TCK)
  total=$(awk -v hz="$hz" '{print ($14+$15+$16+$17)/hz}' "/proc/$POSTMASTER/stat")
  for c in $(pgrep -P "$POSTMASTER"); do
    [ -r "/proc/$c/stat" ] && total=$(calc "$total + $(cpu_seconds "$c" 2>/dev/null || echo 0)")
  done
  echo "$total"
}

# Runs a phase: $1 name, $2 collector pid, $3 optional URL scraped once a second.
phase() {
  local name=$1 pid=$2 scrape=${3:-} c0 p0 c1 p1
  sleep 3 # connected and settled
  c0=$(cpu_seconds "$pid"); p0=$(pg_cpu)
  for _ in $(seq "$SECONDS_RUN"); do
    [ -n "$scrape" ] && curl -s -o /dev/null "$scrape"
    sleep 1
  done
  c1=$(cpu_seconds "$pid"); p1=$(pg_cpu)
  echo "$name $(calc "($c1 - $c0) * 1000 / $SECONDS_RUN") $(calc "($p1 - $p0) * 1000 / $SECONDS_RUN")"
}

start_watchpost() { # $1 with-target (yes/no)
  local port dir
  port=$(free_port); dir="$WORK/wp-$1"; mkdir -p "$dir"
  {
    echo "listen = \"127.0.0.1:$port\""
    echo "database_url = \"sqlite://$dir/watchpost.db\""
    echo "[rules]"
    echo "files = []"
    if [ "$1" = yes ]; then
      echo "[[postgres]]"
      echo "name = \"bench\""
      echo "url = \"$URL\""
      echo "interval = \"1s\""
      echo "timeout = \"900ms\""
    fi
  } >"$dir/watchpost.toml"
  "$BIN" serve --config "$dir/watchpost.toml" >"$dir/log" 2>&1 &
  WP_PID=$!; PIDS+=("$WP_PID"); WP_URL="http://127.0.0.1:$port"
  wait_http "$WP_URL/health"
}

EXP_PORT=$(free_port)
DATA_SOURCE_NAME="$URL?sslmode=disable" "$EXPORTER" --web.listen-address="127.0.0.1:$EXP_PORT" \
  >"$WORK/exporter.log" 2>&1 &
EXP_PID=$!; PIDS+=("$EXP_PID")
wait_http "http://127.0.0.1:$EXP_PORT/metrics"
read -r _ exp_cpu exp_pg < <(phase exporter "$EXP_PID" "http://127.0.0.1:$EXP_PORT/metrics")
exp_series=$(curl -s "http://127.0.0.1:$EXP_PORT/metrics" | grep -c '^pg_')
kill "$EXP_PID"; wait "$EXP_PID" 2>/dev/null || true

start_watchpost no
read -r _ base_cpu base_pg < <(phase baseline "$WP_PID")
kill "$WP_PID"; wait "$WP_PID" 2>/dev/null || true

start_watchpost yes
read -r _ wp_cpu wp_pg < <(phase watchpost "$WP_PID")
wp_series=$(curl -s "$WP_URL/metrics" | grep -c '^pg_')
kill "$WP_PID"; wait "$WP_PID" 2>/dev/null || true

printf '\nPostgreSQL %s, %s databases, %ss per phase, one collection per second\n' \
  "$("$PG_BIN/postgres" --version | awk '{print $3}')" "$((DATABASES + 3))" "$SECONDS_RUN"
printf '%-34s %16s %18s %8s\n' "collector" "collector ms/coll" "PostgreSQL ms/coll" "series"
printf '%-34s %16.2f %18.2f %8s\n' "prometheus-postgres-exporter" "$exp_cpu" "$(calc "$exp_pg - $base_pg")" "$exp_series"
printf '%-34s %16.2f %18.2f %8s\n' "watchpost (collector only)" "$(calc "$wp_cpu - $base_cpu")" "$(calc "$wp_pg - $base_pg")" "$wp_series"
printf '%-34s %16.2f %18.2f\n' "watchpost idle (subtracted above)" "$base_cpu" "$base_pg"
