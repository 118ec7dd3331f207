/* The HTTP side of two-stage ranking: `retrieve` in a POST /v1/rank body
 * becomes an oa_retrieve_request (runtime/retrieval.h), kept apart from
 * api.c so the rank route only needs a small hook.
 *
 *   "retrieve": {"n": 200, "mode": "exact" | "approximate", "nprobe": 32,
 *                "filters": {"topic": "music" | ["music", "dance"],
 *                            "age": {"min": 0, "max": 7} | [0, 7] | 3},
 *                "query": [numbers], "freshShare": 0.05}
 *
 * Every key is optional: the app's retrieve = {...} gives the defaults.
 * The query, when absent, comes from the context: the JSON context's key
 * named by the app's query field (the app's Lua query function writes its
 * vector there through the context hook), else the engine's own rules
 * (θ of a ridge policy). excludedActions join the filter's excluded ids.
 * Arrays live in the request arena. */
#include "server/retrieve.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

#include "core/error.h"
#include "runtime/retrieval.h"

static json_object *get(json_object *o, const char *k) {
  json_object *v = NULL;
  return json_object_object_get_ex(o, k, &v) ? v : NULL;
}

static int is_num(json_object *v) {
  json_type t = json_object_get_type(v);
  return v && (t == json_type_int || t == json_type_double);
}

static float *floats(json_object *arr, oa_json_arena *arena, const char *what, int32_t *n,
                     oa_error *err) {
  size_t len = json_object_array_length(arr);
  if (len < 1 || len > 65536) {
    oa_error_set(err, OA_EINVAL, "%s must be an array of 1 to 65536 numbers", what);
    return NULL;
  }
  float *q = oa_json_arena_alloc(arena, sizeof(float) * len);
  if (!q) {
    oa_error_set(err, OA_ENOMEM, "out of memory");
    return NULL;
  }
  for (size_t i = 0; i < len; i++) {
    json_object *v = json_object_array_get_idx(arr, i);
    double d = is_num(v) ? json_object_get_double(v) : NAN;
    if (!isfinite(d) || !isfinite((float)d)) {
      oa_error_set(err, OA_ENUMERIC, "%s[%zu] must be a finite number", what, i);
      return NULL;
    }
    q[i] = (float)d;
  }
  *n = (int32_t)len;
  return q;
}

static int filters(json_object *fo, json_object *excluded, const oa_vecstore *vs,
                   oa_json_arena *arena, oa_filter_spec *spec, oa_error *err) {
  memset(spec, 0, sizeof *spec);
  if (excluded) {
    size_t n = json_object_array_length(excluded);
    const char **ids = oa_json_arena_alloc(arena, sizeof(char *) * (n + 1));
    size_t *lens = oa_json_arena_alloc(arena, sizeof(size_t) * (n + 1));
    if (!ids || !lens) return oa_error_set(err, OA_ENOMEM, "out of memory");
    for (size_t i = 0; i < n; i++) {
      json_object *v = json_object_array_get_idx(excluded, i);
      ids[i] = json_object_get_string(v);
      lens[i] = (size_t)json_object_get_string_len(v);
    }
    spec->exclude_ids = ids;
    spec->exclude_lens = lens;
    spec->n_exclude = (int64_t)n;
  }
  if (!fo) return 0;
  if (json_object_get_type(fo) != json_type_object)
    return oa_error_set(err, OA_EINVAL, "retrieve.filters must be an object");
  int32_t cap = json_object_object_length(fo);
  oa_filter_pred *preds = oa_json_arena_alloc(arena, sizeof *preds * (size_t)(cap + 1));
  if (!preds) return oa_error_set(err, OA_ENOMEM, "out of memory");
  const oa_vecstore_config *vc = oa_vecstore_config_of(vs);
  int32_t np = 0;
  json_object_object_foreach(fo, name, v) {
    int32_t f = oa_vecstore_meta_field(vs, name);
    if (f < 0)
      return oa_error_set(err, OA_EINVAL,
                          "retrieve.filters: '%s' is not a declared retrieval field",
                          name);
    oa_filter_pred *p = &preds[np++];
    p->field = name;
    json_type t = json_object_get_type(v);
    if (vc->meta[f].kind == OA_META_CAT) {
      if (t == json_type_string) {
        p->op = OA_PRED_EQ;
        p->value = json_object_get_string(v);
      } else if (t == json_type_array) {
        size_t n = json_object_array_length(v);
        const char **vals = oa_json_arena_alloc(arena, sizeof(char *) * (n + 1));
        if (!vals) return oa_error_set(err, OA_ENOMEM, "out of memory");
        for (size_t i = 0; i < n; i++) {
          json_object *s = json_object_array_get_idx(v, i);
          if (json_object_get_type(s) != json_type_string)
            return oa_error_set(err, OA_EINVAL,
                                "retrieve.filters.%s: values must be strings", name);
          vals[i] = json_object_get_string(s);
        }
        p->op = OA_PRED_IN;
        p->values = vals;
        p->n_values = (int32_t)n;
      } else {
        return oa_error_set(err, OA_EINVAL,
                            "retrieve.filters.%s: a string or an array of strings", name);
      }
      continue;
    }
    p->op = OA_PRED_RANGE;
    p->lo = -INFINITY, p->hi = INFINITY;
    json_object *lo = NULL, *hi = NULL;
    if (is_num(v)) {
      lo = hi = v;
    } else if (t == json_type_array && json_object_array_length(v) == 2) {
      lo = json_object_array_get_idx(v, 0), hi = json_object_array_get_idx(v, 1);
    } else if (t == json_type_object) {
      lo = get(v, "min"), hi = get(v, "max");
    } else {
      return oa_error_set(err, OA_EINVAL,
                          "retrieve.filters.%s: a number, [min, max] or {min, max}",
                          name);
    }
    if ((lo && !is_num(lo)) || (hi && !is_num(hi)))
      return oa_error_set(err, OA_EINVAL, "retrieve.filters.%s: bounds must be numbers",
                          name);
    if (lo) p->lo = json_object_get_double(lo);
    if (hi) p->hi = json_object_get_double(hi);
  }
  spec->preds = preds;
  spec->n_preds = np;
  return 0;
}

