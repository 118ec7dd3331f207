/* Policies: the decide path (features → batched scores → explorer) and the
 * learn path (one example → one model update). Everything per candidate is
 * in C; scratch buffers live in the policy so a decision allocates nothing
 * once the policy has seen its largest candidate set. */
#include "runtime/policy_internal.h"

#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "runtime/events.h"
#include "runtime/retrieval.h"

static int grow_scratch(oa_policy *p, int32_t n, oa_error *err) {
  int32_t d = p->model->dim ? p->model->dim : oa_features_dim(p->fs);
  int32_t draws = p->explore == OA_EXPLORE_THOMPSON ? p->params.draws : 1;
  if (n <= p->cap && draws <= p->draws_cap) return 0;
  int32_t cap = n > p->cap ? n : p->cap;
  if (cap < 32) cap = 32;
  int32_t dcap = draws > p->draws_cap ? draws : p->draws_cap;
  double *rows = oa_alloc_aligned(sizeof(double) * (size_t)cap * (size_t)d);
  double *mean = malloc(sizeof(double) * (size_t)cap);
  double *width = malloc(sizeof(double) * (size_t)cap);
  double *prob = malloc(sizeof(double) * (size_t)cap);
  int32_t *arm = malloc(sizeof(int32_t) * (size_t)cap);
  double *drawbuf = malloc(sizeof(double) * (size_t)cap * (size_t)dcap);
  if (!rows || !mean || !width || !prob || !arm || !drawbuf) {
    oa_free_aligned(rows);
    free(mean), free(width), free(prob), free(arm), free(drawbuf);
    return oa_error_set(err, OA_ENOMEM, "out of memory for %d candidates", n);
  }
  oa_free_aligned(p->rows);
  free(p->mean), free(p->width), free(p->prob), free(p->arm), free(p->draws);
  p->rows = rows, p->mean = mean, p->width = width, p->prob = prob, p->arm = arm;
  p->draws = drawbuf;
  p->cap = cap;
  p->draws_cap = dcap;
  return 0;
}

oa_policy *oa__policy_new(oa_engine *e, const oa_policy_spec *spec, oa_error *err) {
  if (!spec->name || !spec->name[0] || strlen(spec->name) >= OA_MAX_NAME) {
    oa_error_set(err, OA_EINVAL, "a policy name must have 1 to %d bytes",
                 OA_MAX_NAME - 1);
    return NULL;
  }
  if (!spec->features || !spec->model) {
    oa_error_set(err, OA_EINVAL, "policy '%s' needs a feature space and a model",
                 spec->name);
    return NULL;
  }
  int32_t fdim = oa_features_dim(spec->features);
  if (spec->model->dim != 0 && spec->model->dim != fdim) {
    oa_error_set(
        err, OA_EDIM,
        "policy '%s': the model expects %d features but the feature space has %d",
        spec->name, spec->model->dim, fdim);
    return NULL;
  }
  if (oa_explore_check(spec->explore, &spec->params, err)) {
    oa_error_prefix(err, "policy '%s'", spec->name);
    return NULL;
  }
  if (spec->model->ops->needs_candidates && spec->explore != OA_EXPLORE_SOFTMAX) {
    oa_error_set(err, OA_EINVAL, "policy '%s': a %s model needs the softmax explorer",
                 spec->name, spec->model->ops->kind);
    return NULL;
  }
  if (spec->explore == OA_EXPLORE_CUSTOM && !spec->custom_explore) {
    oa_error_set(err, OA_EINVAL, "policy '%s': a custom explorer needs a function",
                 spec->name);
    return NULL;
  }
  oa_policy *p = calloc(1, sizeof *p);
  if (!p) {
    oa_error_set(err, OA_ENOMEM, "out of memory");
    return NULL;
  }
  strcpy(p->name, spec->name);
  p->engine = e;
  p->fs = oa_features_retain(spec->features);
  p->model = spec->model;
  p->explore = spec->explore;
  p->params = spec->params;
  p->custom = spec->custom_explore;
  p->custom_ud = spec->custom_ud;
  oa_strmap_init(&p->arms);
  p->ctx = oa_fpart_new();
  p->act = oa_fpart_new();
  int32_t nctx = oa_features_nfields(p->fs, OA_SIDE_CONTEXT);
  int32_t nact = oa_features_nfields(p->fs, OA_SIDE_ACTION);
  p->empty_values = calloc((size_t)(nctx > nact ? nctx : nact) + 1, sizeof(oa_value));
  p->bind_values = calloc((size_t)nact + 1, sizeof(oa_value));
  if (!p->ctx || !p->act || !p->empty_values || !p->bind_values ||
      grow_scratch(p, 32, err)) {
    p->model = NULL; /* the caller keeps it on failure */
    oa__policy_free(p);
    oa_error_set(err, OA_ENOMEM, "out of memory");
    return NULL;
  }
  return p;
}

