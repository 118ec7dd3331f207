/* cbify through a policy of an app: the same supervised-to-bandit loop as
 * oa_cbify_run, but each decision goes through the engine (features, model,
 * explorer — built-in or written in Lua) exactly as a served request would,
 * and each reward closes the decision's event. That is what makes a custom
 * Lua policy comparable with the presets on the same data.
 *
 * Convention: the app's feature space declares a context DENSE field "x"
 * of length (columns - 1) (the CSV's feature columns) and an action field
 * "class" (categorical); the actions are the class ids "0".."k-1". */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/error.h"
#include "runtime/cbify.h"
#include "runtime/engine.h"

static double now_seconds(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* Checks the convention and returns the slots of "x" and "class". */
static int check_space(const oa_policy *p, int32_t d, int32_t *x_slot,
                       int32_t *class_slot, oa_error *err) {
  oa_features *fs = oa_policy_features((oa_policy *)p);
  *x_slot = oa_features_slot(fs, OA_SIDE_CONTEXT, "x");
  *class_slot = oa_features_slot(fs, OA_SIDE_ACTION, "class");
  const oa_field_spec *x =
      *x_slot >= 0 ? oa_features_field(fs, OA_SIDE_CONTEXT, *x_slot) : NULL;
  if (!x || x->kind != OA_FK_DENSE || x->length != d - 1)
    return oa_error_set(
        err, OA_EINVAL,
        "policy '%s': cbify needs a context field x = \"dense:%d\" (the data's "
        "feature columns)",
        oa_policy_name(p), d - 1);
  if (*class_slot < 0)
    return oa_error_set(err, OA_EINVAL,
                        "policy '%s': cbify needs an action field 'class' (the class id)",
                        oa_policy_name(p));
  return 0;
}

int oa_cbify_run_policy(const oa_cbify_data *data, oa_engine *e, oa_policy *p,
                        uint64_t seed, int passes, oa_cbify_result *res, oa_error *err) {
  memset(res, 0, sizeof *res);
  if (passes < 1) return oa_error_set(err, OA_EINVAL, "passes must be >= 1");
  if (data->k > OA_MAX_CANDIDATES)
    return oa_error_set(err, OA_ELIMIT, "%d classes is more than %d candidates", data->k,
                        OA_MAX_CANDIDATES);
  int32_t x_slot, class_slot;
  int rc = check_space(p, data->d, &x_slot, &class_slot, err);
  if (rc) return rc;
  oa_features *fs = oa_policy_features(p);
  const int32_t k = data->k, nctx = oa_features_nfields(fs, OA_SIDE_CONTEXT),
                nact = oa_features_nfields(fs, OA_SIDE_ACTION);
  int64_t *perm = malloc(sizeof *perm * (size_t)data->n);
  oa_value *ctx = calloc((size_t)nctx, sizeof *ctx);
  oa_value *acts = calloc((size_t)k * (size_t)nact, sizeof *acts);
  const oa_value **act_ptr = malloc(sizeof *act_ptr * (size_t)k);
  char(*names)[16] = malloc(sizeof *names * (size_t)k);
  const char **ids = malloc(sizeof *ids * (size_t)k);
  if (!perm || !ctx || !acts || !act_ptr || !names || !ids) {
    rc = oa_error_set(err, OA_ENOMEM, "out of memory");
    goto done;
  }
  for (int32_t a = 0; a < k; a++) {
    snprintf(names[a], sizeof names[a], "%d", a);
    ids[a] = names[a];
    oa_value *v = &acts[(size_t)a * nact + class_slot];
    v->type = OA_VAL_STR;
    v->str = names[a];
    v->len = strlen(names[a]);
    act_ptr[a] = &acts[(size_t)a * nact];
  }
  ctx[x_slot].type = OA_VAL_VEC;
  ctx[x_slot].count = data->d - 1;
  oa_rng rng;
  oa_rng_seed(&rng, seed);
  double total = 0, t0 = now_seconds();
  for (int pass = 0; pass < passes && !rc; pass++) {
    oa_cbify_shuffle(perm, data->n, &rng);
    for (int64_t i = 0; i < data->n; i++) {
      const int64_t row = perm[i];
      ctx[x_slot].vec =
          data->x + (size_t)row * (size_t)data->d + 1; /* without the bias */
      oa_decide_request req = {
          .context = ctx, .n = k, .ids = ids, .actions = act_ptr, .keep_event = 1};
      oa_decision d;
      if ((rc = oa_policy_decide(p, &req, &d, err))) break;
      double r = d.chosen == data->label[row] ? 1 : 0;
      total += r;
      if ((rc = oa_engine_learn(e, d.event_id, r, err))) break;
      res->examples++;
    }
  }
  res->seconds = now_seconds() - t0;
  res->actions = k;
  res->reward = res->examples ? total / (double)res->examples : 0;
done:
  free(perm);
  free(ctx);
  free(acts);
  free(act_ptr);
  free(names);
  free(ids);
  return rc;
}
