/* Compiled filters (filter.h). Predicates become a flat array of small
 * structs evaluated with a switch: the scan calls oa_filter_pass only for
 * rows whose score would enter the top-N, so this is off the bandwidth
 * path. IN sets become a byte mask over the field's codes; exclusions a
 * sorted row array searched by bisection. */
#include "catalog/filter.h"
#include "core/error.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

typedef struct cpred {
  oa_pred_op op;
  int32_t field;
  int32_t code;  /* EQ/NE: -2 when the value was never seen */
  uint8_t *mask; /* IN: n_codes bytes */
  int32_t n_codes;
  float lo, hi; /* RANGE */
} cpred;

struct oa_filter {
  uint64_t generation;
  int64_t *excluded; /* sorted rows */
  int64_t n_excluded;
  cpred *preds;
  int32_t n_preds;
};

static int cmp_i64(const void *a, const void *b) {
  int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
  return (x > y) - (x < y);
}

void oa_filter_free(oa_filter *f) {
  if (!f) return;
  for (int32_t i = 0; i < f->n_preds; i++)
    free(f->preds[i].mask);
  free(f->preds);
  free(f->excluded);
  free(f);
}

/* The float bounds include every double in [lo, hi]: the column is float,
 * so round lo down and hi up. */
static float float_down(double x) {
  float f = (float)x;
  return (double)f > x ? nextafterf(f, -INFINITY) : f;
}
static float float_up(double x) {
  float f = (float)x;
  return (double)f < x ? nextafterf(f, INFINITY) : f;
}

oa_filter *oa_filter_compile(const oa_vecstore *vs, const oa_filter_spec *spec,
                             oa_error *err) {
  oa_filter *f = calloc(1, sizeof *f);
  if (!f) goto oom;
  f->generation = oa_vecstore_generation(vs);
  if (!spec) return f;
  if (spec->n_exclude < 0 || spec->n_preds < 0 ||
      (spec->n_exclude && !spec->exclude_ids) || (spec->n_preds && !spec->preds)) {
    oa_error_set(err, OA_EINVAL, "filter: bad exclusion or predicate list");
    goto fail;
  }
  if (spec->n_exclude) {
    if (!(f->excluded = malloc((size_t)spec->n_exclude * sizeof *f->excluded))) goto oom;
    for (int64_t i = 0; i < spec->n_exclude; i++) {
      const char *id = spec->exclude_ids[i];
      if (!id) continue;
      size_t len = spec->exclude_lens ? spec->exclude_lens[i] : strlen(id);
      int64_t row = oa_vecstore_find(vs, id, len);
      if (row >= 0) f->excluded[f->n_excluded++] = row;
    }
    qsort(f->excluded, (size_t)f->n_excluded, sizeof *f->excluded, cmp_i64);
  }
  if (spec->n_preds && !(f->preds = calloc((size_t)spec->n_preds, sizeof *f->preds)))
    goto oom;
  const oa_vecstore_config *cfg = oa_vecstore_config_of(vs);
  for (int32_t i = 0; i < spec->n_preds; i++) {
    const oa_filter_pred *p = &spec->preds[i];
    cpred *c = &f->preds[f->n_preds++];
    c->op = p->op;
    c->field = p->field ? oa_vecstore_meta_field(vs, p->field) : -1;
    if (c->field < 0) {
      oa_error_set(err, OA_EINVAL, "filter: unknown metadata field '%s'",
                   p->field ? p->field : "(null)");
      goto fail;
    }
    oa_meta_kind kind = cfg->meta[c->field].kind;
    oa_meta_kind want = p->op == OA_PRED_RANGE ? OA_META_NUM : OA_META_CAT;
    if ((unsigned)p->op > OA_PRED_RANGE || kind != want) {
      oa_error_set(err, OA_EINVAL,
                   "filter: field '%s' is %s, the predicate needs a %s field", p->field,
                   kind == OA_META_CAT ? "categorical" : "numeric",
                   want == OA_META_CAT ? "categorical" : "numeric");
      goto fail;
    }
    switch (p->op) {
    case OA_PRED_EQ:
    case OA_PRED_NE:
      if (!p->value) {
        oa_error_set(err, OA_EINVAL, "filter: field '%s': no value to compare with",
                     p->field);
        goto fail;
      }
      c->code = oa_vecstore_meta_lookup(vs, c->field, p->value);
      if (c->code < 0) c->code = -2; /* never equal to a row's code, nor to missing */
      break;
    case OA_PRED_IN:
      if (p->n_values < 0 || (p->n_values && !p->values)) {
        oa_error_set(err, OA_EINVAL, "filter: field '%s': bad value list", p->field);
        goto fail;
      }
      c->n_codes = oa_vecstore_meta_dict_size(vs, c->field);
      if (!(c->mask = calloc((size_t)c->n_codes + 1, 1))) goto oom;
      for (int32_t k = 0; k < p->n_values; k++) {
        int32_t code =
            p->values[k] ? oa_vecstore_meta_lookup(vs, c->field, p->values[k]) : -1;
        if (code >= 0 && code < c->n_codes) c->mask[code] = 1;
      }
      break;
    case OA_PRED_RANGE:
      if (isnan(p->lo) || isnan(p->hi) || p->lo > p->hi) {
        oa_error_set(err, OA_EINVAL, "filter: field '%s': bad range [%g, %g]", p->field,
                     p->lo, p->hi);
        goto fail;
      }
      c->lo = float_down(p->lo);
      c->hi = float_up(p->hi);
      break;
    }
  }
  return f;
oom:
  oa_error_set(err, OA_ENOMEM, "filter: out of memory");
fail:
  oa_filter_free(f);
  return NULL;
}

int oa_filter_pass(const oa_filter *f, const oa_vecstore *vs, int64_t row) {
  for (int32_t i = 0; i < f->n_preds; i++) {
    const cpred *c = &f->preds[i];
    switch (c->op) {
    case OA_PRED_EQ:
      if (oa_vecstore_meta_code(vs, row, c->field) != c->code) return 0;
      break;
    case OA_PRED_NE:
      if (oa_vecstore_meta_code(vs, row, c->field) == c->code) return 0;
      break;
    case OA_PRED_IN: {
      int32_t code = oa_vecstore_meta_code(vs, row, c->field);
      if (code < 0 || code >= c->n_codes || !c->mask[code]) return 0;
      break;
    }
    case OA_PRED_RANGE: {
      float v = oa_vecstore_meta_num(vs, row, c->field);
      if (!(v >= c->lo && v <= c->hi)) return 0;
      break;
    }
    }
  }
  if (f->n_excluded) {
    int64_t lo = 0, hi = f->n_excluded;
    while (lo < hi) {
      int64_t mid = (lo + hi) / 2;
      if (f->excluded[mid] < row)
        lo = mid + 1;
      else
        hi = mid;
    }
    if (lo < f->n_excluded && f->excluded[lo] == row) return 0;
  }
  return 1;
}

uint64_t oa_filter_generation(const oa_filter *f) {
  return f->generation;
}
int64_t oa_filter_excluded(const oa_filter *f) {
  return f->n_excluded;
}