void oa__policy_free(oa_policy *p) {
  if (!p) return;
  oa_model_free(p->model);
  oa_features_release(p->fs);
  oa_strmap_free(&p->arms);
  oa_fpart_free(p->ctx);
  oa_fpart_free(p->act);
  for (int64_t i = 0; i < p->cache_cap; i++)
    oa_fpart_free(p->cache[i].part);
  free(p->cache);
  free(p->empty_values);
  free(p->bind_values);
  oa_free_aligned(p->rows);
  free(p->mean), free(p->width), free(p->prob), free(p->arm), free(p->draws);
  free(p);
}

const char *oa_policy_name(const oa_policy *p) {
  return p->name;
}
oa_features *oa_policy_features(oa_policy *p) {
  return p->fs;
}
oa_model *oa_policy_model(oa_policy *p) {
  return p->model;
}
oa_explore_kind oa_policy_explore_kind(const oa_policy *p) {
  return p->explore;
}
oa_explore_params oa_policy_params(const oa_policy *p) {
  return p->params;
}
void oa_policy_set_reset(oa_policy *p, int allowed) {
  p->reset_allowed = allowed;
}
int oa_policy_reset_allowed(const oa_policy *p) {
  return p->reset_allowed;
}

oa_policy_stats oa_policy_get_stats(const oa_policy *p) {
  return p->stats;
}

int oa_policy_set_params(oa_policy *p, const oa_explore_params *params, oa_error *err) {
  int rc = oa_explore_check(p->explore, params, err);
  if (rc) return oa_error_prefix(err, "policy '%s'", p->name);
  p->params = *params;
  return 0;
}

int oa_policy_set_explorer(oa_policy *p, oa_explore_kind kind,
                           const oa_explore_params *params, oa_custom_explore_fn fn,
                           void *ud, oa_error *err) {
  int rc = oa_explore_check(kind, params, err);
  if (rc) return oa_error_prefix(err, "policy '%s'", p->name);
  if (kind == OA_EXPLORE_CUSTOM && !fn)
    return oa_error_set(err, OA_EINVAL, "policy '%s': a custom explorer needs a function",
                        p->name);
  if (p->model->ops->needs_candidates && kind != OA_EXPLORE_SOFTMAX)
    return oa_error_set(err, OA_EINVAL,
                        "policy '%s': a %s model needs the softmax explorer", p->name,
                        p->model->ops->kind);
  p->explore = kind;
  p->params = *params;
  p->custom = fn;
  p->custom_ud = ud;
  return 0;
}

int oa_policy_same_shape(const oa_policy *p, const oa_policy_spec *spec) {
  const oa_model *a = p->model, *b = spec->model;
  return spec->features && b &&
         oa_features_digest(p->fs) == oa_features_digest(spec->features) &&
         !strcmp(a->ops->kind, b->ops->kind) && a->dim == b->dim && a->arms == b->arms;
}

/* The arm index of an action id for per-action models, assigned on first
 * sight; OA_ELIMIT once the model's arms are all taken. */
int oa__policy_arm(oa_policy *p, const char *id, size_t len, int32_t *arm,
                   oa_error *err) {
  int64_t v;
  if (oa_strmap_get(&p->arms, id, len, &v)) {
    *arm = (int32_t)v;
    return 0;
  }
  if (p->n_arms >= p->model->arms)
    return oa_error_set(err, OA_ELIMIT,
                        "policy '%s' has room for %d actions; '%.*s' would be one more",
                        p->name, p->model->arms, (int)len, id);
  if (oa_strmap_put(&p->arms, id, len, p->n_arms))
    return oa_error_set(err, OA_ENOMEM, "out of memory");
  *arm = p->n_arms++;
  return 0;
}

/* The compiled action part for a catalog action, cached per slot and
 * recompiled only when the catalog's version for that slot changes. */
