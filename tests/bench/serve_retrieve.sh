#!/bin/sh
# End-to-end benchmark of two-stage ranking: `onearm serve` on the reels
# catalog at scale (1,000,000 videos with 32-number embeddings by default),
# then wrk posting /v1/rank with retrieve (n = 200), exact and approximate.
# Prints p50/p99 latency and requests per second for each mode, then the
# same for GET /healthz: the machine's noise floor in the same run.
#
#   tests/bench/serve_retrieve.sh [BUILD_DIR=build] [ITEMS=1000000] [SECONDS=20] [CONNS=4]
#
# Needs wrk (Debian package `wrk`). The catalog CSV is generated once into
# $TMPDIR (examples/reels/gen_catalog.lua, about 30 s for a million rows).
# Not part of the test run: figures depend on the machine.
set -eu
here=$(cd "$(dirname "$0")/../.." && pwd)
build=${1:-$here/build}
items=${2:-1000000}
secs=${3:-20}
conns=${4:-4}
tmp=${TMPDIR:-/tmp}
csv=$tmp/onearm-reels-$items.csv
command -v wrk >/dev/null || { echo "wrk is missing (apt-get install wrk)" >&2; exit 2; }
[ -s "$csv" ] || lua5.4 "$here/examples/reels/gen_catalog.lua" "$items" "$csv"
data=$(mktemp -d "$tmp/onearm-bench-XXXXXX")
log=$data/server.log
ONEARM_SCRIPTS="$here/scripts" "$build/onearm" serve "$here/examples/reels/app_scale.lua" \
  --catalog "$csv" --listen 127.0.0.1:0 --data "$data/var" --no-watch --snapshot-every 0 \
  2>"$log" &
pid=$!
trap 'kill $pid 2>/dev/null; rm -rf "$data"' EXIT INT TERM
port=
for _ in $(seq 1 600); do
  port=$(sed -n 's/.*on http:\/\/127\.0\.0\.1:\([0-9]*\).*/\1/p' "$log")
  [ -n "$port" ] && break
  kill -0 $pid 2>/dev/null || { cat "$log"; exit 1; }
  sleep 0.5
done
[ -n "$port" ] || { echo "server did not start" >&2; exit 1; }
url=http://127.0.0.1:$port
# Wait for the background IVF build (the approximate index).
for _ in $(seq 1 600); do
  curl -s "$url/metrics" | grep -q '^onearm_retrieval_index_builds [1-9]' && break
  sleep 0.5
done
cat "$log"
for mode in exact approximate; do
  # warm-up: compile the policy's per-action features for the hot items
  wrk -t1 -c"$conns" -d3s -s "$here/tests/bench/retrieve_rank.lua" "$url" -- "$mode" >/dev/null
  echo "== $mode (n = 200, $items items, $conns connections, ${secs}s)"
  wrk -t1 -c"$conns" -d"${secs}s" --latency -s "$here/tests/bench/retrieve_rank.lua" "$url" -- "$mode" |
    grep -E "statuses|p50_ms|Requests/sec"
done
# The machine's own noise in the same run: the cheapest route, same
# connections and duration (a rank's p99 can be no better than this).
echo "== baseline: GET /healthz ($conns connections, ${secs}s)"
wrk -t1 -c"$conns" -d"${secs}s" --latency "$url/healthz" |
  awk '/^ +50%/ {p50=$2} /^ +99%/ {p99=$2} /Requests\/sec/ {rps=$2}
       END {printf "p50 %s p99 %s rps %s\n", p50, p99, rps}'
echo "== server retrieval metrics"
curl -s "$url/metrics" | grep -E '^onearm_retrieval_(recall|index|items|offloaded|seconds_(sum|count))'
