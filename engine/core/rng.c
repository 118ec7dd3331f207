#include "core/rng.h"

#include <math.h>

uint64_t oa_mix64(uint64_t x) {
  x += 0x9e3779b97f4a7c15ULL;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
  return x ^ (x >> 31);
}

void oa_rng_seed(oa_rng *r, uint64_t seed) {
  uint64_t x = seed;
  for (int i = 0; i < 4; i++) {
    x += 0x9e3779b97f4a7c15ULL;
    r->s[i] = oa_mix64(x);
  }
  r->has_spare = 0;
  r->spare_normal = 0;
}

static inline uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

uint64_t oa_rng_next(oa_rng *r) {
  uint64_t *s = r->s;
  uint64_t result = rotl(s[1] * 5, 7) * 9;
  uint64_t t = s[1] << 17;
  s[2] ^= s[0];
  s[3] ^= s[1];
  s[1] ^= s[2];
  s[0] ^= s[3];
  s[2] ^= t;
  s[3] = rotl(s[3], 45);
  return result;
}

double oa_rng_uniform(oa_rng *r) { return (double)(oa_rng_next(r) >> 11) * 0x1.0p-53; }

uint64_t oa_rng_below(oa_rng *r, uint64_t n) {
  /* Lemire's multiply-shift with rejection of the biased low range. */
  __uint128_t m = (__uint128_t)oa_rng_next(r) * n;
  uint64_t low = (uint64_t)m;
  if (low < n) {
    uint64_t threshold = -n % n;
    while (low < threshold) {
      m = (__uint128_t)oa_rng_next(r) * n;
      low = (uint64_t)m;
    }
  }
  return (uint64_t)(m >> 64);
}

double oa_rng_normal(oa_rng *r) {
  if (r->has_spare) {
    r->has_spare = 0;
    return r->spare_normal;
  }
  double u, v, s;
  do {
    u = 2.0 * oa_rng_uniform(r) - 1.0;
    v = 2.0 * oa_rng_uniform(r) - 1.0;
    s = u * u + v * v;
  } while (s >= 1.0 || s == 0.0);
  double f = sqrt(-2.0 * log(s) / s);
  r->spare_normal = v * f;
  r->has_spare = 1;
  return u * f;
}

double oa_rng_gamma(oa_rng *r, double shape) {
  if (shape < 1.0) {
    /* Boost: Gamma(a) = Gamma(a + 1) * U^(1/a). */
    double u = oa_rng_uniform(r);
    return oa_rng_gamma(r, shape + 1.0) * pow(u > 0 ? u : 0x1.0p-53, 1.0 / shape);
  }
  double d = shape - 1.0 / 3.0, c = 1.0 / sqrt(9.0 * d);
  for (;;) {
    double x, v;
    do {
      x = oa_rng_normal(r);
      v = 1.0 + c * x;
    } while (v <= 0.0);
    v = v * v * v;
    double u = oa_rng_uniform(r);
    if (u < 1.0 - 0.0331 * x * x * x * x) return d * v;
    if (log(u) < 0.5 * x * x + d * (1.0 - v + log(v))) return d * v;
  }
}

double oa_rng_beta(oa_rng *r, double a, double b) {
  double x = oa_rng_gamma(r, a), y = oa_rng_gamma(r, b);
  double s = x + y;
  return s > 0 ? x / s : 0.5;
}
