/* Exact top-N retrieval by inner product over a vector store.
 *
 * One pass over the matrix, split into row ranges (multiples of
 * OA_TOPN_BLOCK rows) that the catalog's worker pool scans in parallel;
 * each range keeps a bounded min-heap of its best rows, merged at the end
 * (ranges share the best full heap's floor to skip rows early). The dot
 * kernel is AVX2/FMA per format (F16 through F16C; I8 as an exact integer
 * dot product against the query quantised to int16, with AVX-VNNI when the
 * CPU has it, times the row's scale), eight rows at a time, and a row's
 * score does not depend on which thread or group computed it, so results
 * are identical for any thread count.
 *
 * Order: score descending, ties by row ascending (deterministic).
 * Thread safety: any number of threads may scan the same store at once
 * (scans only read); writers must not run during a scan (vectors.h). Call
 * it from a worker thread (uv_queue_work), not the loop thread, for large
 * catalogs: it blocks until the scan is done. */
#ifndef ONEARM_CATALOG_TOPN_H
#define ONEARM_CATALOG_TOPN_H

#include <stdint.h>

#include "catalog/filter.h"
#include "catalog/vectors.h"

#define OA_TOPN_BLOCK 4096

/* Rows and scores, best first. The arrays are owned by the result and
 * reused (grown) across calls; count = min(n, eligible rows). Map rows to
 * ids with oa_vecstore_id while the store is unchanged. */
typedef struct oa_topn_result {
  int64_t *rows;
  float *scores;
  int32_t count, cap;
} oa_topn_result;

void oa_topn_result_init(oa_topn_result *r);
void oa_topn_result_free(oa_topn_result *r);

/* Exact top-n of <query, row> over live rows that pass filter (NULL: all).
 * query has dim finite floats. threads: 1 = inline on the caller, k > 1 =
 * up to k threads of the shared pool (caller included), <= 0 = all pool
 * threads when the matrix is large (>= 4 MB), else inline. Errors, with
 * out unchanged: n <= 0 (OA_EINVAL), non-finite query (OA_ENUMERIC), a
 * filter compiled against an older generation (OA_ESTATE), OA_ENOMEM. */
int oa_topn_exact(const oa_vecstore *vs, const float *query, int32_t n,
                  const oa_filter *filter, int threads, oa_topn_result *out,
                  oa_error *err);

/* Several exact top-N scans in one pass over the matrix (a server's
 * concurrent requests): rows are read in cache-sized sub-blocks that every
 * query scores before the next, so nq queries cost about the memory
 * traffic of one. Query q has its own n[q] and filters[q] (filters may be
 * NULL: none); its result goes to out[q] and its status to rcs[q] (0, or
 * the errors of oa_topn_exact, with errs[q] filled when errs is given);
 * each result is exactly what oa_topn_exact gives. Returns 0, or
 * OA_ENOMEM when the scan could not run at all. */
int oa_topn_exact_many(const oa_vecstore *vs, int32_t nq, const float *const *queries,
                       const int32_t *n, const oa_filter *const *filters, int threads,
                       oa_topn_result *out, int *rcs, oa_error *errs);

/* Building blocks for approximate indexes (IVF) so that they score rows
 * exactly as the exact scan does. */

/* out[i] = <query, row rows[i]> for count rows (holes score 0); or
 * rows row0 .. row0+count-1 with rows == NULL. 0 or OA_EINVAL (row out of
 * range) / OA_ENOMEM. */
int oa_topn_score_rows(const oa_vecstore *vs, const float *query, const int64_t *rows,
                       int64_t row0, int64_t count, float *out, oa_error *err);

/* A bounded selection of the best cap (score, row) pairs under the order
 * above, fed in any order. */
typedef struct oa_topn_heap {
  float *scores;
  int64_t *rows;
  int32_t size, cap;
} oa_topn_heap;

int oa_topn_heap_init(oa_topn_heap *h, int32_t cap); /* 0 or OA_ENOMEM */
void oa_topn_heap_free(oa_topn_heap *h);
void oa_topn_heap_push(oa_topn_heap *h, float score, int64_t row);
/* Moves the heap's contents into out, best first; the heap is emptied. */
int oa_topn_heap_finish(oa_topn_heap *h, oa_topn_result *out, oa_error *err);

#endif
