/* The engine: named policies (feature space + model + explorer), the action
 * catalog and the table of pending events. decide() scores candidates and
 * explores; learn() closes an event and updates the policy's model.
 *
 * Threading: an engine is used from one thread at a time (the loop thread);
 * nothing here locks. Pointers returned into policy scratch (a decision's
 * probabilities and scores) stay valid until that policy's next decide. */
#ifndef ONEARM_RUNTIME_ENGINE_H
#define ONEARM_RUNTIME_ENGINE_H

#include <stdint.h>

#include "catalog/catalog.h"
#include "core/features.h"
#include "core/rng.h"
#include "core/strmap.h"
#include "explore/explore.h"
#include "models/model.h"
#include "onearm.h"

#define OA_MAX_CANDIDATES 4096
#define OA_MAX_NAME       64
#define OA_EVENT_ID_MAX   128

typedef struct oa_engine oa_engine;
typedef struct oa_policy oa_policy;

/* A custom explorer (a Lua function, in practice): fill prob[0..n) from the
 * candidates' scores; the engine validates the result (finite, >= 0, sums
 * to 1). `context` is the request's context values by slot, `step` the
 * number of decisions the policy made before this one. */
typedef int (*oa_custom_explore_fn)(void *ud, oa_policy *p, const oa_explore_input *in,
                                    const oa_value *context, uint64_t step, double *prob,
                                    oa_error *err);

typedef struct oa_policy_spec {
  const char *name;
  oa_features *features; /* retained by the policy */
  oa_model *model;       /* owned by the policy once oa_engine_add_policy succeeds */
  oa_explore_kind explore;
  oa_explore_params params;
  oa_custom_explore_fn custom_explore; /* for OA_EXPLORE_CUSTOM */
  void *custom_ud;
} oa_policy_spec;

/* Two-stage ranking (runtime/retrieval.h): retrieve the top n catalog
 * actions for the request's query vector, then decide among them. */
typedef enum oa_retrieve_mode { OA_RETRIEVE_EXACT = 0, OA_RETRIEVE_APPROX = 1 } oa_retrieve_mode;

struct oa_filter_spec;

typedef struct oa_retrieve_request {
  int32_t n;                           /* shortlist size, 1..OA_MAX_CANDIDATES */
  oa_retrieve_mode mode;
  int32_t nprobe;                      /* approximate: IVF lists probed; 0: the default */
  const float *query;                  /* NULL: from the context or the policy */
  int32_t query_dim;                   /* floats in query (must equal the store's dim) */
  const struct oa_filter_spec *filter; /* excluded ids and predicates; NULL: none */
  double fresh_share; /* [0, 1): share of the shortlist kept for fresh items; <0: default */
} oa_retrieve_request;

/* A decision request. Values are by slot of the policy's feature space
 * (oa_features_bind turns named fields into slots). */
typedef struct oa_decide_request {
  const char *event_id;            /* NULL or "": the engine makes one */
  const oa_value *context;         /* nfields(context) values, or NULL (empty) */
  int32_t n;                       /* candidates, 1..OA_MAX_CANDIDATES */
  const char *const *ids;          /* candidate action ids (n) */
  const size_t *id_lens;           /* their lengths, or NULL (NUL-terminated) */
  const oa_value *const *actions;  /* NULL, or per candidate: action values by slot,
                                      or NULL to look that id up in the catalog */
  const oa_explore_params *params; /* NULL: the policy's current parameters */
  int keep_event;                  /* 1: keep the decision pending for learn() */
  int deferred; /* 1: the event learns only once activated (oa_engine_activate) */
  /* Non-NULL: the candidates are retrieved from the catalog (n, ids,
   * id_lens and actions are ignored); see runtime/retrieval.h. */
  const oa_retrieve_request *retrieve;
} oa_decide_request;

typedef struct oa_decision {
  char event_id[OA_EVENT_ID_MAX];
  int32_t n;
  int32_t chosen;
  const double *prob;  /* n, borrowed (policy scratch) */
  const double *mean;  /* n model scores, borrowed */
  const double *width; /* n uncertainties, borrowed */
  int estimated;       /* 1: prob is a Monte-Carlo estimate (Thompson) */
  /* The candidate ids (n): the request's, or the retrieved shortlist
   * (borrowed, valid until the next catalog change or retrieval). */
  const char *const *ids;
  const size_t *id_lens;
  int32_t fresh; /* retrieval: how many of the candidates are fresh picks (last) */
} oa_decision;

