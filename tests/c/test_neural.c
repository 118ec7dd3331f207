/* Neural models: the MLP (plain and neural-linear) and the REINFORCE softmax
 * policy. Checks backpropagation against finite differences, that each
 * model learns a small problem, the neural-linear posterior, save/load, and
 * that bad input changes nothing. Everything is seeded. */
#include "check.h"
#include "core/buf.h"
#include "core/error.h"
#include "core/rng.h"
#include "models/mlp_internal.h"
#include "models/model.h"

#include <string.h>

static oa_example example(const double *x, double r) {
  oa_example e = {.x = x, .arm = -1, .reward = r, .prob = 1};
  return e;
}

/* Backpropagation against central differences of the float32 loss. The
 * loss itself is accumulated in double, so with eps = 1e-3 the difference
 * quotient is good to ~1e-4; the tolerance is 2% relative plus 3e-4. */
static void check_gradients(int sigmoid_output) {
  oa_mlp_config cfg = {.dim = 4,
                       .n_hidden = 2,
                       .hidden = {6, 5},
                       .sigmoid_output = sigmoid_output,
                       .l2 = 0.01,
                       .seed = 11};
  oa_error err = {0};
  oa_model *m = oa_mlp_new(&cfg, &err);
  CHECK(m != NULL);
  if (!m) return;
  oa_rng rng;
  oa_rng_seed(&rng, 5);
  enum { N = 16 };
  double x[N * 4], y[N];
  for (int i = 0; i < N * 4; i++)
    x[i] = 2 * oa_rng_uniform(&rng) - 1;
  for (int i = 0; i < N; i++)
    y[i] = sigmoid_output ? (i % 3 == 0) : oa_rng_normal(&rng);
  size_t np;
  float *w = oa__mlp_params(m, &np);
  CHECK(np == (4 * 6 + 6) + (6 * 5 + 5) + (5 + 1));
  /* Biases start at zero, which puts a row whose previous layer is all
   * zero exactly on a ReLU kink, where the difference quotient is no
   * derivative. Random biases move every pre-activation off the kinks. */
  for (size_t j = 0; j < np; j++)
    w[j] += (float)(0.1 * oa_rng_normal(&rng));
  float *grad = malloc(sizeof(float) * np);
  double loss;
  CHECK_OK(oa__mlp_loss_grad(m, x, y, N, &loss, grad, &err));
  int bad = 0;
  double worst = 0;
  for (size_t j = 0; j < np; j++) {
    float w0 = w[j];
    w[j] = w0 + 1e-3f;
    double hi_step = (double)w[j] - w0, lp, lm;
    oa__mlp_loss_grad(m, x, y, N, &lp, NULL, &err);
    w[j] = w0 - 1e-3f;
    double lo_step = (double)w0 - w[j];
    oa__mlp_loss_grad(m, x, y, N, &lm, NULL, &err);
    w[j] = w0;
    double fd = (lp - lm) / (hi_step + lo_step), g = grad[j];
    double diff = fabs(fd - g), tol = 0.02 * fmax(fabs(fd), fabs(g)) + 3e-4;
    if (diff > tol) {
      bad++;
      fprintf(stderr, "  param %zu: backprop %g, finite difference %g\n", j, g, fd);
    }
    if (diff > worst) worst = diff;
  }
  if (bad)
    fprintf(stderr, "  %d of %zu gradients off, worst |diff| %g\n", bad, np, worst);
  CHECK(bad == 0);
  /* Parameters are unchanged by the loss evaluation. */
  double loss2;
  CHECK_OK(oa__mlp_loss_grad(m, x, y, N, &loss2, NULL, &err));
  CHECK(loss == loss2);
  free(grad);
  oa_model_free(m);
}

static void mlp_gradients_match_finite_differences_bce(void) {
  check_gradients(1);
}
static void mlp_gradients_match_finite_differences_squared(void) {
  check_gradients(0);
}

