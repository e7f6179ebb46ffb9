#!/usr/bin/env bash
# Cost of `watchpost agent`, side by side with Debian's prometheus-node-exporter in the
# same run, and what each connected agent costs the server.
#
# a. agent: one `watchpost serve` (fresh temporary dir, SQLite, the default rules) and
#    one `watchpost agent --server http://127.0.0.1:PORT --name bench-agent` collecting
#    once a second (collect.interval = 1s), next to node_exporter scraped once a second
#    (its real job). After SETTLE seconds, CPU % of one core (user+system from
#    /proc/PID/stat over DURATION seconds) and RSS (VmRSS at the end, VmHWM peak) of the
#    agent and of node_exporter; the agent's series are its samples per second received
#    by the server.
# b. server: a fresh `watchpost serve`, its CPU and RSS over DURATION with no agent, then
#    with AGENTS real `watchpost agent` processes (`--name bench-1` …) once
#    `watchpost_agents_connected` on /metrics says all are connected and SETTLE seconds
#    have passed; the difference per agent, and the samples per second received
#    (`watchpost_agents_received_samples_total`, all outcomes; and the sum of
#    `samples_received` over GET /api/v1/agents). The server's /metrics is scraped once a
#    second in both phases. The agents run on the same cores as the server.
#
#   scripts/bench-agent.sh [DURATION]          # DURATION seconds per window, default 60
#   AGENTS=50 SETTLE=10 PARTS="agent server" WATCHPOST_BIN=target/release/watchpost scripts/bench-agent.sh 60
#
# KEEP=1 keeps the temporary dir (data and logs of every process).
# WATCHPOST_BIN: the binary to measure (default target/release/watchpost, built first with
# `cargo build --release` only when WATCHPOST_BIN is unset).
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/bench-lib.sh
. scripts/bench-lib.sh
DURATION=${1:-60}
AGENTS=${AGENTS:-50}
SETTLE=${SETTLE:-10}
PARTS=${PARTS:-"agent server"}

log() { printf '==> %s\n' "$*" >&2; }
# Peak resident set size in MiB.
hwm_mib() { awk '/^VmHWM/ {printf "%.1f", $2/1024}' "/proc/$1/status"; }
# Sum of a counter or gauge (all its label sets) on a /metrics page.
metric_sum() { curl -sf "$1" | awk -v m="$2" '$1 == m || index($1, m "{") == 1 {s += $2} END {printf "%.0f", s}'; }
# Sum of samples_received over GET /api/v1/agents.
api_samples() { curl -sf "$1/api/v1/agents" | jq '[.[].samples_received] | add // 0'; }
# Sum of cpu_seconds over several pids.
cpu_sum() { local s=0 p; for p in "$@"; do s=$(calc "$s + $(cpu_seconds "$p")"); done; echo "$s"; }
alive() { kill -0 "$1" 2>/dev/null || { echo "process $1 ($2) died; logs in $work" >&2; tail -20 "$work/$2.log" >&2 || true; exit 1; }; }
# Sleeps DURATION seconds, GETting each URL once a second.
scrape_for() {
  local _ u
  for _ in $(seq "$DURATION"); do
    for u in "$@"; do curl -s -o /dev/null "$u"; done
    sleep 1
  done
}

command -v prometheus-node-exporter >/dev/null || { echo "apt-get install prometheus-node-exporter" >&2; exit 1; }
command -v jq >/dev/null || { echo "apt-get install jq" >&2; exit 1; }
if [ -z "${WATCHPOST_BIN:-}" ]; then
  log "building (release)"
  cargo build --release --quiet
fi
BIN=$(realpath "${WATCHPOST_BIN:-target/release/watchpost}")
[ -x "$BIN" ] || { echo "no binary at $BIN" >&2; exit 1; }
unset WATCHPOST_BIN # watchpost reads WATCHPOST_* as configuration and refuses unknown keys

