#!/usr/bin/env bash
# E-mail delivery benchmark, same SMTP server, same load, side by side:
#   watchpost on SQLite, watchpost on PostgreSQL, Debian's prometheus-alertmanager.
# Each target gets N_GROUPS distinct alert groups (alertname = Bench0…BenchN-1, one alert
# each) in one POST to /api/v2/alerts, group_wait 1s; every group is one e-mail to the
# same local aiosmtpd (python3-aiosmtpd, plain SMTP, a Maildir). Prints e-mails/s from
# the first to the last message arriving, the time from the POST to the last message,
# and the CPU seconds the target used.
#
#   scripts/bench-email.sh                      # defaults: 1000 groups
#   N_GROUPS=5000 TARGETS="sqlite alertmanager" scripts/bench-email.sh
#   BIN=target/debug/watchpost scripts/bench-email.sh   # no release build
#
# watchpost sends a receiver's messages one after another on one kept-alive SMTP
# connection (a row is claimed, sent, and its verdict committed before the next);
# Alertmanager sends each group from its own goroutine on a new connection.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/bench-lib.sh

N_GROUPS=${N_GROUPS:-1000}
TARGETS=${TARGETS:-"sqlite postgres alertmanager"}
PY=/usr/bin/python3

log() { printf '==> %s\n' "$*" >&2; }
$PY -c 'import aiosmtpd' 2>/dev/null || { echo "python3-aiosmtpd missing (apt-get install python3-aiosmtpd)" >&2; exit 1; }

if [ -z "${BIN:-}" ]; then
  log "building (release)"
  cargo build --release --quiet --bin watchpost
  BIN=$PWD/target/release/watchpost
fi

