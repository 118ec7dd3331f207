/* The HTTP API: routing, validation, the calls into the runtime, response
 * bodies and metrics. See api.h for the routes and decisions.
 *
 * The request path allocates only what json-c allocates for the parsed
 * document: values, id arrays and the ranking order come from an arena
 * reset per request, and the response is written straight into the
 * connection's reused body buffer. */
#include "server/api.h"

#include <json-c/json.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "core/error.h"
#include "core/strmap.h"
#include "server/catalog_load.h"
#include "server/json.h"
#include "server/retrieve.h"
#include "runtime/retrieval.h"

#define MAX_PATH_ID 512

enum route {
  R_RANK,
  R_REWARD,
  R_ACTIVATE,
  R_ACTION_PUT,
  R_ACTION_DELETE,
  R_ACTIONS_BATCH,
  R_ACTIONS_LOAD,
  R_POLICIES,
  R_POLICY,
  R_HEALTHZ,
  R_METRICS,
  R_P_RANK,
  R_P_REWARD,
  R_P_ACTIVATE,
  R_ADMIN_RELOAD,
  R_OTHER,
  R_COUNT
};
static const char *const route_names[R_COUNT] = {"rank",
                                                 "reward",
                                                 "activate",
                                                 "action_put",
                                                 "action_delete",
                                                 "actions_batch",
                                                 "actions_load",
                                                 "policies",
                                                 "policy",
                                                 "healthz",
                                                 "metrics",
                                                 "personalizer_rank",
                                                 "personalizer_reward",
                                                 "personalizer_activate",
                                                 "admin_reload",
                                                 "other"};

/* Latency buckets in seconds: the target is well under a millisecond. */
#define N_BUCKETS 14
static const double bucket_le[N_BUCKETS] = {0.00005, 0.0001, 0.00025, 0.0005, 0.001,
                                            0.0025,  0.005,  0.01,    0.025,  0.05,
                                            0.1,     0.25,   0.5,     1.0};
static const char *const bucket_label[N_BUCKETS] = {
    "5e-05", "0.0001", "0.00025", "0.0005", "0.001", "0.0025", "0.005",
    "0.01",  "0.025",  "0.05",    "0.1",    "0.25",  "0.5",    "1"};

#define MAX_STATUSES 12 /* distinct statuses tracked per route; the rest count as 0 */

typedef struct route_metrics {
  int status[MAX_STATUSES];
  uint64_t by_status[MAX_STATUSES];
  uint64_t bucket[N_BUCKETS + 1]; /* last: above every bound */
  uint64_t count;
  double sum;
} route_metrics;

struct oa_api {
  oa_engine *engine;
  char *default_policy, *version, *admin_token;
  oa_api_reward_fn reward;
  void *reward_ud;
  const oa_api_hooks *hooks;
  void *hooks_ud;
  int admin_loopback;
  int log_context;
  uv_loop_t *loop; /* for work off the loop thread (large exact scans, catalog
                      loads); NULL: inline, or refused */
  int loading;     /* a POST /v1/actions:load is running */
  /* exact scans off the loop thread: the batch on the thread pool and the
   * queue of those waiting for it to end */
  struct offloaded_rank *batch, *queue, *queue_tail;
  int starting; /* a batch is being begun or ended: arrivals only queue */
  uv_work_t scan_work;
  oa_http_server *http;
  oa_json_parser *parser;
  oa_json_arena arena;
  oa_buf logbuf; /* the decision log's context text, reused across requests */
  route_metrics metrics[R_COUNT];
};

/* One request being handled. */
typedef struct call {
  oa_api *api;
  const oa_http_request *req;
  oa_http_response *res;
  json_object *doc;
  json_object *extra; /* another document released with the request */
  oa_error err;
  uint64_t t0; /* uv_hrtime() when the request arrived */
} call;

static char *dup_str(const char *s) {
  if (!s) s = "";
  size_t n = strlen(s) + 1;
  char *d = malloc(n);
  if (d) memcpy(d, s, n);
  return d;
}

oa_api *oa_api_new(const oa_api_app *app, oa_error *err) {
  if (!app || !app->engine) {
    oa_error_set(err, OA_EINVAL, "the API needs an engine");
    return NULL;
  }
  oa_api *api = calloc(1, sizeof *api);
  if (!api) goto oom;
  api->engine = app->engine;
  api->log_context = app->log_context;
  api->reward = app->reward;
  api->reward_ud = app->reward_ud;
  api->hooks = app->hooks;
  api->hooks_ud = app->hooks_ud;
  api->admin_loopback = app->admin_loopback;
  oa_json_arena_init(&api->arena);
  api->default_policy = app->default_policy ? dup_str(app->default_policy) : NULL;
  api->version = dup_str(app->version);
  api->admin_token =
      app->admin_token && app->admin_token[0] ? dup_str(app->admin_token) : NULL;
  api->parser = oa_json_parser_new();
  if ((app->default_policy && !api->default_policy) || !api->version ||
      (app->admin_token && app->admin_token[0] && !api->admin_token) || !api->parser) {
    oa_api_free(api);
    goto oom;
  }
  return api;
oom:
  oa_error_set(err, OA_ENOMEM, "out of memory");
  return NULL;
}

void oa_api_free(oa_api *api) {
  if (!api) return;
  free(api->default_policy);
  free(api->version);
  free(api->admin_token);
  oa_json_parser_free(api->parser);
  oa_json_arena_free(&api->arena);
  oa_buf_free(&api->logbuf);
  free(api);
}

void oa_api_set_server(oa_api *api, uv_loop_t *loop, oa_http_server *http) {
  api->loop = loop;
  api->http = http;
}

/* The app's version and default policy now (they change on a reload). */
static const char *cur_version(const oa_api *api) {
  const char *v = api->hooks && api->hooks->version ? api->hooks->version(api->hooks_ud)
                                                    : api->version;
  return v ? v : "";
}

static const char *cur_default_policy(const oa_api *api) {
  if (api->hooks && api->hooks->default_policy)
    return api->hooks->default_policy(api->hooks_ud);
  return api->default_policy;
}

static void hooks_enter(oa_api *api) {
  if (api->hooks && api->hooks->enter) api->hooks->enter(api->hooks_ud);
}

static void hooks_leave(oa_api *api) {
  if (api->hooks && api->hooks->leave) api->hooks->leave(api->hooks_ud);
}

/* ---- replies ---- */

static void put(oa_buf *b, const char *s) {
  oa_json_put_raw(b, s);
}
static void put_str(oa_buf *b, const char *s) {
  oa_json_put_str(b, s, strlen(s));
}