/* Mean squared error of the model's mean on n rows of 2 features. */
static double mse(oa_model *m, const double *x, const double *y, int n) {
  double *mean = malloc(sizeof(double) * n), s = 0;
  oa_batch b = {.x = x, .ldx = 2, .n = n, .d = 2};
  oa_error err = {0};
  CHECK_OK(oa_model_score(m, &b, mean, NULL, &err));
  for (int i = 0; i < n; i++)
    s += (mean[i] - y[i]) * (mean[i] - y[i]);
  free(mean);
  return s / n;
}

/* XOR-like rewards over 2-dim rows: no linear model can fit them. */
static void learn_xor(int sigmoid_output) {
  oa_mlp_config cfg = {.dim = 2,
                       .n_hidden = 2,
                       .hidden = {16, 16},
                       .sigmoid_output = sigmoid_output,
                       .lr = 0.01,
                       .seed = 3};
  oa_error err = {0};
  oa_model *m = oa_mlp_new(&cfg, &err);
  CHECK(m != NULL);
  if (!m) return;
  enum { T = 400 };
  double tx[T * 2], ty[T];
  oa_rng rng;
  oa_rng_seed(&rng, 99);
  for (int i = 0; i < T; i++) {
    tx[2 * i] = 2 * oa_rng_uniform(&rng) - 1;
    tx[2 * i + 1] = 2 * oa_rng_uniform(&rng) - 1;
    double p = tx[2 * i] * tx[2 * i + 1];
    ty[i] = sigmoid_output ? (p > 0) : 2 * p;
  }
  double before = mse(m, tx, ty, T);
  for (int t = 0; t < 4000; t++) {
    double x[2] = {2 * oa_rng_uniform(&rng) - 1, 2 * oa_rng_uniform(&rng) - 1};
    double p = x[0] * x[1];
    oa_example e = example(x, sigmoid_output ? (p > 0) : 2 * p);
    CHECK_OK(oa_model_update(m, &e, 1, &err));
  }
  double after = mse(m, tx, ty, T);
  printf("  %s output: mse %.4f -> %.4f\n", sigmoid_output ? "sigmoid" : "linear", before,
         after);
  CHECK(after < before / 4);
  CHECK(m->updates == 4000);
  oa_model_free(m);
}

static void mlp_learns_xor_sigmoid(void) {
  learn_xor(1);
}
static void mlp_learns_xor_linear(void) {
  learn_xor(0);
}

static void neural_linear_width_shrinks_and_samples_center_on_mean(void) {
  oa_mlp_config cfg = {
      .dim = 2, .n_hidden = 1, .hidden = {8}, .neural_linear = 1, .lr = 0.01, .seed = 7};
  oa_error err = {0};
  oa_model *m = oa_mlp_new(&cfg, &err);
  CHECK(m != NULL);
  if (!m) return;
  CHECK(!strcmp(m->ops->kind, "neural_linear"));
  double q[4] = {0.3, -0.5, -0.8, 0.1};
  oa_batch b = {.x = q, .ldx = 2, .n = 2, .d = 2};
  double mean0[2], width0[2], mean[2], width[2];
  CHECK_OK(oa_model_score(m, &b, mean0, width0, &err));
  CHECK(width0[0] > 0 && width0[1] > 0);
  oa_rng rng;
  oa_rng_seed(&rng, 1);
  /* Reward 0.5 + 0.3 x0 + noise; 1200 updates cross two rebuilds. */
  for (int t = 0; t < 1200; t++) {
    double x[2] = {2 * oa_rng_uniform(&rng) - 1, 2 * oa_rng_uniform(&rng) - 1};
    oa_example e = example(x, 0.5 + 0.3 * x[0] + 0.05 * oa_rng_normal(&rng));
    CHECK_OK(oa_model_update(m, &e, 1, &err));
    if (t == 99) {
      CHECK_OK(oa_model_score(m, &b, mean, width, &err));
      CHECK(width[0] < width0[0] / 3 && width[1] < width0[1] / 3);
    }
  }
  CHECK_OK(oa_model_score(m, &b, mean, width, &err));
  printf("  width %.3f -> %.4f, mean %.3f (target %.3f)\n", width0[0], width[0], mean[0],
         0.5 + 0.3 * q[0]);
  CHECK(width[0] < width0[0] / 10);
  CHECK_NEAR(mean[0], 0.5 + 0.3 * q[0], 0.05);
  CHECK_NEAR(mean[1], 0.5 + 0.3 * q[2], 0.05);
  /* Posterior draws: mean h^T theta and standard deviation v * width. */
  enum { K = 4000 };
  double *out = malloc(sizeof(double) * K * 2);
  double v;
  CHECK_OK(m->ops->set_param(m, "v", 2.0, &err));
  CHECK_OK(m->ops->get_param(m, "v", &v, &err));
  CHECK(v == 2.0);
  CHECK_OK(oa_model_sample(m, &b, K, &rng, out, &err));
  for (int i = 0; i < 2; i++) {
    double s = 0, s2 = 0;
    for (int k = 0; k < K; k++)
      s += out[k * 2 + i];
    s /= K;
    for (int k = 0; k < K; k++)
      s2 += (out[k * 2 + i] - s) * (out[k * 2 + i] - s);
    double sd = sqrt(s2 / (K - 1));
    CHECK_NEAR(s, mean[i], 5 * v * width[i] / sqrt(K));
    CHECK_NEAR(sd, v * width[i], 0.1 * v * width[i]);
  }
  free(out);
  double skipped;
  CHECK_OK(m->ops->get_param(m, "skipped_steps", &skipped, &err));
  CHECK(skipped == 0);
  oa_model_free(m);
}

