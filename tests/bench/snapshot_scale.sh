#!/bin/sh
# Catalog at scale through the real server: load a CSV catalog, snapshot it
# (the final snapshot at SIGTERM), restart from the snapshot, and compare
# exact top-N answers before and after. Prints one line per figure.
#
#   tests/bench/snapshot_scale.sh BUILD_DIR CATALOG.csv [DATA_DIR] [PORT]
#
# The catalog comes from examples/reels/gen_catalog.lua; the app is
# examples/reels/app_scale.lua (APP=... to use another, e.g. one without
# `build_at` so that no IVF index is built: WAIT_INDEX=0). RSS is VmRSS
# from /proc; peaks are the largest VmRSS sampled every 20 ms (VmHWM would
# include the load's peak).
set -eu
BUILD=$1 CSV=$2 DATA=${3:-/tmp/onearm-scale} PORT=${4:-18571}
SRC=$(cd "$(dirname "$0")/../.." && pwd)
APP=${APP:-$SRC/examples/reels/app_scale.lua}
WAIT_INDEX=${WAIT_INDEX:-1}
URL=http://127.0.0.1:$PORT
rm -rf "$DATA"
mkdir -p "$DATA"

now() { date +%s.%N; }
rss() { awk '/^VmRSS/ {print int($2 / 1024)}' /proc/"$1"/status 2>/dev/null || echo 0; }
wait_up() { # pid: seconds until /healthz answers
  while ! curl -sf "$URL/healthz" >/dev/null 2>&1; do
    kill -0 "$1" 2>/dev/null || { echo "server died" >&2; cat "$DATA/log" >&2; exit 1; }
    sleep 0.05
  done
}
wait_index() { # the IVF index was built at least once
  [ "$WAIT_INDEX" = 1 ] || return 0
  while ! curl -sf "$URL/metrics" | grep -q '^onearm_retrieval_index_builds [1-9]'; do
    sleep 0.2
  done
}
peak_until_exit() { # pid: largest VmRSS (MiB) until it exits
  p=0
  while [ -e /proc/"$1" ] && ! grep -q '^State:.*Z' /proc/"$1"/status 2>/dev/null; do
    r=$(rss "$1")
    [ "${r:-0}" -gt "$p" ] && p=$r
    sleep 0.02
  done
  echo "$p"
}
queries() { # top-20 exact for three fixed user embeddings, ids only
  for seed in 1 2 3; do
    q=$(awk -v s="$seed" 'BEGIN { srand(s); printf "["; for (i = 0; i < 32; i++) printf "%s%.4f", (i ? "," : ""), rand() - 0.5; printf "]" }')
    curl -s "$URL/v1/rank" -H 'Content-Type: application/json' -d "{\"eventId\": \"q$seed-$1\", \"context\": {\"user_emb\": $q}, \"retrieve\": {\"n\": 20, \"mode\": \"exact\", \"freshShare\": 0}}" |
      tr ',' '\n' | grep -o '"id":"[^"]*"' | sort | tr '\n' ' '
    echo
  done
}

start() { # LOG [ARGS...]: serve with ARGS, log to LOG; sets pid and the start-up time
  log=$1
  shift
  t0=$(now)
  "$BUILD/onearm" serve "$APP" "$@" --data "$DATA" --listen 127.0.0.1:$PORT \
    --snapshot-every 0 --no-watch >"$log" 2>&1 &
  pid=$!
  wait_up $pid
  up_s=$(echo "$(now) - $t0" | bc)
}

start "$DATA/log" --catalog "$CSV"
echo "load_s $up_s"
echo "rss_after_load_mib $(rss $pid)"
wait_index
echo "index_built_s $(echo "$(now) - $t0" | bc)"
echo "rss_after_index_mib $(rss $pid)"
queries a >"$DATA/before.txt"
t2=$(now)
kill -TERM $pid
peak=$(peak_until_exit $pid)
t3=$(now)
wait $pid || true
echo "stop_with_snapshot_s $(echo "$t3 - $t2" | bc)"
echo "snapshot_peak_rss_mib $peak"
grep -i 'snapshot\|restored' "$DATA/log" || true
ls -l "$DATA" | awk '/state/ {print "file", $9, $5}'
echo "snapshot_total_bytes $(du -cb "$DATA"/state.oas "$DATA"/state.*.oav 2>/dev/null | tail -1 | cut -f1)"

start "$DATA/log2"
echo "restore_s $up_s"
echo "rss_after_restore_mib $(rss $pid)"
grep -i 'restored\|retrieval' "$DATA/log2" || true
# No wait for an index here: a restore either adopts the snapshot's index
# or (before snapshots carried it) built it before answering.
curl -s "$URL/metrics" | grep -E '^onearm_retrieval_(items|index_builds) ' || true
queries b >"$DATA/after.txt"
if cmp -s "$DATA/before.txt" "$DATA/after.txt"; then echo "topn_same yes"; else
  echo "topn_same NO"; diff "$DATA/before.txt" "$DATA/after.txt" | head -5; fi
kill -TERM $pid
wait $pid || true
