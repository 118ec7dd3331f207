/* `onearm cbify DATA.csv[.gz]`: the supervised-to-bandit evaluation of a
 * policy preset on a multiclass data set (runtime/cbify.h does the work).
 * This file only reads arguments and prints the result, as text or as one
 * JSON object for scripts (tests/bench/cbify.sh, the integration test). */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "core/error.h"
#include "core/tensor.h"
#include "runtime/cbify.h"
#include "runtime/engine.h"
#include "server/app.h"

static void cbify_usage(FILE *out) {
  fprintf(
      out,
      "usage: onearm cbify DATA.csv[.gz] [--policy PRESET|APP.lua] [--shuffle-seed N]\n"
      "                    [--passes N] [--json] [hyper-parameters]\n"
      "\n"
      "Supervised-to-bandit evaluation: one action per class, reward 1 for the true\n"
      "label, one online pass over the rows in a shuffled order; prints the\n"
      "progressive average reward. DATA has a header line 'label,...', an integer\n"
      "label 0..K-1 in the first column and numbers in the others.\n"
      "\n"
      "presets (default first):\n");
  for (int i = 0; oa_cbify_preset_names[i]; i++)
    fprintf(out, "  %-13s %s\n", oa_cbify_preset_names[i],
            oa_cbify_preset_help(oa_cbify_preset_names[i]));
  fprintf(
      out,
      "\n"
      "options:\n"
      "  --policy P        a preset name, or an app script (APP.lua)\n"
      "  --shuffle-seed N  seed of the shuffle and of the exploration (default 1)\n"
      "  --passes N        online passes, reshuffled each time (default 1)\n"
      "  --json            print {\"examples\", \"actions\", \"reward\", \"seconds\",\n"
      "                    \"examples_per_second\", \"policy\"}; seconds = learning "
      "loop\n"
      "hyper-parameters (default: the preset's tuned value):\n"
      "  --lambda X        ridge prior precision\n"
      "  --alpha X         UCB bonus scale (linucb, logistic)\n"
      "  --v X             Thompson posterior scale (lints)\n"
      "  --epsilon X       exploration rate (egreedy, neural)\n"
      "  --gamma X         SquareCB gamma0 (gamma_t = gamma0 * sqrt(t))\n"
      "  --gamma-constant  SquareCB with gamma_t = gamma0 for every t\n"
      "  --draws N         Thompson resamples per decision (propensity estimate)\n"
      "  --lr X            learning rate (logistic, neural)\n"
      "  --hidden N        hidden units (neural)\n");
}

static int parse_double(const char *opt, const char *s, double *out) {
  char *end;
  errno = 0;
  double v = s ? strtod(s, &end) : 0;
  if (!s || end == s || *end || errno) {
    fprintf(stderr, "onearm cbify: %s needs a number, got '%s'\n", opt, s ? s : "");
    return -1;
  }
  *out = v;
  return 0;
}

static int parse_int(const char *opt, const char *s, long long lo, long long hi,
                     long long *out) {
  char *end;
  errno = 0;
  long long v = s ? strtoll(s, &end, 10) : 0;
  if (!s || end == s || *end || errno || v < lo || v > hi) {
    fprintf(stderr, "onearm cbify: %s needs an integer in %lld..%lld, got '%s'\n", opt,
            lo, hi, s ? s : "");
    return -1;
  }
  *out = v;
  return 0;
}

static int ends_with(const char *s, const char *suffix) {
  size_t n = strlen(s), m = strlen(suffix);
  return n >= m && !strcmp(s + n - m, suffix);
}

/* Escape for a JSON string: presets and file names are plain, but a user's
 * app path may hold anything. */
static void json_string(FILE *out, const char *s) {
  fputc('"', out);
  for (; *s; s++) {
    unsigned char c = (unsigned char)*s;
    if (c == '"' || c == '\\')
      fprintf(out, "\\%c", c);
    else if (c < 0x20)
      fprintf(out, "\\u%04x", c);
    else
      fputc(c, out);
  }
  fputc('"', out);
}

static void print_result(const char *path, const oa_cbify_data *data, const char *policy,
                         const char *help, const oa_cbify_result *res, long long seed,
                         long long passes, int json);

/* --policy APP.lua: the app's first policy (or the one named by the app's
 * default), decided and learned through the engine like a served request. */
static int run_app(const char *path, const char *app_path, long long seed,
                   long long passes, int json) {
  oa_error err = {0};
  oa_blas_threads(1);
  oa_cbify_data data;
  if (oa_cbify_load(path, &data, &err)) {
    fprintf(stderr, "onearm cbify: %s\n", err.message);
    return 1;
  }
  oa_engine *e = oa_engine_new((uint64_t)seed, &err);
  oa_server_app *app = e ? oa_server_app_load(e, app_path, NULL, &err) : NULL;
  int rc = 1;
  if (app) {
    const char *name = oa_server_app_default_policy(app);
    oa_policy *p = name ? oa_engine_policy(e, name) : oa_engine_policy_at(e, 0);
    oa_cbify_result res;
    if (p && !oa_cbify_run_policy(&data, e, p, (uint64_t)seed, (int)passes, &res, &err)) {
      print_result(path, &data, app_path, oa_policy_name(p), &res, seed, passes, json);
      rc = 0;
    } else if (!p) {
      snprintf(err.message, sizeof err.message, "%s declares no policy", app_path);
    }
  }
  if (rc) fprintf(stderr, "onearm cbify: %s\n", err.message);
  oa_server_app_free(app);
  oa_engine_free(e);
  oa_cbify_data_free(&data);
  return rc;
}

