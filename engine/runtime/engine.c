/* The engine: policies by name, the catalog, and the pending-event table
 * that joins a decision with its reward. Events live in a ring in arrival
 * order with an id -> position index, so the oldest is dropped in O(1) when
 * the table is full and any event is found in O(1) when its reward comes. */
#include "runtime/policy_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"

typedef struct oa__event {
  char *id; /* owned; NULL = empty ring slot */
  oa_policy *policy;
  double *x; /* chosen row (d) */
  int32_t arm;
  double prob;
  /* whole candidate set, for policy-gradient learners only */
  int32_t n_cand, chosen;
  double *cand_x, *cand_prob;
  int32_t *cand_arm;
} oa__event;

struct oa_engine {
  uint64_t seed, next_event;
  oa_catalog *catalog;
  oa_policy **policies;
  int32_t n_policies;
  oa__event *ring;
  int32_t ring_cap, head, live; /* head: oldest slot; slots in [head, head+span) */
  int32_t span;
  oa_strmap event_index; /* id -> ring position */
  uint64_t dropped;
};

oa_engine *oa_engine_new(uint64_t seed, oa_error *err) {
  oa_engine *e = calloc(1, sizeof *e);
  if (!e) {
    oa_error_set(err, OA_ENOMEM, "out of memory");
    return NULL;
  }
  e->seed = seed;
  e->next_event = 1;
  oa_strmap_init(&e->event_index);
  e->catalog = oa_catalog_new(err);
  if (!e->catalog || oa_engine_set_event_capacity(e, 100000, err)) {
    oa_engine_free(e);
    return NULL;
  }
  return e;
}

static void event_clear(oa__event *ev) {
  free(ev->id);
  free(ev->x);
  free(ev->cand_x);
  free(ev->cand_prob);
  free(ev->cand_arm);
  memset(ev, 0, sizeof *ev);
}

void oa_engine_free(oa_engine *e) {
  if (!e) return;
  for (int32_t i = 0; i < e->ring_cap; i++)
    event_clear(&e->ring[i]);
  free(e->ring);
  oa_strmap_free(&e->event_index);
  for (int32_t i = 0; i < e->n_policies; i++)
    oa__policy_free(e->policies[i]);
  free(e->policies);
  oa_catalog_free(e->catalog);
  free(e);
}

uint64_t oa_engine_seed(const oa_engine *e) {
  return e->seed;
}
oa_catalog *oa_engine_catalog(oa_engine *e) {
  return e->catalog;
}
uint64_t oa_engine_dropped_events(const oa_engine *e) {
  return e->dropped;
}
int32_t oa_engine_pending_events(const oa_engine *e) {
  return e->live;
}

int oa_engine_set_event_capacity(oa_engine *e, int32_t capacity, oa_error *err) {
  if (capacity < 1 || capacity > (1 << 26))
    return oa_error_set(err, OA_EINVAL, "event capacity must be 1 to %d", 1 << 26);
  if (e->live > 0)
    return oa_error_set(err, OA_ESTATE,
                        "the event capacity can change only with no pending events");
  oa__event *ring = calloc((size_t)capacity, sizeof *ring);
  if (!ring) return oa_error_set(err, OA_ENOMEM, "out of memory for %d events", capacity);
  free(e->ring);
  e->ring = ring;
  e->ring_cap = capacity;
  e->head = e->span = 0;
  return 0;
}

int oa_engine_add_policy(oa_engine *e, const oa_policy_spec *spec, oa_error *err) {
  if (spec->name && oa_engine_policy(e, spec->name))
    return oa_error_set(err, OA_EEXIST, "policy '%s' already exists", spec->name);
  oa_policy **list = realloc(e->policies, sizeof *list * (size_t)(e->n_policies + 1));
  if (!list) return oa_error_set(err, OA_ENOMEM, "out of memory");
  e->policies = list;
  oa_policy *p = oa__policy_new(e, spec, err);
  if (!p) return err ? err->code : OA_EINVAL;
  e->policies[e->n_policies++] = p;
  return 0;
}

static void drop_event_at(oa_engine *e, int32_t pos) {
  oa__event *ev = &e->ring[pos];
  if (!ev->id) return;
  oa_strmap_del(&e->event_index, ev->id, strlen(ev->id));
  event_clear(ev);
  e->live--;
}

/* Advance head over closed slots so span counts only what is still needed. */
static void trim_head(oa_engine *e) {
  while (e->span > 0 && !e->ring[e->head].id) {
    e->head = (e->head + 1) % e->ring_cap;
    e->span--;
  }
}

int oa_engine_remove_policy(oa_engine *e, const char *name, oa_error *err) {
  for (int32_t i = 0; i < e->n_policies; i++) {
    oa_policy *p = e->policies[i];
    if (strcmp(p->name, name)) continue;
    for (int32_t k = 0; k < e->ring_cap; k++)
      if (e->ring[k].id && e->ring[k].policy == p) drop_event_at(e, k);
    trim_head(e);
    oa__policy_free(p);
    memmove(e->policies + i, e->policies + i + 1,
            sizeof *e->policies * (size_t)(e->n_policies - i - 1));
    e->n_policies--;
    return 0;
  }
  return oa_error_set(err, OA_ENOTFOUND, "unknown policy '%s'", name);
}

