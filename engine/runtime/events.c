/* Pending events: every decision waits here for its rewards, then closes
 * exactly once, updating its policy's model with the combined reward (or
 * the default one). Events sit in a ring in arrival order with an
 * id -> position index, so the oldest is found in O(1) (for expiry and
 * eviction) and any event in O(1) when its reward comes. Recently closed
 * ids are remembered in a second ring so a late or duplicate reward is told
 * apart from an unknown id (409 versus 404 over HTTP). */
#include "runtime/events.h"

#include <math.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/error.h"
#include "runtime/policy_internal.h"

/* An event's fixed-size data (its id, chosen row, candidate rows and
 * logged candidate ids) lives in one block taken from a pool, and its
 * attached context text in another: a decision costs no malloc once the
 * pools are warm, and closing one costs no free. */
typedef struct oa__event {
  char *id; /* in mem; NULL = empty ring slot */
  oa_policy *policy;
  double *x; /* chosen row (d) */
  int32_t arm;
  double prob;
  double opened, deadline;
  int active;
  int32_t rewards;
  double acc;
  /* whole candidate set, for policy-gradient learners */
  int32_t n_cand, chosen;
  double *cand_x, *cand_prob;
  int32_t *cand_arm;
  /* candidate ids and probabilities, kept only for the close hook */
  int32_t n_logged;
  char **logged_ids;
  double *logged_probs;
  char *context_json; /* for the decision log: a pooled text (texts), or NULL */
  char *signals_json; /* for the decision log: malloc'd, or NULL */
  void *mem;          /* the pooled block (blocks) the pointers above point into */
} oa__event;

/* A free list of buffers that remember their capacity. Buffers come back
 * when events close and go out again to the next decisions; past
 * POOL_KEEP_BYTES of idle buffers the surplus is freed, so a burst of
 * closes (expiry) does not pin memory. */
#define POOL_KEEP_BYTES ((size_t)16 << 20)

typedef struct pool_buf {
  struct pool_buf *next;
  size_t cap;
  max_align_t data[];
} pool_buf;

typedef struct pool {
  pool_buf *free;
  size_t bytes; /* capacity of the buffers on the free list */
} pool;

static pool_buf *buf_of(void *data) {
  return (pool_buf *)((char *)data - offsetof(pool_buf, data));
}

/* A buffer of at least n bytes (uninitialised), or NULL. */
static void *pool_get(pool *p, size_t n) {
  pool_buf *b = p->free;
  if (b) {
    p->free = b->next;
    p->bytes -= b->cap;
    if (b->cap >= n) return b->data;
    free(b);
  }
  size_t cap = n < 256 ? 256 : n;
  b = malloc(sizeof *b + cap);
  if (!b) return NULL;
  b->cap = cap;
  return b->data;
}

static void pool_put(pool *p, void *data) {
  if (!data) return;
  pool_buf *b = buf_of(data);
  if (p->bytes + b->cap > POOL_KEEP_BYTES) {
    free(b);
    return;
  }
  b->next = p->free;
  p->free = b;
  p->bytes += b->cap;
}

static void pool_drain(pool *p) {
  while (p->free) {
    pool_buf *b = p->free;
    p->free = b->next;
    free(b);
  }
  p->bytes = 0;
}

struct oa__events {
  oa_engine *engine;
  oa__event *ring;
  int32_t cap, head, span, live;     /* live events are in [head, head + span) */
  oa_strmap index;                   /* id -> ring position */
  char **closed;                     /* ring of recently closed ids */
  int32_t closed_next, closed_count; /* closed_count: slots ever filled */
  oa_strmap closed_index;
  oa_event_config cfg;
  double (*clock)(void *);
  void *clock_ud;
  oa_close_hook hook;
  void *hook_ud;
  oa_event_stats stats;
  pool blocks, texts; /* event blocks, attached context texts */
};

