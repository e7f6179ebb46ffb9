#!/usr/bin/env bash
# Prometheus remote write and PromQL query latency, watchpost side by side with Debian's
# Prometheus (2.42, `--web.enable-remote-write-receiver`) in the same run.
#
# 1. write: the same load against each target in turn, each a fresh process (watchpost on
#    a fresh SQLite file, Prometheus on a fresh data dir with no scrape targets):
#    CLIENTS clients (default 8) POST snappy protobuf WriteRequests of BATCH samples
#    (default 2000, Prometheus' max_samples_per_send) over SERIES node_exporter-like
#    series (default 20,000; each client owns its own, so every series is in order) for
#    SECONDS_RUN seconds after WARMUP (examples/remote_write_load.rs). Prints samples/s,
#    requests/s, latency p50/p99, non-2xx answers, CPU seconds of the target per million
#    accepted samples (/proc/PID/stat over the whole load, warm-up included) and its RSS
#    after.
# 2. query: both targets fresh again, the same history pushed to each in global time
#    order (HIST_SERIES series, default 10,000, one sample every HIST_STEP s for the
#    HIST_MINUTES minutes, default 60, ending 30 s before the start: 240 samples per
#    series), then QUERY_REPS repetitions (default 10) of each query below, the two
#    targets alternating, timed with curl's %{time_total}. Every repetition moves the
#    query window by one second, so no answer comes from watchpost's range-query cache;
#    the same request repeated (a cache hit in watchpost, whose cache keeps a range
#    ending over 7 s ago for a minute; Prometheus has no result cache) is timed as well.
#
#   scripts/bench-remote-write.sh                      # defaults, a few minutes
#   CLIENTS=4 SERIES=50000 SECONDS_RUN=30 scripts/bench-remote-write.sh
#   PHASES=query HIST_SERIES=10000 scripts/bench-remote-write.sh
#   TARGETS=watchpost PHASES=write scripts/bench-remote-write.sh
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/bench-lib.sh
source scripts/bench-lib.sh

CLIENTS=${CLIENTS:-8}
SERIES=${SERIES:-20000}
BATCH=${BATCH:-2000}
SAMPLES_PER_SERIES=${SAMPLES_PER_SERIES:-1}
SECONDS_RUN=${SECONDS_RUN:-20}
WARMUP=${WARMUP:-3}
HIST_SERIES=${HIST_SERIES:-10000}
HIST_MINUTES=${HIST_MINUTES:-60}
HIST_STEP=${HIST_STEP:-15}
QUERY_REPS=${QUERY_REPS:-10}
TARGETS=${TARGETS:-"watchpost prometheus"}
PHASES=${PHASES:-"write query"}
PROMETHEUS=${PROMETHEUS:-/usr/bin/prometheus}

log() { printf '==> %s\n' "$*" >&2; }
# Longer than bench-lib's wait_http: a loaded machine (another build) starts slowly.
wait_up() {
  for _ in $(seq 1 600); do curl -sf -o /dev/null "$1" && return 0; sleep 0.1; done
  echo "timed out waiting for $1" >&2; return 1
}

log "building (release)"
cargo build --release --quiet --bin watchpost --example remote_write_load
BIN=$PWD/target/release/watchpost
LOAD=$PWD/target/release/examples/remote_write_load
[ -x "$PROMETHEUS" ] || { log "no $PROMETHEUS; only watchpost"; TARGETS=${TARGETS//prometheus/}; }

WORK=$(mktemp -d /tmp/wp-bench-rw.XXXXXX)
PIDS=()
cleanup() {
  local p
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  rm -rf "$WORK"
}
trap cleanup EXIT

# Starts target $1 fresh under the tag $2; sets T_PID and T_URL.
start_target() {
  local port dir=$WORK/$2
  port=$(free_port)
  mkdir -p "$dir"
  T_URL=http://127.0.0.1:$port
  case $1 in
    watchpost)
      env WATCHPOST_LISTEN="127.0.0.1:$port" WATCHPOST_DATABASE_URL="sqlite://$dir/wp.db" \
        WATCHPOST_RULES__FILES= WATCHPOST_TSDB__RETENTION=3h WATCHPOST_LOG__LEVEL=warn \
        "$BIN" serve >"$dir/log" 2>&1 &
      T_PID=$!; PIDS+=("$T_PID")
      wait_up "$T_URL/ready"
      ;;
    prometheus)
      printf 'global:\n  scrape_interval: 1h\n' >"$dir/prometheus.yml"
      "$PROMETHEUS" --config.file="$dir/prometheus.yml" --storage.tsdb.path="$dir/data" \
        --web.listen-address="127.0.0.1:$port" --web.enable-remote-write-receiver \
        --log.level=warn >"$dir/log" 2>&1 &
      T_PID=$!; PIDS+=("$T_PID")
      wait_up "$T_URL/-/ready"
      ;;
    *) log "unknown target $1"; exit 1 ;;
  esac
}
stop_target() {
  local keep=() p
  kill "$T_PID" 2>/dev/null || true
  wait "$T_PID" 2>/dev/null || true
  for p in "${PIDS[@]}"; do [ "$p" = "$T_PID" ] || keep+=("$p"); done
  PIDS=("${keep[@]}")
}