static int catalog_part(oa_policy *p, const char *id, size_t len, const oa_fpart **out,
                        oa_error *err) {
  oa_catalog *cat = oa_engine_catalog(p->engine);
  int64_t slot = oa_catalog_find(cat, id, len);
  if (slot < 0)
    return oa_error_set(err, OA_ENOTFOUND, "unknown action '%.*s'", (int)len, id);
  if (slot >= p->cache_cap) {
    int64_t cap = p->cache_cap ? p->cache_cap : 64;
    while (cap <= slot)
      cap *= 2;
    oa__cached_part *c = realloc(p->cache, sizeof *c * (size_t)cap);
    if (!c) return oa_error_set(err, OA_ENOMEM, "out of memory");
    memset(c + p->cache_cap, 0, sizeof *c * (size_t)(cap - p->cache_cap));
    p->cache = c;
    p->cache_cap = cap;
  }
  oa__cached_part *c = &p->cache[slot];
  uint64_t version = oa_catalog_version(cat, slot);
  if (!c->part || c->version != version) {
    if (!c->part && !(c->part = oa_fpart_new()))
      return oa_error_set(err, OA_ENOMEM, "out of memory");
    int32_t nf = 0;
    const oa_field *fields = oa_catalog_fields(cat, slot, &nf);
    int rc = oa_features_bind(p->fs, OA_SIDE_ACTION, fields, nf, p->bind_values, err);
    if (!rc)
      rc = oa_features_compile(p->fs, OA_SIDE_ACTION, p->bind_values, c->part, err);
    if (rc) {
      c->version = 0;
      return oa_error_prefix(err, "action '%.*s'", (int)len, id);
    }
    c->version = version;
  }
  *out = c->part;
  return 0;
}

static size_t id_len(const oa_decide_request *req, int32_t i) {
  return req->id_lens ? req->id_lens[i] : strlen(req->ids[i]);
}

/* Fill row i (or the shared context row) and arm i for candidate i. */
static int candidate_row(oa_policy *p, const oa_decide_request *req, int32_t i,
                         int per_arm, double *row, oa_error *err) {
  const char *id = req->ids[i];
  size_t len = id_len(req, i);
  if (!id || len == 0) return oa_error_set(err, OA_EINVAL, "candidate %d has no id", i);
  if (per_arm) return oa__policy_arm(p, id, len, &p->arm[i], err);
  const oa_fpart *part = NULL;
  if (req->actions && req->actions[i]) {
    int rc = oa_features_compile(p->fs, OA_SIDE_ACTION, req->actions[i], p->act, err);
    if (rc) return oa_error_prefix(err, "action '%.*s'", (int)len, id);
    part = p->act;
  } else {
    int rc = catalog_part(p, id, len, &part, err);
    if (rc) return rc;
  }
  p->arm[i] = -1;
  oa_features_join(p->fs, p->ctx, part, row);
  return 0;
}

/* Decisions are reproducible: the same event id, policy, context and model
 * state give the same choice. */
static uint64_t decision_seed(const oa_policy *p, const char *event_id) {
  return oa_hash_bytes(event_id, strlen(event_id), oa_engine_seed(p->engine)) ^
         oa_hash_bytes(p->name, strlen(p->name), 0x6f6e6561726dULL);
}

/* Two-stage: retrieve the shortlist for this request, then decide among
 * it as among catalog candidates. The event id is fixed first so the fresh
 * picks are seeded like the decision. */
static int decide_retrieved(oa_policy *p, const oa_decide_request *req, oa_decision *out,
                            oa_error *err) {
  char event_id[OA_EVENT_ID_MAX];
  int rc = oa__engine_event_id(p->engine, req->event_id, event_id, err);
  if (rc) return rc;
  const oa_value *ctx = req->context ? req->context : p->empty_values;
  oa_shortlist sl;
  rc = oa_engine_retrieve(p->engine, p, req->retrieve, ctx, decision_seed(p, event_id),
                          &sl, err);
  if (rc) return rc;
  oa_decide_request inner = *req;
  inner.retrieve = NULL;
  inner.event_id = event_id;
  inner.n = sl.n;
  inner.ids = sl.ids;
  inner.id_lens = sl.lens;
  inner.actions = NULL;
  rc = oa_policy_decide(p, &inner, out, err);
  if (!rc) out->fresh = sl.fresh;
  return rc;
}

