#!/usr/bin/env bash
# Idle cost of `watchpost serve` (collect.interval=1s, the default rules) next to Debian's
# prometheus-node-exporter, all scraped once a second, over DURATION seconds (default 60).
# Prints CPU % of one core and RSS for each. BASELINE_BIN=<an older watchpost binary>
# runs it as well, in the same window.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/bench-lib.sh
DURATION=${1:-60}
BIN=${BIN:-target/release/watchpost}
command -v prometheus-node-exporter >/dev/null || { echo "apt-get install prometheus-node-exporter" >&2; exit 1; }
[ "$BIN" != target/release/watchpost ] || cargo build --release --quiet
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null; rm -rf "$work"' EXIT

# start NAME BINARY: a watchpost in its own folder (with the default rules), on a free port.
declare -A port pid
start() {
  local dir="$work/$1" p
  mkdir -p "$dir"; cp -r alerts "$dir/"
  p=$(free_port)
  (cd "$dir" && WATCHPOST_LISTEN=127.0.0.1:$p WATCHPOST_LOG__FORMAT=json exec "$2" serve >/dev/null 2>&1) &
  pid[$1]=$!; port[$1]=$p
}
names=(watchpost)
start watchpost "$(realpath "$BIN")"
if [ -n "${BASELINE_BIN:-}" ]; then
  names+=(baseline); start baseline "$(realpath "$BASELINE_BIN")"
fi
ne_port=$(free_port)
prometheus-node-exporter --web.listen-address=127.0.0.1:$ne_port >/dev/null 2>&1 &
pid[node_exporter]=$!; port[node_exporter]=$ne_port
names+=(node_exporter)
for n in "${names[@]}"; do
  if [ "$n" = node_exporter ]; then wait_http "http://127.0.0.1:${port[$n]}/metrics"; else wait_http "http://127.0.0.1:${port[$n]}/ready"; fi
done
sleep 5 # settle
declare -A cpu0
for n in "${names[@]}"; do cpu0[$n]=$(cpu_seconds "${pid[$n]}"); done
for _ in $(seq "$DURATION"); do
  for n in "${names[@]}"; do curl -s -o /dev/null "http://127.0.0.1:${port[$n]}/metrics"; done
  sleep 1
done
printf '%-24s %8s %10s %8s\n' process "cpu_%" rss_mib series
for n in "${names[@]}"; do
  cpu1=$(cpu_seconds "${pid[$n]}")
  printf '%-24s %8.3f %10s %8s\n' "$n" "$(calc "($cpu1-${cpu0[$n]})*100/$DURATION")" "$(rss_mib "${pid[$n]}")" "$(series_count "http://127.0.0.1:${port[$n]}/metrics")"
done
