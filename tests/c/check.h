/* Minimal assertion helpers for the C unit tests: each test file is one
 * program; a failed CHECK prints where and why and the program exits 1 at
 * the end, so ctest reports it. */
#ifndef ONEARM_TEST_CHECK_H
#define ONEARM_TEST_CHECK_H

#include <math.h>
#include <stdio.h>
#include <stdlib.h>

static int check_failures = 0;

#define CHECK(cond)                                                                      \
  do {                                                                                   \
    if (!(cond)) {                                                                       \
      fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #cond);           \
      check_failures++;                                                                  \
    }                                                                                    \
  } while (0)

#define CHECK_NEAR(a, b, tol)                                                            \
  do {                                                                                   \
    double check_a_ = (a), check_b_ = (b);                                               \
    if (!(fabs(check_a_ - check_b_) <= (tol))) {                                         \
      fprintf(stderr, "%s:%d: CHECK_NEAR failed: %s = %.17g, %s = %.17g, tol %g\n",      \
              __FILE__, __LINE__, #a, check_a_, #b, check_b_, (double)(tol));            \
      check_failures++;                                                                  \
    }                                                                                    \
  } while (0)

#define CHECK_OK(expr)                                                                   \
  do {                                                                                   \
    int check_rc_ = (expr);                                                              \
    if (check_rc_ != 0) {                                                                \
      fprintf(stderr, "%s:%d: %s returned %d\n", __FILE__, __LINE__, #expr, check_rc_);  \
      check_failures++;                                                                  \
    }                                                                                    \
  } while (0)

#define RUN(test)                                                                        \
  do {                                                                                   \
    int before_ = check_failures;                                                        \
    test();                                                                              \
    printf("%s %s\n", check_failures == before_ ? "ok  " : "FAIL", #test);               \
  } while (0)

#define CHECK_DONE() (check_failures ? (fprintf(stderr, "%d check(s) failed\n", check_failures), 1) : 0)

#endif
