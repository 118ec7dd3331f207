/* k-means for the coarse quantizer of approximate retrieval (ivf.h), usable
 * on any float matrix.
 *
 * Seeding is greedy k-means++ on a subsample: each new centre is the best
 * (lowest total squared distance afterwards) of 2 + ln k candidates drawn
 * with probability proportional to the squared distance to the nearest
 * centre so far; plain k-means++ (one candidate) often seeds two centres in
 * one cluster and none in another, which Lloyd iterations cannot undo. For
 * large k the candidate count shrinks so that seeding stays near a couple
 * of seconds;
 * Lloyd iterations then run on a larger subsample, with the assignment step
 * batched through cblas_sgemm: a block of points times the centroid matrix
 * gives every inner product at once, and the L2 distance follows from
 * |x - c|^2 = |x|^2 - 2 x.c + |c|^2 (|x|^2 is the same for every centre, so
 * the nearest centre maximises x.c - |c|^2 / 2).
 *
 * Two variants:
 *   L2         plain Lloyd: a centroid is the mean of its points.
 *   spherical  for inner-product retrieval on (near) unit-norm vectors:
 *              the centroid is the mean direction (the mean rescaled to unit
 *              norm) and points go to the centre of largest x.c. This is the
 *              variant that matches a search ranked by inner product, and
 *              the one the IVF index uses.
 * Empty clusters are repaired after every assignment: an empty centre takes
 * the point that is worst served by its own centre (largest distance or
 * smallest inner product), taken from a cluster that keeps at least one
 * point, so k centres always stay distinct and in use.
 *
 * Everything is deterministic for a given seed (oa_rng); the BLAS thread
 * count does not change the result beyond float rounding of sgemm. */
#ifndef ONEARM_CATALOG_KMEANS_H
#define ONEARM_CATALOG_KMEANS_H

#include <stdint.h>

#include "onearm.h"

typedef struct oa_kmeans_config {
  int32_t k;         /* number of centres, 1 <= k <= n */
  int32_t iters;     /* Lloyd iterations (0: seeding only); default 10 when < 0 */
  uint64_t seed;     /* seeds the subsample and k-means++ draws */
  int32_t spherical; /* 1: unit-norm mean-direction centroids, inner-product assignment */
  int32_t max_per_seed;  /* seeding subsample = max_per_seed * k points (0: 16) */
  int32_t max_per_train; /* training subsample = max_per_train * k points (0: 64) */
} oa_kmeans_config;

/* Cluster the n rows of x (n x dim floats, row stride ld >= dim floats).
 * centroids_out receives k x dim floats (caller allocated). assign_out, if
 * non-NULL, receives the index of the nearest centre of each of the n rows
 * (a final assignment over all rows, not just the subsample). Returns 0, or
 * OA_EINVAL (k out of range, dim < 1, non-finite input), OA_ENOMEM. */
/* The inner product of two float vectors of length d (AVX2/FMA when the
 * build has it); shared by k-means and the IVF index. */
float oa_sdot(const float *a, const float *b, int32_t d);

int oa_kmeans(const float *x, int64_t n, int32_t dim, int64_t ld,
              const oa_kmeans_config *cfg, float *centroids_out, int32_t *assign_out,
              oa_error *err);

/* Nearest centre of each of n rows (same rule as the training: largest x.c
 * when spherical, smallest L2 distance otherwise), batched through sgemm.
 * best_out (optional) receives the score used: x.c (spherical) or the
 * squared distance. Returns 0 or OA_ENOMEM. */
int oa_kmeans_assign(const float *x, int64_t n, int32_t dim, int64_t ld,
                     const float *centroids, int32_t k, int32_t spherical,
                     int32_t *assign_out, float *best_out, oa_error *err);

#endif