static void reinforce_learns_the_paying_candidate(void) {
  oa_reinforce_config cfg = {.dim = 3};
  oa_error err = {0};
  oa_model *m = oa_reinforce_new(&cfg, &err);
  CHECK(m != NULL);
  if (!m) return;
  CHECK(m->ops->needs_candidates);
  /* Three fixed one-hot candidates; the first always pays 1. */
  double cand[9] = {1, 0, 0, 0, 1, 0, 0, 0, 1};
  oa_batch b = {.x = cand, .ldx = 3, .n = 3, .d = 3};
  oa_rng rng;
  oa_rng_seed(&rng, 2024);
  double logits[3], width[3], pi[3];
  for (int t = 0; t < 3000; t++) {
    CHECK_OK(oa_model_score(m, &b, logits, width, &err));
    double top = fmax(logits[0], fmax(logits[1], logits[2])), z = 0;
    for (int c = 0; c < 3; c++)
      z += (pi[c] = exp(logits[c] - top));
    for (int c = 0; c < 3; c++)
      pi[c] /= z;
    double u = oa_rng_uniform(&rng);
    int chosen = u < pi[0] ? 0 : u < pi[0] + pi[1] ? 1 : 2;
    oa_example e = {.x = cand + 3 * chosen,
                    .arm = -1,
                    .reward = chosen == 0,
                    .prob = pi[chosen],
                    .n_cand = 3,
                    .cand_x = cand,
                    .cand_prob = pi,
                    .chosen = chosen};
    CHECK_OK(oa_model_update(m, &e, 1, &err));
  }
  CHECK(width[0] == 0);
  printf("  p(paying) after 3000 updates: %.3f\n", pi[0]);
  CHECK(pi[0] > 0.9);
  /* Without the candidate set it cannot learn. */
  oa_example bare = {.x = cand, .arm = -1, .reward = 1, .prob = 1};
  CHECK(oa_model_update(m, &bare, 1, &err) == OA_EINVAL);
  double v;
  CHECK_OK(m->ops->set_param(m, "temperature", 0.5, &err));
  CHECK_OK(m->ops->get_param(m, "temperature", &v, &err));
  CHECK(v == 0.5);
  CHECK(m->ops->set_param(m, "alpha", 1, &err) == OA_EINVAL);
  CHECK(m->ops->set_param(m, "lr", -1, &err) == OA_EINVAL);
  oa_model_free(m);
}