typedef struct oa_policy_stats {
  uint64_t decisions, rewards;
  double reward_sum;
} oa_policy_stats;

/* ---- engine ---- */

/* seed drives generated event ids and decision randomness. */
oa_engine *oa_engine_new(uint64_t seed, oa_error *err);
void oa_engine_free(oa_engine *e);
oa_catalog *oa_engine_catalog(oa_engine *e);
/* Swaps in another catalog (the engine takes ownership and frees the old
 * one). Policies' cached action features stay correct: catalog versions are
 * unique across catalogs. */
void oa_engine_replace_catalog(oa_engine *e, oa_catalog *cat);
/* Mixes nonce into generated event ids. Servers set a random one per
 * process so ids never repeat across restarts (a restored pending event and
 * a new one must not collide); 0 (the default) keeps ids reproducible. */
void oa_engine_set_id_nonce(oa_engine *e, uint64_t nonce);
/* Pending-event capacity (default 100000). When the table is full the
 * oldest event is closed early (with what it has, as on expiry) and counted
 * as evicted. */
int oa_engine_set_event_capacity(oa_engine *e, int32_t capacity, oa_error *err);
int32_t oa_engine_pending_events(const oa_engine *e);
/* Events closed early because the table was full (= event stats' evicted). */
uint64_t oa_engine_dropped_events(const oa_engine *e);

/* How several rewards for one event combine into the one the model learns. */
typedef enum oa_combine {
  OA_COMBINE_SUM = 0,
  OA_COMBINE_FIRST,
  OA_COMBINE_LAST,
  OA_COMBINE_MAX,
  OA_COMBINE_MEAN
} oa_combine;

/* When events close. With reward_wait > 0 an event waits that many seconds
 * for rewards, then oa_engine_expire closes it with the combined reward, or
 * with default_reward if none came. close_on_reward closes it at its first
 * reward instead. An event decided with `deferred` learns only if it was
 * activated before it closed (otherwise it closes without learning: the
 * action was never shown). */
typedef struct oa_event_config {
  double reward_wait;  /* seconds; 0: no deadline (closed by a reward or eviction) */
  int close_on_reward; /* 1: the first reward closes the event */
  oa_combine combine;
  double default_reward;
} oa_event_config;
/* Defaults: reward_wait 0, close_on_reward 1, SUM, default_reward 0. */
oa_event_config oa_event_config_defaults(void);
int oa_engine_set_event_config(oa_engine *e, const oa_event_config *cfg, oa_error *err);
oa_event_config oa_engine_event_config(const oa_engine *e);
/* Monotonic time source in seconds (default: CLOCK_MONOTONIC). Tests and
 * hosts with their own clock (a libuv loop's uv_now) can replace it. */
void oa_engine_set_clock(oa_engine *e, double (*now)(void *ud), void *ud);
double oa_engine_now(oa_engine *e);
/* Parse "sum", "first", "last", "max", "mean"; -1 when unknown. */
int oa_combine_from_name(const char *name);
const char *oa_combine_name(oa_combine c);

/* What a close hook sees (for the decision log). Borrowed, valid during the
 * call. ids/probs are the decision's candidate set (kept only while a hook
 * is set). */
typedef struct oa_closed_event {
  const char *event_id;
  const char *policy;
  int32_t n, chosen;
  const char *const *ids;
  const double *probs;
  double reward;   /* what the model learned (or would have) */
  int32_t rewards; /* reward observations received */
  int learned;     /* 1: the model was updated */
  int defaulted;   /* 1: no reward came; default_reward was used */
  int activated;
  double opened, closed;    /* engine clock, seconds */
  const char *context_json; /* what oa_engine_attach stored, or NULL */
  const char *signals_json; /* a JSON array of the raw signals, or NULL */
} oa_closed_event;
typedef void (*oa_close_hook)(void *ud, const oa_closed_event *ev);
void oa_engine_set_close_hook(oa_engine *e, oa_close_hook hook, void *ud);