WORK=$(mktemp -d /tmp/wp-bench-email.XXXXXX)
chmod 755 "$WORK"
PG_BIN=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1 || true)
PIDS=()
run_pg() { if [ "$(id -u)" -eq 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }
cleanup() {
  for p in "${PIDS[@]:-}"; do [ -n "$p" ] && kill "$p" 2>/dev/null || true; done
  [ -d "$WORK/pg/data" ] && run_pg "$PG_BIN/pg_ctl" -D "$WORK/pg/data" -m fast stop >/dev/null 2>&1 || true
  rm -rf "$WORK"
}
trap cleanup EXIT

# The alerts: N_GROUPS alertnames, firing for an hour.
alerts_json() {
  $PY - "$N_GROUPS" <<'PY'
import json, sys, datetime
n = int(sys.argv[1])
now = datetime.datetime.now(datetime.timezone.utc)
ends = (now + datetime.timedelta(hours=1)).isoformat()
print(json.dumps([{"labels": {"alertname": f"Bench{i}", "instance": "host-1", "severity": "warning"},
                   "annotations": {"summary": f"benchmark alert {i}"}, "endsAt": ends} for i in range(n)]))
PY
}

start_smtpd() { # dir → SMTP_PORT
  local dir=$1
  SMTP_PORT=$(free_port)
  $PY -m aiosmtpd -n -l "127.0.0.1:$SMTP_PORT" -c aiosmtpd.handlers.Mailbox "$dir" >/dev/null 2>&1 &
  PIDS+=("$!")
  for _ in $(seq 100); do (exec 3<>"/dev/tcp/127.0.0.1/$SMTP_PORT") 2>/dev/null && break; sleep 0.1; done
}

# Posts the alerts to $1, waits for N_GROUPS messages in Maildir $2; prints a result line.
measure() { # name base-url maildir pid
  local name=$1 url=$2 dir=$3 pid=$4 t0 first="" last n cpu0 cpu1
  cpu0=$(cpu_seconds "$pid")
  t0=$(date +%s.%N)
  curl -sf -o /dev/null -H 'content-type: application/json' --data-binary @"$WORK/alerts.json" "$url/api/v2/alerts"
  while :; do
    n=$(find "$dir/new" -type f 2>/dev/null | wc -l)
    [ -z "$first" ] && [ "$n" -gt 0 ] && first=$(date +%s.%N)
    [ "$n" -ge "$N_GROUPS" ] && break
    if [ "$(calc "($(date +%s.%N) - $t0 > 600)")" = 1 ]; then log "$name: only $n of $N_GROUPS after 600 s"; return 1; fi
    sleep 0.05
  done
  last=$(date +%s.%N)
  cpu1=$(cpu_seconds "$pid")
  printf '%-24s %6d e-mails  %8.1f e-mails/s  %6.2f s POST→last  %6.2f CPU s\n' "$name" "$N_GROUPS" \
    "$(calc "($N_GROUPS - 1) / ($last - $first)")" "$(calc "$last - $t0")" "$(calc "$cpu1 - $cpu0")"
}

watchpost_config() { # db-url smtp-port
  cat <<TOML
listen = "127.0.0.1:$(free_port)"
database_url = "$1"
[route]
receiver = "mail"
group_by = ["alertname"]
group_wait = "1s"
group_interval = "5m"
[[receivers]]
name = "mail"
email = { to = "ops@example.org", from = "watchpost@example.org", smarthost = "127.0.0.1:$2", require_tls = false }
TOML
}

run_watchpost() { # name db-url
  local name=$1 db=$2 dir="$WORK/$1/mail" pid listen
  mkdir -p "$WORK/$name"
  start_smtpd "$dir"
  watchpost_config "$db" "$SMTP_PORT" >"$WORK/$name/watchpost.toml"
  listen=$(awk -F'"' '/^listen/ {print $2}' "$WORK/$name/watchpost.toml")
  WATCHPOST_LOG__LEVEL=warn "$BIN" serve --config "$WORK/$name/watchpost.toml" >"$WORK/$name/log" 2>&1 &
  pid=$!; PIDS+=("$pid")
  wait_http "http://$listen/ready"
  measure "$name" "http://$listen" "$dir" "$pid"
  kill "$pid"; wait "$pid" 2>/dev/null || true
}

alerts_json >"$WORK/alerts.json"
log "$N_GROUPS groups, one e-mail each"
for t in $TARGETS; do
  case $t in
    sqlite) run_watchpost watchpost-sqlite "sqlite://$WORK/wp.db" ;;
    postgres)
      [ -n "$PG_BIN" ] || { log "PostgreSQL missing; skipping"; continue; }
      mkdir -p "$WORK/pg" && chown postgres "$WORK/pg" 2>/dev/null || true
      run_pg "$PG_BIN/initdb" -D "$WORK/pg/data" -U postgres --auth=trust -E UTF8 >/dev/null
      pgport=$(free_port)
      run_pg "$PG_BIN/pg_ctl" -D "$WORK/pg/data" -l "$WORK/pg/log" -w start \
        -o "-p $pgport -k $WORK/pg -c listen_addresses=127.0.0.1" >/dev/null
      run_watchpost watchpost-postgres "postgres://postgres@127.0.0.1:$pgport/postgres"
      ;;
    alertmanager)
      command -v prometheus-alertmanager >/dev/null || { log "prometheus-alertmanager missing; skipping"; continue; }
      dir="$WORK/am/mail"; mkdir -p "$WORK/am"
      start_smtpd "$dir"
      cat >"$WORK/am/alertmanager.yml" <<YML
global:
  smtp_smarthost: 127.0.0.1:$SMTP_PORT
  smtp_from: alertmanager@example.org
  smtp_require_tls: false
route:
  receiver: mail
  group_by: [alertname]
  group_wait: 1s
  group_interval: 5m
receivers:
  - name: mail
    email_configs:
      - to: ops@example.org
YML
      port=$(free_port)
      prometheus-alertmanager --config.file="$WORK/am/alertmanager.yml" --storage.path="$WORK/am/data" \
        --web.listen-address="127.0.0.1:$port" --cluster.listen-address= >"$WORK/am.log" 2>&1 &
      pid=$!; PIDS+=("$pid")
      wait_http "http://127.0.0.1:$port/-/ready"
      measure alertmanager "http://127.0.0.1:$port" "$dir" "$pid"
      kill "$pid"; wait "$pid" 2>/dev/null || true
      ;;
    *) log "unknown target $t"; exit 1 ;;
  esac
done