/* Feed n random examples with rewards in [0, 1]. */
static void feed(oa_model *m, int n, uint64_t seed, int dim) {
  oa_rng rng;
  oa_rng_seed(&rng, seed);
  oa_error err = {0};
  double x[8];
  for (int t = 0; t < n; t++) {
    for (int k = 0; k < dim; k++)
      x[k] = 2 * oa_rng_uniform(&rng) - 1;
    oa_example e = example(x, x[0] * x[1] > 0);
    CHECK_OK(oa_model_update(m, &e, 1, &err));
  }
}

static int same_scores(oa_model *a, oa_model *b, const double *x, int n, int dim) {
  double ma[64], wa[64], mb[64], wb[64];
  oa_batch bt = {.x = x, .ldx = dim, .n = n, .d = dim};
  oa_error err = {0};
  if (oa_model_score(a, &bt, ma, wa, &err) || oa_model_score(b, &bt, mb, wb, &err))
    return 0;
  return !memcmp(ma, mb, sizeof(double) * n) && !memcmp(wa, wb, sizeof(double) * n);
}

static void save_load_round_trip(int neural_linear) {
  oa_mlp_config cfg = {.dim = 3,
                       .n_hidden = 2,
                       .hidden = {8, 6},
                       .sigmoid_output = 1,
                       .replay = 300,
                       .neural_linear = neural_linear,
                       .forget = 0.999,
                       .seed = 21};
  oa_error err = {0};
  oa_model *a = oa_mlp_new(&cfg, &err);
  cfg.seed = 22; /* different initial weights: load must replace them */
  oa_model *b = oa_mlp_new(&cfg, &err);
  CHECK(a && b);
  if (!a || !b) return;
  feed(a, 700, 5, 3);
  double q[30];
  oa_rng rng;
  oa_rng_seed(&rng, 8);
  for (int i = 0; i < 30; i++)
    q[i] = 2 * oa_rng_uniform(&rng) - 1;
  CHECK(!same_scores(a, b, q, 10, 3));
  oa_buf buf;
  oa_buf_init(&buf);
  CHECK_OK(oa_model_save(a, &buf, &err));
  oa_reader r;
  oa_reader_init(&r, buf.data, buf.len);
  CHECK_OK(oa_model_load(b, &r, &err));
  CHECK(r.pos == buf.len);
  CHECK(b->updates == a->updates);
  CHECK(same_scores(a, b, q, 10, 3));
  /* The replay, Adam state, counters and PRNG came along: both models
   * keep learning identically. */
  feed(a, 600, 6, 3);
  feed(b, 600, 6, 3);
  CHECK(same_scores(a, b, q, 10, 3));
  if (neural_linear) {
    double sa[40], sb[40];
    oa_rng ra, rb;
    oa_rng_seed(&ra, 4);
    oa_rng_seed(&rb, 4);
    oa_batch bt = {.x = q, .ldx = 3, .n = 10, .d = 3};
    CHECK_OK(oa_model_sample(a, &bt, 4, &ra, sa, &err));
    CHECK_OK(oa_model_sample(b, &bt, 4, &rb, sb, &err));
    CHECK(!memcmp(sa, sb, sizeof sa));
  } else {
    oa_rng ra;
    oa_batch bt = {.x = q, .ldx = 3, .n = 10, .d = 3};
    double s[10];
    CHECK(oa_model_sample(a, &bt, 1, &ra, s, &err) == OA_EINVAL);
  }
  CHECK(oa_model_size(a) > 300 * 4 * sizeof(float));
  oa_buf_free(&buf);
  oa_model_free(a);
  oa_model_free(b);
}

static void mlp_save_load_round_trip(void) {
  save_load_round_trip(0);
}
static void neural_linear_save_load_round_trip(void) {
  save_load_round_trip(1);
}