version() {
  case $1 in
    watchpost) echo "watchpost $(git describe --always --dirty)" ;;
    prometheus) "$PROMETHEUS" --version 2>&1 | awk 'NR==1 {print "prometheus " $3}' ;;
  esac
}

# --- 1. write throughput ------------------------------------------------------------
if [[ " $PHASES " == *" write "* ]]; then
  for t in $TARGETS; do
    start_target "$t" "write-$t"
    sleep 2
    log "$t: $CLIENTS clients x $BATCH samples, $SERIES series, ${SECONDS_RUN}s after ${WARMUP}s (load average $(cut -d' ' -f1-3 /proc/loadavg))"
    c0=$(cpu_seconds "$T_PID")
    out=$("$LOAD" --mode write --url "$T_URL" --name "$t" --clients "$CLIENTS" --series "$SERIES" \
      --batch "$BATCH" --samples-per-series "$SAMPLES_PER_SERIES" --seconds "$SECONDS_RUN" \
      --warmup "$WARMUP")
    c1=$(cpu_seconds "$T_PID")
    sleep 1
    rss=$(rss_mib "$T_PID")
    echo "$out"
    python3 -c 'import json,sys; r=json.loads(sys.argv[1]); r["cpu_s"]=round(float(sys.argv[3])-float(sys.argv[2]),2); r["rss_mib"]=float(sys.argv[4]); r["version"]=sys.argv[5]; print(json.dumps(r))' \
      "$out" "$c0" "$c1" "$rss" "$(version "$t")" >>"$WORK/write.jsonl"
    stop_target
  done
  python3 - "$WORK/write.jsonl" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
prom = next((r for r in rows if r["target"] == "prometheus"), None)
print()
print("| target | samples/s | requests/s | p50 ms | p99 ms | non-2xx | CPU s per 1M samples | RSS after MiB | load generator CPU s | vs Prometheus (samples/s) |")
print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
for r in rows:
    per_m = r["cpu_s"] / r["accepted_total"] * 1e6 if r["accepted_total"] else float("nan")
    bad = sum(r["non_2xx"].values()) + r["transport_errors"]
    ratio = f'{r["samples_per_sec"] / prom["samples_per_sec"]:.2f}x' if prom and prom["samples_per_sec"] else "-"
    print(f'| {r["version"]} | {r["samples_per_sec"]:,.0f} | {r["requests_per_sec"]:,.1f} | {r["p50_ms"]:.1f} | {r["p99_ms"]:.1f} | {bad} {json.dumps(r["non_2xx"]) if r["non_2xx"] else ""} | {per_m:.2f} | {r["rss_mib"]:.1f} | {r["client_cpu_s"]:.1f} | {ratio} |')
PY
fi

