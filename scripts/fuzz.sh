#!/usr/bin/env bash
# Property tests at fuzzing scale: 10^6 arbitrary inputs per parser (the webhook formats,
# /api/v2/alerts, ntopng, rule files, PromQL parse + evaluation, templates, matchers, the
# bot's commands; see tests/properties.rs), and 10^4 requests against the whole HTTP API.
# A failure prints the minimal input proptest shrank it to.
#
#   scripts/fuzz.sh                 # everything (about an hour on 2 cores)
#   CASES=100000 scripts/fuzz.sh promql   # fewer cases, one property (a name filter)
set -euo pipefail
cd "$(dirname "$0")/.."
export PROPTEST_CASES="${CASES:-1000000}"
export WATCHPOST_FUZZ_HTTP_CASES="${HTTP_CASES:-10000}"
# Failures are reported once, not persisted to proptest-regressions/ files.
export PROPTEST_DISABLE_FAILURE_PERSISTENCE=1
exec cargo test --release --test properties -- --test-threads="$(nproc)" "$@"
