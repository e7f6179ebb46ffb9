#!/usr/bin/env bash
# /metrics under wrk (2 threads, 16 connections, 10 s) for watchpost and Debian's
# prometheus-node-exporter in the same run: req/s, p99, and CPU-seconds of the server per
# 1,000 scrapes per 100 series.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/bench-lib.sh
command -v wrk >/dev/null || { echo "apt-get install wrk" >&2; exit 1; }
cargo build --release --quiet
work=$(mktemp -d); trap 'kill $(jobs -p) 2>/dev/null; rm -rf "$work"' EXIT
wp_port=$(free_port); ne_port=$(free_port)
(cd "$work" && WATCHPOST_LISTEN=127.0.0.1:$wp_port exec "$OLDPWD/target/release/watchpost" serve >/dev/null 2>&1) &
wp_pid=$!
prometheus-node-exporter --web.listen-address=127.0.0.1:$ne_port --web.max-requests=0 >/dev/null 2>&1 &
ne_pid=$!
wait_http "http://127.0.0.1:$wp_port/ready"; wait_http "http://127.0.0.1:$ne_port/metrics"
sleep 2
printf '%-14s %10s %10s %8s %22s\n' server req_per_s p99 series cpu_s_per_1k_scrapes_100_series
run() { # name pid url
  local series c0 c1 out rps p99 reqs
  series=$(series_count "$3")
  c0=$(cpu_seconds "$2")
  out=$(wrk -t2 -c16 -d10s --latency "$3")
  c1=$(cpu_seconds "$2")
  rps=$(awk '/^Requests\/sec/ {print $2}' <<<"$out")
  reqs=$(awk '/requests in/ {print $1}' <<<"$out")
  p99=$(awk '$1=="99%" {print $2}' <<<"$out")
  printf '%-14s %10s %10s %8s %22.4f\n' "$1" "$rps" "$p99" "$series" "$(calc "($c1-$c0)/($reqs/1000)/($series/100)")"
}
run watchpost "$wp_pid" "http://127.0.0.1:$wp_port/metrics"
run node_exporter "$ne_pid" "http://127.0.0.1:$ne_port/metrics"