# --- 2. query latency on identical history ------------------------------------------
if [[ " $PHASES " == *" query "* ]]; then
  END=$((($(date +%s) - 30) / HIST_STEP * HIST_STEP))
  declare -A URL PID
  for t in $TARGETS; do
    start_target "$t" "query-$t"
    URL[$t]=$T_URL; PID[$t]=$T_PID
  done
  for t in $TARGETS; do
    log "$t: history, $HIST_SERIES series x ${HIST_MINUTES} min at ${HIST_STEP}s, global time order"
    c0=$(cpu_seconds "${PID[$t]}")
    out=$("$LOAD" --mode history --url "${URL[$t]}" --name "$t" --series "$HIST_SERIES" \
      --batch "$BATCH" --minutes "$HIST_MINUTES" --step-ms "$((HIST_STEP * 1000))" --end-ms "$((END * 1000))")
    c1=$(cpu_seconds "${PID[$t]}")
    echo "$out"
    python3 -c 'import json,sys; r=json.loads(sys.argv[1]); r["cpu_s"]=round(float(sys.argv[3])-float(sys.argv[2]),2); print(json.dumps(r))' \
      "$out" "$c0" "$c1" >>"$WORK/history.jsonl"
  done
  sleep 2

  # id|kind|expr: range queries over [END-1h, END] at 15 s, instant queries at END.
  QUERIES=(
    'sum_rate|range|sum by (job) (rate(node_cpu_seconds_total[5m]))'
    'p99|range|histogram_quantile(0.99, sum by (le) (rate(http_request_duration_seconds_bucket[5m])))'
    'topk|range|topk(10, sum by (instance) (rate(node_network_receive_bytes_total[5m])))'
    'count_range|range|count by (instance) (node_cpu_seconds_total)'
    'count_regex|instant|count by (instance) ({__name__=~"node_.+"})'
    'topk_instant|instant|topk(10, rate(node_disk_read_bytes_total[5m]))'
  )
  # Times one request; appends "id target rep mode http_code seconds" to queries.tsv.
  # $5: seconds to move the window back.
  run_query() { # id kind expr target shift mode
    local id=$1 kind=$2 expr=$3 t=$4 shift=$5 mode=$6 at=$((END - $5)) res
    if [ "$kind" = range ]; then
      res=$(curl -s -o "$WORK/resp-$t" -w '%{http_code} %{time_total}' \
        --data-urlencode "query=$expr" --data-urlencode "start=$((at - 3600))" \
        --data-urlencode "end=$at" --data-urlencode "step=15" "${URL[$t]}/api/v1/query_range")
    else
      res=$(curl -s -o "$WORK/resp-$t" -w '%{http_code} %{time_total}' \
        --data-urlencode "query=$expr" --data-urlencode "time=$at" "${URL[$t]}/api/v1/query")
    fi
    echo "$id $t $shift $mode $res" >>"$WORK/queries.tsv"
  }
  # The answer's size (series; points for a range), or its error, once per query and target.
  describe() { # id target
    python3 - "$WORK/resp-$2" "$1" "$2" <<'PY' >>"$WORK/answers.tsv"
import json, sys
try:
    r = json.load(open(sys.argv[1]))
except Exception as e:  # not JSON
    print(f"{sys.argv[2]}\t{sys.argv[3]}\tunreadable answer: {e}")
    sys.exit()
if r.get("status") != "success":
    print(f'{sys.argv[2]}\t{sys.argv[3]}\tREFUSED {r.get("errorType")}: {r.get("error")}')
else:
    res = r["data"]["result"]
    pts = sum(len(s.get("values", [])) or 1 for s in res)
    print(f"{sys.argv[2]}\t{sys.argv[3]}\t{len(res)} series, {pts} points")
PY
  }
  for q in "${QUERIES[@]}"; do
    IFS='|' read -r id kind expr <<<"$q"
    log "query $id: $expr (load average $(cut -d' ' -f1-3 /proc/loadavg))"
    for t in $TARGETS; do run_query "$id" "$kind" "$expr" "$t" 1000 warmup; done
    for rep in $(seq 1 "$QUERY_REPS"); do
      for t in $TARGETS; do
        run_query "$id" "$kind" "$expr" "$t" "$rep" cold
        if [ "$rep" = 1 ]; then describe "$id" "$t"; fi
      done
    done
    for _ in $(seq 1 "$QUERY_REPS"); do
      for t in $TARGETS; do run_query "$id" "$kind" "$expr" "$t" 1 repeat; done
    done
  done
  for t in $TARGETS; do
    echo "$t $(rss_mib "${PID[$t]}")" >>"$WORK/rss.txt"
  done

  python3 - "$WORK" "$HIST_SERIES" "${QUERIES[@]}" <<'PY'
import collections, json, math, statistics, sys
work, hist = sys.argv[1], sys.argv[2]
queries = [q.split("|", 2) for q in sys.argv[3:]]
rows = collections.defaultdict(list)
codes = collections.defaultdict(collections.Counter)
for line in open(f"{work}/queries.tsv"):
    qid, t, _shift, mode, code, secs = line.split()
    if mode == "warmup":
        continue
    rows[(qid, t, mode)].append(float(secs) * 1000)
    codes[(qid, t)][code] += 1
answers = {}
for line in open(f"{work}/answers.tsv"):
    qid, t, what = line.rstrip("\n").split("\t", 2)
    answers[(qid, t)] = what
rss = dict(l.split() for l in open(f"{work}/rss.txt"))
targets = list(rss)
def pct(v, p):  # the median, or the nearest-rank percentile
    if not v:
        return float("nan")
    if p == 0.5:
        return statistics.median(v)
    return sorted(v)[max(0, math.ceil(p * len(v)) - 1)]
print()
print("| target | history push | samples/s | non-2xx | CPU s | RSS after queries MiB |")
print("|---|---:|---:|---:|---:|---:|")
for l in open(f"{work}/history.jsonl"):
    r = json.loads(l)
    bad = sum(r["non_2xx"].values()) + r["transport_errors"]
    print(f'| {r["target"]} | {r["samples"]:,} samples in {r["seconds"]:.1f} s | {r["samples_per_sec"]:,.0f} | {bad} | {r["cpu_s"]:.1f} | {rss[r["target"]]} |')
print()
hdr = " | ".join(f"{t} median / p90 ms" for t in targets)
print(f"| query | kind | {hdr} | {' | '.join(f'{t} same request repeated, median ms' for t in targets)} | answer |")
print("|---|---|" + "---:|" * (2 * len(targets)) + "---|")
for qid, kind, expr in queries:
    cells = []
    for t in targets:
        v = rows[(qid, t, "cold")]
        bad = sum(n for c, n in codes[(qid, t)].items() if not c.startswith("2"))
        cell = f"{pct(v, 0.5):.1f} / {pct(v, 0.9):.1f}"
        if bad:
            cell += f" ({bad} non-2xx)"
        cells.append(cell)
    for t in targets:
        cells.append(f'{pct(rows[(qid, t, "repeat")], 0.5):.1f}')
    ans = "; ".join(f"{t}: {answers.get((qid, t), '?')}" for t in targets)
    print(f"| `{expr}` | {kind} | {' | '.join(cells)} | {ans} |")
PY
  for t in $TARGETS; do T_PID=${PID[$t]}; stop_target; done
fi
