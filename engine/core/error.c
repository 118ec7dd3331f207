#include "core/error.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

int oa_error_set(oa_error *err, int code, const char *fmt, ...) {
  if (err) {
    va_list ap;
    va_start(ap, fmt);
    err->code = code;
    vsnprintf(err->message, sizeof err->message, fmt, ap);
    va_end(ap);
  }
  return code;
}

int oa_error_prefix(oa_error *err, const char *fmt, ...) {
  if (!err) return 0;
  char prefix[sizeof err->message];
  char old[sizeof err->message];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(prefix, sizeof prefix, fmt, ap);
  va_end(ap);
  memcpy(old, err->message, sizeof old);
  /* Truncation is fine: the start of the message says the most. */
  size_t n = strlen(prefix);
  if (n > sizeof err->message - 3) n = sizeof err->message - 3;
  memcpy(err->message, prefix, n);
  memcpy(err->message + n, ": ", 2);
  size_t room = sizeof err->message - n - 3;
  size_t m = strnlen(old, room);
  memcpy(err->message + n + 2, old, m);
  err->message[n + 2 + m] = 0;
  return err->code;
}

const char *oa_strerror(int code) {
  switch (code) {
  case OA_OK: return "ok";
  case OA_EINVAL: return "invalid argument";
  case OA_ENOMEM: return "out of memory";
  case OA_EDIM: return "dimension mismatch";
  case OA_ENOTFOUND: return "not found";
  case OA_ENUMERIC: return "non-finite number";
  case OA_EFORMAT: return "bad serialized data";
  case OA_EIO: return "input/output error";
  case OA_ESTATE: return "wrong state";
  case OA_ESCRIPT: return "script error";
  case OA_EEXIST: return "already exists";
  case OA_ELIMIT: return "limit reached";
  default: return "unknown error";
  }
}

int oa_all_finite(const double *x, long n) {
  for (long i = 0; i < n; i++)
    if (!isfinite(x[i])) return 0;
  return 1;
}
