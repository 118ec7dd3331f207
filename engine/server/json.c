/* JSON for the HTTP API over json-c; see json.h. The writer side is plain
 * byte appends (no intermediate json_object trees) because it runs for
 * every response on the hot path. */
#include "server/json.h"

#include <json-c/json.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"

/* ---- parsing ---- */

struct oa_json_parser {
  json_tokener *tok;
};

oa_json_parser *oa_json_parser_new(void) {
  oa_json_parser *p = calloc(1, sizeof *p);
  if (!p) return NULL;
  /* Request bodies are records of records: 32 levels is plenty and bounds
   * the recursion an attacker can cause. */
  p->tok = json_tokener_new_ex(32);
  if (!p->tok) {
    free(p);
    return NULL;
  }
  json_tokener_set_flags(p->tok, JSON_TOKENER_STRICT | JSON_TOKENER_VALIDATE_UTF8);
  return p;
}

void oa_json_parser_free(oa_json_parser *p) {
  if (!p) return;
  json_tokener_free(p->tok);
  free(p);
}

json_object *oa_json_parse(oa_json_parser *p, const char *s, size_t n, oa_error *err) {
  if (n == 0) {
    oa_error_set(err, OA_EINVAL, "the request body is empty; expected a JSON object");
    return NULL;
  }
  if (n > INT32_MAX) {
    oa_error_set(err, OA_EINVAL, "the request body is too large");
    return NULL;
  }
  json_tokener_reset(p->tok);
  json_object *o = json_tokener_parse_ex(p->tok, s, (int)n);
  enum json_tokener_error e = json_tokener_get_error(p->tok);
  if (e == json_tokener_success) {
    size_t off = json_tokener_get_parse_end(p->tok);
    while (off < n &&
           (s[off] == ' ' || s[off] == '\t' || s[off] == '\r' || s[off] == '\n'))
      off++;
    if (off < n) {
      json_object_put(o);
      oa_error_set(err, OA_EINVAL, "malformed JSON: unexpected data at byte %zu", off);
      return NULL;
    }
    if (!o) oa_error_set(err, OA_EINVAL, "expected a JSON object, got null");
    return o;
  }
  if (e == json_tokener_continue) {
    oa_error_set(err, OA_EINVAL, "malformed JSON: the document ends early");
  } else {
    oa_error_set(err, OA_EINVAL, "malformed JSON at byte %zu: %s",
                 json_tokener_get_parse_end(p->tok), json_tokener_error_desc(e));
  }
  return NULL;
}

/* ---- arena ---- */

struct oa_json_block {
  oa_json_block *next;
  size_t size, used;
  _Alignas(16) unsigned char data[];
};

void oa_json_arena_init(oa_json_arena *a) {
  a->head = a->cur = NULL;
}

void oa_json_arena_reset(oa_json_arena *a) {
  for (oa_json_block *b = a->head; b; b = b->next)
    b->used = 0;
  a->cur = a->head;
}

void oa_json_arena_free(oa_json_arena *a) {
  oa_json_block *b = a->head;
  while (b) {
    oa_json_block *next = b->next;
    free(b);
    b = next;
  }
  a->head = a->cur = NULL;
}

void *oa_json_arena_alloc(oa_json_arena *a, size_t bytes) {
  bytes = (bytes + 15) & ~(size_t)15;
  if (bytes == 0) bytes = 16;
  /* Walk forward from the current block: blocks kept from earlier requests
   * are reused in order before a new one is added. */
  while (a->cur && a->cur->size - a->cur->used < bytes) {
    if (!a->cur->next) break;
    a->cur = a->cur->next;
  }
  if (!a->cur || a->cur->size - a->cur->used < bytes) {
    size_t size = bytes > 64 * 1024 ? bytes : 64 * 1024;
    oa_json_block *b = malloc(sizeof *b + size);
    if (!b) return NULL;
    b->next = NULL;
    b->size = size;
    b->used = 0;
    if (a->cur) {
      b->next = a->cur->next;
      a->cur->next = b;
    } else {
      a->head = b;
    }
    a->cur = b;
  }
  void *p = a->cur->data + a->cur->used;
  a->cur->used += bytes;
  memset(p, 0, bytes);
  return p;
}

