/* Two-stage ranking inside the engine: a retrieval store that follows the
 * catalog, and the shortlist a decision ranks (DESIGN.md §2 step 2, §8).
 *
 * The store. oa_engine_set_retrieval makes every catalog action whose
 * fields hold the configured DENSE field (the action embedding, `dim`
 * numbers) also live as one row of an oa_vecstore, with the declared
 * categorical/numeric action fields copied into the row's metadata for
 * filters. The store follows the catalog through the catalog's change
 * hook: an upsert whose embedding has the wrong length (OA_EDIM) or a
 * value a float cannot hold (OA_ENUMERIC) is refused and changes nothing;
 * an action without the field is simply not retrievable; a removal leaves
 * a hole. Replacing the catalog (a snapshot restore) rebuilds the store
 * from it, so snapshots need no copy of the vectors.
 *
 * The query, in this order: the request's explicit vector; else the
 * context DENSE field named `query_field` (a two-tower model's user
 * embedding; it must be a context field of the policy's feature space);
 * else, for a ridge model over a CONCAT layout whose action block for
 * `field` is the embedding, the slice of θ that multiplies it (the
 * action-dependent part of θ·φ(x, a) that retrieval can rank by). Apps
 * with a Lua query hook compute the vector and pass it explicitly.
 *
 * Retrieval: exact (oa_topn_exact, every live row, the shared worker
 * pool) or approximate (an IVF index built over the store on first use,
 * kept up to date with oa_ivf_add/remove, rebuilt in the background past
 * a staleness threshold by whoever runs the maintenance jobs below).
 * Filters: excluded ids and metadata predicates (catalog/filter.h).
 *
 * Fresh share (cold start): with share s > 0, m = ceil(s·n) slots of the
 * shortlist of n go to fresh items. The similarity search still returns
 * n rows; then the fresh pool is every eligible item (live, passing the
 * filter, not already in those n) among the OA_RETR_RECENT most recently
 * added ones; the k = max(4m, 16) of them shown least often (fewest times
 * chosen by a decision; ties: most recently added first) form the pool,
 * and m are drawn from it uniformly without replacement with a PRNG seeded
 * from the decision's seed. They replace the last m similarity results
 * (fewer when the pool is smaller), so the shortlist keeps n items.
 *
 * Propensity: the decision's probabilities are those of the explorer over
 * the retrieved set, so the logged propensity is P(chosen | shortlist),
 * not the marginal over retrieval; the shortlist's ids are the decision's
 * candidates and are logged with it (the decision log's `_multi`).
 *
 * Threading: the loop thread, like the engine, except for the searches
 * and jobs that read the store from another thread: an exact scan begun
 * with oa_engine_retrieve_begin (run anywhere, ended on the loop thread)
 * and the background jobs (index rebuild, recall measurement) between
 * oa_engine_retrieval_job_begin and _end. While any of them runs the store
 * is frozen: catalog changes are still validated and applied to the
 * catalog at once, but reach the store (and index) only when the last
 * reader ends, and retrieved ids the catalog lost meanwhile are dropped
 * from shortlists (which can then hold fewer than n). */
#ifndef ONEARM_RUNTIME_RETRIEVAL_H
#define ONEARM_RUNTIME_RETRIEVAL_H

#include "catalog/filter.h"
#include "catalog/ivf.h"
#include "catalog/vectors.h"
#include "runtime/engine.h"

#define OA_RETR_RECENT 65536 /* fresh pool: the most recently added items */

typedef struct oa_retrieval_config {
  const char *field;    /* DENSE action field with the embedding (required) */
  int32_t dim;          /* its length (required) */
  oa_vec_format format; /* storage of the rows */
  int32_t n_meta;       /* action fields copied for filters */
  oa_meta_spec meta[OA_VEC_MAX_META];
  const char *query_field; /* context DENSE field used as the query, or NULL */
  /* Defaults for requests that leave them out. */
  int32_t n; /* 0: 100 */
  oa_retrieve_mode mode;
  int32_t nprobe;     /* 0: 32 */
  double fresh_share; /* 0: none */
  /* Approximate index. */
  double rebuild_staleness; /* rebuild past this oa_ivf_staleness; 0: 0.2 */
  int64_t build_at_rows;    /* build at start/restore when live rows >= this; 0: never */
  oa_ivf_storage ivf_storage;
} oa_retrieval_config;

/* Configures (or reconfigures) retrieval and loads every catalog action
 * into a new store. On error (a catalog action with a bad embedding, a bad
 * config) nothing changes. The config's strings are copied. A config with
 * the same store (field, dim, format, meta) as the current one only
 * updates the query field and the defaults (an app reload keeps the store
 * and its index). */
int oa_engine_set_retrieval(oa_engine *e, const oa_retrieval_config *cfg, oa_error *err);
/* Turns retrieval off and frees the store. */
void oa_engine_clear_retrieval(oa_engine *e);
/* The current config (strings borrowed until the next set/clear), or NULL. */
const oa_retrieval_config *oa_engine_retrieval_config(const oa_engine *e);
/* The store (borrowed; valid until the next set/clear/replace_catalog), or
 * NULL: for filter compilation and metadata lookups. */
const oa_vecstore *oa_engine_retrieval_store(const oa_engine *e);
/* 1 when both configs describe the same store (field, dim, format, meta). */
int oa_retrieval_config_same_store(const oa_retrieval_config *a,
                                   const oa_retrieval_config *b);