static void mlp_bad_load_leaves_the_model_unchanged(void) {
  oa_mlp_config cfg = {.dim = 3,
                       .n_hidden = 2,
                       .hidden = {8, 6},
                       .sigmoid_output = 1,
                       .replay = 200,
                       .seed = 1};
  oa_error err = {0};
  oa_model *a = oa_mlp_new(&cfg, &err);
  cfg.hidden[1] = 5;
  cfg.seed = 2;
  oa_model *other = oa_mlp_new(&cfg, &err);
  cfg.hidden[1] = 6;
  cfg.neural_linear = 1;
  oa_model *nl = oa_mlp_new(&cfg, &err);
  cfg.neural_linear = 0;
  cfg.seed = 3;
  oa_model *same = oa_mlp_new(&cfg, &err);
  CHECK(a && other && nl && same);
  if (!a || !other || !nl || !same) return;
  feed(a, 100, 1, 3);
  feed(other, 50, 2, 3);
  oa_buf buf;
  oa_buf_init(&buf);
  CHECK_OK(oa_model_save(a, &buf, &err));
  double q[12] = {0.1, 0.2, 0.3, -0.4, 0.5, -0.6, 0.7, 0.8, -0.9, 0.0, 0.3, 0.6};
  double before[4], after[4];
  oa_batch bt = {.x = q, .ldx = 3, .n = 4, .d = 3};

  /* Another hidden layer size. */
  CHECK_OK(oa_model_score(other, &bt, before, NULL, &err));
  oa_reader r;
  oa_reader_init(&r, buf.data, buf.len);
  CHECK(oa_model_load(other, &r, &err) == OA_EDIM);
  CHECK(strstr(err.message, "layer") != NULL);
  CHECK_OK(oa_model_score(other, &bt, after, NULL, &err));
  CHECK(!memcmp(before, after, sizeof before));
  CHECK(other->updates == 50);

  /* The other mode. */
  oa_reader_init(&r, buf.data, buf.len);
  CHECK(oa_model_load(nl, &r, &err) == OA_EFORMAT);
  CHECK(strstr(err.message, "neural_linear") != NULL);

  /* Truncated data, at many cut points. */
  CHECK_OK(oa_model_score(same, &bt, before, NULL, &err));
  for (size_t cut = 0; cut < buf.len; cut += 1 + buf.len / 50) {
    oa_reader_init(&r, buf.data, cut);
    CHECK(oa_model_load(same, &r, &err) != 0);
  }
  CHECK_OK(oa_model_score(same, &bt, after, NULL, &err));
  CHECK(!memcmp(before, after, sizeof before));
  CHECK(same->updates == 0);
  oa_buf_free(&buf);
  oa_model_free(a);
  oa_model_free(other);
  oa_model_free(nl);
  oa_model_free(same);
}

static void reinforce_save_load_round_trip(void) {
  oa_reinforce_config cfg = {.dim = 3, .lr = 0.1};
  oa_error err = {0};
  oa_model *a = oa_reinforce_new(&cfg, &err), *b = oa_reinforce_new(&cfg, &err);
  cfg.dim = 4;
  oa_model *c = oa_reinforce_new(&cfg, &err);
  CHECK(a && b && c);
  if (!a || !b || !c) return;
  double cand[9] = {1, 0.5, 0, 0, 1, 0.2, 0.3, 0, 1}, pi[3] = {1.0 / 3, 1.0 / 3, 1.0 / 3};
  for (int t = 0; t < 50; t++) {
    oa_example e = {.x = cand + 3 * (t % 3),
                    .arm = -1,
                    .reward = t % 3 == 1,
                    .prob = pi[0],
                    .n_cand = 3,
                    .cand_x = cand,
                    .cand_prob = pi,
                    .chosen = t % 3};
    CHECK_OK(oa_model_update(a, &e, 1, &err));
  }
  oa_buf buf;
  oa_buf_init(&buf);
  CHECK_OK(oa_model_save(a, &buf, &err));
  oa_reader r;
  oa_reader_init(&r, buf.data, buf.len);
  CHECK_OK(oa_model_load(b, &r, &err));
  CHECK(same_scores(a, b, cand, 3, 3));
  double ba, bb;
  CHECK_OK(a->ops->get_param(a, "baseline", &ba, &err));
  CHECK_OK(b->ops->get_param(b, "baseline", &bb, &err));
  CHECK(ba == bb && ba > 0);
  oa_reader_init(&r, buf.data, buf.len);
  CHECK(oa_model_load(c, &r, &err) == OA_EDIM);
  oa_reader_init(&r, buf.data, buf.len - 3);
  oa_model *d = oa_reinforce_new(&(oa_reinforce_config){.dim = 3}, &err);
  CHECK(oa_model_load(d, &r, &err) == OA_EFORMAT);
  double l[3];
  oa_batch bt = {.x = cand, .ldx = 3, .n = 3, .d = 3};
  CHECK_OK(oa_model_score(d, &bt, l, NULL, &err));
  CHECK(l[0] == 0 && l[1] == 0 && l[2] == 0);
  oa_buf_free(&buf);
  oa_model_free(a);
  oa_model_free(b);
  oa_model_free(c);
  oa_model_free(d);
}

