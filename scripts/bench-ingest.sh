#!/usr/bin/env bash
# Durable alert ingest benchmark, same load, same run, side by side:
#   watchpost on SQLite, watchpost on PostgreSQL, Debian's prometheus-alertmanager.
# N clients (default 64) POST batches (default 100) of Alertmanager v2 alerts to
# /api/v2/alerts for SECONDS_RUN seconds each (examples/ingest_load.rs), in two
# workloads against the same process:
#   repeats  DISTINCT label sets (default 20,000) sent again and again (steady state);
#   storm    every alert new (an alert storm: a partition, a bad deploy).
# Prints alerts/s and latency percentiles per target and workload; the RSS of each
# target before and after, and RSS bytes per firing alert (the growth over the idle
# process divided by the alerts firing at the end); and for watchpost the time from
# SIGTERM (sent in the middle of the same load) to the process's exit.
#
#   scripts/bench-ingest.sh            # defaults: 64 clients, batches of 100, 20 s
#   CLIENTS=32 BATCH=500 SECONDS_RUN=30 scripts/bench-ingest.sh
#   WORKLOADS=storm SECONDS_RUN=10 scripts/bench-ingest.sh
#   BASELINE_BIN=/tmp/watchpost-old scripts/bench-ingest.sh   # before/after in one run
#   TARGETS="postgres postgres3" scripts/bench-ingest.sh   # one node vs three nodes
#
# `postgres3` runs three watchpost nodes on one PostgreSQL (a cluster, docs/cluster.md);
# the clients are spread over the three, each node receiving its own label sets.
# `postgres3same` is the same cluster with every node receiving every label set (one
# Prometheus sending to all nodes): the same alerts written by three writers.
#
# watchpost answers only after the batch holding the alerts has committed (SQLite WAL
# with synchronous=FULL; PostgreSQL with its defaults fsync=on, synchronous_commit=on).
# Alertmanager keeps alerts in memory only. The ingest rate limit is switched off for
# the run (all clients come from one address).
set -euo pipefail
cd "$(dirname "$0")/.."

CLIENTS=${CLIENTS:-64}
BATCH=${BATCH:-100}
SECONDS_RUN=${SECONDS_RUN:-20}
WARMUP=${WARMUP:-3}
DISTINCT=${DISTINCT:-20000}
TARGETS=${TARGETS:-"sqlite postgres alertmanager"}
WORKLOADS=${WORKLOADS:-"repeats storm"}
# A storm of SECONDS_RUN at full speed must not reach watchpost's alerts.max_firing.
MAX_FIRING=${MAX_FIRING:-20000000}

log() { printf '==> %s\n' "$*" >&2; }
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_http() {
  for _ in $(seq 1 200); do curl -sf -o /dev/null "$1" && return 0; sleep 0.1; done
  echo "timed out waiting for $1" >&2; return 1
}

log "building (release)"
cargo build --release --quiet --bin watchpost --example ingest_load
BIN=$PWD/target/release/watchpost
LOAD=$PWD/target/release/examples/ingest_load

WORK=$(mktemp -d /tmp/wp-bench.XXXXXX)
chmod 755 "$WORK"  # the postgres user must reach its data directory
PG_BIN=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1 || true)
PG_DIR=$WORK/pg
PIDS=()
run_pg() { if [ "$(id -u)" -eq 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }
cleanup() {
  for p in "${PIDS[@]:-}"; do [ -n "$p" ] && kill "$p" 2>/dev/null || true; done
  [ -d "$PG_DIR/data" ] && run_pg "$PG_BIN/pg_ctl" -D "$PG_DIR/data" -m fast stop >/dev/null 2>&1 || true
  rm -rf "$WORK"
}
trap cleanup EXIT

load() { # name url [flags...]
  local name=$1 url=$2
  shift 2
  "$LOAD" --url "$url" --name "$name" --clients "$CLIENTS" --batch "$BATCH" \
    --seconds "$SECONDS_RUN" --warmup "$WARMUP" --distinct "$DISTINCT" "$@" | tee -a "$WORK/results.jsonl"
}

rss_kb() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status"; }

# Alerts firing now: watchpost_alerts_active, or Alertmanager's active alerts.
firing() { # url
  curl -sf "$1/metrics" | awk '
    /^watchpost_alerts_active\{/ || /^alertmanager_alerts\{state="active"\}/ { n += $2 }
    END { printf "%d\n", n }'
}

# Every workload in turn against one process, then its memory. The alerts firing at
# the end are counted from what was accepted: every label set of the repeats, and
# every alert of the storm (all new, all ending in two hours). Alertmanager's own
# gauge counts an alert only once its group has waited group_wait, so it cannot
# tell; watchpost's watchpost_alerts_active is printed beside as a check.
workloads() { # name url pid [flags...]
  local name=$1 url=$2 pid=$3 idle firing=0 out
  shift 3
  idle=$(rss_kb "$pid")
  for w in $WORKLOADS; do
    log "$name, $w: $CLIENTS clients x $BATCH alerts, ${SECONDS_RUN}s"
    case $w in
      repeats) out=$(load "$name" "$url" "$@"); echo "$out"; firing=$((firing + DISTINCT)) ;;
      storm)
        out=$(load "$name" "$url" --storm "$@"); echo "$out"
        firing=$((firing + $(python3 -c 'import json,sys; print(json.loads(sys.argv[1])["accepted_total"])' "$out")))
        ;;
      *) log "unknown workload $w"; exit 1 ;;
    esac
  done
  sleep 1
  python3 -c "import json,sys; i,r,f,g=map(int,sys.argv[2:6]); print(json.dumps({'target':sys.argv[1],'rss_idle_kb':i,'rss_kb':r,'firing':f,'gauge':g,'bytes_per_firing':round((r-i)*1024/f) if f else None}))" \
    "$name" "$idle" "$(rss_kb "$pid")" "$firing" "$(firing "${url%%,*}")" | tee -a "$WORK/memory.jsonl"
}

