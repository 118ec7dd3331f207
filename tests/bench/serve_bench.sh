#!/bin/sh
# Serving benchmark: `onearm serve` under wrk on loopback, POST /v1/rank
# with the reels feature space at d = 64 (tests/bench/bench_app.lua: one
# LinUCB policy, the reels schedule and reward), 20 catalog candidates per
# request out of a catalog of CATALOG actions, one wrk thread with 16
# connections. Runs, each after the same warm-up of the same server:
#   plain    rank only, DURATION seconds
#   rewards  REWARD_FRACTION of the requests are reward POSTs with raw
#            signals for events ranked earlier (latency mixes both kinds;
#            statuses are counted per kind), DURATION seconds
#   reload   rank only while POST /v1/admin/reload runs every 100 ms,
#            RELOAD_DURATION seconds
# The server's resident memory (VmRSS) is sampled every RSS_EVERY seconds
# during each run; the table shows its first and last sample (and the
# peak). The server runs with its defaults (decision log on, snapshot every
# 60 s, event table of 100,000, reward wait 30 s from the app).
#
# usage: tests/bench/serve_bench.sh [ONEARM_BIN]
#   environment: DURATION (20), RELOAD_DURATION (60), WARMUP (10),
#   CATALOG (3000), REWARD_FRACTION (0.1; 0 skips the rewards run),
#   CONNECTIONS (16), RSS_EVERY (5), SERVER_CPU (0), WRK_CPU (1),
#   SNAPSHOT_EVERY (60), PERF=1 (perf record -g the server during the
#   plain run into $OUT/perf.data; PERF_ARGS, default -g, e.g.
#   "--call-graph dwarf -F 499"), OUT (a temp dir; kept when PERF=1)
# Prints one markdown table on stdout; progress and wrk's output go to
# stderr. Not part of ctest: figures depend on the machine.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
bin=${1:-${ONEARM_BIN:-$root/build/onearm}}
DURATION=${DURATION:-20}
RELOAD_DURATION=${RELOAD_DURATION:-60}
WARMUP=${WARMUP:-10}
CATALOG=${CATALOG:-3000}
REWARD_FRACTION=${REWARD_FRACTION:-0.1}
CONNECTIONS=${CONNECTIONS:-16}
RSS_EVERY=${RSS_EVERY:-5}
SERVER_CPU=${SERVER_CPU:-0}
WRK_CPU=${WRK_CPU:-1}
SNAPSHOT_EVERY=${SNAPSHOT_EVERY:-60}
TOKEN=bench-token

[ -x "$bin" ] || { echo "serve_bench.sh: no onearm binary at $bin" >&2; exit 2; }
if ! command -v wrk >/dev/null 2>&1; then
  echo "serve_bench.sh: installing wrk" >&2
  apt-get update -qq >&2 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk >&2
fi
command -v curl >/dev/null 2>&1 || { echo "serve_bench.sh: needs curl" >&2; exit 2; }
lua=$(command -v lua5.4 || command -v lua) || { echo "serve_bench.sh: needs lua5.4" >&2; exit 2; }

# Pin the server and the load generator to different cores when there are two.
server_pin="" wrk_pin=""
if command -v taskset >/dev/null 2>&1 && [ "$(nproc)" -ge 2 ]; then
  server_pin="taskset -c $SERVER_CPU" wrk_pin="taskset -c $WRK_CPU"
fi

OUT=${OUT:-$(mktemp -d /tmp/onearm_serve_bench.XXXXXX)}
mkdir -p "$OUT"
pid="" side=""
cleanup() {
  [ -n "$side" ] && kill "$side" 2>/dev/null || true
  if [ -n "$pid" ]; then
    kill -TERM "$pid" 2>/dev/null || true
    for _ in 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20; do
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.5
    done
    kill -KILL "$pid" 2>/dev/null || true
  fi
  [ "${PERF:-0}" = 1 ] || rm -rf "$OUT"
}
trap cleanup EXIT INT TERM

# ---- server ----
# One Lua file for the app and its catalog; OpenBLAS on one thread (the
# loop is single-threaded; decision-sized BLAS calls never split anyway).
export OPENBLAS_NUM_THREADS=1
$server_pin "$bin" serve "$here/bench_app.lua" --listen 127.0.0.1:0 --data "$OUT/var" \
  --admin-token "$TOKEN" --snapshot-every "$SNAPSHOT_EVERY" --no-watch \
  2>"$OUT/server.log" &