/* The shortlist for one request with policy p (whose context values by
 * slot are ctx): ids and lengths borrowed (valid until the next catalog
 * change or retrieval), best first, fresh picks last. `seed` drives the
 * fresh picks. 0, or OA_EINVAL (bad n, mode, share, no query, retrieval
 * not configured), OA_EDIM (query length), OA_ENUMERIC (non-finite
 * query), OA_ENOTFOUND (nothing eligible), OA_ENOMEM; nothing changes on
 * error. */
typedef struct oa_shortlist {
  int32_t n, fresh;
  const char *const *ids;
  const size_t *lens;
  const float *scores;      /* similarity (fresh picks: their similarity too) */
  const char *query_source; /* "request", "context", "theta" */
} oa_shortlist;
int oa_engine_retrieve(oa_engine *e, oa_policy *p, const oa_retrieve_request *rq,
                       const oa_value *ctx, uint64_t seed, oa_shortlist *out,
                       oa_error *err);

/* The same in three steps, so that a server never blocks its loop on a
 * large exact scan: _begin (loop thread) validates the request exactly as
 * oa_engine_retrieve does, makes the query, compiles the filter and
 * freezes the store, or returns NULL with err; oa_retrieval_scan_run does
 * the search (any thread, once; it reads only the frozen store);
 * oa_engine_retrieve_end (loop thread) makes the shortlist (out may be
 * NULL to abandon the scan), unfreezes the store, applies the catalog
 * changes held back, and frees the scan. Every begun scan must be ended.
 * oa_retrieval_scan_heavy says whether the search is worth another
 * thread: an exact scan of a matrix of at least OA_RETR_OFFLOAD_BYTES
 * (approximate searches always run on the loop thread: a background
 * index rebuild may replace the index when it ends). */
#define OA_RETR_OFFLOAD_BYTES (4u << 20)
typedef struct oa_retrieval_scan oa_retrieval_scan;
oa_retrieval_scan *oa_engine_retrieve_begin(oa_engine *e, oa_policy *p,
                                            const oa_retrieve_request *rq,
                                            const oa_value *ctx, uint64_t seed,
                                            oa_error *err);
int oa_retrieval_scan_heavy(const oa_retrieval_scan *s);
void oa_retrieval_scan_run(oa_retrieval_scan *s);
/* Runs count begun scans (any thread, each once), the exact ones of one
 * engine together in a single pass over the matrix (oa_topn_exact_many):
 * each gets exactly what oa_retrieval_scan_run would give it. */
void oa_retrieval_scan_run_many(oa_retrieval_scan **scans, int32_t count);
int oa_engine_retrieve_end(oa_engine *e, oa_retrieval_scan *s, oa_shortlist *out,
                           oa_error *err);

/* Count one impression (the action was chosen by a decision). */
void oa__retrieval_shown(oa_engine *e, const char *id, size_t len);

/* Builds (or rebuilds) the approximate index now, on this thread. */
int oa_engine_retrieval_build_index(oa_engine *e, oa_error *err);

/* ---- Background maintenance ----
 * What needs doing: OA_RETR_JOB_BUILD (no index yet but the catalog is big
 * enough, or the index is stale), OA_RETR_JOB_RECALL (sampled approximate
 * queries wait for their exact reference). */
#define OA_RETR_JOB_BUILD  1
#define OA_RETR_JOB_RECALL 2
int oa_engine_retrieval_jobs(const oa_engine *e);
typedef struct oa_retrieval_job oa_retrieval_job;
/* Loop thread: starts the given jobs (a mask); NULL when there is nothing
 * to do. The store is frozen until _end. */
oa_retrieval_job *oa_engine_retrieval_job_begin(oa_engine *e, int jobs);
/* Any thread: does the work (reads the store only). */
void oa_retrieval_job_run(oa_retrieval_job *job);
/* Loop thread: installs the results (a new index, a recall figure),
 * applies the catalog changes held back, frees the job. */
void oa_engine_retrieval_job_end(oa_engine *e, oa_retrieval_job *job);

typedef struct oa_retrieval_stats {
  int configured;
  int64_t rows, live;
  uint64_t exact, approx, fresh_picks, refused;
  uint64_t offloaded; /* exact scans run off the thread that began them */
  double exact_seconds, approx_seconds;     /* sums */
  uint64_t exact_hist[12], approx_hist[12]; /* by oa_retrieval_hist_le, last: +Inf */
  int index_built;
  int32_t nlist;
  double staleness;
  uint64_t builds;
  double recall; /* last measured mean recall@n of approximate vs exact; -1 none */
  uint64_t recall_queries;
  int jobs_running;
} oa_retrieval_stats;
extern const double oa_retrieval_hist_le[11];
oa_retrieval_stats oa_engine_retrieval_stats(const oa_engine *e);
/* Prometheus lines for /metrics (nothing when retrieval is off). */
void oa_engine_retrieval_metrics(const oa_engine *e, oa_buf *out);

/* Internal: the engine's retrieval state follows catalog replacement. */
typedef struct oa__retrieval oa__retrieval;
oa__retrieval **oa__engine_retrieval(oa_engine *e);
void oa__retrieval_free(oa__retrieval *r);
void oa__retrieval_catalog_replaced(oa_engine *e);

#endif
