/* Error records: every fallible function returns 0 or a negative OA_E* code
 * and, when given a non-NULL oa_error, fills it with a human message. The
 * codes and the record are part of the public API (onearm.h). */
#ifndef ONEARM_CORE_ERROR_H
#define ONEARM_CORE_ERROR_H

#include "onearm.h"

/* Fill err (if non-NULL) with code and a printf-style message; returns code
 * so callers can write `return oa_error_set(err, OA_EINVAL, "...")`. */
int oa_error_set(oa_error *err, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Prefix an existing message, e.g. with the field or policy it concerns. */
int oa_error_prefix(oa_error *err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* 1 when every value is finite (no NaN, no Inf). */
int oa_all_finite(const double *x, long n);

#endif