int oa_api_retrieve_request(oa_engine *e, json_object *retr, json_object *ctx,
                            json_object *excluded, oa_json_arena *arena,
                            oa_retrieve_request *rq, oa_error *err) {
  const oa_retrieval_config *cfg = oa_engine_retrieval_config(e);
  if (!cfg)
    return oa_error_set(err, OA_EINVAL,
                        "retrieval is not configured: the app needs retrieve = {field = "
                        "..., dim = ...}");
  if (json_object_get_type(retr) != json_type_object)
    return oa_error_set(err, OA_EINVAL, "'retrieve' must be an object");
  static const char *const keys[] = {"n",     "mode",       "nprobe", "filters",
                                     "query", "freshShare", NULL};
  json_object_object_foreach(retr, key, val) {
    (void)val;
    int known = 0;
    for (int k = 0; keys[k]; k++)
      known |= !strcmp(keys[k], key);
    if (!known)
      return oa_error_set(err, OA_EINVAL,
                          "retrieve: unknown key '%s' (n, mode, nprobe, filters, query, "
                          "freshShare)",
                          key);
  }
  memset(rq, 0, sizeof *rq);
  rq->n = cfg->n;
  rq->mode = cfg->mode;
  rq->fresh_share = -1;
  json_object *v;
  if ((v = get(retr, "n"))) {
    if (json_object_get_type(v) != json_type_int)
      return oa_error_set(err, OA_EINVAL, "retrieve.n must be an integer");
    int64_t n = json_object_get_int64(v);
    if (n < 1 || n > OA_MAX_CANDIDATES)
      return oa_error_set(err, OA_EINVAL, "retrieve.n must be 1 to %d, got %lld",
                          OA_MAX_CANDIDATES, (long long)n);
    rq->n = (int32_t)n;
  }
  if ((v = get(retr, "mode"))) {
    const char *m =
        json_object_get_type(v) == json_type_string ? json_object_get_string(v) : "";
    if (!strcmp(m, "exact"))
      rq->mode = OA_RETRIEVE_EXACT;
    else if (!strcmp(m, "approximate"))
      rq->mode = OA_RETRIEVE_APPROX;
    else
      return oa_error_set(err, OA_EINVAL,
                          "retrieve.mode must be \"exact\" or \"approximate\"");
  }
  if ((v = get(retr, "nprobe"))) {
    if (json_object_get_type(v) != json_type_int || json_object_get_int64(v) < 1 ||
        json_object_get_int64(v) > 1 << 20)
      return oa_error_set(err, OA_EINVAL, "retrieve.nprobe must be an integer >= 1");
    rq->nprobe = (int32_t)json_object_get_int64(v);
  }
  if ((v = get(retr, "freshShare"))) {
    double s = is_num(v) ? json_object_get_double(v) : -1;
    if (!(s >= 0 && s < 1))
      return oa_error_set(err, OA_EINVAL,
                          "retrieve.freshShare must be a number in [0, 1)");
    rq->fresh_share = s;
  }
  json_object *q = get(retr, "query");
  const char *what = "retrieve.query";
  if (!q && cfg->query_field && ctx && json_object_get_type(ctx) == json_type_object) {
    q = get(ctx, cfg->query_field);
    what = cfg->query_field;
  }
  if (q) {
    if (json_object_get_type(q) != json_type_array)
      return oa_error_set(err, OA_EINVAL, "%s must be an array of numbers", what);
    if (!(rq->query = floats(q, arena, what, &rq->query_dim, err))) return err->code;
    if (rq->query_dim != cfg->dim)
      return oa_error_set(err, OA_EDIM,
                          "%s has %d numbers; the catalog's embeddings have %d", what,
                          rq->query_dim, cfg->dim);
  }
  json_object *fo = get(retr, "filters");
  if (fo || excluded) {
    oa_filter_spec *spec = oa_json_arena_alloc(arena, sizeof *spec);
    if (!spec) return oa_error_set(err, OA_ENOMEM, "out of memory");
    int rc = filters(fo, excluded, oa_engine_retrieval_store(e), arena, spec, err);
    if (rc) return rc;
    rq->filter = spec;
  }
  return 0;
}

void oa_api_retrieve_put(oa_buf *b, const oa_retrieve_request *rq, int32_t n,
                         int32_t fresh) {
  char s[128];
  int len =
      snprintf(s, sizeof s, ",\"retrieved\":{\"n\":%d,\"mode\":\"%s\",\"fresh\":%d}", n,
               rq->mode == OA_RETRIEVE_APPROX ? "approximate" : "exact", fresh);
  oa_buf_put(b, s, (size_t)len);
}