pid=$!
port=""
for _ in $(seq 1 200); do
  port=$(sed -n 's/^onearm serving .* on http:\/\/127\.0\.0\.1:\([0-9]*\)$/\1/p' "$OUT/server.log")
  [ -n "$port" ] && break
  kill -0 "$pid" 2>/dev/null || { cat "$OUT/server.log" >&2; exit 1; }
  sleep 0.05
done
[ -n "$port" ] || { echo "serve_bench.sh: the server did not start" >&2; cat "$OUT/server.log" >&2; exit 1; }
url=http://127.0.0.1:$port
echo "server pid $pid on $url (data $OUT/var)" >&2

# ---- catalog: CATALOG reels videos v1..vN in batches of 500 ----
"$lua" - "$CATALOG" "$OUT" <<'LUA'
local n, out = tonumber(arg[1]), arg[2]
math.randomseed(7)
local TOPICS = { "comedy", "music", "dance", "sports", "gaming", "cooking", "travel",
                 "fashion", "beauty", "tech", "science", "pets", "fitness", "diy", "news",
                 "education", "art", "cars", "finance", "nature" }
local LANGS = { "en", "en", "en", "pt", "es", "fr", "de", "hi", "ja" }
local AUDIO = { "music", "speech", "ambient", "voiceover" }
local file, k = nil, 0
for i = 1, n do
  if (i - 1) % 500 == 0 then
    if file then file:write("]}"); file:close() end
    k = k + 1
    file = assert(io.open(string.format("%s/catalog_%03d.json", out, k), "w"))
    file:write('{"upsert":[')
  else
    file:write(",")
  end
  file:write(string.format(
    '{"id":"v%d","features":{"topic":"%s","duration":%.1f,"engagement":%.3f,' ..
      '"language":"%s","audio":"%s"}}',
    i, TOPICS[math.random(#TOPICS)], 5 + math.random() * 175, math.random(),
    LANGS[math.random(#LANGS)], AUDIO[math.random(#AUDIO)]))
end
if file then file:write("]}"); file:close() end
LUA
for f in "$OUT"/catalog_*.json; do
  code=$(curl -s -o "$OUT/resp" -w '%{http_code}' -X POST -H 'Content-Type: application/json' \
    -H "X-Admin-Token: $TOKEN" --data-binary "@$f" "$url/v1/actions:batch")
  [ "$code" = 200 ] || { echo "serve_bench.sh: catalog upload: $code $(cat "$OUT/resp")" >&2; exit 1; }
done
echo "catalog: $(cat "$OUT/resp")" >&2

rss_kb() { sed -n 's/^VmRSS:[[:space:]]*\([0-9]*\) kB/\1/p' "/proc/$pid/status"; }
# The server's CPU time so far (user + system) in clock ticks.
cpu_ticks() { awk '{ sub(/^.*\) /, ""); print $12 + $13 }' "/proc/$pid/stat"; }
HZ=$(getconf CLK_TCK)

# Samples VmRSS (kB) every RSS_EVERY seconds into $1 until killed.
rss_sampler() {
  while :; do
    echo "$(rss_kb)" >>"$1"
    sleep "$RSS_EVERY"
  done
}

# Runs wrk for $2 seconds; $1 names the run; $3 the reward fraction.
run_wrk() {
  name=$1 secs=$2 frac=$3
  : >"$OUT/rss_$name"
  rss_sampler "$OUT/rss_$name" &
  sampler=$!
  cpu0=$(cpu_ticks)
  $wrk_pin wrk -t1 -c"$CONNECTIONS" -d"${secs}s" --latency -s "$here/rank.lua" "$url" \
    -- "$CATALOG" "$frac" >"$OUT/wrk_$name" 2>&1 || true
  rss_kb >>"$OUT/rss_$name"
  echo $(($(cpu_ticks) - cpu0)) >"$OUT/cpu_$name"
  kill "$sampler" 2>/dev/null || true
  wait "$sampler" 2>/dev/null || true
  echo "--- $name" >&2
  cat "$OUT/wrk_$name" >&2
  echo "rss (kB): $(tr '\n' ' ' <"$OUT/rss_$name")" >&2
}

# wrk's latency figures are printed as 123.45us / 1.23ms / 1.02s.
to_ms() {
  awk -v v="$1" 'BEGIN { u = v; sub(/[0-9.]+/, "", u); x = v + 0;
    if (u == "us") x /= 1000; else if (u == "s") x *= 1000; else if (u == "m") x *= 60000;
    printf "%.3f", x }'
}

row() {
  name=$1 f=$OUT/wrk_$1
  rps=$(awk '/^Requests\/sec:/ { printf "%d", $2 }' "$f")
  p50=$(to_ms "$(awk '$1 == "50%" { print $2 }' "$f")")
  p99=$(to_ms "$(awk '$1 == "99%" { print $2 }' "$f")")
  # non-2xx: wrk's own count, and the script's per-kind status counts
  non2xx=$(awk '/Non-2xx or 3xx responses:/ { print $NF }' "$f")
  bad=$(awk '/^statuses/ { n = 0; for (i = 2; i <= NF; i++) {
      split($i, kv, "[:=]"); if (kv[2] + 0 < 200 || kv[2] + 0 > 299) n += kv[3] } print n }' "$f")
  errs=$(awk '/Socket errors:/ { sub(/.*Socket errors: /, ""); print }' "$f")
  statuses=$(sed -n 's/^statuses //p' "$f")
  first=$(head -n 1 "$OUT/rss_$name") last=$(tail -n 1 "$OUT/rss_$name")
  peak=$(sort -n "$OUT/rss_$name" | tail -n 1)
  # server CPU per request: robust to other load on the machine
  reqs=$(awk '/requests in/ { print $1 }' "$f")
  cpu_us=$(awk -v t="$(cat "$OUT/cpu_$name")" -v hz="$HZ" -v n="$reqs" \
    'BEGIN { if (n > 0) printf "%.1f", t / hz * 1e6 / n; else print "?" }')
  extra=$statuses
  [ -n "$errs" ] && extra="$extra; socket errors: $errs"
  [ -n "${4:-}" ] && extra="$extra; $4"
  printf '| %s | %s | %s | %s | %s | %s | %s | %s / %s (peak %s) | %s |\n' "$name" "$2" "$rps" "$p50" "$p99" \
    "$cpu_us" "${non2xx:-0} / ${bad:-?}" "$((first / 1024))" "$((last / 1024))" "$((peak / 1024))" "$extra"
}

# ---- runs ----
# Warm-up: at least WARMUP seconds and until the event table is full
# (100,000 pending events; at most 6 rounds), so that the runs measure the
# steady state where every decision also closes (evicts) an older event.
pending_events() { curl -s "$url/healthz" | sed -n 's/.*"pendingEvents":\([0-9]*\).*/\1/p'; }
for round in 1 2 3 4 5 6; do
  $wrk_pin wrk -t1 -c"$CONNECTIONS" -d"${WARMUP}s" -s "$here/rank.lua" "$url" -- "$CATALOG" 0 \
    >"$OUT/wrk_warmup" 2>&1 || true
  n=$(pending_events)
  echo "warm-up round $round (${WARMUP}s): $n pending events" >&2
  [ "${n:-0}" -ge 100000 ] && break
done

if [ "${PERF:-0}" = 1 ]; then
  perf record ${PERF_ARGS:--g} -p "$pid" -o "$OUT/perf.data" -- sleep "$DURATION" >/dev/null 2>&1 &
  side=$!
fi
run_wrk plain "$DURATION" 0
if [ -n "$side" ]; then wait "$side" || true; side=""; echo "perf data: $OUT/perf.data" >&2; fi

if [ "$REWARD_FRACTION" != 0 ]; then run_wrk rewards "$DURATION" "$REWARD_FRACTION"; fi

# A reload every 100 ms (plus curl's own time), pinned with wrk so the
# server keeps its core.
: >"$OUT/reloads"
( while :; do
    $wrk_pin curl -s -o /dev/null -w '%{http_code}\n' -X POST -H "X-Admin-Token: $TOKEN" \
      "$url/v1/admin/reload" >>"$OUT/reloads"
    sleep 0.1
  done ) &
side=$!
run_wrk reload "$RELOAD_DURATION" 0
kill "$side" 2>/dev/null || true
wait "$side" 2>/dev/null || true
side=""
reloads=$(grep -c '^200$' "$OUT/reloads" || true)
reload_bad=$(grep -vc '^200$' "$OUT/reloads" || true)

pending=$(pending_events)
echo "pending events at the end: $pending" >&2

echo "| run | seconds | requests/s | p50 ms | p99 ms | server CPU µs/request | non-2xx (wrk / script) | RSS MiB start / end | statuses |"
echo "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"
row plain "$DURATION"
[ "$REWARD_FRACTION" != 0 ] && row rewards "$DURATION" "" "rewards ${REWARD_FRACTION}"
row reload "$RELOAD_DURATION" "" "reloads: $reloads ok, $reload_bad failed"
