/* Compiled retrieval filters: which rows of a vector store may be returned.
 *
 * A filter is compiled once per request from a small spec against one
 * store: excluded ids (items to hide, items the user has already seen)
 * become a sorted row list, and metadata predicates become field indexes
 * and interned codes, so the scan evaluates integers only. A row passes
 * when it is live, not excluded, and every predicate holds (AND).
 *
 * Semantics of the predicates on categorical fields (missing = no value):
 *   EQ  field == value     missing fails; a never-seen value matches nothing
 *   NE  field != value     missing passes (the row does not have the value)
 *   IN  field in {values}  missing fails; never-seen values are ignored
 * and on numeric fields:
 *   RANGE lo <= field <= hi   missing (NaN) fails; use -INFINITY / INFINITY
 *                             for an open side
 * Unknown ids in the exclusion list are ignored (nothing to exclude: an id
 * may have been removed since the client saw it). Unknown field names, a
 * predicate on a field of the wrong kind, or lo > hi are errors.
 *
 * A compiled filter records the store's generation: rows move when the
 * store changes, so using it after an upsert/remove is refused
 * (OA_ESTATE) by oa_topn_exact. Compile, scan, free, per request. */
#ifndef ONEARM_CATALOG_FILTER_H
#define ONEARM_CATALOG_FILTER_H

#include <stddef.h>
#include <stdint.h>

#include "catalog/vectors.h"

typedef enum oa_pred_op {
  OA_PRED_EQ = 0,
  OA_PRED_NE,
  OA_PRED_IN,
  OA_PRED_RANGE
} oa_pred_op;

typedef struct oa_filter_pred {
  const char *field;
  oa_pred_op op;
  const char *value;         /* EQ, NE */
  const char *const *values; /* IN */
  int32_t n_values;          /* IN */
  double lo, hi;             /* RANGE, inclusive */
} oa_filter_pred;

/* Everything is borrowed for the duration of oa_filter_compile only. */
typedef struct oa_filter_spec {
  const char *const *exclude_ids; /* excluded and already-seen ids together */
  const size_t *exclude_lens;     /* NULL: NUL-terminated ids */
  int64_t n_exclude;
  const oa_filter_pred *preds;
  int32_t n_preds;
} oa_filter_spec;

typedef struct oa_filter oa_filter;

/* NULL + err (OA_EINVAL with the predicate's field named) on a bad spec. */
oa_filter *oa_filter_compile(const oa_vecstore *vs, const oa_filter_spec *spec,
                             oa_error *err);
void oa_filter_free(oa_filter *f); /* NULL ok */
/* 1 when row passes the predicates and is not excluded (liveness is the
 * scan's business). Thread-safe: a compiled filter is read-only. */
int oa_filter_pass(const oa_filter *f, const oa_vecstore *vs, int64_t row);
uint64_t oa_filter_generation(const oa_filter *f);
/* Rows excluded because their id was known. */
int64_t oa_filter_excluded(const oa_filter *f);

#endif