int oa_policy_decide(oa_policy *p, const oa_decide_request *req, oa_decision *out,
                     oa_error *err) {
  if (req->retrieve) return decide_retrieved(p, req, out, err);
  int32_t n = req->n;
  if (n < 1 || n > OA_MAX_CANDIDATES)
    return oa_error_set(err, OA_EINVAL, "a decision needs 1 to %d candidates, got %d",
                        OA_MAX_CANDIDATES, n);
  if (!req->ids) return oa_error_set(err, OA_EINVAL, "candidates need ids");
  const oa_explore_params *params = req->params ? req->params : &p->params;
  int rc = req->params ? oa_explore_check(p->explore, params, err) : 0;
  if (rc) return rc;
  rc = grow_scratch(p, n, err);
  if (rc) return rc;
  rc = oa__engine_event_id(p->engine, req->event_id, out->event_id, err);
  if (rc) return rc;

  const oa_value *ctx = req->context ? req->context : p->empty_values;
  rc = oa_features_compile(p->fs, OA_SIDE_CONTEXT, ctx, p->ctx, err);
  if (rc) return oa_error_prefix(err, "context");

  int per_arm = p->model->ops->per_arm;
  int32_t d = p->model->dim ? p->model->dim : oa_features_dim(p->fs);
  if (per_arm) oa_features_join(p->fs, p->ctx, NULL, p->rows);
  if (!req->actions)
    oa_catalog_prefetch(oa_engine_catalog(p->engine), req->ids, req->id_lens, n);
  for (int32_t i = 0; i < n; i++) {
    rc = candidate_row(p, req, i, per_arm, p->rows + (size_t)i * d, err);
    if (rc) return rc;
  }
  oa_batch batch = {p->rows, per_arm ? 0 : d, n, d, per_arm ? p->arm : NULL};

  int need_width = p->explore == OA_EXPLORE_UCB || p->explore == OA_EXPLORE_THOMPSON ||
                   p->explore == OA_EXPLORE_CUSTOM;
  if (!need_width) memset(p->width, 0, sizeof(double) * (size_t)n);
  rc = oa_model_score(p->model, &batch, p->mean, need_width ? p->width : NULL, err);
  if (rc) return oa_error_prefix(err, "policy '%s'", p->name);
  if (!oa_all_finite(p->mean, n) || !oa_all_finite(p->width, n))
    return oa_error_set(err, OA_ENUMERIC,
                        "policy '%s': the model produced a non-finite score", p->name);

  oa_rng rng;
  oa_rng_seed(&rng, decision_seed(p, out->event_id));
  oa_explore_input in = {n, p->mean, p->width, NULL, 0};
  if (p->explore == OA_EXPLORE_THOMPSON && p->model->ops->sample) {
    rc = oa_model_sample(p->model, &batch, params->draws, &rng, p->draws, err);
    if (rc) return oa_error_prefix(err, "policy '%s'", p->name);
    in.draws = p->draws;
    in.ndraws = params->draws;
  }
  out->estimated = 0;
  if (p->explore == OA_EXPLORE_CUSTOM) {
    rc = p->custom(p->custom_ud, p, &in, ctx, p->stats.decisions, p->prob, err);
    if (!rc) rc = oa_probs_validate(p->prob, n, err);
    if (rc) return oa_error_prefix(err, "policy '%s' explorer", p->name);
    out->chosen = oa_probs_sample(p->prob, n, &rng);
  } else {
    rc = oa_explore(p->explore, params, &in, &rng, p->prob, &out->chosen, &out->estimated,
                    err);
    if (rc) return oa_error_prefix(err, "policy '%s'", p->name);
  }
  out->n = n;
  out->prob = p->prob;
  out->mean = p->mean;
  out->width = p->width;
  out->ids = req->ids;
  out->id_lens = req->id_lens;
  out->fresh = 0;

  if (req->keep_event) {
    rc = oa__events_keep(oa__engine_events(p->engine), p, req, out, &batch, err);
    if (rc) return rc;
  }
  p->stats.decisions++;
  oa__retrieval_shown(p->engine, req->ids[out->chosen], id_len(req, out->chosen));
  return 0;
}

int oa__policy_update(oa_policy *p, const oa_example *ex, oa_error *err) {
  int rc = oa_model_update(p->model, ex, 1, err);
  if (rc) return oa_error_prefix(err, "policy '%s'", p->name);
  p->stats.rewards++;
  p->stats.reward_sum += ex->reward;
  return 0;
}

