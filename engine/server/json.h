/* JSON for the HTTP API, over json-c: parse request bodies, convert JSON
 * records into oa_value arrays by feature-space slot, and write response
 * bodies straight into byte buffers.
 *
 * Conversion rules (JSON -> oa_value):
 *   number            NUM (must be finite: 1e999 overflows to Inf and is refused)
 *   true / false      NUM 1 / 0
 *   string            STR (for a SET field: a one-item LIST)
 *   [strings]         LIST
 *   {string: number}  weighted LIST (a bag)
 *   [numbers]         VEC
 *   null              NONE (missing)
 * When the field's kind is known (a feature space's slot) the JSON type is
 * checked against it, and a mismatch is an OA_EINVAL error naming the
 * record and the field ("context field 'age' must be a number, not a
 * string"). Fields the space does not declare are ignored.
 *
 * Memory: converted values borrow strings from the json-c objects (keep the
 * parsed document alive while the values are used) and take arrays from an
 * arena that is reset, not freed, between requests. */
#ifndef ONEARM_SERVER_JSON_H
#define ONEARM_SERVER_JSON_H

#include <stddef.h>
#include <stdint.h>

#include "core/buf.h"
#include "core/features.h"
#include "onearm.h"

struct json_object;

/* ---- parsing ---- */

typedef struct oa_json_parser oa_json_parser;
oa_json_parser *oa_json_parser_new(void); /* NULL when out of memory */
void oa_json_parser_free(oa_json_parser *p);
/* Parses exactly one JSON document filling s[0..n) (strict JSON: no NaN,
 * Infinity or trailing garbage). Returns a new reference the caller puts
 * (json_object_put), or NULL with OA_EINVAL and a message saying where.
 * A literal `null` document is also refused (callers want an object). */
struct json_object *oa_json_parse(oa_json_parser *p, const char *s, size_t n,
                                  oa_error *err);

/* ---- arena ---- */

typedef struct oa_json_block oa_json_block;
typedef struct oa_json_arena {
  oa_json_block *head, *cur;
} oa_json_arena;

void oa_json_arena_init(oa_json_arena *a);
/* Forget every allocation but keep the blocks for the next request. */
void oa_json_arena_reset(oa_json_arena *a);
void oa_json_arena_free(oa_json_arena *a);
/* Zeroed, 16-byte aligned memory valid until the next reset; NULL on OOM. */
void *oa_json_arena_alloc(oa_json_arena *a, size_t bytes);

/* ---- JSON -> values ---- */

/* One JSON value into *out. kind < 0: any kind (conversion by JSON type
 * alone). `what` and `name` name the value in error messages. */
int oa_json_value(struct json_object *v, int kind, oa_value *out, oa_json_arena *a,
                  const char *what, const char *name, oa_error *err);

/* A JSON object (or NULL / JSON null: an empty record) into values by slot
 * of one side of fs: values must have oa_features_nfields(fs, side)
 * entries; they are all set (NONE for absent fields). A non-object record
 * is an OA_EINVAL error naming `what`. */
int oa_json_values(const oa_features *fs, oa_side side, struct json_object *record,
                   oa_value *values, oa_json_arena *a, const char *what, oa_error *err);

/* The same without clearing values first: fields of this record replace
 * those already set (the Personalizer API sends a context as a list of
 * records to merge). */
int oa_json_values_add(const oa_features *fs, oa_side side, struct json_object *record,
                       oa_value *values, oa_json_arena *a, const char *what,
                       oa_error *err);

/* A JSON object into named fields (no feature space: for the catalog,
 * which stores actions by field name). *fields is arena memory; names
 * borrow the document. */
int oa_json_fields(struct json_object *record, oa_field **fields, int32_t *n,
                   oa_json_arena *a, const char *what, oa_error *err);

/* ---- writing ---- */

/* A JSON string literal with quotes; control characters, '"' and '\\' are
 * escaped; bytes >= 0x80 pass through (the API emits UTF-8 it was given). */
void oa_json_put_str(oa_buf *b, const char *s, size_t n);
/* A number in the shortest form that reads back exactly; non-finite
 * numbers (which the engine never produces) are written as null. */
void oa_json_put_num(oa_buf *b, double v);
void oa_json_put_int(oa_buf *b, int64_t v);
/* Bytes as they are (punctuation, literal keys). */
void oa_json_put_raw(oa_buf *b, const char *s);

#endif
