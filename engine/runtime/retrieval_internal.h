/* The retrieval state behind retrieval.h, shared by the files that make
 * up two-stage ranking: retrieval.c (the store following the catalog,
 * queries, searches, jobs) and retrieval_persist.c (the store in
 * snapshots). Nothing outside engine/runtime includes this. */
#ifndef ONEARM_RUNTIME_RETRIEVAL_INTERNAL_H
#define ONEARM_RUNTIME_RETRIEVAL_INTERNAL_H

#include "catalog/topn.h"
#include "core/strmap.h"
#include "runtime/retrieval.h"

#define N_HIST         12
#define RECALL_SAMPLES 8  /* approximate queries kept for the recall check */
#define RECALL_EVERY   64 /* keep one approximate query in this many */
#define DEFAULT_N      100
#define DEFAULT_NPROBE 32
#define DEFAULT_STALE  0.2
#define FRESH_POOL_MIN 16

typedef struct fresh_entry {
  uint32_t shown;
  uint64_t seq;
  int64_t row;
} fresh_entry;

struct oa__retrieval {
  oa_retrieval_config cfg;
  char field[64], query_field[64];
  oa_vecstore *vs;
  oa_ivf *ivf;
  /* per row: times chosen, and the insertion sequence (0: no action) */
  uint32_t *shown;
  uint64_t *added;
  int64_t cap;
  uint64_t seq;
  /* the most recently added rows (a ring), for the fresh pool */
  int64_t *ring_row;
  uint64_t *ring_seq;
  int64_t ring_head, ring_len;
  /* background jobs: the store is frozen while one runs */
  int readers;
  int resync;      /* the catalog was replaced during a job: rebuild at its end */
  oa_strmap dirty; /* ids changed in the catalog while frozen */
  /* scratch */
  float *vec, *q;
  double *basis, *basis_mean;
  int64_t *rows, *sorted;
  float *scores;
  const char **ids; /* the last shortlist's ids, copies in idbuf */
  size_t *lens;
  oa_buf idbuf;
  oa_retrieval_scan *spare; /* kept for the next request */
  fresh_entry *heap;
  /* statistics */
  uint64_t exact, approx, fresh_picks, refused, builds, offloaded;
  double exact_s, approx_s;
  uint64_t exact_hist[N_HIST], approx_hist[N_HIST];
  float *samples; /* RECALL_SAMPLES x dim */
  int32_t sample_n[RECALL_SAMPLES], n_samples;
  uint64_t since_sample;
  double recall;
  uint64_t recall_queries;
};

/* A new, empty state for cfg (validated; strings copied). NULL + err. */
oa__retrieval *oa__retrieval_new(const oa_retrieval_config *cfg, oa_error *err);
/* Loads every action of cat into r's empty store. strict: the first bad
 * action fails the load; otherwise bad actions are left out and counted
 * on stderr. */
int oa__retrieval_load_catalog(oa__retrieval *r, oa_catalog *cat, int strict,
                               oa_error *err);

/* ---- The store in snapshots (retrieval_persist.c) ----
 * A snapshot carries the store's matrix as a sidecar .oav file (the
 * vector store's own format, memory-mapped back) and, inside the
 * snapshot, a section that references it (size, checksum, matrix hash)
 * followed by the IVF index. Restoring adopts the mapped store and the
 * index instead of rebuilding them from the catalog records; a missing or
 * mismatched sidecar falls back to that rebuild. */
typedef struct oa__retrieval_snap oa__retrieval_snap;
/* Loop thread, right after the catalog was serialised: freezes the store
 * (r->readers) so another thread can write it. NULL when there is nothing
 * to write: no retrieval, or the store lags the catalog (another job
 * froze it and changes wait). */
oa__retrieval_snap *oa__retrieval_snap_begin(oa_engine *e);
/* Any thread: writes the store to dir/name and fills section (a new
 * buffer) with the reference and the index. 0, or an error with section
 * empty and no file left behind. */
int oa__retrieval_snap_write(oa__retrieval_snap *s, const char *dir, const char *name,
                             oa_buf *section, oa_error *err);
/* Loop thread: thaws the store (applies what changed meanwhile), frees s. */
void oa__retrieval_snap_end(oa_engine *e, oa__retrieval_snap *s);
/* Loop thread: one reader less; the last one applies the catalog changes
 * held back while the store was frozen (or rebuilds after a replace). */
void oa__retrieval_thaw(oa_engine *e, oa__retrieval *r);
/* Once no reader is left (a no-op before): applies the catalog changes
 * held back while the store was frozen, or rebuilds the store from a
 * catalog replaced meanwhile (retrieval.c). */
void oa__retrieval_apply_held(oa_engine *e, oa__retrieval *r);
/* Replaces e's catalog with cat (taking it). With a valid section (len >
 * 0) whose sidecar in dir loads and matches, the store and index are
 * adopted: 1. Otherwise the store is rebuilt from cat: 0, with the reason
 * in problem when a sidecar was referenced but not usable. */
int oa__retrieval_restore(oa_engine *e, oa_catalog *cat, oa_reader *section,
                          const char *dir, char *problem, size_t cap);
/* The sidecar file a section references (no checks beyond the format): 0
 * with its name, or -1. For cleaning up files no snapshot references. */
int oa__retrieval_section_file(oa_reader *section, char *name, size_t cap);

#endif
