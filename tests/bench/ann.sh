#!/bin/sh
# Approximate retrieval benchmark: onearm's IVF index (bench_ann) and FAISS
# (faiss_compare.py, Debian's python3-faiss) on the same two synthetic
# 1,000,000 x 64 catalogs, queries and exact top-100, in one run. Prints
# one markdown table (rows grouped by catalog); the nprobe / efSearch
# sweeps go to stderr.
#
# usage: tests/bench/ann.sh [BENCH_ANN_BIN] [items] [queries]
#   environment: OUT_DIR (/tmp/onearm_ann), LOOSE_SIGMA, NLIST_TIGHT,
#   NLIST_LOOSE, CATALOGS, TARGET, SKIP_HNSW=1 (passed to both programs)
# Needs: cmake -DONEARM_BENCH=ON; apt-get install -y python3-faiss python3-numpy
# Not part of ctest: timings depend on the machine.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
bin=${1:-$here/../../build/tests/bench/bench_ann}
items=${2:-1000000}
queries=${3:-1000}
[ -x "$bin" ] || { echo "ann.sh: no bench_ann at $bin (build with -DONEARM_BENCH=ON)" >&2; exit 2; }
/usr/bin/python3 -c 'import faiss, numpy' 2>/dev/null ||
  { echo "ann.sh: needs python3-faiss and python3-numpy (apt-get install -y python3-faiss python3-numpy)" >&2; exit 2; }
export OUT_DIR=${OUT_DIR:-/tmp/onearm_ann}
# Searches are single-threaded in both; index builds may use two threads.
export OPENBLAS_NUM_THREADS=2 OMP_NUM_THREADS=2
ours=$(mktemp) theirs=$(mktemp)
trap 'rm -f "$ours" "$theirs"' EXIT
"$bin" "$items" "$queries" >"$ours"
/usr/bin/python3 "$here/faiss_compare.py" "$OUT_DIR" >"$theirs"
head -n 2 "$ours"
for cat in ${CATALOGS:-tight loose}; do
  grep "^| $cat |" "$ours" || true
  grep "^| $cat |" "$theirs" || true
done