static void reply_error(call *c, int status, const char *code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static void reply_error(call *c, int status, const char *code, const char *fmt, ...) {
  char msg[600];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  c->res->body->len = 0;
  c->res->status = status;
  c->res->content_type = "application/json";
  oa_http_error_body(c->res->body, code, msg);
}

/* An engine error as the matching HTTP error. */
static void reply_oa(call *c, const oa_error *e) {
  int status = 400;
  const char *code = "BadRequest";
  switch (e->code) {
  case OA_ENOTFOUND:
    status = 404, code = "NotFound";
    break;
  case OA_EEXIST:
  case OA_ESTATE:
    status = 409, code = "Conflict";
    break;
  case OA_ELIMIT:
    status = 429, code = "LimitReached";
    break;
  case OA_ENOMEM:
    status = 503, code = "Unavailable";
    break;
  case OA_ESCRIPT:
    status = 500, code = "ScriptError";
    break;
  case OA_EIO:
    status = 500, code = "InternalError";
    break;
  default:
    break;
  }
  reply_error(c, status, code, "%s", e->message[0] ? e->message : oa_strerror(e->code));
}

static void reply_no_content(call *c) {
  c->res->status = 204;
  c->res->body->len = 0;
}

/* ---- request helpers ---- */

static int json_ok_content_type(const oa_http_request *r) {
  if (!r->content_type_len) return 1;
  for (size_t i = 0; i + 4 <= r->content_type_len; i++)
    if (!strncasecmp(r->content_type + i, "json", 4)) return 1;
  return 0;
}

/* The body as a JSON object into c->doc; on failure the reply is set. */
static int parse_object(call *c) {
  if (!json_ok_content_type(c->req)) {
    reply_error(c, 415, "UnsupportedMediaType",
                "send the body as Content-Type: application/json");
    return -1;
  }
  c->doc = oa_json_parse(c->api->parser, c->req->body, c->req->body_len, &c->err);
  if (!c->doc) {
    reply_error(c, 400, "BadRequest", "%s", c->err.message);
    return -1;
  }
  if (json_object_get_type(c->doc) != json_type_object) {
    reply_error(c, 400, "BadRequest", "the request body must be a JSON object");
    return -1;
  }
  return 0;
}

static json_object *member(json_object *o, const char *key) {
  json_object *v = NULL;
  if (!json_object_object_get_ex(o, key, &v)) return NULL;
  return v; /* NULL for JSON null too */
}

static int is_type(json_object *v, json_type t) {
  return v && json_object_get_type(v) == t;
}

static int is_number(json_object *v) {
  return is_type(v, json_type_int) || is_type(v, json_type_double);
}

/* Constant-time comparison so the admin token cannot be guessed byte by
 * byte from response times. */
static int token_eq(const char *a, size_t alen, const char *b) {
  size_t blen = strlen(b);
  unsigned diff = alen != blen;
  for (size_t i = 0; i < alen; i++)
    diff |= (unsigned char)a[i] ^ (unsigned char)b[i % (blen ? blen : 1)];
  return diff == 0;
}

static int admin_ok(call *c) {
  const char *tok = c->api->admin_token;
  if (!tok) return 1;
  const oa_http_request *r = c->req;
  if (r->admin_token_len && token_eq(r->admin_token, r->admin_token_len, tok)) return 1;
  if (r->authorization_len > 7 && !strncasecmp(r->authorization, "Bearer ", 7) &&
      token_eq(r->authorization + 7, r->authorization_len - 7, tok))
    return 1;
  reply_error(c, 401, "Unauthorized",
              "this route needs the admin token (Authorization: Bearer <token>)");
  return 0;
}

static oa_policy *find_policy(call *c, json_object *name_v) {
  oa_api *api = c->api;
  const char *name = NULL;
  if (name_v) {
    if (!is_type(name_v, json_type_string)) {
      reply_error(c, 400, "BadRequest", "'policy' must be a string");
      return NULL;
    }
    name = json_object_get_string(name_v);
  } else if (cur_default_policy(api)) {
    name = cur_default_policy(api);
  }
  oa_policy *p =
      name ? oa_engine_policy(api->engine, name) : oa_engine_policy_at(api->engine, 0);
  if (!p) {
    if (name)
      reply_error(c, 404, "NotFound", "unknown policy '%s'", name);
    else
      reply_error(c, 404, "NotFound", "the app has no policy");
  }
  return p;
}

/* ---- rank ---- */

typedef struct ranked {
  double prob;
  int32_t index;
} ranked;

static int by_prob_desc(const void *a, const void *b) {
  const ranked *x = a, *y = b;
  if (x->prob != y->prob) return x->prob < y->prob ? 1 : -1;
  return x->index - y->index;
}

/* Records for one side from a Personalizer list of feature objects (merged
 * in order) or from one of our objects. */
static int side_values(call *c, const oa_features *fs, oa_side side, json_object *v,
                       int list, oa_value **out, const char *what) {
  int32_t nf = oa_features_nfields(fs, side);
  oa_value *vals =
      oa_json_arena_alloc(&c->api->arena, sizeof *vals * (size_t)(nf ? nf : 1));
  if (!vals) return oa_error_set(&c->err, OA_ENOMEM, "out of memory");
  *out = vals;
  if (!list || !v || !is_type(v, json_type_array))
    return oa_json_values(fs, side, v, vals, &c->api->arena, what, &c->err);
  size_t n = json_object_array_length(v);
  for (size_t i = 0; i < n; i++) {
    int rc = oa_json_values_add(fs, side, json_object_array_get_idx(v, i), vals,
                                &c->api->arena, what, &c->err);
    if (rc) return rc;
  }
  return 0;
}

static int excluded(json_object *ex, const char *id, size_t len) {
  if (!ex) return 0;
  size_t n = json_object_array_length(ex);
  for (size_t i = 0; i < n; i++) {
    json_object *e = json_object_array_get_idx(ex, i);
    if ((size_t)json_object_get_string_len(e) == len &&
        !memcmp(json_object_get_string(e), id, len))
      return 1;
  }
  return 0;
}

/* ---- the request's own JSON text ----
 * The body was validated by the parser, so these scanners only find
 * boundaries: they never see malformed input. */

static const char *skip_ws(const char *p, const char *end) {
  while (p < end && (*p == ' ' || *p == '\t' || *p == '\r' || *p == '\n'))
    p++;
  return p;
}

/* p at an opening quote: past the closing one; *escaped says whether the
 * string holds an escape. */
static const char *skip_string(const char *p, const char *end, int *escaped) {
  for (p++; p < end && *p != '"'; p++)
    if (*p == '\\') {
      *escaped = 1;
      p++;
    }
  return p < end ? p + 1 : end;
}

static const char *skip_value(const char *p, const char *end) {
  int esc = 0;
  if (p < end && *p == '"') return skip_string(p, end, &esc);
  if (p < end && (*p == '{' || *p == '[')) {
    int depth = 0;
    while (p < end) {
      if (*p == '"') {
        p = skip_string(p, end, &esc);
        continue;
      }
      if (*p == '{' || *p == '[') depth++;
      if (*p == '}' || *p == ']') depth--;
      p++;
      if (depth == 0) break;
    }
    return p;
  }
  while (p < end && *p != ',' && *p != '}' && *p != ']' && *p != ' ' && *p != '\t' &&
         *p != '\r' && *p != '\n')
    p++;
  return p;
}

/* The text of the top-level member `key` of the object in s[0..n): the last
 * occurrence, as in the parsed document. NULL when absent, or when a key
 * spelled with escapes could be the same key. */
static const char *raw_member(const char *s, size_t n, const char *key, size_t *len) {
  const char *p = skip_ws(s, s + n), *end = s + n, *found = NULL;
  size_t klen = strlen(key);
  if (p >= end || *p != '{') return NULL;
  p = skip_ws(p + 1, end);
  while (p < end && *p == '"') {
    int esc = 0;
    const char *k = p + 1;
    p = skip_string(p, end, &esc);
    if (esc) return NULL;
    int match = (size_t)(p - 1 - k) == klen && !memcmp(k, key, klen);
    p = skip_ws(p, end);
    if (p >= end || *p != ':') return NULL;
    p = skip_ws(p + 1, end);
    const char *v = p;
    p = skip_value(p, end);
    if (match) {
      found = v;
      *len = (size_t)(p - v);
    }
    p = skip_ws(p, end);
    if (p < end && *p == ',') p = skip_ws(p + 1, end);
  }
  return found;
}

/* Object members in a parsed value, nested ones included. */
static size_t count_members(json_object *o) {
  size_t n = 0;
  if (is_type(o, json_type_object)) {
    json_object_object_foreach(o, k, v) {
      (void)k;
      n += 1 + count_members(v);
    }
  } else if (is_type(o, json_type_array)) {
    size_t len = json_object_array_length(o);
    for (size_t i = 0; i < len; i++)
      n += count_members(json_object_array_get_idx(o, i));
  }
  return n;
}

/* Appends the JSON text t[0..n) without the whitespace between tokens;
 * returns the number of object members it holds (its ':' outside
 * strings). */
static size_t put_compact(oa_buf *b, const char *t, size_t n) {
  size_t members = 0, run = 0, i = 0;
  while (i < n) {
    char ch = t[i];
    if (ch == '"') {
      int esc = 0;
      i = (size_t)(skip_string(t + i, t + n, &esc) - t);
      continue;
    }
    if (ch == ':') members++;
    if (ch == ' ' || ch == '\t' || ch == '\r' || ch == '\n') {
      oa_buf_put(b, t + run, i - run);
      run = i + 1;
    }
    i++;
  }
  oa_buf_put(b, t + run, n - run);
  return members;
}

/* The context as compact JSON text into b: the request's own text of it
 * when ctx is the document's member as sent (no re-serialisation), else
 * json-c's. Duplicate keys (which the parsed document dropped) are caught
 * by counting members and fall back to json-c too. */
static void put_context_text(call *c, oa_buf *b, json_object *ctx, const char *key) {
  size_t len = 0, mark = b->len;
  const char *raw = ctx && ctx == member(c->doc, key)
                        ? raw_member(c->req->body, c->req->body_len, key, &len)
                        : NULL;
  if (raw) {
    if (put_compact(b, raw, len) == count_members(ctx)) return;
    b->len = mark;
  }
  const char *text = json_object_to_json_string_ext(ctx, JSON_C_TO_STRING_PLAIN);
  oa_buf_put(b, text, strlen(text));
}

/* The decision log's `c` (VW DSJSON): the context's fields with `_multi`,
 * one object per candidate in candidate order (inline features, or just
 * the id for catalog actions). A list context (Personalizer's) is kept
 * under "contextFeatures". Failing to attach only loses log detail. The
 * text is composed in a buffer kept by the API. */
static void attach_context(call *c, const char *event_id, json_object *ctx, int ctx_list,
                           const char *ctx_key, json_object *acts, const char **ids,
                           const size_t *lens, int32_t n) {
  oa_buf *b = &c->api->logbuf;
  b->len = 0;
  b->failed = 0;
  if (ctx && ctx_list) {
    put(b, "{\"contextFeatures\":");
    put_context_text(c, b, ctx, ctx_key);
    put(b, ",");
  } else if (ctx) {
    size_t mark = b->len;
    put_context_text(c, b, ctx, ctx_key); /* an object: "{...}" */
    if (b->len - mark > 2) {
      b->len--; /* without the closing brace */
      put(b, ",");
    } else {
      b->len = mark;
      put(b, "{");
    }
  } else {
    put(b, "{");
  }
  put(b, "\"_multi\":[");
  for (int32_t i = 0; i < n; i++) {
    if (i) put(b, ",");
    put(b, "{\"id\":");
    oa_json_put_str(b, ids[i], lens[i]);
    json_object *f = NULL;
    for (size_t k = 0; acts && k < json_object_array_length(acts) && !f; k++) {
      json_object *it = json_object_array_get_idx(acts, k), *idv = member(it, "id");
      if (idv && (size_t)json_object_get_string_len(idv) == lens[i] &&
          !memcmp(json_object_get_string(idv), ids[i], lens[i]))
        f = member(it, "features");
    }
    if (f) {
      put(b, ",\"features\":");
      put(b, json_object_to_json_string_ext(f, JSON_C_TO_STRING_PLAIN));
    }
    put(b, "}");
  }
  put(b, "]}");
  oa_buf_put(b, "", 1);
  oa_error err;
  if (!b->failed) oa_engine_attach(c->api->engine, event_id, (const char *)b->data, &err);
}

/* A rank request between its halves: what parsing, the app's rank hook
 * and the context leave for the decision and the response. */
typedef struct rank_state {
  int personalizer;
  oa_policy *p;
  const char *event_id; /* the client's, or NULL */
  int defer;            /* deferActivation */
  json_object *ex, *ctx;
  int ctx_list; /* ctx is a Personalizer list of objects */
  const char *ctx_key;
  oa_value *ctx_values;
  int retrieved; /* the candidates came from `retrieve`, as rreq asked */
  oa_retrieve_request rreq;
} rank_state;

/* The first half: the request's members, the app's rank hook, the context
 * values. 0, or -1 with the reply set. */
static int rank_prepare(call *c, int personalizer, rank_state *st) {
  oa_api *api = c->api;
  if (parse_object(c)) return -1;
  json_object *doc = c->doc;
  oa_policy *p = find_policy(c, personalizer ? NULL : member(doc, "policy"));
  if (!p) return -1;
  oa_features *fs = oa_policy_features(p);

  const char *event_id = NULL;
  json_object *ev = member(doc, "eventId");
  if (ev) {
    if (!is_type(ev, json_type_string)) {
      reply_error(c, 400, "BadRequest", "'eventId' must be a string");
      return -1;
    }
    event_id = json_object_get_string(ev);
    if (json_object_get_string_len(ev) >= OA_EVENT_ID_MAX) {
      reply_error(c, 400, "BadRequest", "'eventId' is longer than %d bytes",
                  OA_EVENT_ID_MAX - 1);
      return -1;
    }
  }
  int defer = 0;
  json_object *dv = member(doc, "deferActivation");
  if (dv) {
    if (!is_type(dv, json_type_boolean)) {
      reply_error(c, 400, "BadRequest", "'deferActivation' must be a boolean");
      return -1;
    }
    defer = json_object_get_boolean(dv);
  }
  json_object *ex = member(doc, "excludedActions");
  if (ex) {
    if (!is_type(ex, json_type_array)) {
      reply_error(c, 400, "BadRequest",
                  "'excludedActions' must be an array of action ids");
      return -1;
    }
    for (size_t i = 0; i < json_object_array_length(ex); i++)
      if (!is_type(json_object_array_get_idx(ex, i), json_type_string)) {
        reply_error(c, 400, "BadRequest",
                    "'excludedActions' must be an array of action ids");
        return -1;
      }
  }

  const char *ctx_key = personalizer ? "contextFeatures" : "context";
  json_object *ctx = member(doc, ctx_key);
  if (ctx && !is_type(ctx, personalizer ? json_type_array : json_type_object)) {
    reply_error(c, 400, "BadRequest", "'%s' must be %s", ctx_key,
                personalizer ? "an array of objects" : "an object");
    return -1;
  }
  int ctx_list = personalizer;
  json_object *hooked = NULL; /* the context the app's rank hook made */
  if (api->hooks && api->hooks->rank) {
    json_object *merged = NULL;
    if (ctx && personalizer) { /* the hook sees one object */
      merged = json_object_new_object();
      if (!merged) {
        reply_error(c, 503, "Unavailable", "out of memory");
        return -1;
      }
      for (size_t i = 0; i < json_object_array_length(ctx); i++) {
        json_object *part = json_object_array_get_idx(ctx, i);
        if (!is_type(part, json_type_object)) continue;
        json_object_object_foreach(part, k, v) {
          json_object_object_add(merged, k, json_object_get(v));
        }
      }
    }
    int rc = api->hooks->rank(api->hooks_ud, p, merged ? merged : ctx, &hooked, &c->err);
    if (merged) json_object_put(merged);
    if (rc) {
      if (hooked) json_object_put(hooked);
      reply_oa(c, &c->err);
      return -1;
    }
    if (hooked) {
      if (!is_type(hooked, json_type_object)) {
        json_object_put(hooked);
        reply_error(c, 500, "ScriptError", "the context hook must return a table");
        return -1;
      }
      ctx = hooked;
      ctx_list = 0;
    } else if (merged) {
      ctx_list = 1;
    }
  }
  oa_value *ctx_values;
  int vrc = side_values(c, fs, OA_SIDE_CONTEXT, ctx, ctx_list, &ctx_values, "context");
  /* The values borrow strings from the context document: keep it until the
   * request ends (released with the request's document). */
  if (hooked) c->extra = hooked;
  if (vrc) {
    reply_oa(c, &c->err);
    return -1;
  }

  *st = (rank_state){.personalizer = personalizer,
                     .p = p,
                     .event_id = event_id,
                     .defer = defer,
                     .ex = ex,
                     .ctx = ctx,
                     .ctx_list = ctx_list,
                     .ctx_key = ctx_key,
                     .ctx_values = ctx_values};
  return 0;
}

/* The second half: the decision among the candidates (the request's, or
 * the retrieved ones in cands) and the response. */
static void rank_decide(call *c, rank_state *st, json_object *cands, int32_t rfresh) {
  oa_api *api = c->api;
  json_object *doc = c->doc;
  int personalizer = st->personalizer;
  oa_policy *p = st->p;
  oa_features *fs = oa_policy_features(p);
  const char *event_id = st->event_id, *ctx_key = st->ctx_key;
  int defer = st->defer, ctx_list = st->ctx_list;
  json_object *ex = st->ex, *ctx = st->ctx;
  oa_value *ctx_values = st->ctx_values;
  json_object *acts = member(doc, "actions");
  if (!cands && !personalizer) cands = member(doc, "candidates");
  if ((acts != NULL) == (cands != NULL)) {
    reply_error(c, 400, "BadRequest",
                personalizer
                    ? "'actions' is required"
                    : "give exactly one of 'actions' (inline) or 'candidates' (ids)");
    return;
  }
  json_object *list = acts ? acts : cands;
  const char *list_key = acts ? "actions" : "candidates";
  if (!is_type(list, json_type_array)) {
    reply_error(c, 400, "BadRequest", "'%s' must be an array", list_key);
    return;
  }
  size_t total = json_object_array_length(list);
  if (total > OA_MAX_CANDIDATES) {
    reply_error(c, 400, "BadRequest", "at most %d candidates per request, got %zu",
                OA_MAX_CANDIDATES, total);
    return;
  }
  const char **ids = oa_json_arena_alloc(&api->arena, sizeof *ids * (total + 1));
  size_t *lens = oa_json_arena_alloc(&api->arena, sizeof *lens * (total + 1));
  const oa_value **avals =
      acts ? oa_json_arena_alloc(&api->arena, sizeof *avals * (total + 1)) : NULL;
  if (!ids || !lens || (acts && !avals)) {
    reply_error(c, 503, "Unavailable", "out of memory");
    return;
  }
  int32_t n = 0;
  for (size_t i = 0; i < total; i++) {
    json_object *it = json_object_array_get_idx(list, i), *idv = it;
    if (acts) {
      if (!is_type(it, json_type_object)) {
        reply_error(c, 400, "BadRequest", "actions[%zu] must be an object {id, features}",
                    i);
        return;
      }
      idv = member(it, "id");
    }
    if (!is_type(idv, json_type_string) || json_object_get_string_len(idv) == 0) {
      reply_error(c, 400, "BadRequest",
                  acts ? "actions[%zu].id must be a non-empty string"
                       : "candidates[%zu] must be a non-empty string",
                  i);
      return;
    }
    const char *id = json_object_get_string(idv);
    size_t len = (size_t)json_object_get_string_len(idv);
    if (excluded(ex, id, len)) continue;
    if (acts) {
      json_object *f = member(it, "features");
      if (f && !is_type(f, personalizer ? json_type_array : json_type_object)) {
        reply_error(c, 400, "BadRequest", "actions[%zu].features must be %s", i,
                    personalizer ? "an array of objects" : "an object");
        return;
      }
      oa_value *vals;
      char what[48];
      snprintf(what, sizeof what, "actions[%zu]", i);
      if (side_values(c, fs, OA_SIDE_ACTION, f, personalizer, &vals, what)) {
        reply_oa(c, &c->err);
        return;
      }
      avals[n] = vals;
    }
    ids[n] = id;
    lens[n] = len;
    n++;
  }
  if (n == 0) {
    reply_error(c, 400, "BadRequest",
                total ? "every candidate is excluded" : "'%s' is empty", list_key);
    return;
  }

  oa_decide_request rq = {.event_id = event_id,
                          .context = ctx_values,
                          .n = n,
                          .ids = ids,
                          .id_lens = lens,
                          .actions = avals,
                          .params = NULL,
                          .keep_event = 1,
                          .deferred = defer};
  oa_decision d;
  int rc = oa_policy_decide(p, &rq, &d, &c->err);
  if (rc) {
    /* The policy exists, so "not found" here is a candidate: a bad request. */
    if (rc == OA_ENOTFOUND)
      reply_error(c, 400, "BadRequest", "%s", c->err.message);
    else
      reply_oa(c, &c->err);
    return;
  }

  if (api->log_context)
    attach_context(c, d.event_id, ctx, ctx_list, ctx_key, acts, ids, lens, n);

  /* Ranking: the chosen action first, then by probability. */
  ranked *order = oa_json_arena_alloc(&api->arena, sizeof *order * (size_t)n);
  if (!order) {
    reply_error(c, 503, "Unavailable", "out of memory");
    return;
  }
  for (int32_t i = 0; i < n; i++)
    order[i] = (ranked){d.prob[i], i};
  order[d.chosen].prob = INFINITY;
  qsort(order, (size_t)n, sizeof *order, by_prob_desc);

  oa_buf *b = c->res->body;
  if (!personalizer) {
    put(b, "{\"eventId\":");
    put_str(b, d.event_id);
    put(b, ",\"chosen\":");
    oa_json_put_str(b, ids[d.chosen], lens[d.chosen]);
    put(b, ",\"ranking\":[");
  } else {
    put(b, "{\"ranking\":[");
  }
  for (int32_t k = 0; k < n; k++) {
    int32_t i = order[k].index;
    put(b, k ? ",{\"id\":" : "{\"id\":");
    oa_json_put_str(b, ids[i], lens[i]);
    put(b, ",\"probability\":");
    oa_json_put_num(b, d.prob[i]);
    put(b, "}");
  }
  if (!personalizer) {
    put(b, "],\"policy\":");
    put_str(b, oa_policy_name(p));
    put(b, ",\"appVersion\":");
    put_str(b, cur_version(api));
    if (st->retrieved) oa_api_retrieve_put(b, &st->rreq, n, rfresh);
    put(b, "}");
  } else {
    put(b, "],\"eventId\":");
    put_str(b, d.event_id);
    put(b, ",\"rewardActionId\":");
    oa_json_put_str(b, ids[d.chosen], lens[d.chosen]);
    put(b, "}");
  }
}

static void record(oa_api *api, enum route r, int status, double seconds);

/* ---- two-stage ranking (server/retrieve.c) ----
 * `retrieve` turns into the request's candidates: the shortlist becomes an
 * array added to the request's document (released with it) and the rank
 * goes on as for catalog ids. An exact scan of a large store runs on the
 * libuv thread pool while the HTTP response waits (oa_http_defer), so the
 * loop keeps serving; everything else about the request happens on the
 * loop thread, before and after. */

/* Starts the retrieval for `retr`; NULL with the reply set. */
static oa_retrieval_scan *retrieve_begin(call *c, rank_state *st, json_object *retr) {
  oa_api *api = c->api;
  if (member(c->doc, "actions") || member(c->doc, "candidates")) {
    reply_error(c, 400, "BadRequest", "give either 'retrieve' or candidates, not both");
    return NULL;
  }
  if (oa_api_retrieve_request(api->engine, retr, st->ctx, st->ex, &api->arena, &st->rreq,
                              &c->err)) {
    reply_oa(c, &c->err);
    return NULL;
  }
  st->retrieved = 1;
  /* The fresh picks are seeded by the event id when the client gives one
   * (reproducible), else by a counter. */
  static uint64_t counter;
  uint64_t seed =
      st->event_id ? oa_hash_bytes(st->event_id, strlen(st->event_id), 0x7e7) : ++counter;
  oa_retrieval_scan *scan = oa_engine_retrieve_begin(api->engine, st->p, &st->rreq,
                                                     st->ctx_values, seed, &c->err);
  if (!scan) reply_oa(c, &c->err);
  return scan;
}

/* Ends the scan; the shortlist as *cands. 0, or -1 with the reply set. */
static int retrieve_end(call *c, oa_retrieval_scan *scan, json_object **cands,
                        int32_t *fresh) {
  oa_shortlist sl;
  if (oa_engine_retrieve_end(c->api->engine, scan, &sl, &c->err)) {
    if (c->err.code == OA_ENOTFOUND)
      reply_error(c, 400, "BadRequest", "%s", c->err.message);
    else
      reply_oa(c, &c->err);
    return -1;
  }
  json_object *arr = json_object_new_array_ext(sl.n);
  for (int32_t i = 0; arr && i < sl.n; i++)
    json_object_array_add(arr, json_object_new_string_len(sl.ids[i], (int)sl.lens[i]));
  if (!arr || json_object_object_add(c->doc, "\x01retrieved", arr)) {
    json_object_put(arr);
    reply_error(c, 503, "Unavailable", "out of memory");
    return -1;
  }
  *cands = arr;
  *fresh = sl.fresh;
  return 0;
}

/* A rank whose exact scan runs on the thread pool. Scans go one batch at
 * a time: a scan is bound by memory bandwidth and already uses every core
 * (the retrieval worker pool), so two at once would only slow each other
 * down; the requests that arrive while a batch runs form the next batch,
 * and a batch reads the matrix once for all its queries.
 *
 * A queued request's scan begins (freezing the store) only when its batch
 * starts, and every scan of a batch ends before the next batch begins, so
 * the catalog changes held back during a batch reach the store between
 * batches even under a steady stream of exact requests. The request was
 * validated when it arrived (a scan begun and abandoned at once); its
 * retrieval is made again from its document at the batch's start, on the
 * catalog as it is then. */
typedef struct offloaded_rank {
  struct offloaded_rank *next; /* in the queue, then in the batch */
  oa_api *api;
  oa_http_deferred *http;
  oa_retrieval_scan *scan; /* from the batch's start */
  rank_state st;
  char policy[OA_MAX_NAME];
  json_object *doc, *extra; /* the request's documents, released at the end */
  uint64_t t0;
} offloaded_rank;

/* A call on an offloaded request, on the loop thread outside any handler
 * (so the arena is free; what it held for the request is made again). */
static call offloaded_call(offloaded_rank *o) {
  oa_api *api = o->api;
  call c = {.api = api,
            .req = oa_http_deferred_request(o->http),
            .res = oa_http_deferred_response(o->http),
            .doc = o->doc,
            .extra = o->extra,
            .t0 = o->t0};
  c.err.code = 0;
  c.err.message[0] = 0;
  oa_json_arena_reset(&api->arena);
  o->st.rreq.query = NULL; /* pointed into the arena */
  o->st.rreq.filter = NULL;
  return c;
}

/* The policy (looked up again by name: a reload may have replaced it) and
 * the context values. 0, or -1 with the reply set. */
static int offloaded_context(offloaded_rank *o, call *c) {
  rank_state *st = &o->st;
  st->p = oa_engine_policy(o->api->engine, o->policy);
  if (!st->p) {
    reply_error(c, 503, "Unavailable",
                "policy '%s' went away while waiting (an app reload); retry", o->policy);
    return -1;
  }
  if (side_values(c, oa_policy_features(st->p), OA_SIDE_CONTEXT, st->ctx, st->ctx_list,
                  &st->ctx_values, "context")) {
    reply_oa(c, &c->err);
    return -1;
  }
  return 0;
}

/* Answers the request (its reply is set) and frees it. */
static void offloaded_answer(offloaded_rank *o, call *c) {
  record(o->api, o->st.personalizer ? R_P_RANK : R_RANK, c->res->status,
         (double)(uv_hrtime() - o->t0) * 1e-9);
  json_object_put(o->doc);
  if (o->extra) json_object_put(o->extra);
  oa_http_deferred_finish(o->http);
  free(o);
}

/* At the batch's start: the scan begins. 1, or 0 when the request was
 * answered instead (the retrieval no longer fits the app or the catalog). */
static int offloaded_begin(offloaded_rank *o) {
  call c = offloaded_call(o);
  hooks_enter(o->api);
  int ok = !offloaded_context(o, &c) &&
           (o->scan = retrieve_begin(&c, &o->st, member(c.doc, "retrieve"))) != NULL;
  hooks_leave(o->api);
  if (!ok) offloaded_answer(o, &c);
  return ok;
}

/* At the batch's end: the shortlist, the decision and the answer. */
static void offloaded_finish(offloaded_rank *o) {
  call c = offloaded_call(o);
  hooks_enter(o->api);
  json_object *cands = NULL;
  int32_t fresh = 0;
  if (!retrieve_end(&c, o->scan, &cands, &fresh) && !offloaded_context(o, &c))
    rank_decide(&c, &o->st, cands, fresh);
  hooks_leave(o->api);
  offloaded_answer(o, &c);
}

/* The batch's scans in one pass over the matrix (retrieval.h). */
static void batch_scan(uv_work_t *w) {
  oa_api *api = w->data;
  int32_t n = 0;
  for (offloaded_rank *o = api->batch; o; o = o->next)
    n++;
  oa_retrieval_scan *one[8], **scans = n <= 8 ? one : malloc(sizeof *scans * (size_t)n);
  if (!scans) { /* one at a time */
    for (offloaded_rank *o = api->batch; o; o = o->next)
      oa_retrieval_scan_run(o->scan);
    return;
  }
  n = 0;
  for (offloaded_rank *o = api->batch; o; o = o->next)
    scans[n++] = o->scan;
  oa_retrieval_scan_run_many(scans, n);
  if (scans != one) free(scans);
}

static void start_batch(oa_api *api);

static void batch_done(uv_work_t *w, int status) {
  (void)status; /* never cancelled */
  oa_api *api = w->data;
  offloaded_rank *o = api->batch;
  /* Answering may hand pipelined requests to the handler, which queue:
   * the next batch starts only once every scan of this one has ended. */
  api->starting = 1;
  while (o) {
    offloaded_rank *next = o->next;
    offloaded_finish(o);
    o = next;
  }
  api->batch = NULL;
  api->starting = 0;
  start_batch(api);
}

/* Begins the queued requests' scans and sends them to the thread pool as
 * one batch, unless a batch is running (its end starts the next). */
static void start_batch(oa_api *api) {
  if (api->batch || api->starting) return;
  api->starting = 1;
  offloaded_rank **tail = &api->batch;
  while (api->queue) { /* answering a failed one may queue more */
    offloaded_rank *o = api->queue;
    api->queue = o->next;
    if (!api->queue) api->queue_tail = NULL;
    o->next = NULL;
    if (offloaded_begin(o)) {
      *tail = o;
      tail = &o->next;
    }
  }
  api->starting = 0;
  if (!api->batch) return;
  api->scan_work.data = api;
  if (uv_queue_work(api->loop, &api->scan_work, batch_scan, batch_done)) {
    batch_scan(&api->scan_work); /* no thread pool: here, late but answered */
    batch_done(&api->scan_work, 0);
  }
}

/* Queues the request for the next batch and defers the response. 0, or -1
 * when it cannot (the caller then scans here). */
static int offload(call *c, rank_state *st) {
  oa_api *api = c->api;
  const char *name = oa_policy_name(st->p);
  if (!api->loop || strlen(name) >= OA_MAX_NAME) return -1;
  offloaded_rank *o = calloc(1, sizeof *o);
  if (!o) return -1;
  o->api = api;
  o->st = *st;
  o->st.ctx_values = NULL; /* in the arena: made again */
  memcpy(o->policy, name, strlen(name) + 1);
  o->doc = c->doc;
  o->extra = c->extra;
  o->t0 = c->t0;
  o->http = oa_http_defer(c->res);
  c->doc = c->extra = NULL; /* the offloaded request owns them now */
  if (api->queue_tail)
    api->queue_tail->next = o;
  else
    api->queue = o;
  api->queue_tail = o;
  start_batch(api);
  return 0;
}

static void rank_body(call *c, int personalizer) {
  rank_state st;
  if (rank_prepare(c, personalizer, &st)) return;
  json_object *retr = personalizer ? NULL : member(c->doc, "retrieve");
  json_object *cands = NULL;
  int32_t fresh = 0;
  if (retr) {
    oa_retrieval_scan *scan = retrieve_begin(c, &st, retr);
    if (!scan) return;
    if (oa_retrieval_scan_heavy(scan) && c->api->loop) {
      /* Validated: the scan itself waits for its batch. */
      oa_engine_retrieve_end(c->api->engine, scan, NULL, NULL);
      if (!offload(c, &st)) return;
      if (!(scan = retrieve_begin(c, &st, retr))) return;
    }
    oa_retrieval_scan_run(scan);
    if (retrieve_end(c, scan, &cands, &fresh)) return;
  }
  rank_decide(c, &st, cands, fresh);
}

/* A rank request; the app's hooks and the engine calls (which may run Lua)
 * are bracketed by enter/leave. */
static void do_rank(call *c, int personalizer) {
  hooks_enter(c->api);
  rank_body(c, personalizer);
  hooks_leave(c->api);
}

/* ---- reward and activation ---- */

/* An unknown event is 404; one that already closed (rewarded under
 * close-on-first-reward, or expired) is 409. */
static void event_error(call *c, const char *event_id) {
  if (c->err.code == OA_ENOTFOUND)
    reply_error(c, 404, "NotFound", "no pending event '%s' (unknown or expired)",
                event_id);
  else if (c->err.code == OA_ESTATE)
    reply_error(c, 409, "Conflict", "event '%s' is already closed", event_id);
  else
    reply_oa(c, &c->err);
}

static void reward_body(call *c, const char *event_id, int personalizer) {
  oa_api *api = c->api;
  if (parse_object(c)) return;
  json_object *value = member(c->doc, "value");
  json_object *signals = personalizer ? NULL : member(c->doc, "signals");
  double r;
  if ((value != NULL) == (signals != NULL)) {
    reply_error(c, 400, "BadRequest",
                personalizer
                    ? "'value' is required"
                    : "give exactly one of 'value' (a number) or 'signals' (an object)");
    return;
  }
  if (value) {
    if (!is_number(value)) {
      reply_error(c, 400, "BadRequest", "'value' must be a number");
      return;
    }
    r = json_object_get_double(value);
    if (!isfinite(r)) {
      reply_error(c, 400, "BadRequest", "'value' must be a finite number");
      return;
    }
  } else {
    if (!is_type(signals, json_type_object)) {
      reply_error(c, 400, "BadRequest", "'signals' must be an object");
      return;
    }
    if (!api->reward) {
      reply_error(c, 400, "BadRequest",
                  "this app has no reward hook; send {\"value\": x}");
      return;
    }
    if (api->reward(api->reward_ud, signals, &r, &c->err)) {
      reply_oa(c, &c->err);
      return;
    }
    if (!isfinite(r)) {
      reply_error(c, 500, "ScriptError", "the reward hook returned a non-finite number");
      return;
    }
  }
  double kept = r;
  if (api->hooks && api->hooks->combine &&
      api->hooks->combine(api->hooks_ud, event_id, r, &kept, &c->err)) {
    reply_oa(c, &c->err);
    return;
  }
  if (signals && api->log_context) { /* logged with the event when it closes */
    oa_error ignored;
    oa_engine_add_signals(api->engine, event_id,
                          json_object_to_json_string_ext(signals, JSON_C_TO_STRING_PLAIN),
                          &ignored);
  }
  if (oa_engine_reward(api->engine, event_id, kept, &c->err)) {
    event_error(c, event_id);
    return;
  }
  if (personalizer) {
    reply_no_content(c);
    return;
  }
  oa_buf *b = c->res->body;
  put(b, "{\"eventId\":");
  put_str(b, event_id);
  put(b, ",\"reward\":");
  oa_json_put_num(b, r);
  put(b, ",\"appVersion\":");
  put_str(b, cur_version(api));
  put(b, "}");
}

static void do_reward(call *c, const char *event_id, int personalizer) {
  hooks_enter(c->api);
  reward_body(c, event_id, personalizer);
  hooks_leave(c->api);
}

static void do_activate(call *c, const char *event_id) {
  if (oa_engine_activate(c->api->engine, event_id, &c->err)) {
    event_error(c, event_id);
    return;
  }
  reply_no_content(c);
}

/* ---- catalog ---- */

static int put_action(call *c, json_object *features, const char *id, size_t idlen,
                      int64_t *slot) {
  oa_field *fields;
  int32_t nf;
  if (features && !is_type(features, json_type_object))
    return oa_error_set(&c->err, OA_EINVAL, "action '%s': 'features' must be an object",
                        id);
  if (oa_json_fields(features, &fields, &nf, &c->api->arena, "features", &c->err))
    return oa_error_prefix(&c->err, "action '%s'", id);
  *slot = oa_catalog_upsert(oa_engine_catalog(c->api->engine), id, idlen, fields, nf,
                            &c->err);
  return *slot < 0 ? (int)*slot : 0;
}

static void do_action_put(call *c, const char *id) {
  if (!admin_ok(c) || parse_object(c)) return;
  oa_catalog *cat = oa_engine_catalog(c->api->engine);
  size_t idlen = strlen(id);
  int created = oa_catalog_find(cat, id, idlen) < 0;
  int64_t slot;
  if (put_action(c, member(c->doc, "features"), id, idlen, &slot)) {
    reply_oa(c, &c->err);
    return;
  }
  c->res->status = created ? 201 : 200;
  oa_buf *b = c->res->body;
  put(b, "{\"id\":");
  put_str(b, id);
  put(b, created ? ",\"created\":true}" : ",\"created\":false}");
}

static void do_action_delete(call *c, const char *id) {
  if (!admin_ok(c)) return;
  if (oa_catalog_remove(oa_engine_catalog(c->api->engine), id, strlen(id))) {
    reply_error(c, 404, "NotFound", "unknown action '%s'", id);
    return;
  }
  reply_no_content(c);
}

/* POST /v1/actions:load {"path"}: a catalog file on the server's disk
 * (server/catalog_load.h), answered when the load ends. */
typedef struct actions_load {
  oa_api *api;
  oa_http_deferred *http;
  uint64_t t0;
} actions_load;

static void actions_loaded(void *ud, const oa_catalog_load_result *r) {
  actions_load *al = ud;
  oa_api *api = al->api;
  call c = {.api = api,
            .req = oa_http_deferred_request(al->http),
            .res = oa_http_deferred_response(al->http),
            .t0 = al->t0};
  api->loading = 0;
  if (!r->rc) {
    char body[256];
    snprintf(body, sizeof body, "{\"loaded\":%lld,\"actions\":%lld,\"seconds\":%.3f}",
             (long long)r->loaded,
             (long long)oa_catalog_count(oa_engine_catalog(api->engine)), r->seconds);
    put(c.res->body, body);
  } else if (r->checked && r->loaded > 0) {
    reply_error(&c, 500, "InternalError", "%s (%lld rows were loaded before it)",
                r->err.message, (long long)r->loaded);
  } else if (r->rc == OA_EIO || r->rc == OA_EFORMAT || r->rc == OA_EDIM ||
             r->rc == OA_ENUMERIC) {
    reply_error(&c, 400, "BadRequest", "%s", r->err.message); /* the file's fault */
  } else {
    reply_oa(&c, &r->err);
  }
  record(api, R_ACTIONS_LOAD, c.res->status, (double)(uv_hrtime() - al->t0) * 1e-9);
  oa_http_deferred_finish(al->http);
  free(al);
}

static void do_actions_load(call *c) {
  oa_api *api = c->api;
  if (!admin_ok(c) || parse_object(c)) return;
  json_object *path = member(c->doc, "path");
  if (!is_type(path, json_type_string) || !json_object_get_string_len(path)) {
    reply_error(c, 400, "BadRequest",
                "'path' must name a catalog file (CSV or a vector file) on the server");
    return;
  }
  if (!api->loop) {
    reply_error(c, 503, "Unavailable", "catalog loads need the server's event loop");
    return;
  }
  if (api->loading) {
    reply_error(c, 409, "Conflict", "a catalog load is already running");
    return;
  }
  actions_load *al = calloc(1, sizeof *al);
  if (!al) {
    reply_error(c, 503, "Unavailable", "out of memory");
    return;
  }
  al->api = api;
  al->t0 = c->t0;
  if (oa_catalog_load_begin(api->engine, api->loop, json_object_get_string(path),
                            actions_loaded, al, &c->err)) {
    free(al);
    reply_oa(c, &c->err);
    return;
  }
  api->loading = 1;
  al->http = oa_http_defer(c->res);
}

/* Validates every item before changing anything, so a bad batch changes
 * nothing. */
static void do_actions_batch(call *c) {
  if (!admin_ok(c) || parse_object(c)) return;
  json_object *up = member(c->doc, "upsert"), *rm = member(c->doc, "remove");
  if ((up && !is_type(up, json_type_array)) || (rm && !is_type(rm, json_type_array))) {
    reply_error(c, 400, "BadRequest", "'upsert' and 'remove' must be arrays");
    return;
  }
  size_t nu = up ? json_object_array_length(up) : 0,
         nr = rm ? json_object_array_length(rm) : 0;
  for (size_t i = 0; i < nu; i++) {
    json_object *it = json_object_array_get_idx(up, i), *idv = member(it, "id");
    json_object *f = member(it, "features");
    if (!is_type(it, json_type_object) || !is_type(idv, json_type_string) ||
        !json_object_get_string_len(idv) ||
        json_object_get_string_len(idv) > OA_CATALOG_MAX_ID) {
      reply_error(c, 400, "BadRequest",
                  "upsert[%zu] must be {id: a non-empty string of at most "
                  "%d bytes, features: {...}}",
                  i, OA_CATALOG_MAX_ID);
      return;
    }
    oa_field *fields;
    int32_t nf;
    if (f && !is_type(f, json_type_object)) {
      reply_error(c, 400, "BadRequest", "upsert[%zu].features must be an object", i);
      return;
    }
    if (oa_json_fields(f, &fields, &nf, &c->api->arena, "features", &c->err)) {
      oa_error_prefix(&c->err, "upsert[%zu]", i);
      reply_oa(c, &c->err);
      return;
    }
  }
  for (size_t i = 0; i < nr; i++)
    if (!is_type(json_object_array_get_idx(rm, i), json_type_string)) {
      reply_error(c, 400, "BadRequest", "remove[%zu] must be an action id", i);
      return;
    }
  oa_json_arena_reset(&c->api->arena);
  oa_catalog *cat = oa_engine_catalog(c->api->engine);
  size_t upserted = 0, removed = 0, missing = 0;
  for (size_t i = 0; i < nu; i++) {
    json_object *it = json_object_array_get_idx(up, i), *idv = member(it, "id");
    int64_t slot;
    if (put_action(c, member(it, "features"), json_object_get_string(idv),
                   (size_t)json_object_get_string_len(idv), &slot)) {
      reply_oa(c, &c->err); /* only out of memory can get here after validation */
      return;
    }
    upserted++;
  }
  for (size_t i = 0; i < nr; i++) {
    json_object *idv = json_object_array_get_idx(rm, i);
    if (oa_catalog_remove(cat, json_object_get_string(idv),
                          (size_t)json_object_get_string_len(idv)))
      missing++;
    else
      removed++;
  }
  oa_buf *b = c->res->body;
  put(b, "{\"upserted\":");
  oa_json_put_int(b, (int64_t)upserted);
  put(b, ",\"removed\":");
  oa_json_put_int(b, (int64_t)removed);
  put(b, ",\"notFound\":");
  oa_json_put_int(b, (int64_t)missing);
  put(b, ",\"actions\":");
  oa_json_put_int(b, oa_catalog_count(cat));
  put(b, "}");
}

/* ---- admin ---- */

static void do_admin_reload(call *c) {
  oa_api *api = c->api;
  if (!api->hooks || !api->hooks->reload) {
    reply_error(c, 404, "NotFound", "this server has no app to reload");
    return;
  }
  if (!api->admin_token && !api->admin_loopback) {
    reply_error(c, 403, "Forbidden",
                "reload needs an admin token when the server listens beyond loopback");
    return;
  }
  if (!admin_ok(c)) return;
  if (api->hooks->reload(api->hooks_ud, &c->err)) {
    reply_error(c, 422, "ReloadFailed", "%s", c->err.message);
    return;
  }
  oa_buf *b = c->res->body;
  put(b, "{\"reloaded\":true,\"appVersion\":");
  put_str(b, cur_version(api));
  put(b, ",\"policies\":");
  oa_json_put_int(b, oa_engine_policy_count(api->engine));
  put(b, "}");
}

/* ---- policies, health ---- */

static void put_policy(call *c, oa_policy *p) {
  oa_buf *b = c->res->body;
  oa_policy_stats st = oa_policy_get_stats(p);
  oa_explore_params ep = oa_policy_params(p);
  oa_model *m = oa_policy_model(p);
  put(b, "{\"name\":");
  put_str(b, oa_policy_name(p));
  put(b, ",\"kind\":");
  put_str(b, m && m->ops && m->ops->kind ? m->ops->kind : "unknown");
  put(b, ",\"explore\":");
  put_str(b, oa_explore_name(oa_policy_explore_kind(p)));
  put(b, ",\"dimensions\":");
  oa_json_put_int(b, oa_features_dim(oa_policy_features(p)));
  put(b, ",\"decisions\":");
  oa_json_put_int(b, (int64_t)st.decisions);
  put(b, ",\"rewards\":");
  oa_json_put_int(b, (int64_t)st.rewards);
  put(b, ",\"averageReward\":");
  if (st.rewards)
    oa_json_put_num(b, st.reward_sum / (double)st.rewards);
  else
    put(b, "null");
  put(b, ",\"parameters\":{\"epsilon\":");
  oa_json_put_num(b, ep.epsilon);
  put(b, ",\"temperature\":");
  oa_json_put_num(b, ep.temperature);
  put(b, ",\"alpha\":");
  oa_json_put_num(b, ep.alpha);
  put(b, ",\"gamma\":");
  oa_json_put_num(b, ep.gamma);
  put(b, ",\"draws\":");
  oa_json_put_int(b, ep.draws);
  put(b, "},\"appVersion\":");
  put_str(b, cur_version(c->api));
  put(b, "}");
}

static void do_policies(call *c) {
  oa_buf *b = c->res->body;
  put(b, "{\"policies\":[");
  int32_t n = oa_engine_policy_count(c->api->engine);
  for (int32_t i = 0; i < n; i++) {
    if (i) put(b, ",");
    put_policy(c, oa_engine_policy_at(c->api->engine, i));
  }
  put(b, "],\"appVersion\":");
  put_str(b, cur_version(c->api));
  put(b, "}");
}

static void do_policy(call *c, const char *name) {
  oa_policy *p = oa_engine_policy(c->api->engine, name);
  if (!p) {
    reply_error(c, 404, "NotFound", "unknown policy '%s'", name);
    return;
  }
  put_policy(c, p);
}

static void do_healthz(call *c) {
  oa_buf *b = c->res->body;
  put(b, "{\"status\":\"ok\",\"appVersion\":");
  put_str(b, cur_version(c->api));
  put(b, ",\"policies\":");
  oa_json_put_int(b, oa_engine_policy_count(c->api->engine));
  put(b, ",\"pendingEvents\":");
  oa_json_put_int(b, oa_engine_pending_events(c->api->engine));
  put(b, ",\"actions\":");
  oa_json_put_int(b, oa_catalog_count(oa_engine_catalog(c->api->engine)));
  put(b, "}");
}

/* ---- metrics ---- */

static void record(oa_api *api, enum route r, int status, double seconds) {
  route_metrics *m = &api->metrics[r];
  int k = 0;
  while (k < MAX_STATUSES && m->status[k] && m->status[k] != status)
    k++;
  if (k < MAX_STATUSES) {
    m->status[k] = status;
    m->by_status[k]++;
  }
  int bkt = 0;
  while (bkt < N_BUCKETS && seconds > bucket_le[bkt])
    bkt++;
  m->bucket[bkt]++;
  m->count++;
  m->sum += seconds;
}

static void metric_head(oa_buf *b, const char *name, const char *type, const char *help) {
  put(b, "# HELP ");
  put(b, name);
  put(b, " ");
  put(b, help);
  put(b, "\n# TYPE ");
  put(b, name);
  put(b, " ");
  put(b, type);
  put(b, "\n");
}

/* A Prometheus label value: backslash, quote and newline escaped. */
static void put_label(oa_buf *b, const char *s) {
  for (; *s; s++) {
    if (*s == '\\' || *s == '"') oa_buf_put(b, "\\", 1);
    if (*s == '\n')
      put(b, "\\n");
    else
      oa_buf_put(b, s, 1);
  }
}

static void put_double(oa_buf *b, double v) {
  oa_json_put_num(b, v);
}

static void do_metrics(call *c) {
  oa_api *api = c->api;
  oa_buf *b = c->res->body;
  c->res->content_type = "text/plain; version=0.0.4";
  metric_head(b, "onearm_http_requests_total", "counter",
              "HTTP requests by route and status.");
  for (int r = 0; r < R_COUNT; r++)
    for (int k = 0; k < MAX_STATUSES && api->metrics[r].status[k]; k++) {
      put(b, "onearm_http_requests_total{route=\"");
      put(b, route_names[r]);
      put(b, "\",status=\"");
      oa_json_put_int(b, api->metrics[r].status[k]);
      put(b, "\"} ");
      oa_json_put_int(b, (int64_t)api->metrics[r].by_status[k]);
      put(b, "\n");
    }
  metric_head(b, "onearm_http_request_duration_seconds", "histogram",
              "Time spent handling a request (parsed request to composed response).");
  for (int r = 0; r < R_COUNT; r++) {
    const route_metrics *m = &api->metrics[r];
    if (!m->count) continue;
    uint64_t cum = 0;
    for (int k = 0; k <= N_BUCKETS; k++) {
      cum += m->bucket[k];
      put(b, "onearm_http_request_duration_seconds_bucket{route=\"");
      put(b, route_names[r]);
      put(b, "\",le=\"");
      put(b, k < N_BUCKETS ? bucket_label[k] : "+Inf");
      put(b, "\"} ");
      oa_json_put_int(b, (int64_t)cum);
      put(b, "\n");
    }
    put(b, "onearm_http_request_duration_seconds_sum{route=\"");
    put(b, route_names[r]);
    put(b, "\"} ");
    put_double(b, m->sum);
    put(b, "\nonearm_http_request_duration_seconds_count{route=\"");
    put(b, route_names[r]);
    put(b, "\"} ");
    oa_json_put_int(b, (int64_t)m->count);
    put(b, "\n");
  }
  int32_t np = oa_engine_policy_count(api->engine);
  static const char *const pm[3][3] = {
      {"onearm_decisions_total", "counter", "Decisions made, by policy."},
      {"onearm_rewards_total", "counter", "Rewards learned from, by policy."},
      {"onearm_reward_sum", "gauge", "Sum of the rewards learned from, by policy."}};
  for (int k = 0; k < 3; k++) {
    metric_head(b, pm[k][0], pm[k][1], pm[k][2]);
    for (int32_t i = 0; i < np; i++) {
      oa_policy *p = oa_engine_policy_at(api->engine, i);
      oa_policy_stats st = oa_policy_get_stats(p);
      put(b, pm[k][0]);
      put(b, "{policy=\"");
      put_label(b, oa_policy_name(p));
      put(b, "\"} ");
      if (k == 0)
        oa_json_put_int(b, (int64_t)st.decisions);
      else if (k == 1)
        oa_json_put_int(b, (int64_t)st.rewards);
      else
        put_double(b, st.reward_sum);
      put(b, "\n");
    }
  }
  metric_head(b, "onearm_pending_events", "gauge", "Decisions waiting for a reward.");
  put(b, "onearm_pending_events ");
  oa_json_put_int(b, oa_engine_pending_events(api->engine));
  put(b, "\n");
  oa_event_stats es = oa_engine_event_stats(api->engine);
  static const char *const em[5][2] = {
      {"onearm_events_closed_total", "Events closed (learned from or not)."},
      {"onearm_events_defaulted_total", "Events closed with the default reward."},
      {"onearm_events_evicted_total", "Events closed early because the table was full."},
      {"onearm_events_unactivated_total", "Deferred events closed without activation."},
      {"onearm_events_failed_total", "Events whose model update failed."}};
  uint64_t ev[5] = {es.closed, es.defaulted, es.evicted, es.unactivated, es.failed};
  for (int k = 0; k < 5; k++) {
    metric_head(b, em[k][0], "counter", em[k][1]);
    put(b, em[k][0]);
    put(b, " ");
    oa_json_put_int(b, (int64_t)ev[k]);
    put(b, "\n");
  }
  metric_head(b, "onearm_oldest_pending_event_seconds", "gauge",
              "Age of the oldest event still waiting for rewards.");
  put(b, "onearm_oldest_pending_event_seconds ");
  put_double(b, es.oldest_age);
  put(b, "\n");
  metric_head(b, "onearm_catalog_actions", "gauge", "Actions in the catalog.");
  put(b, "onearm_catalog_actions ");
  oa_json_put_int(b, oa_catalog_count(oa_engine_catalog(api->engine)));
  put(b, "\n");
  if (api->hooks && api->hooks->metrics) api->hooks->metrics(api->hooks_ud, b);
  if (api->http) {
    oa_http_stats st = oa_http_server_stats(api->http);
    static const char *const hm[5][3] = {
        {"onearm_http_connections_total", "counter", "Connections accepted."},
        {"onearm_http_connections_rejected_total", "counter",
         "Connections refused because of the connection limit."},
        {"onearm_http_protocol_errors_total", "counter",
         "Malformed or oversized requests answered by the HTTP layer."},
        {"onearm_http_idle_timeouts_total", "counter",
         "Connections closed for idleness."},
        {"onearm_http_connections_active", "gauge", "Open connections."}};
    uint64_t v[5] = {st.accepted, st.rejected, st.protocol_errors, st.timeouts,
                     (uint64_t)st.active};
    for (int k = 0; k < 5; k++) {
      metric_head(b, hm[k][0], hm[k][1], hm[k][2]);
      put(b, hm[k][0]);
      put(b, " ");
      oa_json_put_int(b, (int64_t)v[k]);
      put(b, "\n");
    }
  }
  oa_engine_retrieval_metrics(api->engine, b);
}

/* ---- routing ---- */

static int path_is(const oa_http_request *r, const char *p) {
  size_t n = strlen(p);
  return r->path_len == n && !memcmp(r->path, p, n);
}

/* When the path is prefix + one segment + suffix, decode that segment
 * into out. Returns 1 on a match, 0 when the path has another shape, -1
 * when it matches but the segment is malformed or too long. */
static int path_segment(const oa_http_request *r, const char *prefix, const char *suffix,
                        char *out, size_t cap) {
  size_t pl = strlen(prefix), sl = strlen(suffix);
  if (r->path_len <= pl + sl || memcmp(r->path, prefix, pl) ||
      memcmp(r->path + r->path_len - sl, suffix, sl))
    return 0;
  const char *seg = r->path + pl;
  size_t len = r->path_len - pl - sl;
  if (memchr(seg, '/', len)) return 0;
  return oa_http_unescape(seg, len, out, cap) > 0 ? 1 : -1;
}

static int method_ok(call *c, int method) {
  if (c->req->method == method) return 1;
  reply_error(c, 405, "MethodNotAllowed", "%s %.*s is not allowed; use %s",
              c->req->method_name, (int)c->req->path_len, c->req->path,
              method == 0   ? "DELETE"
              : method == 1 ? "GET"
              : method == 3 ? "POST"
                            : "PUT");
  return 0;
}

/* http_parser's method numbers (stable across its versions). */
enum { M_DELETE = 0, M_GET = 1, M_POST = 3, M_PUT = 4 };

static enum route dispatch(call *c) {
  const oa_http_request *r = c->req;
  char id[MAX_PATH_ID];
  int m;
  if (path_is(r, "/v1/rank")) {
    if (method_ok(c, M_POST)) do_rank(c, 0);
    return R_RANK;
  }
  if (path_is(r, "/personalizer/v1.0/rank")) {
    if (method_ok(c, M_POST)) do_rank(c, 1);
    return R_P_RANK;
  }
  static const struct {
    const char *prefix, *suffix;
    enum route route;
  } ev_routes[] = {{"/v1/events/", "/reward", R_REWARD},
                   {"/v1/events/", "/activate", R_ACTIVATE},
                   {"/personalizer/v1.0/events/", "/reward", R_P_REWARD},
                   {"/personalizer/v1.0/events/", "/activate", R_P_ACTIVATE}};
  for (size_t k = 0; k < sizeof ev_routes / sizeof ev_routes[0]; k++) {
    m = path_segment(r, ev_routes[k].prefix, ev_routes[k].suffix, id, sizeof id);
    if (!m) continue;
    enum route rt = ev_routes[k].route;
    if (m < 0)
      reply_error(c, 400, "BadRequest", "malformed event id in the path");
    else if (!method_ok(c, M_POST)) {
    } else if (rt == R_REWARD || rt == R_P_REWARD)
      do_reward(c, id, rt == R_P_REWARD);
    else
      do_activate(c, id);
    return rt;
  }
  if (path_is(r, "/v1/actions:load")) {
    if (method_ok(c, M_POST)) do_actions_load(c);
    return R_ACTIONS_LOAD;
  }
  if (path_is(r, "/v1/actions:batch")) {
    if (method_ok(c, M_POST)) do_actions_batch(c);
    return R_ACTIONS_BATCH;
  }
  if ((m = path_segment(r, "/v1/actions/", "", id, sizeof id))) {
    enum route rt = r->method == M_DELETE ? R_ACTION_DELETE : R_ACTION_PUT;
    if (m < 0)
      reply_error(c, 400, "BadRequest", "malformed action id in the path");
    else if (r->method == M_DELETE)
      do_action_delete(c, id);
    else if (method_ok(c, M_PUT))
      do_action_put(c, id);
    return rt;
  }
  if (path_is(r, "/v1/policies")) {
    if (method_ok(c, M_GET)) do_policies(c);
    return R_POLICIES;
  }
  if ((m = path_segment(r, "/v1/policies/", "", id, sizeof id))) {
    if (m < 0)
      reply_error(c, 400, "BadRequest", "malformed policy name in the path");
    else if (method_ok(c, M_GET))
      do_policy(c, id);
    return R_POLICY;
  }
  if (path_is(r, "/v1/admin/reload")) {
    if (method_ok(c, M_POST)) do_admin_reload(c);
    return R_ADMIN_RELOAD;
  }
  if (path_is(r, "/healthz")) {
    if (method_ok(c, M_GET)) do_healthz(c);
    return R_HEALTHZ;
  }
  if (path_is(r, "/metrics")) {
    if (method_ok(c, M_GET)) do_metrics(c);
    return R_METRICS;
  }
  reply_error(c, 404, "NotFound", "no route %s %.*s", r->method_name, (int)r->path_len,
              r->path);
  return R_OTHER;
}

void oa_api_handle(void *ud, const oa_http_request *req, oa_http_response *res) {
  oa_api *api = ud;
  uint64_t t0 = uv_hrtime();
  call c = {.api = api, .req = req, .res = res, .doc = NULL, .extra = NULL, .t0 = t0};
  c.err.code = 0;
  c.err.message[0] = 0;
  oa_json_arena_reset(&api->arena);
  enum route r = dispatch(&c);
  if (c.doc) json_object_put(c.doc);
  if (c.extra) json_object_put(c.extra);
  if (!res->deferred_) /* else recorded when it is answered */
    record(api, r, res->status, (double)(uv_hrtime() - t0) * 1e-9);
}