typedef struct oa_event_stats {
  int32_t pending;
  uint64_t closed, defaulted, evicted, unactivated, failed;
  double oldest_age; /* seconds the oldest pending event has waited */
} oa_event_stats;
oa_event_stats oa_engine_event_stats(oa_engine *e);

/* Adds a policy; OA_EEXIST when the name is taken. On failure the spec's
 * model is NOT freed (the caller still owns it). */
int oa_engine_add_policy(oa_engine *e, const oa_policy_spec *spec, oa_error *err);
/* Replaces policy spec->name with a new one built from spec (a reset: the
 * old state and its pending events are dropped), or adds it when absent.
 * On failure the old policy stays and the spec's model is not freed. */
int oa_engine_replace_policy(oa_engine *e, const oa_policy_spec *spec, oa_error *err);
/* Removes a policy and its pending events; OA_ENOTFOUND. */
int oa_engine_remove_policy(oa_engine *e, const char *name, oa_error *err);
oa_policy *oa_engine_policy(oa_engine *e, const char *name); /* NULL when unknown */
int32_t oa_engine_policy_count(const oa_engine *e);
oa_policy *oa_engine_policy_at(oa_engine *e, int32_t i);

/* Adds a reward observation to a pending event (combined as configured),
 * closing it when close_on_reward is set. OA_ENOTFOUND for an unknown
 * event, OA_ESTATE for one that already closed, OA_ENUMERIC for a
 * non-finite value (nothing changes). */
int oa_engine_reward(oa_engine *e, const char *event_id, double value, oa_error *err);
/* Attach the decision's context as JSON text (for the decision log: the
 * engine stores it, opaque, and hands it to the close hook). */
int oa_engine_attach(oa_engine *e, const char *event_id, const char *context_json,
                     oa_error *err);
/* Append one raw-signals JSON object to the event's signal list (logged
 * with the event). */
int oa_engine_add_signals(oa_engine *e, const char *event_id, const char *signals_json,
                          oa_error *err);
/* Marks a deferred event as shown, so it learns when it closes. */
int oa_engine_activate(oa_engine *e, const char *event_id, oa_error *err);
/* Closes an event now with its combined reward (or the default). If the
 * model refuses the update the event stays pending and the error returns. */
int oa_engine_close_event(oa_engine *e, const char *event_id, oa_error *err);
/* Reward then close: the direct "learn from this event" call. */
int oa_engine_learn(oa_engine *e, const char *event_id, double reward, oa_error *err);
/* Closes every event whose reward wait has passed; returns how many. */
int32_t oa_engine_expire(oa_engine *e);
/* The same, closing at most max of them (the oldest first): a server
 * spreads the work over short slices between requests. */
int32_t oa_engine_expire_some(oa_engine *e, int32_t max);

/* ---- policy ---- */

const char *oa_policy_name(const oa_policy *p);
oa_features *oa_policy_features(oa_policy *p);
oa_model *oa_policy_model(oa_policy *p);
oa_explore_kind oa_policy_explore_kind(const oa_policy *p);
oa_explore_params oa_policy_params(const oa_policy *p);
int oa_policy_set_params(oa_policy *p, const oa_explore_params *params, oa_error *err);
/* Replaces the explorer (kind, parameters, custom function): what a reloaded
 * app may change without touching learned state. */
int oa_policy_set_explorer(oa_policy *p, oa_explore_kind kind,
                           const oa_explore_params *params, oa_custom_explore_fn fn,
                           void *ud, oa_error *err);
/* 1 when spec's feature space and model have the same shape as p's
 * (feature digest, model kind, dim and arms): state can carry over. */
int oa_policy_same_shape(const oa_policy *p, const oa_policy_spec *spec);
oa_policy_stats oa_policy_get_stats(const oa_policy *p);
/* Allow a restore or reload to reset this policy when its saved state has
 * another shape (otherwise a shape change is refused). */
void oa_policy_set_reset(oa_policy *p, int allowed);
int oa_policy_reset_allowed(const oa_policy *p);

int oa_policy_decide(oa_policy *p, const oa_decide_request *req, oa_decision *out,
                     oa_error *err);
/* Learn from an explicit (x, a, r, p): context and action values by slot
 * (action NULL: look action_id up in the catalog). */
int oa_policy_learn(oa_policy *p, const oa_value *context, const char *action_id,
                    const oa_value *action, double reward, double prob, oa_error *err);

#endif
