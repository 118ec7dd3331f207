/* Byte buffers for save/load. A writer appends and grows; a reader walks a
 * borrowed byte range and never reads past its end. Both record a sticky
 * failure flag so a long sequence of puts/gets is checked once at the end.
 * Numbers are stored little-endian in native width (x86-64, aarch64). */
#ifndef ONEARM_CORE_BUF_H
#define ONEARM_CORE_BUF_H

#include <stddef.h>
#include <stdint.h>

typedef struct oa_buf {
  uint8_t *data; /* owned; free with oa_buf_free */
  size_t len, cap;
  int failed; /* set when an allocation failed; later puts are ignored */
} oa_buf;

void oa_buf_init(oa_buf *b);
void oa_buf_free(oa_buf *b);
void oa_buf_put(oa_buf *b, const void *p, size_t n);
void oa_buf_put_u32(oa_buf *b, uint32_t v);
void oa_buf_put_u64(oa_buf *b, uint64_t v);
void oa_buf_put_i64(oa_buf *b, int64_t v);
void oa_buf_put_f64(oa_buf *b, double v);
/* Length-prefixed (u32) string. */
void oa_buf_put_str(oa_buf *b, const char *s);

typedef struct oa_reader {
  const uint8_t *data; /* borrowed */
  size_t len, pos;
  int failed; /* set on a read past the end; later reads return zeros */
} oa_reader;

void oa_reader_init(oa_reader *r, const void *data, size_t len);
int oa_read(oa_reader *r, void *p, size_t n); /* 0 or -1 */
uint32_t oa_read_u32(oa_reader *r);
uint64_t oa_read_u64(oa_reader *r);
int64_t oa_read_i64(oa_reader *r);
double oa_read_f64(oa_reader *r);
/* Copies a length-prefixed string into out (NUL-terminated, at most cap-1
 * bytes); a longer string fails the reader. */
void oa_read_str(oa_reader *r, char *out, size_t cap);

/* Section headers for serialized objects: a 4-byte tag and a version. */
void oa_buf_put_header(oa_buf *b, const char tag[4], uint32_t version);
/* 0 when the next bytes are the given tag with a version <= max_version
 * (stored in *version); otherwise fills err and returns OA_EFORMAT. */
struct oa_error;
int oa_read_header(oa_reader *r, const char tag[4], uint32_t max_version, uint32_t *version,
                   struct oa_error *err);

#endif
