#!/usr/bin/env bash
# Kafka deliveries per second: watchpost (fresh SQLite file) notifies N groups, one
# alert each (`group_by = ["alertname"]`), through its outbox into librdkafka's mock
# cluster, started by Debian's kcat (1.7.1, librdkafka 2.0.2), which also consumes the
# topic back. Timed from the first POST /api/v1/alerts until the consumer has printed N
# records.
#
# There is no Alertmanager Kafka receiver to compare with; the reference line is kcat -P
# (librdkafka's idempotent producer, acks=all, batching as it likes) writing the same N
# records (same keys, watchpost's JSON) to the same mock.
#
#   scripts/bench-kafka.sh                       # N=2000, release build
#   N=500 COMPRESSION=gzip scripts/bench-kafka.sh
#   BIN=target/debug/watchpost scripts/bench-kafka.sh   # a binary already built
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/bench-lib.sh
source scripts/bench-lib.sh

N=${N:-2000}
COMPRESSION=${COMPRESSION:-none}
BATCH=${BATCH:-500}
log() { printf '==> %s\n' "$*" >&2; }
command -v kcat >/dev/null || { log "kcat is needed: apt-get install kcat"; exit 1; }

if [ -z "${BIN:-}" ]; then
  log "building (release)"
  cargo build --release --quiet --bin watchpost
  BIN=$PWD/target/release/watchpost
fi
WORK=$(mktemp -d /tmp/wp-bench-kafka.XXXXXX)
PIDS=()
cleanup() {
  local p
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  rm -rf "$WORK"
}
trap cleanup EXIT

# The mock cluster, consuming $1 into $WORK/$1.out; sets MOCK.
start_mock() {
  kcat -b 127.0.0.1:1 -X test.mock.num.brokers=1 -C -u -t "$1" -o beginning \
    -f '%k\t%s\n' >"$WORK/$1.out" 2>"$WORK/$1.err" &
  PIDS+=("$!")
  for _ in $(seq 100); do
    MOCK=$(grep -so 'replaced with [0-9.:]*' "$WORK/$1.err" | awk '{print $3}') && [ -n "$MOCK" ] && return 0
    sleep 0.1
  done
  log "the mock cluster did not start"; exit 1
}
lines() { wc -l <"$1" | tr -d ' '; }
wait_lines() { # file, count
  for _ in $(seq 6000); do [ "$(lines "$1")" -ge "$2" ] && return 0; sleep 0.05; done
  log "only $(lines "$1") of $2 records arrived"; exit 1
}
now() { date +%s.%N; }

start_mock wp
port=$(free_port)
cat >"$WORK/wp.toml" <<TOML
listen = "127.0.0.1:$port"
database_url = "sqlite://$WORK/wp.db"
[log]
level = "warn"
[alerts]
rate_limit_per_second = 1000000
rate_limit_burst = 1000000
[route]
receiver = "kafka"
group_by = ["alertname"]
group_wait = "100ms"
group_interval = "1h"
[[receivers]]
name = "kafka"
kafka = { brokers = ["$MOCK"], topic = "wp", compression = "$COMPRESSION" }
TOML
"$BIN" serve --config "$WORK/wp.toml" >"$WORK/wp.log" 2>&1 &
WP=$!; PIDS+=("$WP")
wait_http "http://127.0.0.1:$port/ready"

log "watchpost: $N notifications, compression $COMPRESSION (load average $(cut -d' ' -f1-3 /proc/loadavg))"
c0=$(cpu_seconds "$WP")
t0=$(now)
for ((from = 0; from < N; from += BATCH)); do
  to=$(( from + BATCH < N ? from + BATCH : N ))
  seq "$from" $(( to - 1 )) | awk 'BEGIN { printf "[" } NR > 1 { printf "," }
    { printf "{\"message\":\"bench %d\",\"severity\":\"warning\",\"labels\":{\"alertname\":\"K%d\",\"instance\":\"h%d\"}}", $1, $1, $1 }
    END { printf "]" }' >"$WORK/batch.json"
  curl -sf -o /dev/null -H 'Content-Type: application/json' --data-binary @"$WORK/batch.json" \
    "http://127.0.0.1:$port/api/v1/alerts"
done
t_posted=$(now)
wait_lines "$WORK/wp.out" "$N"
t1=$(now)
c1=$(cpu_seconds "$WP")
first=$(grep -m1 -o '"status":"firing"' "$WORK/wp.out" >/dev/null && echo ok)
[ "$first" = ok ] || { log "records are not watchpost notifications"; exit 1; }
total=$(calc "$t1 - $t0")
printf 'watchpost  %6d records  %6.2f s  %8.0f records/s  (alerts posted in %.2f s; %.2f CPU s, %.1f MiB RSS)\n' \
  "$N" "$total" "$(calc "$N / $total")" "$(calc "$t_posted - $t0")" "$(calc "$c1 - $c0")" "$(rss_mib "$WP")"
delivered=$(curl -s "http://127.0.0.1:$port/api/v1/notifications?state=delivered&limit=1" | grep -c '"delivered"' || true)
[ "$delivered" -ge 1 ] || log "warning: no delivered row in /api/v1/notifications"

# Reference: kcat -P, the same records (keys and values) to the same mock, new topic.
start_mock ref
MOCK_REF=$MOCK
cp "$WORK/wp.out" "$WORK/ref.in"
t0=$(now)
kcat -P -b "$MOCK_REF" -t ref -K $'\t' -z "$COMPRESSION" -X enable.idempotence=true -X acks=all \
  -l "$WORK/ref.in"
wait_lines "$WORK/ref.out" "$N"
t1=$(now)
total=$(calc "$t1 - $t0")
printf 'kcat -P    %6d records  %6.2f s  %8.0f records/s  (librdkafka %s, batched)\n' \
  "$N" "$total" "$(calc "$N / $total")" "$(kcat -V 2>&1 | grep -o 'librdkafka [0-9.]*' | awk '{print $2}')"
