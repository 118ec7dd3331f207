/* onearm: a contextual-bandit engine in C, programmed in Lua 5.4.
 *
 * This is the one header a host includes. Conventions:
 * - Functions return 0 (OA_OK) or a negative OA_E* code and, when given a
 *   non-NULL oa_error, fill it with a human-readable message.
 *   Constructors return NULL and fill the error.
 * - The caller owns what it passes in; the engine copies what it keeps.
 *   Pointers the engine returns are borrowed and stay valid as stated on
 *   each function.
 * - No function runs or closes a libuv loop it was given. */
#ifndef ONEARM_H
#define ONEARM_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ---- Errors ---- */

#define OA_OK        0
#define OA_EINVAL    (-1)  /* bad argument or input (wrong type, bad value) */
#define OA_ENOMEM    (-2)  /* allocation failed */
#define OA_EDIM      (-3)  /* dimension or shape mismatch */
#define OA_ENOTFOUND (-4)  /* unknown policy, action, event */
#define OA_ENUMERIC  (-5)  /* NaN or Inf, or a matrix that is not positive definite */
#define OA_EFORMAT   (-6)  /* corrupt, truncated or incompatible serialized data */
#define OA_EIO       (-7)  /* file or socket error */
#define OA_ESTATE    (-8)  /* the object is not in a state that allows this (closed event) */
#define OA_ESCRIPT   (-9)  /* a Lua script failed */
#define OA_EEXIST    (-10) /* already exists */
#define OA_ELIMIT    (-11) /* a configured limit was reached (table full, budget) */

typedef struct oa_error {
  int code;
  char message[512];
} oa_error;

/* A short static description of a code ("invalid argument"). */
const char *oa_strerror(int code);

/* ---- Values: what a context or an action's field holds ---- */

typedef enum oa_value_type {
  OA_VAL_NONE = 0, /* missing: contributes nothing */
  OA_VAL_NUM,      /* a number (booleans are 0/1) */
  OA_VAL_STR,      /* a string (categorical value) */
  OA_VAL_LIST,     /* a list of strings (a set or bag), optionally weighted */
  OA_VAL_VEC       /* a dense array of numbers (an embedding) */
} oa_value_type;

/* A borrowed view of one field value; nothing here is freed by the engine. */
typedef struct oa_value {
  oa_value_type type;
  double num;               /* OA_VAL_NUM */
  const char *str;          /* OA_VAL_STR */
  size_t len;               /* OA_VAL_STR length */
  int32_t count;            /* OA_VAL_LIST and OA_VAL_VEC length */
  const char *const *strs;  /* OA_VAL_LIST items */
  const size_t *lens;       /* OA_VAL_LIST item lengths */
  const double *weights;    /* OA_VAL_LIST weights, NULL = all 1 */
  const double *vec;        /* OA_VAL_VEC */
} oa_value;

/* A named field; a record is an array of them. */
typedef struct oa_field {
  const char *name;
  oa_value value;
} oa_field;

#ifdef __cplusplus
}
#endif

#endif
