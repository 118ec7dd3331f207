#!/usr/bin/python3
"""FAISS on the catalogs written by bench_ann (same items, queries and exact
top-100), printing rows of the same markdown table.

IndexFlatIP (exact), IndexIVFFlat (inner product, nprobe swept upwards to
the first mean recall@100 >= TARGET) and IndexHNSWFlat (inner product,
efSearch swept the same way). Searches run one query per call on one
thread, as bench_ann does; the latency includes the Python call overhead
of a few microseconds. Index construction may use BUILD_THREADS (default 2)
threads, like OpenBLAS in bench_ann's build.

usage: /usr/bin/python3 tests/bench/faiss_compare.py [OUT_DIR]
  env: CATALOGS ("tight loose"), NLIST_TIGHT (1024), NLIST_LOOSE (4096),
       HNSW_M (16, FAISS default), HNSW_EFC (40, FAISS default), TARGET (0.95), SKIP_HNSW=1
Needs Debian's python3-faiss and python3-numpy.
"""
import os
import sys
import time

import faiss
import numpy as np

OUT = sys.argv[1] if len(sys.argv) > 1 else os.environ.get("OUT_DIR", "/tmp/onearm_ann")
TARGET = float(os.environ.get("TARGET", "0.95"))
BUILD_THREADS = int(os.environ.get("BUILD_THREADS", "2"))
TOPN = 100


def recall(found, gt):
    return float(np.mean([len(np.intersect1d(f, g)) / TOPN for f, g in zip(found, gt)]))


def timed_search(index, q):
    """One query per call; returns (rows, latencies in seconds)."""
    faiss.omp_set_num_threads(1)
    rows = np.empty((len(q), TOPN), dtype=np.int64)
    lat = np.empty(len(q))
    for i in range(len(q)):
        t0 = time.perf_counter()
        _, ix = index.search(q[i:i + 1], TOPN)
        lat[i] = time.perf_counter() - t0
        rows[i] = ix[0]
    return rows, lat


def row(cat, method, params, rec, lat, build, mb):
    p50, p99 = np.percentile(lat, 50) * 1e3, np.percentile(lat, 99) * 1e3
    print(f"| {cat} | {method} | {params} | {rec:.3f} | {p50:.3f} | {p99:.3f} | {build:.1f} | {mb:.1f} |",
          flush=True)


def index_mb_per_million(index, n):
    return faiss.serialize_index(index).nbytes / 1e6 * (1e6 / n)


def sweep(cat, method, index, q, gt, knob, values, build, mb, params):
    for v in values:
        knob(v)
        rows, lat = timed_search(index, q)
        rec = recall(rows, gt)
        print(f"  {method} {v}: recall@100 {rec:.4f} p50 {np.percentile(lat, 50) * 1e3:.3f} ms",
              file=sys.stderr, flush=True)
        if rec >= TARGET:
            row(cat, method, params(v), rec, lat, build, mb)
            return
    row(cat, method, params(values[-1]) + f" (recall < {TARGET})", rec, lat, build, mb)


def run(cat):
    x = np.load(f"{OUT}/{cat}_base.npy")
    q = np.load(f"{OUT}/{cat}_query.npy")
    gt = np.load(f"{OUT}/{cat}_gt.npy")
    n, d = x.shape
    nlist = int(os.environ.get("NLIST_" + cat.upper(), "1024" if cat == "tight" else "4096"))

    flat = faiss.IndexFlatIP(d)
    flat.add(x)
    m = min(len(q), 100)  # the exact scan is slow: time the first 100 queries
    rows, lat = timed_search(flat, q[:m])
    row(cat, "FAISS IndexFlatIP", "-", recall(rows, gt[:m]), lat, 0.0, n * d * 4 / 1e6 * (1e6 / n))
    del flat

    faiss.omp_set_num_threads(BUILD_THREADS)
    t0 = time.perf_counter()
    quant = faiss.IndexFlatIP(d)
    ivf = faiss.IndexIVFFlat(quant, d, nlist, faiss.METRIC_INNER_PRODUCT)
    ivf.train(x)
    ivf.add(x)
    build = time.perf_counter() - t0
    probes = [p for p in (1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 48, 64, 96, 128, 160, 192, 256, 320,
                          384, 512, 640, 768, 1024, 1536, 2048) if p <= nlist]
    sweep(cat, "FAISS IndexIVFFlat", ivf, q, gt, lambda v: setattr(ivf, "nprobe", v), probes,
          build, index_mb_per_million(ivf, n), lambda v: f"nlist {nlist}, nprobe {v}")
    del ivf, quant

    if os.environ.get("SKIP_HNSW") == "1":
        return
    hm = int(os.environ.get("HNSW_M", "16"))
    efc = int(os.environ.get("HNSW_EFC", "40"))
    faiss.omp_set_num_threads(BUILD_THREADS)
    t0 = time.perf_counter()
    hnsw = faiss.IndexHNSWFlat(d, hm, faiss.METRIC_INNER_PRODUCT)
    hnsw.hnsw.efConstruction = efc
    hnsw.add(x)
    build = time.perf_counter() - t0
    sweep(cat, "FAISS IndexHNSWFlat", hnsw, q, gt, lambda v: setattr(hnsw.hnsw, "efSearch", v),
          [100, 128, 160, 200, 256, 320, 400, 512, 640, 800, 1024, 1536, 2048, 4096], build,
          index_mb_per_million(hnsw, n), lambda v: f"M {hm}, efC {efc}, efSearch {v}")


if __name__ == "__main__":
    for cat in os.environ.get("CATALOGS", "tight loose").split():
        run(cat)