int cli_cbify(int argc, char **argv) {
  const char *path = NULL, *policy = NULL;
  long long seed = 1, passes = 1;
  int json = 0;
  /* Overrides are applied after the preset's defaults are known. */
  enum { O_LAMBDA, O_ALPHA, O_V, O_EPS, O_GAMMA, O_LR, O_NUM };
  double ov[O_NUM];
  int has[O_NUM] = {0}, gamma_constant = 0;
  long long draws = -1, hidden = -1;
  static const char *const dopts[O_NUM] = {"--lambda",  "--alpha", "--v",
                                           "--epsilon", "--gamma", "--lr"};
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    const char *val = i + 1 < argc ? argv[i + 1] : NULL;
    if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
      cbify_usage(stdout);
      return 0;
    } else if (!strcmp(a, "--json")) {
      json = 1;
    } else if (!strcmp(a, "--gamma-constant")) {
      gamma_constant = 1;
    } else if (!strcmp(a, "--policy")) {
      if (!val) {
        fprintf(stderr, "onearm cbify: --policy needs a preset name or an app script\n");
        return 2;
      }
      policy = val;
      i++;
    } else if (!strcmp(a, "--shuffle-seed") || !strcmp(a, "--seed")) {
      if (parse_int(a, val, 0, LLONG_MAX, &seed)) return 2;
      i++;
    } else if (!strcmp(a, "--passes")) {
      if (parse_int(a, val, 1, 1000000, &passes)) return 2;
      i++;
    } else if (!strcmp(a, "--draws")) {
      if (parse_int(a, val, 1, 4096, &draws)) return 2;
      i++;
    } else if (!strcmp(a, "--hidden")) {
      if (parse_int(a, val, 1, 65536, &hidden)) return 2;
      i++;
    } else if (a[0] == '-' && a[1]) {
      int k;
      for (k = 0; k < O_NUM && strcmp(a, dopts[k]); k++) {
      }
      if (k == O_NUM) {
        fprintf(stderr, "onearm cbify: unknown option '%s' (see onearm cbify --help)\n",
                a);
        return 2;
      }
      if (parse_double(a, val, &ov[k])) return 2;
      has[k] = 1;
      i++;
    } else if (!path) {
      path = a;
    } else {
      fprintf(stderr, "onearm cbify: one data file only ('%s' and '%s')\n", path, a);
      return 2;
    }
  }
  if (!path) {
    cbify_usage(stderr);
    return 2;
  }
  if (!policy) policy = oa_cbify_preset_names[0];
  if (ends_with(policy, ".lua")) return run_app(path, policy, seed, passes, json);

  oa_error err = {0};
  oa_cbify_params params;
  if (oa_cbify_preset_defaults(policy, &params, &err)) {
    fprintf(stderr, "onearm cbify: %s; presets:", err.message);
    for (int i = 0; oa_cbify_preset_names[i]; i++)
      fprintf(stderr, " %s", oa_cbify_preset_names[i]);
    fprintf(stderr, "\n");
    return 2;
  }
  if (has[O_LAMBDA]) params.lambda = ov[O_LAMBDA];
  if (has[O_ALPHA]) params.alpha = ov[O_ALPHA];
  if (has[O_V]) params.v = ov[O_V];
  if (has[O_EPS]) params.epsilon = ov[O_EPS];
  if (has[O_GAMMA]) params.gamma = ov[O_GAMMA];
  if (has[O_LR]) params.lr = ov[O_LR];
  if (gamma_constant) params.gamma_sqrt = 0;
  if (draws > 0) params.draws = (int32_t)draws;
  if (hidden > 0) params.hidden = (int32_t)hidden;

  /* The loop is single-threaded by design; BLAS threads would only add
   * synchronisation to the small per-row products. */
  oa_blas_threads(1);
  oa_cbify_data data;
  if (oa_cbify_load(path, &data, &err)) {
    fprintf(stderr, "onearm cbify: %s\n", err.message);
    return 1;
  }
  oa_cbify_learner l;
  oa_cbify_result res;
  int rc =
      oa_cbify_learner_init(&l, policy, &params, data.d, data.k, (uint64_t)seed, &err);
  if (!rc) {
    rc = oa_cbify_run(&data, &l, (uint64_t)seed, (int)passes, &res, &err);
    oa_cbify_learner_free(&l);
  }
  if (rc) {
    fprintf(stderr, "onearm cbify: %s: %s\n", path, err.message);
    oa_cbify_data_free(&data);
    return 1;
  }
  print_result(path, &data, policy, oa_cbify_preset_help(policy), &res, seed, passes,
               json);
  oa_cbify_data_free(&data);
  return 0;
}

static void print_result(const char *path, const oa_cbify_data *data, const char *policy,
                         const char *help, const oa_cbify_result *res, long long seed,
                         long long passes, int json) {
  double rate = res->seconds > 0 ? (double)res->examples / res->seconds : 0;
  if (json) {
    printf("{\"examples\":%lld,\"actions\":%d,\"reward\":%.6f,\"seconds\":%.6f,"
           "\"examples_per_second\":%.0f,\"policy\":",
           (long long)res->examples, res->actions, res->reward, res->seconds, rate);
    json_string(stdout, policy);
    printf("}\n");
  } else {
    printf("%s: %lld rows, %d features (+ bias), %d actions\n", path, (long long)data->n,
           data->d - 1, data->k);
    printf("policy %s (%s)\n", policy, help);
    printf("reward %.4f over %lld decisions (%lld pass%s, shuffle seed %lld)\n",
           res->reward, (long long)res->examples, passes, passes == 1 ? "" : "es", seed);
    printf("learning loop %.4f s, %.0f examples/s\n", res->seconds, rate);
  }
}
