#!/bin/sh
# Supervised-to-bandit benchmark: every data set in the shared data folder,
# every `onearm cbify` preset, three shuffle seeds. Prints a markdown table
# of the mean progressive reward (± the standard deviation over the seeds),
# the learning-loop rate the command reports, and the whole-process rate
# (rows / wall time of the process: start-up, decompression, parsing,
# learning and output), so the cost of everything around the loop shows.
#
# usage: tests/bench/cbify.sh [ONEARM_BIN] [DATA_DIR]
#   environment: PRESETS="linucb lints" SEEDS="1 2 3" DATASETS="digits satimage"
# Not part of ctest: timings depend on the machine.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
bin=${1:-${ONEARM_BIN:-$here/../../build/onearm}}
data=${2:-${ONEARM_DATA_DIR:-$here/../../../shared/data}}
presets=${PRESETS:-"linucb lints squarecb egreedy greedy logistic neural bernoulli_ts"}
seeds=${SEEDS:-"1 2 3"}
[ -x "$bin" ] || { echo "cbify.sh: no onearm binary at $bin (pass it as the first argument)" >&2; exit 2; }
if [ -n "${DATASETS:-}" ]; then
  files=$(for d in $DATASETS; do echo "$data/$d.csv.gz"; done)
else
  files=$(ls "$data"/*.csv.gz)
fi
# One BLAS thread, as the engine runs; spare threads would only spin.
export OPENBLAS_NUM_THREADS=1

now_ns() { date +%s%N; }

echo "| data set | preset | reward (mean ± sd, ${seeds}) | examples/s (loop) | examples/s (process) |"
echo "| --- | --- | --- | ---: | ---: |"
for f in $files; do
  name=$(basename "$f" .csv.gz)
  for p in $presets; do
    results=""
    for s in $seeds; do
      t0=$(now_ns)
      out=$("$bin" cbify "$f" --policy "$p" --shuffle-seed "$s" --json) || {
        echo "cbify.sh: $name / $p / seed $s failed" >&2; exit 1; }
      t1=$(now_ns)
      # examples reward examples_per_second wall_ns
      line=$(printf '%s\n' "$out" | sed 's/.*"examples":\([0-9]*\).*"reward":\([0-9.]*\).*"examples_per_second":\([0-9.]*\).*/\1 \2 \3/')
      results="$results$line $((t1 - t0))
"
    done
    printf '%s' "$results" | awk -v name="$name" -v preset="$p" '
      NF == 4 { n++; r[n] = $2; sum += $2; loop += $3; proc += $1 / ($4 * 1e-9) }
      END {
        mean = sum / n; ss = 0
        for (i = 1; i <= n; i++) ss += (r[i] - mean) ^ 2
        sd = n > 1 ? sqrt(ss / (n - 1)) : 0
        printf "| %s | %s | %.3f ± %.3f | %.0f | %.0f |\n", name, preset, mean, sd, loop / n, proc / n
      }'
  done
done
