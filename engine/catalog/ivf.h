/* Approximate top-N retrieval by inner product: an inverted-file (IVF)
 * index over a vector store (vectors.h).
 *
 * Build: spherical k-means (kmeans.h, k-means++ seeding) splits the live
 * rows into nlist clusters; every row goes to the list of its nearest
 * centroid (largest inner product), and the list keeps its own copy of the
 * row's vector, contiguous, so probing a list streams memory linearly
 * instead of jumping around the store. Two list formats:
 *   F32  the float vector (exact scores, no re-ranking): dim*4 + 4 bytes
 *        per row.
 *   I8   int8 codes with a float scale per row (v ~ q * scale, scale =
 *        max|v| / 127), the compact format: dim + 8 bytes per row (72 B at
 *        dim 64, code + scale + row id). The query is quantised the same
 *        way and the list scan is an int8 dot product (AVX2). Because these
 *        scores are approximate, the best rerank*n candidates (default 4n)
 *        are re-ranked with the exact vectors read from the store, so the
 *        order and the scores returned are exact for the rows found and
 *        recall stays close to that of the F32 lists.
 * Search: score the query against every centroid, scan the nprobe best
 * lists (best first, so the candidate threshold rises early and most rows
 * are rejected by one compare), keep the best candidates in a heap, apply
 * the filter only to rows that would enter the heap.
 *
 * Keeping up with the catalog: oa_ivf_add / oa_ivf_remove follow upserts
 * and removes between rebuilds (a new row joins the list of its nearest
 * centroid; the centroids do not move). oa_ivf_staleness says which
 * fraction of the rows changed since the build, so the serving layer can
 * build a new index in the background past a threshold (say 0.2) and swap
 * it in; the clusters drift as the catalog changes and recall with them.
 *
 * Threading: search only reads the index and the store and allocates its
 * scratch per call, so any number of threads may search at once; add,
 * remove and free must not overlap with searches (the same rule as the
 * store's writers). Row ids must fit in int32 (2^31 - 1 rows). */
#ifndef ONEARM_CATALOG_IVF_H
#define ONEARM_CATALOG_IVF_H

#include <stddef.h>
#include <stdint.h>

#include "catalog/vectors.h"
#include "core/buf.h"
#include "onearm.h"

#include "catalog/filter.h"

typedef enum oa_ivf_storage { OA_IVF_F32 = 0, OA_IVF_I8 = 1 } oa_ivf_storage;

typedef struct oa_ivf_config {
  int32_t nlist;       /* clusters; 0: 4 * sqrt(live rows), at most the row count */
  int32_t train_iters; /* Lloyd iterations; 0: 10 */
  uint64_t seed;       /* k-means subsample and seeding */
  oa_ivf_storage storage;
  int32_t rerank;        /* I8: re-rank rerank * n candidates exactly; 0: 4 */
  int32_t max_per_train; /* k-means training sample per centroid (0: 64) */
} oa_ivf_config;

typedef struct oa_ivf oa_ivf;

/* Build over the live rows of vs. Returns a new index (free with
 * oa_ivf_free) or NULL with err: OA_EINVAL (bad config, empty store, rows
 * beyond int32), OA_ENOMEM. The index keeps no pointer to vs. */
oa_ivf *oa_ivf_build(const oa_vecstore *vs, const oa_ivf_config *cfg, oa_error *err);
void oa_ivf_free(oa_ivf *ivf);

/* Accepts a row (1) or rejects it (0); the generic filter of
 * oa_ivf_search_fn. */
typedef int (*oa_ivf_accept_fn)(void *ud, const oa_vecstore *vs, int64_t row);

/* Approximate top-n by inner product with query (dim floats) among the rows
 * that pass filter (NULL: all). vs must be the store the index was built
 * over (I8 lists re-rank with its vectors). rows_out / scores_out receive
 * up to n rows by decreasing score (ties by row), *count how many. Returns
 * 0, OA_EINVAL (n < 1, nprobe < 1, non-finite query), OA_EDIM (the store's
 * dim differs from the index's), OA_ESTATE (filter compiled before the
 * store last changed), OA_ENOMEM. nprobe above nlist is clamped. The filter
 * (filter.h) is evaluated only for rows good enough to become candidates. */
int oa_ivf_search(const oa_ivf *ivf, const oa_vecstore *vs, const float *query, int32_t n,
                  int32_t nprobe, const oa_filter *filter, int64_t *rows_out,
                  float *scores_out, int32_t *count, oa_error *err);
/* The same with a predicate callback instead of a filter (accept may be
 * NULL). */
int oa_ivf_search_fn(const oa_ivf *ivf, const oa_vecstore *vs, const float *query,
                     int32_t n, int32_t nprobe, oa_ivf_accept_fn accept, void *ud,
                     int64_t *rows_out, float *scores_out, int32_t *count, oa_error *err);

/* Follow the store: index row (insert, or move it if already indexed, e.g.
 * after an upsert changed its vector). 0, OA_ENOTFOUND (a hole in vs),
 * OA_EDIM, OA_EINVAL (row beyond int32), OA_ENOMEM. */
int oa_ivf_add(oa_ivf *ivf, const oa_vecstore *vs, int64_t row, oa_error *err);
/* Drop row from the index: 0, or OA_ENOTFOUND when it is not indexed. */
int oa_ivf_remove(oa_ivf *ivf, int64_t row);
/* Rows added or removed since the build divided by the rows at build time
 * (0 right after a build; 1 means as many changes as rows). */
double oa_ivf_staleness(const oa_ivf *ivf);
int64_t oa_ivf_count(const oa_ivf *ivf); /* indexed rows */
int32_t oa_ivf_nlist(const oa_ivf *ivf);
int32_t oa_ivf_dim(const oa_ivf *ivf);
/* Bytes held by the index (lists, centroids, row map), not the store. */
size_t oa_ivf_size_bytes(const oa_ivf *ivf);

/* Exact top-n used as the reference of oa_ivf_recall: the same contract
 * as oa_ivf_search without the probe count. */
typedef int (*oa_ivf_exact_fn)(void *ud, const oa_vecstore *vs, const float *query,
                               int32_t n, int64_t *rows_out, float *scores_out,
                               int32_t *count, oa_error *err);
/* A plain exact scan over the live rows of vs (the default reference). */
int oa_ivf_exact_scan(void *ud, const oa_vecstore *vs, const float *query, int32_t n,
                      int64_t *rows_out, float *scores_out, int32_t *count,
                      oa_error *err);
/* Mean recall@n over nq queries (nq x dim floats): the fraction of the
 * exact top-n rows (exact = NULL: oa_ivf_exact_scan) that the index
 * returns with nprobe. Returns 0 and *recall_out, or an error of either
 * search. */
int oa_ivf_recall(const oa_ivf *ivf, const oa_vecstore *vs, const float *queries,
                  int32_t nq, int32_t n, int32_t nprobe, oa_ivf_exact_fn exact,
                  void *exact_ud, double *recall_out, oa_error *err);

/* Persistence into a byte buffer (documented in ivf.c); load returns a new
 * index or NULL with err (OA_EFORMAT for corrupt or truncated data). */
int oa_ivf_save(const oa_ivf *ivf, oa_buf *out);
oa_ivf *oa_ivf_load(oa_reader *in, oa_error *err);

#endif