/* ---- JSON -> values ---- */

static const char *type_word(json_object *v) {
  switch (json_object_get_type(v)) {
  case json_type_null:
    return "null";
  case json_type_boolean:
    return "a boolean";
  case json_type_double:
  case json_type_int:
    return "a number";
  case json_type_string:
    return "a string";
  case json_type_array:
    return "an array";
  case json_type_object:
    return "an object";
  }
  return "a value";
}

static int is_number(json_object *v) {
  json_type t = json_object_get_type(v);
  return t == json_type_int || t == json_type_double;
}

static int mismatch(oa_error *err, const char *what, const char *name, const char *want,
                    json_object *v) {
  return oa_error_set(err, OA_EINVAL, "%s field '%s' must be %s, not %s", what, name,
                      want, type_word(v));
}

static int finite_number(json_object *v, double *out, const char *what, const char *name,
                         oa_error *err) {
  double d = json_object_get_double(v);
  if (!isfinite(d))
    return oa_error_set(err, OA_ENUMERIC, "%s field '%s' is not a finite number", what,
                        name);
  *out = d;
  return 0;
}

static int to_list(json_object *v, oa_value *out, oa_json_arena *a, const char *what,
                   const char *name, oa_error *err) {
  size_t n = json_object_array_length(v);
  const char **strs = oa_json_arena_alloc(a, sizeof *strs * n);
  size_t *lens = oa_json_arena_alloc(a, sizeof *lens * n);
  if (!strs || !lens) return oa_error_set(err, OA_ENOMEM, "out of memory");
  for (size_t i = 0; i < n; i++) {
    json_object *it = json_object_array_get_idx(v, i);
    if (json_object_get_type(it) != json_type_string)
      return oa_error_set(err, OA_EINVAL,
                          "%s field '%s': item %zu must be a string, not %s", what, name,
                          i + 1, type_word(it));
    strs[i] = json_object_get_string(it);
    lens[i] = (size_t)json_object_get_string_len(it);
  }
  out->type = OA_VAL_LIST;
  out->count = (int32_t)n;
  out->strs = strs;
  out->lens = lens;
  out->weights = NULL;
  return 0;
}

static int to_vec(json_object *v, oa_value *out, oa_json_arena *a, const char *what,
                  const char *name, oa_error *err) {
  size_t n = json_object_array_length(v);
  double *vec = oa_json_arena_alloc(a, sizeof *vec * n);
  if (!vec) return oa_error_set(err, OA_ENOMEM, "out of memory");
  for (size_t i = 0; i < n; i++) {
    json_object *it = json_object_array_get_idx(v, i);
    if (!is_number(it))
      return oa_error_set(err, OA_EINVAL,
                          "%s field '%s': item %zu must be a number, not %s", what, name,
                          i + 1, type_word(it));
    if (finite_number(it, &vec[i], what, name, err)) return err ? err->code : OA_ENUMERIC;
  }
  out->type = OA_VAL_VEC;
  out->count = (int32_t)n;
  out->vec = vec;
  return 0;
}

static int to_bag(json_object *v, oa_value *out, oa_json_arena *a, const char *what,
                  const char *name, oa_error *err) {
  size_t n = (size_t)json_object_object_length(v);
  const char **strs = oa_json_arena_alloc(a, sizeof *strs * n);
  size_t *lens = oa_json_arena_alloc(a, sizeof *lens * n);
  double *w = oa_json_arena_alloc(a, sizeof *w * n);
  if (!strs || !lens || !w) return oa_error_set(err, OA_ENOMEM, "out of memory");
  size_t i = 0;
  json_object_object_foreach(v, key, item) {
    if (!is_number(item))
      return oa_error_set(err, OA_EINVAL,
                          "%s field '%s': weight of '%s' must be a number, not %s", what,
                          name, key, type_word(item));
    if (finite_number(item, &w[i], what, name, err)) return err ? err->code : OA_ENUMERIC;
    strs[i] = key;
    lens[i] = strlen(key);
    i++;
  }
  out->type = OA_VAL_LIST;
  out->count = (int32_t)i;
  out->strs = strs;
  out->lens = lens;
  out->weights = w;
  return 0;
}