oa_policy *oa_engine_policy(oa_engine *e, const char *name) {
  for (int32_t i = 0; i < e->n_policies; i++)
    if (!strcmp(e->policies[i]->name, name)) return e->policies[i];
  return NULL;
}

int32_t oa_engine_policy_count(const oa_engine *e) {
  return e->n_policies;
}
oa_policy *oa_engine_policy_at(oa_engine *e, int32_t i) {
  return i >= 0 && i < e->n_policies ? e->policies[i] : NULL;
}

int oa__engine_event_id(oa_engine *e, const char *given, char out[OA_EVENT_ID_MAX],
                        oa_error *err) {
  if (given && given[0]) {
    size_t n = strlen(given);
    if (n >= OA_EVENT_ID_MAX)
      return oa_error_set(err, OA_EINVAL, "event id longer than %d bytes",
                          OA_EVENT_ID_MAX - 1);
    if (oa_strmap_get(&e->event_index, given, n, NULL))
      return oa_error_set(err, OA_EEXIST, "event '%s' is already pending", given);
    memcpy(out, given, n + 1);
    return 0;
  }
  /* 128 bits: a per-engine counter mixed with the seed, unique per engine
   * and unpredictable enough not to collide across engines. */
  uint64_t c = e->next_event++;
  snprintf(out, OA_EVENT_ID_MAX, "%016llx%016llx",
           (unsigned long long)oa_mix64(e->seed ^ 0x5eed5eed5eedULL),
           (unsigned long long)oa_mix64(c ^ oa_mix64(e->seed)));
  return 0;
}

int oa__engine_keep_event(oa_engine *e, oa_policy *p, const oa_decision *d,
                          const oa_batch *batch, oa_error *err) {
  int32_t dim = batch->d;
  oa__event ev = {0};
  size_t idlen = strlen(d->event_id);
  ev.id = malloc(idlen + 1);
  ev.x = malloc(sizeof(double) * (size_t)(dim ? dim : 1));
  int ok = ev.id && ev.x;
  if (ok && p->model->ops->needs_candidates) {
    ev.n_cand = d->n;
    ev.cand_x = malloc(sizeof(double) * (size_t)d->n * (size_t)(dim ? dim : 1));
    ev.cand_prob = malloc(sizeof(double) * (size_t)d->n);
    ev.cand_arm = malloc(sizeof(int32_t) * (size_t)d->n);
    ok = ev.cand_x && ev.cand_prob && ev.cand_arm;
  }
  if (!ok) {
    event_clear(&ev);
    return oa_error_set(err, OA_ENOMEM, "out of memory for a pending event");
  }
  memcpy(ev.id, d->event_id, idlen + 1);
  const double *chosen_row = batch->x + (size_t)d->chosen * (size_t)batch->ldx;
  memcpy(ev.x, chosen_row, sizeof(double) * (size_t)dim);
  ev.policy = p;
  ev.arm = batch->arm ? batch->arm[d->chosen] : -1;
  ev.prob = d->prob[d->chosen];
  ev.chosen = d->chosen;
  for (int32_t i = 0; i < ev.n_cand; i++) {
    memcpy(ev.cand_x + (size_t)i * dim, batch->x + (size_t)i * (size_t)batch->ldx,
           sizeof(double) * (size_t)dim);
    ev.cand_prob[i] = d->prob[i];
    ev.cand_arm[i] = batch->arm ? batch->arm[i] : -1;
  }
  if (e->span == e->ring_cap) { /* full: drop the oldest still-pending event */
    if (e->ring[e->head].id) e->dropped++;
    drop_event_at(e, e->head);
    e->head = (e->head + 1) % e->ring_cap;
    e->span--;
    trim_head(e);
  }
  int32_t pos = (e->head + e->span) % e->ring_cap;
  if (oa_strmap_put(&e->event_index, ev.id, idlen, pos)) {
    event_clear(&ev);
    return oa_error_set(err, OA_ENOMEM, "out of memory for a pending event");
  }
  e->ring[pos] = ev;
  e->span++;
  e->live++;
  return 0;
}

int oa_engine_learn(oa_engine *e, const char *event_id, double reward, oa_error *err) {
  int64_t pos;
  if (!event_id || !oa_strmap_get(&e->event_index, event_id, strlen(event_id), &pos))
    return oa_error_set(err, OA_ENOTFOUND, "no pending event '%s'",
                        event_id ? event_id : "");
  if (!isfinite(reward))
    return oa_error_set(err, OA_ENUMERIC, "reward is not a finite number");
  oa__event *ev = &e->ring[pos];
  oa_example ex = {.x = ev->x,
                   .arm = ev->arm,
                   .reward = reward,
                   .prob = ev->prob,
                   .n_cand = ev->n_cand,
                   .cand_x = ev->cand_x,
                   .cand_arm = ev->cand_arm,
                   .cand_prob = ev->cand_prob,
                   .chosen = ev->chosen};
  int rc = oa__policy_update(ev->policy, &ex, err);
  if (rc) return rc;
  drop_event_at(e, (int32_t)pos);
  trim_head(e);
  return 0;
}
