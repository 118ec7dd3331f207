/* The engine: policies by name, the catalog, the pending-event table
 * (events.c) and the event ids that tie a decision to its rewards. */
#include "runtime/policy_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "runtime/events.h"
#include "runtime/retrieval.h"

struct oa_engine {
  uint64_t seed, next_event;
  uint64_t id_nonce; /* mixed into generated event ids (0: reproducible ids) */
  oa_catalog *catalog;
  oa_policy **policies;
  int32_t n_policies;
  oa__events *events;
  oa__retrieval *retrieval; /* two-stage ranking (retrieval.c); NULL: off */
};

oa_engine *oa_engine_new(uint64_t seed, oa_error *err) {
  oa_engine *e = calloc(1, sizeof *e);
  if (!e) {
    oa_error_set(err, OA_ENOMEM, "out of memory");
    return NULL;
  }
  e->seed = seed;
  e->next_event = 1;
  e->catalog = oa_catalog_new(err);
  if (!e->catalog || !(e->events = oa__events_new(e, err))) {
    oa_engine_free(e);
    return NULL;
  }
  return e;
}

void oa_engine_free(oa_engine *e) {
  if (!e) return;
  oa__events_free(e->events);
  oa__retrieval_free(e->retrieval);
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
void oa_engine_replace_catalog(oa_engine *e, oa_catalog *cat) {
  oa_catalog_free(e->catalog);
  e->catalog = cat;
  oa__retrieval_catalog_replaced(e);
}

oa__retrieval **oa__engine_retrieval(oa_engine *e) {
  return &e->retrieval;
}

void oa_engine_set_id_nonce(oa_engine *e, uint64_t nonce) {
  e->id_nonce = nonce;
}

oa__events *oa__engine_events(oa_engine *e) {
  return e->events;
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

int oa_engine_replace_policy(oa_engine *e, const oa_policy_spec *spec, oa_error *err) {
  oa_policy *fresh = oa__policy_new(e, spec, err);
  if (!fresh) return err ? err->code : OA_EINVAL;
  for (int32_t i = 0; i < e->n_policies; i++) {
    if (strcmp(e->policies[i]->name, spec->name)) continue;
    oa__events_drop_policy(e->events, e->policies[i]);
    oa__policy_free(e->policies[i]);
    e->policies[i] = fresh;
    return 0;
  }
  oa_policy **list = realloc(e->policies, sizeof *list * (size_t)(e->n_policies + 1));
  if (!list) {
    fresh->model = NULL; /* the caller keeps it */
    oa__policy_free(fresh);
    return oa_error_set(err, OA_ENOMEM, "out of memory");
  }
  e->policies = list;
  e->policies[e->n_policies++] = fresh;
  return 0;
}

int oa_engine_remove_policy(oa_engine *e, const char *name, oa_error *err) {
  for (int32_t i = 0; i < e->n_policies; i++) {
    oa_policy *p = e->policies[i];
    if (strcmp(p->name, name)) continue;
    oa__events_drop_policy(e->events, p);
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
    if (oa__events_pending(e->events, given, n))
      return oa_error_set(err, OA_EEXIST, "event '%s' is already pending", given);
    memcpy(out, given, n + 1);
    return 0;
  }
  /* 128 bits: the seed and nonce, then a per-engine counter. With a nonce
   * (servers draw one per process) ids never repeat across restarts; without
   * one (simulations, tests) they are reproducible from the seed. */
  uint64_t c = e->next_event++;
  snprintf(
      out, OA_EVENT_ID_MAX, "%016llx%016llx",
      (unsigned long long)oa_mix64(e->seed ^ 0x5eed5eed5eedULL ^ oa_mix64(e->id_nonce)),
      (unsigned long long)oa_mix64(c ^ oa_mix64(e->seed)));
  return 0;
}