int oa_json_value(json_object *v, int kind, oa_value *out, oa_json_arena *a,
                  const char *what, const char *name, oa_error *err) {
  memset(out, 0, sizeof *out);
  int any = kind < 0;
  switch (json_object_get_type(v)) {
  case json_type_null:
    return 0;
  case json_type_boolean:
  case json_type_int:
  case json_type_double:
    if (!any && kind != OA_FK_NUM && kind != OA_FK_CYCLIC && kind != OA_FK_CAT)
      return mismatch(err, what, name,
                      kind == OA_FK_SET ? "a list of strings" : "an array of numbers", v);
    out->type = OA_VAL_NUM;
    if (json_object_get_type(v) == json_type_boolean) {
      out->num = json_object_get_boolean(v) ? 1 : 0;
      return 0;
    }
    return finite_number(v, &out->num, what, name, err);
  case json_type_string:
    if (!any && kind != OA_FK_CAT && kind != OA_FK_SET)
      return mismatch(err, what, name,
                      kind == OA_FK_DENSE ? "an array of numbers" : "a number", v);
    if (kind == OA_FK_SET) { /* one tag is a set of one */
      const char **strs = oa_json_arena_alloc(a, sizeof *strs);
      size_t *lens = oa_json_arena_alloc(a, sizeof *lens);
      if (!strs || !lens) return oa_error_set(err, OA_ENOMEM, "out of memory");
      strs[0] = json_object_get_string(v);
      lens[0] = (size_t)json_object_get_string_len(v);
      out->type = OA_VAL_LIST;
      out->count = 1;
      out->strs = strs;
      out->lens = lens;
      return 0;
    }
    out->type = OA_VAL_STR;
    out->str = json_object_get_string(v);
    out->len = (size_t)json_object_get_string_len(v);
    return 0;
  case json_type_array: {
    if (!any && kind != OA_FK_SET && kind != OA_FK_DENSE)
      return mismatch(err, what, name, kind == OA_FK_CAT ? "a string" : "a number", v);
    size_t n = json_object_array_length(v);
    if (n > INT32_MAX)
      return oa_error_set(err, OA_EINVAL, "%s field '%s' is too long", what, name);
    int numbers = kind == OA_FK_DENSE ||
                  (kind < 0 && n > 0 && is_number(json_object_array_get_idx(v, 0)));
    return numbers ? to_vec(v, out, a, what, name, err)
                   : to_list(v, out, a, what, name, err);
  }
  case json_type_object:
    if (!any && kind != OA_FK_SET)
      return mismatch(err, what, name,
                      kind == OA_FK_DENSE ? "an array of numbers"
                      : kind == OA_FK_CAT ? "a string"
                                          : "a number",
                      v);
    return to_bag(v, out, a, what, name, err);
  }
  return oa_error_set(err, OA_EINVAL, "%s field '%s' has an unsupported type", what,
                      name);
}

int oa_json_values_add(const oa_features *fs, oa_side side, json_object *record,
                       oa_value *values, oa_json_arena *a, const char *what,
                       oa_error *err) {
  if (!record || json_object_get_type(record) == json_type_null) return 0;
  if (json_object_get_type(record) != json_type_object)
    return oa_error_set(err, OA_EINVAL, "%s must be an object, not %s", what,
                        type_word(record));
  json_object_object_foreach(record, key, v) {
    int32_t slot = oa_features_slot(fs, side, key);
    if (slot < 0) continue;
    const oa_field_spec *f = oa_features_field(fs, side, slot);
    int rc = oa_json_value(v, f ? (int)f->kind : -1, &values[slot], a, what, key, err);
    if (rc) return rc;
  }
  return 0;
}

