#!/usr/bin/env bash
# Idle cost of `watchpost serve` (collect.interval=1s) next to Debian's
# prometheus-node-exporter, both scraped once a second, over DURATION seconds (default 60).
# Prints CPU % of one core and RSS for each.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/bench-lib.sh
DURATION=${1:-60}
command -v prometheus-node-exporter >/dev/null || { echo "apt-get install prometheus-node-exporter" >&2; exit 1; }
cargo build --release --quiet
work=$(mktemp -d); cp -r alerts "$work/"  # the default rules run, as with `cargo run`
trap 'kill $(jobs -p) 2>/dev/null; rm -rf "$work"' EXIT
wp_port=$(free_port); ne_port=$(free_port)
(cd "$work" && WATCHPOST_LISTEN=127.0.0.1:$wp_port WATCHPOST_LOG__FORMAT=json exec "$OLDPWD/target/release/watchpost" serve >/dev/null 2>&1) &
wp_pid=$!
prometheus-node-exporter --web.listen-address=127.0.0.1:$ne_port >/dev/null 2>&1 &
ne_pid=$!
wait_http "http://127.0.0.1:$wp_port/ready"; wait_http "http://127.0.0.1:$ne_port/metrics"
wp_pid=$(pgrep -P "$wp_pid" -f target/release/watchpost || echo "$wp_pid")
sleep 5 # settle
wp0=$(cpu_seconds "$wp_pid"); ne0=$(cpu_seconds "$ne_pid")
for _ in $(seq "$DURATION"); do
  curl -s -o /dev/null "http://127.0.0.1:$wp_port/metrics"
  curl -s -o /dev/null "http://127.0.0.1:$ne_port/metrics"
  sleep 1
done
wp1=$(cpu_seconds "$wp_pid"); ne1=$(cpu_seconds "$ne_pid")
printf '%-24s %8s %10s %8s\n' process "cpu_%" rss_mib series
printf '%-24s %8.3f %10s %8s\n' "watchpost" "$(calc "($wp1-$wp0)*100/$DURATION")" "$(rss_mib "$wp_pid")" "$(series_count "http://127.0.0.1:$wp_port/metrics")"
printf '%-24s %8.3f %10s %8s\n' "node_exporter" "$(calc "($ne1-$ne0)*100/$DURATION")" "$(rss_mib "$ne_pid")" "$(series_count "http://127.0.0.1:$ne_port/metrics")"