stop_pid() { kill "$1" 2>/dev/null || true; wait "$1" 2>/dev/null || true; }

# SIGTERM while the same load runs: seconds until the process has exited (it drains
# in-flight requests, commits the ingest queue, stops the dispatcher and the sender).
sigterm_under_load() { # name url pid
  "$LOAD" --url "$2" --name "$1-sigterm" --clients "$CLIENTS" --batch "$BATCH" \
    --seconds 6 --warmup 0 --distinct "$DISTINCT" >/dev/null 2>&1 &
  local load_pid=$! t0 t1 code=0
  sleep 3
  t0=$(date +%s.%N)
  kill -TERM "$3"
  wait "$3" || code=$?
  t1=$(date +%s.%N)
  wait "$load_pid" 2>/dev/null || true
  python3 -c "import json,sys; print(json.dumps({'target': sys.argv[1], 'sigterm_to_exit_s': round(float(sys.argv[3]) - float(sys.argv[2]), 3), 'exit_code': int(sys.argv[4])}))" \
    "$1" "$t0" "$t1" "$code" | tee -a "$WORK/shutdown.jsonl"
}

run_watchpost() { # name database_url [binary]
  local port pid bin=${3:-$BIN}
  port=$(free_port)
  # A baseline binary may predate alerts.max_firing (an unknown key is an error).
  local limits=()
  [ "$bin" = "$BIN" ] && limits=(WATCHPOST_ALERTS__MAX_FIRING="$MAX_FIRING")
  env WATCHPOST_LISTEN=127.0.0.1:$port WATCHPOST_DATABASE_URL="$2" WATCHPOST_RULES__FILES= \
    WATCHPOST_ALERTS__RATE_LIMIT_PER_SECOND=0 "${limits[@]}" \
    WATCHPOST_LOG__FORMAT=json WATCHPOST_LOG__LEVEL=warn \
    "$bin" serve >"$WORK/$1.log" 2>&1 &
  pid=$!; PIDS+=("$pid")
  wait_http "http://127.0.0.1:$port/ready"
  workloads "$1" "http://127.0.0.1:$port" "$pid"
  sigterm_under_load "$1" "http://127.0.0.1:$port" "$pid"
}

start_pg() { # sets PG_URL
  mkdir -p "$PG_DIR"; [ "$(id -u)" -eq 0 ] && chown postgres "$PG_DIR"
  PG_PORT=$(free_port)
  run_pg "$PG_BIN/initdb" -D "$PG_DIR/data" -U postgres --auth=trust -E UTF8 >/dev/null
  run_pg "$PG_BIN/pg_ctl" -D "$PG_DIR/data" -l "$PG_DIR/log" -w start \
    -o "-p $PG_PORT -k $PG_DIR -c listen_addresses=127.0.0.1 -c max_connections=200" >/dev/null
  PG_URL="postgres://postgres@127.0.0.1:$PG_PORT/postgres"
}
stop_pg() { run_pg "$PG_BIN/pg_ctl" -D "$PG_DIR/data" -m fast stop >/dev/null; rm -rf "$PG_DIR"; }

