#include "core/buf.h"
#include "core/error.h"

#include <stdlib.h>
#include <string.h>

void oa_buf_init(oa_buf *b) { memset(b, 0, sizeof *b); }

void oa_buf_free(oa_buf *b) {
  free(b->data);
  memset(b, 0, sizeof *b);
}

void oa_buf_put(oa_buf *b, const void *p, size_t n) {
  if (b->failed) return;
  if (b->len + n > b->cap) {
    size_t cap = b->cap ? b->cap : 256;
    while (cap < b->len + n) cap *= 2;
    uint8_t *d = realloc(b->data, cap);
    if (!d) {
      b->failed = 1;
      return;
    }
    b->data = d;
    b->cap = cap;
  }
  if (n) memcpy(b->data + b->len, p, n);
  b->len += n;
}

void oa_buf_put_u32(oa_buf *b, uint32_t v) { oa_buf_put(b, &v, sizeof v); }
void oa_buf_put_u64(oa_buf *b, uint64_t v) { oa_buf_put(b, &v, sizeof v); }
void oa_buf_put_i64(oa_buf *b, int64_t v) { oa_buf_put(b, &v, sizeof v); }
void oa_buf_put_f64(oa_buf *b, double v) { oa_buf_put(b, &v, sizeof v); }

void oa_buf_put_str(oa_buf *b, const char *s) {
  uint32_t n = (uint32_t)strlen(s);
  oa_buf_put_u32(b, n);
  oa_buf_put(b, s, n);
}

void oa_reader_init(oa_reader *r, const void *data, size_t len) {
  r->data = data;
  r->len = len;
  r->pos = 0;
  r->failed = 0;
}

int oa_read(oa_reader *r, void *p, size_t n) {
  if (r->failed || n > r->len - r->pos) {
    r->failed = 1;
    memset(p, 0, n);
    return -1;
  }
  memcpy(p, r->data + r->pos, n);
  r->pos += n;
  return 0;
}

uint32_t oa_read_u32(oa_reader *r) {
  uint32_t v;
  oa_read(r, &v, sizeof v);
  return v;
}
uint64_t oa_read_u64(oa_reader *r) {
  uint64_t v;
  oa_read(r, &v, sizeof v);
  return v;
}
int64_t oa_read_i64(oa_reader *r) {
  int64_t v;
  oa_read(r, &v, sizeof v);
  return v;
}
double oa_read_f64(oa_reader *r) {
  double v;
  oa_read(r, &v, sizeof v);
  return v;
}

void oa_read_str(oa_reader *r, char *out, size_t cap) {
  uint32_t n = oa_read_u32(r);
  if (r->failed || n >= cap || n > r->len - r->pos) {
    r->failed = 1;
    if (cap) out[0] = 0;
    return;
  }
  memcpy(out, r->data + r->pos, n);
  out[n] = 0;
  r->pos += n;
}

void oa_buf_put_header(oa_buf *b, const char tag[4], uint32_t version) {
  oa_buf_put(b, tag, 4);
  oa_buf_put_u32(b, version);
}

int oa_read_header(oa_reader *r, const char tag[4], uint32_t max_version, uint32_t *version,
                   oa_error *err) {
  char got[4];
  oa_read(r, got, 4);
  uint32_t v = oa_read_u32(r);
  if (r->failed) return oa_error_set(err, OA_EFORMAT, "truncated data: no '%.4s' header", tag);
  if (memcmp(got, tag, 4) != 0)
    return oa_error_set(err, OA_EFORMAT, "expected a '%.4s' section, found '%.4s'", tag, got);
  if (v == 0 || v > max_version)
    return oa_error_set(err, OA_EFORMAT, "'%.4s' format version %u is not supported (max %u)",
                        tag, v, max_version);
  if (version) *version = v;
  return 0;
}
