/* Pending events: every decision waits here for its rewards, then closes
 * exactly once, updating its policy's model with the combined reward (or
 * the default one). Events sit in a ring in arrival order with an
 * id -> position index, so the oldest is found in O(1) (for expiry and
 * eviction) and any event in O(1) when its reward comes. Recently closed
 * ids are remembered in a second ring so a late or duplicate reward is told
 * apart from an unknown id (409 versus 404 over HTTP). */
#include "runtime/events.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/error.h"
#include "runtime/policy_internal.h"

typedef struct oa__event {
  char *id; /* owned; NULL = empty ring slot */
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
  char *context_json, *signals_json; /* for the decision log */
} oa__event;

struct oa__events {
  oa_engine *engine;
  oa__event *ring;
  int32_t cap, head, span, live; /* live events are in [head, head + span) */
  oa_strmap index;               /* id -> ring position */
  char **closed;                 /* ring of recently closed ids */
  int32_t closed_next, closed_count; /* closed_count: slots ever filled */
  oa_strmap closed_index;
  oa_event_config cfg;
  double (*clock)(void *);
  void *clock_ud;
  oa_close_hook hook;
  void *hook_ud;
  oa_event_stats stats;
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

static void event_clear(oa__event *ev) {
  free(ev->id);
  free(ev->x);
  free(ev->cand_x);
  free(ev->cand_prob);
  free(ev->cand_arm);
  for (int32_t i = 0; i < ev->n_logged; i++)
    free(ev->logged_ids[i]);
  free(ev->logged_ids);
  free(ev->logged_probs);
  free(ev->context_json);
  free(ev->signals_json);
  memset(ev, 0, sizeof *ev);
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
    event_clear(&t->ring[(t->head + k) % t->cap]);
  free(t->ring);
  oa_strmap_free(&t->index);
  forget_closed(t);
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
  if (*slot) {
    oa_strmap_del(&t->closed_index, *slot, strlen(*slot));
    free(*slot);
  }
  *slot = strdup(id);
  if (*slot && oa_strmap_put(&t->closed_index, *slot, strlen(*slot), 1)) {
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
  event_clear(ev);
  t->live--;
  trim_head(t);
}

static double combined_reward(const oa__events *t, const oa__event *ev, int *defaulted) {
  *defaulted = ev->rewards == 0;
  if (ev->rewards == 0) return t->cfg.default_reward;
  return t->cfg.combine == OA_COMBINE_MEAN ? ev->acc / ev->rewards : ev->acc;
}

/* Close the event at pos: learn (when active), tell the hook, remember the
 * id. With `strict`, a refused update keeps the event pending and returns
 * the error; otherwise (expiry, eviction) the event closes anyway and the
 * failure is counted. */
static int close_at(oa__events *t, int32_t pos, int strict, oa_error *err) {
  oa__event *ev = &t->ring[pos];
  int defaulted;
  double reward = combined_reward(t, ev, &defaulted);
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
                         ev->rewards,
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

static int copy_logged(oa__event *ev, const oa_decide_request *req,
                       const oa_decision *d) {
  ev->logged_ids = calloc((size_t)d->n, sizeof(char *));
  ev->logged_probs = malloc(sizeof(double) * (size_t)d->n);
  if (!ev->logged_ids || !ev->logged_probs) return -1;
  ev->n_logged = d->n;
  for (int32_t i = 0; i < d->n; i++) {
    size_t len = req->id_lens ? req->id_lens[i] : strlen(req->ids[i]);
    if (!(ev->logged_ids[i] = strndup(req->ids[i], len))) return -1;
    ev->logged_probs[i] = d->prob[i];
  }
  return 0;
}

int oa__events_keep(oa__events *t, oa_policy *p, const oa_decide_request *req,
                    const oa_decision *d, const oa_batch *batch, oa_error *err) {
  int32_t dim = batch->d ? batch->d : 1;
  oa__event ev = {0};
  size_t idlen = strlen(d->event_id);
  ev.id = strdup(d->event_id);
  ev.x = malloc(sizeof(double) * (size_t)dim);
  int ok = ev.id && ev.x;
  if (ok && p->model->ops->needs_candidates) {
    ev.n_cand = d->n;
    ev.cand_x = malloc(sizeof(double) * (size_t)d->n * (size_t)dim);
    ev.cand_prob = malloc(sizeof(double) * (size_t)d->n);
    ev.cand_arm = malloc(sizeof(int32_t) * (size_t)d->n);
    ok = ev.cand_x && ev.cand_prob && ev.cand_arm;
  }
  if (ok && t->hook) ok = copy_logged(&ev, req, d) == 0;
  if (!ok) {
    event_clear(&ev);
    return oa_error_set(err, OA_ENOMEM, "out of memory for a pending event");
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
    close_at(t, t->head, 0, NULL);
  }
  int32_t pos = (t->head + t->span) % t->cap;
  if (oa_strmap_put(&t->index, ev.id, idlen, pos)) {
    event_clear(&ev);
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
    rc = close_at(t, (int32_t)pos, 1, err);
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
  char *copy = strdup(context_json);
  if (!copy) return oa_error_set(err, OA_ENOMEM, "out of memory");
  free(t->ring[pos].context_json);
  t->ring[pos].context_json = copy;
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
  return close_at(t, (int32_t)pos, 1, err);
}

int oa_engine_learn(oa_engine *e, const char *event_id, double reward, oa_error *err) {
  oa__events *t = events(e);
  int64_t pos;
  int rc = find(t, event_id, &pos, err);
  if (rc) return rc;
  if (!isfinite(reward))
    return oa_error_set(err, OA_ENUMERIC, "reward is not a finite number");
  oa__event *ev = &t->ring[pos];
  oa__event saved = *ev;
  ev->acc = reward;
  ev->rewards = 1;
  oa_combine combine = t->cfg.combine;
  t->cfg.combine = OA_COMBINE_LAST; /* exactly this reward */
  rc = close_at(t, (int32_t)pos, 1, err);
  t->cfg.combine = combine;
  if (rc) {
    ev->acc = saved.acc;
    ev->rewards = saved.rewards;
  }
  return rc;
}

int32_t oa_engine_expire(oa_engine *e) {
  oa__events *t = events(e);
  double now = t->clock(t->clock_ud);
  int32_t closed = 0;
  /* Deadlines grow in arrival order while reward_wait is constant, so the
   * scan stops at the first event not yet due. */
  while (t->span > 0 && t->ring[t->head].deadline <= now) {
    close_at(t, t->head, 0, NULL);
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
    oa__event ev = {0};
    int got = load_event(t, in, now, &ev);
    if (got < 0) {
      event_clear(&ev);
      return oa_error_set(err, OA_EFORMAT, "corrupt pending event %u of %u", i + 1, n);
    }
    if (got == 0 || t->span == t->cap) {
      event_clear(&ev);
      (*skipped)++;
      continue;
    }
    int32_t pos = (t->head + t->span) % t->cap;
    if (oa_strmap_put(&t->index, ev.id, strlen(ev.id), pos)) {
      event_clear(&ev);
      return oa_error_set(err, OA_ENOMEM, "out of memory");
    }
    t->ring[pos] = ev;
    t->span++;
    t->live++;
    (*restored)++;
  }
  return 0;
}