for t in $TARGETS; do
  case $t in
    sqlite)
      if [ -n "${BASELINE_BIN:-}" ]; then
        run_watchpost watchpost-sqlite-baseline "sqlite://$WORK/sqlite-baseline/watchpost.db" "$BASELINE_BIN"
      fi
      run_watchpost watchpost-sqlite "sqlite://$WORK/sqlite/watchpost.db"
      ;;
    postgres)
      [ -n "$PG_BIN" ] || { log "no PostgreSQL binaries; skipping"; continue; }
      if [ -n "${BASELINE_BIN:-}" ]; then
        start_pg
        run_watchpost watchpost-postgres-baseline "$PG_URL" "$BASELINE_BIN"
        stop_pg
      fi
      start_pg
      run_watchpost watchpost-postgres "$PG_URL"
      stop_pg
      ;;
    postgres3|postgres3same)
      [ -n "$PG_BIN" ] || { log "no PostgreSQL binaries; skipping"; continue; }
      start_pg
      urls=()
      for n in 1 2 3; do
        port=$(free_port)
        WATCHPOST_LISTEN=127.0.0.1:$port WATCHPOST_DATABASE_URL=$PG_URL WATCHPOST_RULES__FILES= \
          WATCHPOST_CLUSTER__NODE_ID=n$n WATCHPOST_ALERTS__RATE_LIMIT_PER_SECOND=0 \
          WATCHPOST_ALERTS__MAX_FIRING=$MAX_FIRING \
          WATCHPOST_LOG__FORMAT=json WATCHPOST_LOG__LEVEL=warn \
          "$BIN" serve >"$WORK/n$n.log" 2>&1 &
        PIDS+=("$!")
        wait_http "http://127.0.0.1:$port/ready"
        urls+=("http://127.0.0.1:$port")
      done
      if [ "$t" = postgres3same ]; then
        log "three nodes on one PostgreSQL, the same alerts to all: $CLIENTS clients x $BATCH alerts, ${SECONDS_RUN}s"
        load watchpost-postgres-3-nodes-same "$(IFS=,; echo "${urls[*]}")" --same
      else
        log "three nodes on one PostgreSQL: $CLIENTS clients x $BATCH alerts, ${SECONDS_RUN}s"
        load watchpost-postgres-3-nodes "$(IFS=,; echo "${urls[*]}")"
      fi
      for p in "${PIDS[@]}"; do stop_pid "$p"; done
      PIDS=()
      stop_pg
      ;;
    alertmanager)
      command -v prometheus-alertmanager >/dev/null || { log "prometheus-alertmanager missing; skipping"; continue; }
      mkdir -p "$WORK/am"
      cat >"$WORK/am/alertmanager.yml" <<'YML'
route:
  receiver: blackhole
receivers:
  - name: blackhole
YML
      port=$(free_port)
      prometheus-alertmanager --config.file="$WORK/am/alertmanager.yml" --storage.path="$WORK/am/data" \
        --web.listen-address="127.0.0.1:$port" --cluster.listen-address= >"$WORK/am.log" 2>&1 &
      pid=$!; PIDS+=("$pid")
      wait_http "http://127.0.0.1:$port/-/ready"
      workloads alertmanager "http://127.0.0.1:$port" "$pid"
      stop_pid "$pid"
      ;;
    *) log "unknown target $t"; exit 1 ;;
  esac
done

python3 - "$WORK/results.jsonl" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
am = {r.get("workload", "repeats"): r["alerts_per_sec"] for r in rows if r["target"] == "alertmanager"}
print()
print("| workload | target | alerts/s | p50 ms | p99 ms | requests | errors | vs alertmanager |")
print("|---|---|---:|---:|---:|---:|---:|---:|")
for r in sorted(rows, key=lambda r: r.get("workload", "repeats")):
    w = r.get("workload", "repeats")
    ratio = f'{r["alerts_per_sec"] / am[w]:.2f}x' if am.get(w) else "-"
    print(f'| {w} | {r["target"]} | {r["alerts_per_sec"]:.0f} | {r["p50_ms"]:.1f} | {r["p99_ms"]:.1f} | {r["requests"]} | {r["errors"]} | {ratio} |')
PY
if [ -s "$WORK/memory.jsonl" ]; then
  python3 - "$WORK/memory.jsonl" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
am = next((r["bytes_per_firing"] for r in rows if r["target"] == "alertmanager"), None)
print()
print("| target | RSS idle MiB | RSS after MiB | firing alerts | its own gauge | RSS bytes per firing alert | vs alertmanager |")
print("|---|---:|---:|---:|---:|---:|---:|")
for r in rows:
    b = r["bytes_per_firing"]
    ratio = f'{b / am:.2f}x' if am and b else "-"
    print(f'| {r["target"]} | {r["rss_idle_kb"] / 1024:.1f} | {r["rss_kb"] / 1024:.1f} | {r["firing"]} | {r["gauge"]} | {b if b is not None else "-"} | {ratio} |')
PY
fi
if [ -s "$WORK/shutdown.jsonl" ]; then
  python3 - "$WORK/shutdown.jsonl" <<'PY'
import json, sys
print()
print("| target | SIGTERM under load -> exit | exit code |")
print("|---|---:|---:|")
for line in open(sys.argv[1]):
    r = json.loads(line)
    print(f'| {r["target"]} | {r["sigterm_to_exit_s"]:.2f} s | {r["exit_code"]} |')
PY
fi
