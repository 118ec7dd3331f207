/* Core utilities: PRNG, byte buffers, string map, tensors. */
#include "check.h"
#include "core/buf.h"
#include "core/error.h"
#include "core/rng.h"
#include "core/strmap.h"
#include "core/tensor.h"

#include <string.h>

static void rng_is_reproducible_and_uniform(void) {
  oa_rng a, b;
  oa_rng_seed(&a, 42);
  oa_rng_seed(&b, 42);
  for (int i = 0; i < 1000; i++) CHECK(oa_rng_next(&a) == oa_rng_next(&b));
  double sum = 0, sum2 = 0;
  int n = 200000;
  for (int i = 0; i < n; i++) {
    double u = oa_rng_uniform(&a);
    CHECK(u >= 0 && u < 1);
    sum += u;
  }
  CHECK_NEAR(sum / n, 0.5, 0.005);
  sum = 0;
  for (int i = 0; i < n; i++) {
    double z = oa_rng_normal(&a);
    sum += z;
    sum2 += z * z;
  }
  CHECK_NEAR(sum / n, 0, 0.01);
  CHECK_NEAR(sum2 / n, 1, 0.02);
  sum = 0;
  for (int i = 0; i < n; i++) sum += oa_rng_beta(&a, 2, 6);
  CHECK_NEAR(sum / n, 0.25, 0.005);
  sum = 0;
  for (int i = 0; i < n; i++) sum += oa_rng_gamma(&a, 0.5);
  CHECK_NEAR(sum / n, 0.5, 0.01);
  int counts[7] = {0};
  for (int i = 0; i < 70000; i++) counts[oa_rng_below(&a, 7)]++;
  for (int k = 0; k < 7; k++) CHECK(counts[k] > 9500 && counts[k] < 10500);
}

static void buffers_round_trip_and_detect_truncation(void) {
  oa_buf b;
  oa_buf_init(&b);
  oa_buf_put_header(&b, "TEST", 1);
  oa_buf_put_f64(&b, 3.25);
  oa_buf_put_str(&b, "hello");
  oa_reader r;
  oa_reader_init(&r, b.data, b.len);
  oa_error err = {0};
  CHECK_OK(oa_read_header(&r, "TEST", 1, NULL, &err));
  CHECK(oa_read_f64(&r) == 3.25);
  char s[16];
  oa_read_str(&r, s, sizeof s);
  CHECK(!r.failed && !strcmp(s, "hello"));
  oa_reader_init(&r, b.data, b.len - 2);
  oa_read_header(&r, "TEST", 1, NULL, &err);
  oa_read_f64(&r);
  oa_read_str(&r, s, sizeof s);
  CHECK(r.failed);
  oa_reader_init(&r, b.data, b.len);
  CHECK(oa_read_header(&r, "NOPE", 1, NULL, &err) == OA_EFORMAT);
  CHECK(strstr(err.message, "NOPE") != NULL);
  oa_buf_free(&b);
}

static void strmap_handles_many_keys_and_deletes(void) {
  oa_strmap m;
  oa_strmap_init(&m);
  char key[32];
  for (int i = 0; i < 10000; i++) {
    int n = snprintf(key, sizeof key, "video-%d", i);
    CHECK_OK(oa_strmap_put(&m, key, (size_t)n, i));
  }
  CHECK(m.count == 10000);
  for (int i = 0; i < 10000; i += 2) {
    int n = snprintf(key, sizeof key, "video-%d", i);
    CHECK(oa_strmap_del(&m, key, (size_t)n) == 1);
  }
  for (int i = 0; i < 10000; i++) {
    int n = snprintf(key, sizeof key, "video-%d", i);
    int64_t v = -1;
    int found = oa_strmap_get(&m, key, (size_t)n, &v);
    CHECK(found == (i % 2));
    if (found) CHECK(v == i);
  }
  size_t pos = 0, seen = 0;
  while (oa_strmap_next(&m, &pos, NULL, NULL, NULL)) seen++;
  CHECK(seen == 5000);
  oa_strmap_free(&m);
}

static void tensors_multiply_and_solve(void) {
  oa_error err = {0};
  oa_tensor *A = oa_tensor_new(OA_F64, 3, 3, &err);
  double vals[9] = {4, 2, 0.6, 2, 5, 1, 0.6, 1, 3};
  memcpy(A->data, vals, sizeof vals);
  oa_tensor *x = oa_tensor_new(OA_F64, 3, 1, &err), *y = oa_tensor_new(OA_F64, 3, 1, &err);
  oa_tensor_set(x, 0, 0, 1);
  oa_tensor_set(x, 1, 0, -2);
  oa_tensor_set(x, 2, 0, 0.5);
  CHECK_OK(oa_gemv(1, A, 0, x, 0, y, &err));
  CHECK_NEAR(oa_tensor_get(y, 0, 0), 4 - 4 + 0.3, 1e-12);
  CHECK_OK(oa_cholesky(A, &err));
  CHECK_OK(oa_cholesky_solve(A, y, &err));
  for (int i = 0; i < 3; i++) CHECK_NEAR(oa_tensor_get(y, i, 0), oa_tensor_get(x, i, 0), 1e-12);
  oa_tensor *z = oa_tensor_new(OA_F64, 2, 1, &err);
  CHECK(oa_gemv(1, A, 0, x, 0, z, &err) == OA_EDIM);
  CHECK(strstr(err.message, "gemv") != NULL);
  oa_tensor_free(A);
  oa_tensor_free(x);
  oa_tensor_free(y);
  oa_tensor_free(z);
}

int main(void) {
  RUN(rng_is_reproducible_and_uniform);
  RUN(buffers_round_trip_and_detect_truncation);
  RUN(strmap_handles_many_keys_and_deletes);
  RUN(tensors_multiply_and_solve);
  return CHECK_DONE();
}