static double monotonic_seconds(void *ud) {
  (void)ud;
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

oa_event_config oa_event_config_defaults(void) {
  return (oa_event_config){0, 1, OA_COMBINE_SUM, 0};
}

static const char *const COMBINE_NAMES[] = {"sum", "first", "last", "max", "mean"};

int oa_combine_from_name(const char *name) {
  for (int i = 0; i < 5; i++)
    if (!strcmp(name, COMBINE_NAMES[i])) return i;
  return -1;
}

const char *oa_combine_name(oa_combine c) {
  return c >= 0 && c <= OA_COMBINE_MEAN ? COMBINE_NAMES[c] : "?";
}

static void event_clear(oa__events *t, oa__event *ev) {
  pool_put(&t->blocks, ev->mem);
  pool_put(&t->texts, ev->context_json);
  free(ev->signals_json);
  memset(ev, 0, sizeof *ev);
}

static size_t round8(size_t n) {
  return (n + 7) & ~(size_t)7;
}

/* Takes ev's block for a row of dim, n_cand candidate rows, n_logged
 * logged ids and `chars` bytes of strings (the event id and the logged
 * ids, NULs included) and points ev's arrays into it. Returns where the
 * strings go, or NULL when out of memory (ev unchanged). */
static char *event_layout(oa__events *t, oa__event *ev, int32_t dim, int32_t n_cand,
                          int32_t n_logged, size_t chars) {
  size_t nd = (size_t)dim * (size_t)(1 + n_cand) + (size_t)n_cand + (size_t)n_logged;
  size_t bytes = sizeof(double) * nd + round8(sizeof(int32_t) * (size_t)n_cand) +
                 sizeof(char *) * (size_t)n_logged + chars;
  char *m = pool_get(&t->blocks, bytes);
  if (!m) return NULL;
  ev->mem = m;
  ev->x = (double *)m;
  m += sizeof(double) * (size_t)dim;
  ev->cand_x = n_cand ? (double *)m : NULL;
  m += sizeof(double) * (size_t)dim * (size_t)n_cand;
  ev->cand_prob = n_cand ? (double *)m : NULL;
  m += sizeof(double) * (size_t)n_cand;
  ev->logged_probs = n_logged ? (double *)m : NULL;
  m += sizeof(double) * (size_t)n_logged;
  ev->cand_arm = n_cand ? (int32_t *)m : NULL;
  m += round8(sizeof(int32_t) * (size_t)n_cand);
  ev->logged_ids = n_logged ? (char **)m : NULL;
  m += sizeof(char *) * (size_t)n_logged;
  ev->n_cand = n_cand;
  ev->n_logged = n_logged;
  return m;
}

/* Copies text into a pooled buffer for ev's context (NULL: none). */
static int event_set_context(oa__events *t, oa__event *ev, const char *text, size_t len) {
  char *copy = NULL;
  if (text) {
    if (!(copy = pool_get(&t->texts, len + 1))) return -1;
    memcpy(copy, text, len);
    copy[len] = 0;
  }
  pool_put(&t->texts, ev->context_json);
  ev->context_json = copy;
  return 0;
}

static void forget_closed(oa__events *t) {
  for (int32_t i = 0; i < t->closed_count; i++)
    free(t->closed ? t->closed[i] : NULL);
  free(t->closed);
  t->closed = NULL;
  oa_strmap_free(&t->closed_index);
}

oa__events *oa__events_new(oa_engine *e, oa_error *err) {
  oa__events *t = calloc(1, sizeof *t);
  if (!t) {
    oa_error_set(err, OA_ENOMEM, "out of memory");
    return NULL;
  }
  t->engine = e;
  t->cfg = oa_event_config_defaults();
  t->clock = monotonic_seconds;
  oa_strmap_init(&t->index);
  oa_strmap_init(&t->closed_index);
  if (oa__events_set_capacity(t, 100000, err)) {
    oa__events_free(t);
    return NULL;
  }
  return t;
}

void oa__events_free(oa__events *t) {
  if (!t) return;
  for (int32_t k = 0; k < t->span; k++) /* only the span can hold events */
    event_clear(t, &t->ring[(t->head + k) % t->cap]);
  free(t->ring);
  oa_strmap_free(&t->index);
  forget_closed(t);
  pool_drain(&t->blocks);
  pool_drain(&t->texts);
  free(t);
}

int oa__events_set_capacity(oa__events *t, int32_t capacity, oa_error *err) {
  if (capacity < 1 || capacity > (1 << 24))
    return oa_error_set(err, OA_EINVAL, "event capacity must be 1 to %d", 1 << 24);
  if (t->live > 0)
    return oa_error_set(err, OA_ESTATE,
                        "the event capacity can change only with no pending events");
  oa__event *ring = calloc((size_t)capacity, sizeof *ring);
  char **closed = calloc((size_t)capacity, sizeof *closed);
  if (!ring || !closed) {
    free(ring);
    free(closed);
    return oa_error_set(err, OA_ENOMEM, "out of memory for %d events", capacity);
  }
  forget_closed(t);
  free(t->ring);
  t->ring = ring;
  t->closed = closed;
  t->closed_next = t->closed_count = 0;
  t->cap = capacity;
  t->head = t->span = 0;
  return 0;
}

int oa__events_pending(const oa__events *t, const char *id, size_t len) {
  return oa_strmap_get(&t->index, id, len, NULL);
}

static void remember_closed(oa__events *t, const char *id) {
  char **slot = &t->closed[t->closed_next];
  size_t len = strlen(id);
  if (*slot) {
    size_t old = strlen(*slot);
    oa_strmap_del(&t->closed_index, *slot, old);
    if (old < len) { /* ids are mostly of one length: the buffer is reused */
      free(*slot);
      *slot = NULL;
    }
  }
  if (!*slot) *slot = malloc(len + 1);
  if (*slot) memcpy(*slot, id, len + 1);
  if (*slot && oa_strmap_put(&t->closed_index, *slot, len, 1)) {
    free(*slot);
    *slot = NULL;
  }
  t->closed_next = (t->closed_next + 1) % t->cap;
  if (t->closed_count < t->cap) t->closed_count++;
}

/* Advance head over empty slots so span covers only what is still needed. */
static void trim_head(oa__events *t) {
  while (t->span > 0 && !t->ring[t->head].id) {
    t->head = (t->head + 1) % t->cap;
    t->span--;
  }
}

static void remove_at(oa__events *t, int32_t pos, int remember) {
  oa__event *ev = &t->ring[pos];
  if (!ev->id) return;
  oa_strmap_del(&t->index, ev->id, strlen(ev->id));
  if (remember) remember_closed(t, ev->id);
  event_clear(t, ev);
  t->live--;
  trim_head(t);
}

static double combined_reward(const oa__events *t, const oa__event *ev, int *defaulted) {
  *defaulted = ev->rewards == 0;
  if (ev->rewards == 0) return t->cfg.default_reward;
  return t->cfg.combine == OA_COMBINE_MEAN ? ev->acc / ev->rewards : ev->acc;
}

/* Close the event at pos: learn (when active), tell the hook, remember the
 * id. The model learns `exact` when given (oa_engine_learn's one reward),
 * else the combined reward or the default. With `strict`, a refused update
 * keeps the event pending and returns the error; otherwise (expiry,
 * eviction) the event closes anyway and the failure is counted. */
static int close_at(oa__events *t, int32_t pos, int strict, const double *exact,
                    oa_error *err) {
  oa__event *ev = &t->ring[pos];
  int defaulted = 0;
  double reward = exact ? *exact : combined_reward(t, ev, &defaulted);
  int32_t rewards = ev->rewards + (exact != NULL);
  int learned = 0;
  if (ev->active) {
    oa_example ex = {.x = ev->x,
                     .arm = ev->arm,
                     .reward = reward,
                     .prob = ev->prob,
                     .n_cand = ev->n_cand,
                     .cand_x = ev->cand_x,
                     .cand_arm = ev->cand_arm,
                     .cand_prob = ev->cand_prob,
                     .chosen = ev->chosen};
    oa_error local;
    int rc = oa__policy_update(ev->policy, &ex, strict ? err : &local);
    if (rc && strict) return rc;
    if (rc)
      t->stats.failed++;
    else
      learned = 1;
  } else {
    t->stats.unactivated++;
  }
  t->stats.closed++;
  if (defaulted) t->stats.defaulted++;
  if (t->hook) {
    oa_closed_event c = {ev->id,
                         oa_policy_name(ev->policy),
                         ev->n_logged,
                         ev->chosen,
                         (const char *const *)ev->logged_ids,
                         ev->logged_probs,
                         reward,
                         rewards,
                         learned,
                         defaulted,
                         ev->active,
                         ev->opened,
                         t->clock(t->clock_ud),
                         ev->context_json,
                         ev->signals_json};
    t->hook(t->hook_ud, &c);
  }
  remove_at(t, pos, 1);
  return 0;
}

static size_t req_id_len(const oa_decide_request *req, int32_t i) {
  return req->id_lens ? req->id_lens[i] : strlen(req->ids[i]);
}

int oa__events_keep(oa__events *t, oa_policy *p, const oa_decide_request *req,
                    const oa_decision *d, const oa_batch *batch, oa_error *err) {
  int32_t dim = batch->d ? batch->d : 1;
  oa__event ev = {0};
  size_t idlen = strlen(d->event_id), chars = idlen + 1;
  int32_t n_cand = p->model->ops->needs_candidates ? d->n : 0;
  int32_t n_logged = t->hook ? d->n : 0;
  for (int32_t i = 0; i < n_logged; i++)
    chars += req_id_len(req, i) + 1;
  char *s = event_layout(t, &ev, dim, n_cand, n_logged, chars);
  if (!s) return oa_error_set(err, OA_ENOMEM, "out of memory for a pending event");
  ev.id = s;
  memcpy(s, d->event_id, idlen + 1);
  s += idlen + 1;
  for (int32_t i = 0; i < n_logged; i++) {
    size_t len = req_id_len(req, i);
    ev.logged_ids[i] = s;
    memcpy(s, req->ids[i], len);
    s[len] = 0;
    s += len + 1;
    ev.logged_probs[i] = d->prob[i];
  }
  memcpy(ev.x, batch->x + (size_t)d->chosen * (size_t)batch->ldx,
         sizeof(double) * (size_t)batch->d);
  ev.policy = p;
  ev.arm = batch->arm ? batch->arm[d->chosen] : -1;
  ev.prob = d->prob[d->chosen];
  ev.chosen = d->chosen;
  ev.active = !req->deferred;
  ev.opened = t->clock(t->clock_ud);
  ev.deadline = t->cfg.reward_wait > 0 ? ev.opened + t->cfg.reward_wait : INFINITY;
  for (int32_t i = 0; i < ev.n_cand; i++) {
    memcpy(ev.cand_x + (size_t)i * dim, batch->x + (size_t)i * (size_t)batch->ldx,
           sizeof(double) * (size_t)batch->d);
    ev.cand_prob[i] = d->prob[i];
    ev.cand_arm[i] = batch->arm ? batch->arm[i] : -1;
  }
  if (t->span == t->cap) { /* full: close the oldest early, as on expiry */
    t->stats.evicted++;
    close_at(t, t->head, 0, NULL, NULL);
  }
  int32_t pos = (t->head + t->span) % t->cap;
  if (oa_strmap_put(&t->index, ev.id, idlen, pos)) {
    event_clear(t, &ev);
    return oa_error_set(err, OA_ENOMEM, "out of memory for a pending event");
  }
  t->ring[pos] = ev;
  t->span++;
  t->live++;
  return 0;
}

void oa__events_drop_policy(oa__events *t, oa_policy *p) {
  for (int32_t i = 0; i < t->cap; i++)
    if (t->ring[i].id && t->ring[i].policy == p) remove_at(t, i, 1);
}

/* The ring position of a pending event, or an error telling unknown ids
 * from ids that already closed. */
static int find(oa__events *t, const char *id, int64_t *pos, oa_error *err) {
  if (!id || !id[0]) return oa_error_set(err, OA_EINVAL, "an event id is required");
  size_t len = strlen(id);
  if (oa_strmap_get(&t->index, id, len, pos)) return 0;
  if (oa_strmap_get(&t->closed_index, id, len, NULL))
    return oa_error_set(err, OA_ESTATE, "event '%s' is already closed", id);
  return oa_error_set(err, OA_ENOTFOUND, "no pending event '%s'", id);
}

static oa__events *events(oa_engine *e) {
  return oa__engine_events(e);
}

int oa_engine_reward(oa_engine *e, const char *event_id, double value, oa_error *err) {
  oa__events *t = events(e);
  int64_t pos;
  int rc = find(t, event_id, &pos, err);
  if (rc) return rc;
  if (!isfinite(value))
    return oa_error_set(err, OA_ENUMERIC, "reward is not a finite number");
  oa__event *ev = &t->ring[pos];
  switch (t->cfg.combine) {
  case OA_COMBINE_SUM:
  case OA_COMBINE_MEAN:
    ev->acc += value;
    break;
  case OA_COMBINE_FIRST:
    if (ev->rewards == 0) ev->acc = value;
    break;
  case OA_COMBINE_LAST:
    ev->acc = value;
    break;
  case OA_COMBINE_MAX:
    if (ev->rewards == 0 || value > ev->acc) ev->acc = value;
    break;
  }
  ev->rewards++;
  if (t->cfg.close_on_reward) {
    rc = close_at(t, (int32_t)pos, 1, NULL, err);
    if (rc) { /* the model refused it: take the observation back */
      ev->rewards--;
      if (ev->rewards == 0) ev->acc = 0;
      return rc;
    }
  }
  return 0;
}

int oa_engine_attach(oa_engine *e, const char *event_id, const char *context_json,
                     oa_error *err) {
  oa__events *t = events(e);
  int64_t pos;
  int rc = find(t, event_id, &pos, err);
  if (rc) return rc;
  if (event_set_context(t, &t->ring[pos], context_json,
                        context_json ? strlen(context_json) : 0))
    return oa_error_set(err, OA_ENOMEM, "out of memory");
  return 0;
}

int oa_engine_add_signals(oa_engine *e, const char *event_id, const char *signals_json,
                          oa_error *err) {
  oa__events *t = events(e);
  int64_t pos;
  int rc = find(t, event_id, &pos, err);
  if (rc) return rc;
  oa__event *ev = &t->ring[pos];
  size_t old = ev->signals_json ? strlen(ev->signals_json) : 0,
         add = strlen(signals_json);
  /* Kept as the text of a JSON array: "[" item ("," item)* "]". */
  char *s = realloc(ev->signals_json, old + add + 3);
  if (!s) return oa_error_set(err, OA_ENOMEM, "out of memory");
  if (old == 0) {
    s[0] = '[';
    memcpy(s + 1, signals_json, add);
    memcpy(s + 1 + add, "]", 2);
  } else {
    s[old - 1] = ',';
    memcpy(s + old, signals_json, add);
    memcpy(s + old + add, "]", 2);
  }
  ev->signals_json = s;
  return 0;
}

int oa_engine_activate(oa_engine *e, const char *event_id, oa_error *err) {
  oa__events *t = events(e);
  int64_t pos;
  int rc = find(t, event_id, &pos, err);
  if (rc) return rc;
  t->ring[pos].active = 1;
  return 0;
}

int oa_engine_close_event(oa_engine *e, const char *event_id, oa_error *err) {
  oa__events *t = events(e);
  int64_t pos;
  int rc = find(t, event_id, &pos, err);
  if (rc) return rc;
  return close_at(t, (int32_t)pos, 1, NULL, err);
}

int oa_engine_learn(oa_engine *e, const char *event_id, double reward, oa_error *err) {
  oa__events *t = events(e);
  int64_t pos;
  int rc = find(t, event_id, &pos, err);
  if (rc) return rc;
  if (!isfinite(reward))
    return oa_error_set(err, OA_ENUMERIC, "reward is not a finite number");
  return close_at(t, (int32_t)pos, 1, &reward, err);
}

int32_t oa_engine_expire(oa_engine *e) {
  return oa_engine_expire_some(e, INT32_MAX);
}

int32_t oa_engine_expire_some(oa_engine *e, int32_t max) {
  oa__events *t = events(e);
  double now = t->clock(t->clock_ud);
  int32_t closed = 0;
  /* Deadlines grow in arrival order while reward_wait is constant, so the
   * scan stops at the first event not yet due. */
  while (closed < max && t->span > 0 && t->ring[t->head].deadline <= now) {
    close_at(t, t->head, 0, NULL, NULL);
    closed++;
  }
  return closed;
}

int oa_engine_set_event_capacity(oa_engine *e, int32_t capacity, oa_error *err) {
  return oa__events_set_capacity(events(e), capacity, err);
}

int32_t oa_engine_pending_events(const oa_engine *e) {
  return oa__engine_events((oa_engine *)e)->live;
}

uint64_t oa_engine_dropped_events(const oa_engine *e) {
  return oa__engine_events((oa_engine *)e)->stats.evicted;
}

int oa_engine_set_event_config(oa_engine *e, const oa_event_config *cfg, oa_error *err) {
  if (!(cfg->reward_wait >= 0) || !isfinite(cfg->reward_wait))
    return oa_error_set(err, OA_EINVAL, "reward_wait must be a finite number >= 0");
  if (cfg->combine < OA_COMBINE_SUM || cfg->combine > OA_COMBINE_MEAN)
    return oa_error_set(err, OA_EINVAL, "unknown reward combination %d",
                        (int)cfg->combine);
  if (!isfinite(cfg->default_reward))
    return oa_error_set(err, OA_ENUMERIC, "default_reward must be finite");
  events(e)->cfg = *cfg;
  return 0;
}

oa_event_config oa_engine_event_config(const oa_engine *e) {
  return oa__engine_events((oa_engine *)e)->cfg;
}

void oa_engine_set_clock(oa_engine *e, double (*now)(void *ud), void *ud) {
  oa__events *t = events(e);
  t->clock = now ? now : monotonic_seconds;
  t->clock_ud = now ? ud : NULL;
}

double oa_engine_now(oa_engine *e) {
  oa__events *t = events(e);
  return t->clock(t->clock_ud);
}

void oa_engine_set_close_hook(oa_engine *e, oa_close_hook hook, void *ud) {
  oa__events *t = events(e);
  t->hook = hook;
  t->hook_ud = ud;
}

oa_event_stats oa_engine_event_stats(oa_engine *e) {
  oa__events *t = events(e);
  oa_event_stats s = t->stats;
  s.pending = t->live;
  s.oldest_age = t->span > 0 ? t->clock(t->clock_ud) - t->ring[t->head].opened : 0;
  return s;
}

/* ---- persistence ---- */

#define EVENTS_STATE_VERSION 1

/* Times are saved relative to "now" (age, time left) because the monotonic
 * clock of the next process starts elsewhere. */
int oa__events_save(const oa__events *t, oa_buf *out) {
  double now = t->clock(t->clock_ud);
  oa_buf_put_header(out, "EVTS", EVENTS_STATE_VERSION);
  oa_buf_put_u32(out, (uint32_t)t->live);
  for (int32_t k = 0; k < t->span; k++) {
    const oa__event *ev = &t->ring[(t->head + k) % t->cap];
    if (!ev->id) continue;
    int32_t d = oa_policy_model(ev->policy)->dim;
    if (d == 0) d = oa_features_dim(oa_policy_features(ev->policy));
    oa_buf_put_str(out, ev->id);
    oa_buf_put_str(out, oa_policy_name(ev->policy));
    oa_buf_put_u32(out, (uint32_t)d);
    oa_buf_put(out, ev->x, sizeof(double) * (size_t)d);
    oa_buf_put_i64(out, ev->arm);
    oa_buf_put_f64(out, ev->prob);
    oa_buf_put_f64(out, now - ev->opened);
    oa_buf_put_f64(out, isfinite(ev->deadline) ? ev->deadline - now : -1);
    oa_buf_put_u32(out, (uint32_t)ev->active);
    oa_buf_put_u32(out, (uint32_t)ev->rewards);
    oa_buf_put_f64(out, ev->acc);
    oa_buf_put_u32(out, (uint32_t)ev->n_cand);
    oa_buf_put_u32(out, (uint32_t)ev->chosen);
    oa_buf_put(out, ev->cand_x, sizeof(double) * (size_t)ev->n_cand * (size_t)d);
    oa_buf_put(out, ev->cand_prob, sizeof(double) * (size_t)ev->n_cand);
    oa_buf_put(out, ev->cand_arm, sizeof(int32_t) * (size_t)ev->n_cand);
    oa_buf_put_u32(out, (uint32_t)ev->n_logged);
    for (int32_t i = 0; i < ev->n_logged; i++) {
      oa_buf_put_str(out, ev->logged_ids[i]);
      oa_buf_put_f64(out, ev->logged_probs[i]);
    }
    oa_buf_put_str(out, ev->context_json ? ev->context_json : "");
    oa_buf_put_str(out, ev->signals_json ? ev->signals_json : "");
  }
  return out->failed ? OA_ENOMEM : 0;
}

static int read_doubles(oa_reader *in, double **out, size_t n) {
  *out = malloc(sizeof(double) * (n ? n : 1));
  return !*out || oa_read(in, *out, sizeof(double) * n) ? -1 : 0;
}

/* A decoded event before packing: every array on its own allocation. */
static void loaded_free(oa__event *ev) {
  free(ev->id);
  free(ev->x);
  free(ev->cand_x);
  free(ev->cand_prob);
  free(ev->cand_arm);
  for (int32_t i = 0; ev->logged_ids && i < ev->n_logged; i++)
    free(ev->logged_ids[i]);
  free(ev->logged_ids);
  free(ev->logged_probs);
  free(ev->context_json);
  free(ev->signals_json);
  memset(ev, 0, sizeof *ev);
}

/* Moves a decoded event (row width d) into pooled memory as a table event:
 * *out gets it and `in` is released either way. -1 when out of memory. */
static int pack_loaded(oa__events *t, oa__event *in, int32_t d, oa__event *out) {
  size_t idlen = strlen(in->id), chars = idlen + 1;
  for (int32_t i = 0; i < in->n_logged; i++)
    chars += strlen(in->logged_ids[i]) + 1;
  oa__event ev = *in;
  char *s = event_layout(t, &ev, d ? d : 1, in->n_cand, in->n_logged, chars);
  if (!s) {
    loaded_free(in);
    return -1;
  }
  ev.context_json = NULL;
  ev.signals_json = in->signals_json; /* malloc'd in both forms: moved */
  in->signals_json = NULL;
  ev.id = s;
  memcpy(s, in->id, idlen + 1);
  s += idlen + 1;
  for (int32_t i = 0; i < in->n_logged; i++) {
    size_t len = strlen(in->logged_ids[i]);
    ev.logged_ids[i] = s;
    memcpy(s, in->logged_ids[i], len + 1);
    s += len + 1;
    ev.logged_probs[i] = in->logged_probs[i];
  }
  memcpy(ev.x, in->x, sizeof(double) * (size_t)d);
  if (in->n_cand) {
    memcpy(ev.cand_x, in->cand_x, sizeof(double) * (size_t)in->n_cand * (size_t)d);
    memcpy(ev.cand_prob, in->cand_prob, sizeof(double) * (size_t)in->n_cand);
    memcpy(ev.cand_arm, in->cand_arm, sizeof(int32_t) * (size_t)in->n_cand);
  }
  int rc = in->context_json
               ? event_set_context(t, &ev, in->context_json, strlen(in->context_json))
               : 0;
  loaded_free(in);
  if (rc) {
    event_clear(t, &ev);
    return -1;
  }
  *out = ev;
  return 0;
}

/* Decode one event; 1 when it belongs to a policy of this engine with the
 * same row width (restored), 0 when skipped, -1 on corrupt data. */
static int load_event(oa__events *t, oa_reader *in, double now, oa__event *ev) {
  char id[OA_EVENT_ID_MAX], name[OA_MAX_NAME], buf[OA_CATALOG_MAX_ID + 1];
  oa_read_str(in, id, sizeof id);
  oa_read_str(in, name, sizeof name);
  uint32_t d = oa_read_u32(in);
  if (in->failed || d > (1u << 24)) return -1;
  if (read_doubles(in, &ev->x, d)) return -1;
  ev->arm = (int32_t)oa_read_i64(in);
  ev->prob = oa_read_f64(in);
  ev->opened = now - oa_read_f64(in);
  double left = oa_read_f64(in);
  ev->deadline = left < 0 ? INFINITY : now + left;
  ev->active = (int)oa_read_u32(in);
  ev->rewards = (int32_t)oa_read_u32(in);
  ev->acc = oa_read_f64(in);
  uint32_t n_cand = oa_read_u32(in);
  ev->chosen = (int32_t)oa_read_u32(in);
  if (in->failed || n_cand > OA_MAX_CANDIDATES) return -1;
  ev->n_cand = (int32_t)n_cand;
  if (n_cand) {
    ev->cand_arm = malloc(sizeof(int32_t) * n_cand);
    if (read_doubles(in, &ev->cand_x, (size_t)n_cand * d) ||
        read_doubles(in, &ev->cand_prob, n_cand) || !ev->cand_arm ||
        oa_read(in, ev->cand_arm, sizeof(int32_t) * n_cand))
      return -1;
  }
  uint32_t n_logged = oa_read_u32(in);
  if (in->failed || n_logged > OA_MAX_CANDIDATES) return -1;
  if (n_logged) {
    ev->logged_ids = calloc(n_logged, sizeof(char *));
    ev->logged_probs = malloc(sizeof(double) * n_logged);
    if (!ev->logged_ids || !ev->logged_probs) return -1;
    ev->n_logged = (int32_t)n_logged;
    for (uint32_t i = 0; i < n_logged; i++) {
      oa_read_str(in, buf, sizeof buf);
      ev->logged_probs[i] = oa_read_f64(in);
      if (in->failed || !(ev->logged_ids[i] = strdup(buf))) return -1;
    }
  }
  for (int k = 0; k < 2; k++) {
    uint32_t len = oa_read_u32(in);
    if (in->failed || len > in->len - in->pos) return -1;
    if (len) {
      char *text = strndup((const char *)in->data + in->pos, len);
      if (!text) return -1;
      *(k == 0 ? &ev->context_json : &ev->signals_json) = text;
    }
    in->pos += len;
  }
  if (!(ev->id = strdup(id))) return -1;
  oa_policy *p = oa_engine_policy(t->engine, name);
  if (!p) return 0;
  int32_t pd = oa_policy_model(p)->dim ? oa_policy_model(p)->dim
                                       : oa_features_dim(oa_policy_features(p));
  if ((uint32_t)pd != d || !(ev->prob > 0 && ev->prob <= 1)) return 0;
  if (ev->n_cand == 0 && oa_policy_model(p)->ops->needs_candidates) return 0;
  if (oa__events_pending(t, id, strlen(id))) return 0;
  ev->policy = p;
  return 1;
}

int oa__events_load(oa__events *t, oa_reader *in, int32_t *restored, int32_t *skipped,
                    oa_error *err) {
  int rc = oa_read_header(in, "EVTS", EVENTS_STATE_VERSION, NULL, err);
  if (rc) return rc;
  uint32_t n = oa_read_u32(in);
  if (in->failed) return oa_error_set(err, OA_EFORMAT, "truncated event table");
  double now = t->clock(t->clock_ud);
  *restored = *skipped = 0;
  for (uint32_t i = 0; i < n; i++) {
    oa__event tmp = {0}, ev;
    int got = load_event(t, in, now, &tmp);
    if (got < 0) {
      loaded_free(&tmp);
      return oa_error_set(err, OA_EFORMAT, "corrupt pending event %u of %u", i + 1, n);
    }
    if (got == 0 || t->span == t->cap) {
      loaded_free(&tmp);
      (*skipped)++;
      continue;
    }
    int32_t d = oa_policy_model(tmp.policy)->dim
                    ? oa_policy_model(tmp.policy)->dim
                    : oa_features_dim(oa_policy_features(tmp.policy));
    if (pack_loaded(t, &tmp, d, &ev))
      return oa_error_set(err, OA_ENOMEM, "out of memory");
    int32_t pos = (t->head + t->span) % t->cap;
    if (oa_strmap_put(&t->index, ev.id, strlen(ev.id), pos)) {
      event_clear(t, &ev);
      return oa_error_set(err, OA_ENOMEM, "out of memory");
    }
    t->ring[pos] = ev;
    t->span++;
    t->live++;
    (*restored)++;
  }
  return 0;
}