static void bad_input_is_rejected_and_changes_nothing(void) {
  oa_mlp_config cfg = {.dim = 2,
                       .n_hidden = 1,
                       .hidden = {4},
                       .sigmoid_output = 1,
                       .neural_linear = 1,
                       .seed = 9};
  oa_error err = {0};
  oa_model *m = oa_mlp_new(&cfg, &err);
  CHECK(m != NULL);
  if (!m) return;
  feed(m, 20, 3, 2);
  double q[4] = {0.2, 0.4, -0.3, 0.9}, before[2], wb[2], after[2], wa[2];
  oa_batch bt = {.x = q, .ldx = 2, .n = 2, .d = 2};
  CHECK_OK(oa_model_score(m, &bt, before, wb, &err));
  double x[2] = {0.5, 0.5}, bad[2] = {NAN, 0.5}, huge[2] = {1e300, 0};
  oa_example e[2] = {example(x, 1), example(x, NAN)};
  CHECK(oa_model_update(m, e, 2, &err) == OA_ENUMERIC);
  e[1] = example(x, 2); /* outside [0, 1] for a sigmoid output */
  CHECK(oa_model_update(m, e, 2, &err) == OA_EINVAL);
  e[1] = example(bad, 1);
  CHECK(oa_model_update(m, e, 2, &err) == OA_ENUMERIC);
  e[1] = example(huge, 1);
  CHECK(oa_model_update(m, e, 2, &err) == OA_ENUMERIC);
  CHECK(m->updates == 20);
  CHECK_OK(oa_model_score(m, &bt, after, wa, &err));
  CHECK(!memcmp(before, after, sizeof before) && !memcmp(wb, wa, sizeof wb));
  /* Scoring a row beyond float range is refused too. */
  oa_batch hb = {.x = huge, .ldx = 2, .n = 1, .d = 2};
  CHECK(oa_model_score(m, &hb, after, NULL, &err) == OA_ENUMERIC);
  /* Parameters. */
  CHECK(m->ops->set_param(m, "forget", 1.5, &err) == OA_EINVAL);
  CHECK(m->ops->set_param(m, "lr", NAN, &err) == OA_EINVAL);
  CHECK(m->ops->set_param(m, "gamma", 1, &err) == OA_EINVAL);
  CHECK_OK(m->ops->set_param(m, "forget", 0.99, &err));
  oa_model_free(m);

  /* A plain mlp has no posterior parameters, and bad configs are refused. */
  cfg.neural_linear = 0;
  m = oa_mlp_new(&cfg, &err);
  CHECK(m && !strcmp(m->ops->kind, "mlp"));
  CHECK(m->ops->set_param(m, "v", 1, &err) == OA_EINVAL);
  double lr;
  CHECK_OK(m->ops->get_param(m, "lr", &lr, &err));
  CHECK(lr == 1e-3);
  oa_model_free(m);
  cfg.n_hidden = 0;
  cfg.neural_linear = 1;
  CHECK(oa_mlp_new(&cfg, &err) == NULL && err.code == OA_EINVAL);
  cfg.n_hidden = 9;
  CHECK(oa_mlp_new(&cfg, &err) == NULL);

  /* REINFORCE: non-finite candidate features or reward. */
  oa_model *r = oa_reinforce_new(&(oa_reinforce_config){.dim = 2}, &err);
  double cand[4] = {1, 0, NAN, 1}, pi[2] = {0.5, 0.5};
  oa_example re = {.x = cand,
                   .arm = -1,
                   .reward = 1,
                   .prob = 0.5,
                   .n_cand = 2,
                   .cand_x = cand,
                   .cand_prob = pi,
                   .chosen = 0};
  CHECK(oa_model_update(r, &re, 1, &err) == OA_ENUMERIC);
  cand[2] = 0;
  re.reward = NAN;
  CHECK(oa_model_update(r, &re, 1, &err) == OA_ENUMERIC);
  CHECK(r->updates == 0);
  oa_model_free(r);
}