work=$(mktemp -d /tmp/wp-bench-agent.XXXXXX)
PIDS=()
cleanup() {
  local i
  # Newest first: agents before the server they stream to.
  for ((i = ${#PIDS[@]} - 1; i >= 0; i--)); do kill "${PIDS[i]}" 2>/dev/null || true; done
  for ((i = ${#PIDS[@]} - 1; i >= 0; i--)); do wait "${PIDS[i]}" 2>/dev/null || true; done
  if [ -n "${KEEP:-}" ]; then echo "logs kept in $work" >&2; else rm -rf "$work"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM
# stop PID...: ends processes this script started and forgets them.
stop() {
  local p q keep
  for p in "$@"; do kill "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; done
  keep=()
  for q in ${PIDS[@]+"${PIDS[@]}"}; do [[ " $* " == *" $q "* ]] || keep+=("$q"); done
  PIDS=(${keep[@]+"${keep[@]}"})
}

# start_server NAME PORT: `watchpost serve` in $work/NAME (SQLite there, the default rules
# as with `cargo run`); sets srv_pid.
start_server() {
  local dir=$work/$1
  mkdir -p "$dir"; cp -r alerts "$dir/"
  (cd "$dir" && WATCHPOST_LISTEN=127.0.0.1:$2 WATCHPOST_COLLECT__INTERVAL=1s WATCHPOST_LOG__FORMAT=json \
    exec "$BIN" serve >"$work/$1.log" 2>&1) &
  srv_pid=$!; PIDS+=("$srv_pid")
  wait_http "http://127.0.0.1:$2/ready" || { tail -20 "$work/$1.log" >&2; exit 1; }
}
# start_agent NAME PORT: `watchpost agent` in its own empty dir (no watchpost.toml);
# appends its pid to agent_pids.
agent_pids=()
start_agent() {
  local dir=$work/$1
  mkdir -p "$dir"
  (cd "$dir" && WATCHPOST_COLLECT__INTERVAL=1s WATCHPOST_LOG__FORMAT=json \
    exec "$BIN" agent --server "http://127.0.0.1:$2" --name "$1" >"$work/$1.log" 2>&1) &
  agent_pids+=("$!"); PIDS+=("$!")
}
# wait_connected URL N: until watchpost_agents_connected on URL/metrics is N (2 min at most).
wait_connected() {
  local c
  for _ in $(seq 1200); do
    c=$(metric_sum "$1/metrics" watchpost_agents_connected || echo 0)
    [ "$c" = "$2" ] && return 0
    sleep 0.1
  done
  echo "only $c of $2 agents connected to $1" >&2; return 1
}

log "machine: $(nproc) cores, load $(uptime | sed 's/.*load average: //')"

if [[ " $PARTS " == *" agent "* ]]; then
  log "part a: agent next to node_exporter (settle ${SETTLE}s, measure ${DURATION}s)"
  port=$(free_port); ne_port=$(free_port)
  srv=http://127.0.0.1:$port
  start_server serve-a "$port"
  agent_pids=()
  start_agent bench-agent "$port"; ag_pid=${agent_pids[0]}
  prometheus-node-exporter --web.listen-address="127.0.0.1:$ne_port" >"$work/node_exporter.log" 2>&1 &
  ne_pid=$!; PIDS+=("$ne_pid")
  wait_http "http://127.0.0.1:$ne_port/metrics"
  wait_connected "$srv" 1
  sleep "$SETTLE"
  alive "$ag_pid" bench-agent
  ag0=$(cpu_seconds "$ag_pid"); ne0=$(cpu_seconds "$ne_pid"); s0=$(api_samples "$srv")
  scrape_for "http://127.0.0.1:$ne_port/metrics"
  ag1=$(cpu_seconds "$ag_pid"); ne1=$(cpu_seconds "$ne_pid"); s1=$(api_samples "$srv")
  alive "$ag_pid" bench-agent
  echo
  echo "agent vs node_exporter, ${DURATION}s, collection/scrape every 1s, load $(uptime | sed 's/.*load average: //')"
  printf '%-24s %8s %10s %10s %8s\n' process "cpu_%" rss_mib peak_mib series
  printf '%-24s %8.3f %10s %10s %8.0f\n' "watchpost agent" "$(calc "($ag1-$ag0)*100/$DURATION")" \
    "$(rss_mib "$ag_pid")" "$(hwm_mib "$ag_pid")" "$(calc "($s1-$s0)/$DURATION")"
  printf '%-24s %8.3f %10s %10s %8s\n' "node_exporter" "$(calc "($ne1-$ne0)*100/$DURATION")" \
    "$(rss_mib "$ne_pid")" "$(hwm_mib "$ne_pid")" "$(series_count "http://127.0.0.1:$ne_port/metrics")"
  echo "agent pid $ag_pid, node_exporter pid $ne_pid"
  echo
  stop "$srv_pid" "$ag_pid" "$ne_pid"
fi

if [[ " $PARTS " == *" server "* ]]; then
  log "part b: server with 0 then $AGENTS agents (settle ${SETTLE}s, measure ${DURATION}s each)"
  port=$(free_port)
  srv=http://127.0.0.1:$port
  start_server serve-b "$port"
  sleep "$SETTLE"
  c0=$(cpu_seconds "$srv_pid")
  scrape_for "$srv/metrics"
  c1=$(cpu_seconds "$srv_pid")
  alive "$srv_pid" serve-b
  cpu_idle=$(calc "($c1-$c0)*100/$DURATION"); rss_idle=$(rss_mib "$srv_pid")
  load_idle=$(uptime | sed 's/.*load average: //')
  log "starting $AGENTS agents"
  agent_pids=()
  for i in $(seq "$AGENTS"); do start_agent "bench-$i" "$port"; done
  wait_connected "$srv" "$AGENTS"
  sleep "$SETTLE"
  alive "$srv_pid" serve-b
  for i in $(seq "$AGENTS"); do alive "${agent_pids[i-1]}" "bench-$i"; done
  c0=$(cpu_seconds "$srv_pid"); a0=$(cpu_sum "${agent_pids[@]}")
  m0=$(metric_sum "$srv/metrics" watchpost_agents_received_samples_total); s0=$(api_samples "$srv")
  scrape_for "$srv/metrics"
  c1=$(cpu_seconds "$srv_pid"); a1=$(cpu_sum "${agent_pids[@]}")
  m1=$(metric_sum "$srv/metrics" watchpost_agents_received_samples_total); s1=$(api_samples "$srv")
  alive "$srv_pid" serve-b
  for i in $(seq "$AGENTS"); do alive "${agent_pids[i-1]}" "bench-$i"; done
  connected=$(metric_sum "$srv/metrics" watchpost_agents_connected)
  cpu_n=$(calc "($c1-$c0)*100/$DURATION"); rss_n=$(rss_mib "$srv_pid")
  echo
  echo "server with 0 and $AGENTS agents, ${DURATION}s each; load $load_idle (0 agents), $(uptime | sed 's/.*load average: //') ($AGENTS agents)"
  printf '%-22s %8s %10s %10s %14s %14s\n' agents "cpu_%" rss_mib peak_mib samples/s "api samples/s"
  printf '%-22s %8.3f %10s %10s %14s %14s\n' 0 "$cpu_idle" "$rss_idle" "-" 0 0
  printf '%-22s %8.3f %10s %10s %14.0f %14.0f\n' "$connected connected" "$cpu_n" "$rss_n" "$(hwm_mib "$srv_pid")" \
    "$(calc "($m1-$m0)/$DURATION")" "$(calc "($s1-$s0)/$DURATION")"
  printf '%-22s %8.4f %6.0f KiB\n' "per agent" "$(calc "($cpu_n-$cpu_idle)/$AGENTS")" \
    "$(calc "($rss_n-$rss_idle)*1024/$AGENTS")"
  printf 'agents themselves: mean %.3f %% of a core each (same window, same cores)\n' \
    "$(calc "($a1-$a0)*100/$DURATION/$AGENTS")"
fi