int oa_policy_learn(oa_policy *p, const oa_value *context, const char *action_id,
                    const oa_value *action, double reward, double prob, oa_error *err) {
  if (!action_id || !action_id[0])
    return oa_error_set(err, OA_EINVAL, "learning needs the action's id");
  if (!isfinite(reward))
    return oa_error_set(err, OA_ENUMERIC, "reward is not a finite number");
  if (!(prob > 0 && prob <= 1))
    return oa_error_set(err, OA_EINVAL, "propensity %g is outside (0, 1]", prob);
  int rc = grow_scratch(p, 1, err);
  if (rc) return rc;
  rc = oa_features_compile(p->fs, OA_SIDE_CONTEXT, context ? context : p->empty_values,
                           p->ctx, err);
  if (rc) return oa_error_prefix(err, "context");
  const oa_value *const actions[1] = {action};
  const char *const ids[1] = {action_id};
  oa_decide_request req = {.n = 1, .ids = ids, .actions = actions};
  int per_arm = p->model->ops->per_arm;
  if (per_arm) oa_features_join(p->fs, p->ctx, NULL, p->rows);
  rc = candidate_row(p, &req, 0, per_arm, p->rows, err);
  if (rc) return rc;
  oa_example ex = {
      .x = p->rows, .arm = per_arm ? p->arm[0] : -1, .reward = reward, .prob = prob};
  if (p->model->ops->needs_candidates) {
    /* A policy-gradient learner given one action: the candidate set is that
     * action alone, so the update only moves the baseline. */
    double one = 1.0;
    ex.n_cand = 1, ex.cand_x = p->rows, ex.cand_arm = &ex.arm, ex.cand_prob = &one;
    ex.chosen = 0;
    return oa__policy_update(p, &ex, err);
  }
  return oa__policy_update(p, &ex, err);
}

#define POLICY_STATE_VERSION 1

int oa__policy_save(const oa_policy *p, oa_buf *out, oa_error *err) {
  oa_buf_put_header(out, "POLI", POLICY_STATE_VERSION);
  oa_buf_put_u64(out, oa_features_digest(p->fs));
  oa_buf_put_u64(out, p->stats.decisions);
  oa_buf_put_u64(out, p->stats.rewards);
  oa_buf_put_f64(out, p->stats.reward_sum);
  oa_buf_put_u32(out, (uint32_t)p->n_arms);
  size_t pos = 0;
  const char *key;
  size_t len;
  int64_t arm;
  while (oa_strmap_next(&p->arms, &pos, &key, &len, &arm)) {
    oa_buf_put_u32(out, (uint32_t)len);
    oa_buf_put(out, key, len);
    oa_buf_put_u32(out, (uint32_t)arm);
  }
  return oa_model_save(p->model, out, err);
}

int oa__policy_load(oa_policy *p, oa_reader *in, oa_error *err) {
  int rc = oa_read_header(in, "POLI", POLICY_STATE_VERSION, NULL, err);
  if (rc) return rc;
  uint64_t digest = oa_read_u64(in);
  oa_policy_stats stats;
  stats.decisions = oa_read_u64(in);
  stats.rewards = oa_read_u64(in);
  stats.reward_sum = oa_read_f64(in);
  uint32_t n_arms = oa_read_u32(in);
  if (in->failed) return oa_error_set(err, OA_EFORMAT, "truncated policy state");
  if (digest != oa_features_digest(p->fs))
    return oa_error_set(
        err, OA_EDIM,
        "policy '%s': the saved state was learned with another feature space", p->name);
  if ((int64_t)n_arms > (p->model->arms > 0 ? p->model->arms : 0))
    return oa_error_set(err, OA_EDIM, "policy '%s': %u saved actions do not fit %d arms",
                        p->name, n_arms, p->model->arms);
  oa_strmap arms;
  oa_strmap_init(&arms);
  for (uint32_t i = 0; i < n_arms && !in->failed; i++) {
    uint32_t len = oa_read_u32(in);
    if (in->failed || len > in->len - in->pos) {
      in->failed = 1;
      break;
    }
    const char *key = (const char *)in->data + in->pos;
    in->pos += len;
    uint32_t arm = oa_read_u32(in);
    if (arm >= n_arms || oa_strmap_put(&arms, key, len, arm)) in->failed = 1;
  }
  if (in->failed || arms.count != n_arms) {
    oa_strmap_free(&arms);
    return oa_error_set(err, OA_EFORMAT, "policy '%s': corrupt action map", p->name);
  }
  rc = oa_model_load(p->model, in, err);
  if (rc) {
    oa_strmap_free(&arms);
    return oa_error_prefix(err, "policy '%s'", p->name);
  }
  oa_strmap_free(&p->arms);
  p->arms = arms;
  p->n_arms = (int32_t)n_arms;
  p->stats = stats;
  return 0;
}