/* Batches larger than the internal chunk (256 rows), and ldx == 0, give the
 * same numbers as scoring row by row. */
static void large_batches_match_row_by_row(void) {
  oa_mlp_config cfg = {
      .dim = 3, .n_hidden = 2, .hidden = {8, 6}, .neural_linear = 1, .seed = 4};
  oa_error err = {0};
  oa_model *m = oa_mlp_new(&cfg, &err);
  CHECK(m != NULL);
  if (!m) return;
  feed(m, 100, 7, 3);
  enum { N = 700, K = 3 };
  double *x = malloc(sizeof(double) * N * 3), *mean = malloc(sizeof(double) * N),
         *width = malloc(sizeof(double) * N), *draws = malloc(sizeof(double) * N * K);
  oa_rng rng;
  oa_rng_seed(&rng, 12);
  for (int i = 0; i < N * 3; i++)
    x[i] = 2 * oa_rng_uniform(&rng) - 1;
  oa_batch b = {.x = x, .ldx = 3, .n = N, .d = 3};
  CHECK_OK(oa_model_score(m, &b, mean, width, &err));
  oa_rng_seed(&rng, 13);
  CHECK_OK(oa_model_sample(m, &b, K, &rng, draws, &err));
  int off = 0;
  for (int i = 0; i < N; i += 37) {
    double m1, w1;
    oa_batch one = {.x = x + 3 * i, .ldx = 3, .n = 1, .d = 3};
    CHECK_OK(oa_model_score(m, &one, &m1, &w1, &err));
    if (fabs(m1 - mean[i]) > 1e-5 || fabs(w1 - width[i]) > 1e-5) off++;
  }
  CHECK(off == 0);
  /* Draws: the same thetas across chunks, so a row's draws line up with the
   * same draws of a single-row call made from the same PRNG state. */
  double d1[K];
  oa_batch last = {.x = x + 3 * (N - 1), .ldx = 3, .n = 1, .d = 3};
  oa_rng_seed(&rng, 13);
  CHECK_OK(oa_model_sample(m, &last, K, &rng, d1, &err));
  for (int k = 0; k < K; k++)
    CHECK_NEAR(d1[k], draws[k * N + N - 1], 1e-5);
  /* Every row the same vector. */
  oa_batch same = {.x = x, .ldx = 0, .n = N, .d = 3};
  CHECK_OK(oa_model_score(m, &same, mean + 0, width, &err));
  for (int i = 1; i < N; i++)
    CHECK(mean[i] == mean[0] && width[i] == width[0]);
  free(x);
  free(mean);
  free(width);
  free(draws);
  oa_model_free(m);
}

int main(void) {
  RUN(mlp_gradients_match_finite_differences_bce);
  RUN(mlp_gradients_match_finite_differences_squared);
  RUN(mlp_learns_xor_sigmoid);
  RUN(mlp_learns_xor_linear);
  RUN(neural_linear_width_shrinks_and_samples_center_on_mean);
  RUN(reinforce_learns_the_paying_candidate);
  RUN(mlp_save_load_round_trip);
  RUN(neural_linear_save_load_round_trip);
  RUN(mlp_bad_load_leaves_the_model_unchanged);
  RUN(reinforce_save_load_round_trip);
  RUN(bad_input_is_rejected_and_changes_nothing);
  RUN(large_batches_match_row_by_row);
  return CHECK_DONE();
}