int oa_json_values(const oa_features *fs, oa_side side, json_object *record,
                   oa_value *values, oa_json_arena *a, const char *what, oa_error *err) {
  int32_t nf = oa_features_nfields(fs, side);
  memset(values, 0, sizeof *values * (size_t)(nf > 0 ? nf : 0));
  return oa_json_values_add(fs, side, record, values, a, what, err);
}

int oa_json_fields(json_object *record, oa_field **fields, int32_t *n, oa_json_arena *a,
                   const char *what, oa_error *err) {
  *fields = NULL;
  *n = 0;
  if (!record || json_object_get_type(record) == json_type_null) return 0;
  if (json_object_get_type(record) != json_type_object)
    return oa_error_set(err, OA_EINVAL, "%s must be an object, not %s", what,
                        type_word(record));
  size_t count = (size_t)json_object_object_length(record);
  oa_field *f = oa_json_arena_alloc(a, sizeof *f * (count ? count : 1));
  if (!f) return oa_error_set(err, OA_ENOMEM, "out of memory");
  int32_t i = 0;
  json_object_object_foreach(record, key, v) {
    int rc = oa_json_value(v, -1, &f[i].value, a, what, key, err);
    if (rc) return rc;
    f[i].name = key;
    i++;
  }
  *fields = f;
  *n = i;
  return 0;
}

/* ---- writing ---- */

void oa_json_put_raw(oa_buf *b, const char *s) {
  oa_buf_put(b, s, strlen(s));
}

void oa_json_put_str(oa_buf *b, const char *s, size_t n) {
  static const char hex[] = "0123456789abcdef";
  oa_buf_put(b, "\"", 1);
  size_t run = 0; /* bytes that need no escaping are copied in runs */
  for (size_t i = 0; i < n; i++) {
    unsigned char c = (unsigned char)s[i];
    if (c >= 0x20 && c != '"' && c != '\\') continue;
    oa_buf_put(b, s + run, i - run);
    run = i + 1;
    char esc[6] = {'\\', 0};
    size_t len = 2;
    switch (c) {
    case '"':
      esc[1] = '"';
      break;
    case '\\':
      esc[1] = '\\';
      break;
    case '\n':
      esc[1] = 'n';
      break;
    case '\r':
      esc[1] = 'r';
      break;
    case '\t':
      esc[1] = 't';
      break;
    default:
      esc[1] = 'u', esc[2] = '0', esc[3] = '0', esc[4] = hex[c >> 4],
      esc[5] = hex[c & 15];
      len = 6;
    }
    oa_buf_put(b, esc, len);
  }
  oa_buf_put(b, s + run, n - run);
  oa_buf_put(b, "\"", 1);
}

void oa_json_put_int(oa_buf *b, int64_t v) {
  char tmp[24];
  int i = sizeof tmp;
  uint64_t u = v < 0 ? (uint64_t)0 - (uint64_t)v : (uint64_t)v;
  do {
    tmp[--i] = (char)('0' + u % 10);
    u /= 10;
  } while (u);
  if (v < 0) tmp[--i] = '-';
  oa_buf_put(b, tmp + i, sizeof tmp - (size_t)i);
}

void oa_json_put_num(oa_buf *b, double v) {
  if (!isfinite(v)) {
    oa_buf_put(b, "null", 4);
    return;
  }
  if (v == 0) { /* also -0 */
    oa_buf_put(b, "0", 1);
    return;
  }
  if (v == (double)(int64_t)v && fabs(v) < 9007199254740992.0) {
    oa_json_put_int(b, (int64_t)v);
    return;
  }
  /* 15 significant digits read back exactly for most values (0.0025);
   * 17 always do. */
  char tmp[32];
  int n = snprintf(tmp, sizeof tmp, "%.15g", v);
  if (strtod(tmp, NULL) != v) n = snprintf(tmp, sizeof tmp, "%.17g", v);
  oa_buf_put(b, tmp, (size_t)n);
}
