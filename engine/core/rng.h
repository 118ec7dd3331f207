/* Seeded randomness: xoshiro256** (Blackman & Vigna), seeded through
 * splitmix64 so that any 64-bit seed (an event id's hash, a user's --seed)
 * gives a well-mixed state. Not for cryptography. */
#ifndef ONEARM_CORE_RNG_H
#define ONEARM_CORE_RNG_H

#include <stdint.h>

typedef struct oa_rng {
  uint64_t s[4];
  double spare_normal; /* second value of the last polar-method pair */
  int has_spare;
} oa_rng;

void oa_rng_seed(oa_rng *r, uint64_t seed);
uint64_t oa_rng_next(oa_rng *r);
/* Uniform in [0, 1) with 53 random bits. */
double oa_rng_uniform(oa_rng *r);
/* Uniform integer in [0, n), unbiased; n > 0. */
uint64_t oa_rng_below(oa_rng *r, uint64_t n);
double oa_rng_normal(oa_rng *r);
/* Gamma(shape, 1) for shape > 0 (Marsaglia & Tsang). */
double oa_rng_gamma(oa_rng *r, double shape);
/* Beta(a, b) for a, b > 0. */
double oa_rng_beta(oa_rng *r, double a, double b);
/* Mixes a 64-bit value (splitmix64 finaliser); used to derive seeds. */
uint64_t oa_mix64(uint64_t x);

#endif
