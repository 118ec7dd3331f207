/* Internals shared by engine.c and policy.c. */
#ifndef ONEARM_RUNTIME_POLICY_INTERNAL_H
#define ONEARM_RUNTIME_POLICY_INTERNAL_H

#include <math.h>

#include "core/tensor.h"
#include "runtime/engine.h"

typedef struct oa__cached_part {
  uint64_t version; /* catalog version the part was compiled from; 0 = none */
  oa_fpart *part;
} oa__cached_part;

struct oa_policy {
  char name[OA_MAX_NAME];
  oa_engine *engine;
  oa_features *fs;
  oa_model *model;
  oa_explore_kind explore;
  oa_explore_params params;
  oa_custom_explore_fn custom;
  void *custom_ud;
  oa_strmap arms; /* action id -> arm index, for per-action models */
  int32_t n_arms;
  int reset_allowed;
  oa_policy_stats stats;
  /* decide scratch, grown to the largest candidate set seen */
  int32_t cap, draws_cap;
  double *rows, *mean, *width, *prob, *draws;
  int32_t *arm;
  oa_fpart *ctx, *act;
  oa_value *empty_values; /* all OA_VAL_NONE: an empty record */
  oa_value *bind_values;  /* catalog fields bound to action slots */
  oa__cached_part *cache; /* by catalog slot */
  int64_t cache_cap;
};

oa_policy *oa__policy_new(oa_engine *e, const oa_policy_spec *spec, oa_error *err);
void oa__policy_free(oa_policy *p);
int oa__policy_arm(oa_policy *p, const char *id, size_t len, int32_t *arm, oa_error *err);
/* Learned state (statistics, action -> arm map, model) to and from bytes;
 * load refuses state learned with another feature space or model shape and
 * then changes nothing. */
int oa__policy_save(const oa_policy *p, oa_buf *out, oa_error *err);
int oa__policy_load(oa_policy *p, oa_reader *in, oa_error *err);
/* One model update plus the policy's reward statistics. */
int oa__policy_update(oa_policy *p, const oa_example *ex, oa_error *err);

uint64_t oa_engine_seed(const oa_engine *e);
/* Copy the given id (validated) or make a fresh one into out. */
int oa__engine_event_id(oa_engine *e, const char *given, char out[OA_EVENT_ID_MAX],
                        oa_error *err);
typedef struct oa__events oa__events;
oa__events *oa__engine_events(oa_engine *e);

#endif
